//! The accept loop: a bounded number of connections, each served by its own task.
//!
//! Your task (stages 1 and 6): [`run`].

use std::io;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::actor::StoreHandle;
use crate::connection;

/// Who owns the key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Actors, one per shard, reached by messages.
    Actors,
    /// One store behind a mutex, locked by every connection (for comparison).
    Mutex,
}

/// How the server is shaped.
#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    /// Actors or a mutex.
    pub backend: Backend,
    /// How many actors share the key space (1 means one actor owns every key).
    pub shards: usize,
    /// The most clients connected at once; others are told and disconnected.
    pub max_connections: usize,
}

/// Serves clients on `listener` until `shutdown` is cancelled, then waits (a few seconds at most)
/// for the connections to finish what they were doing.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: CancellationToken,
) -> io::Result<()> {
    // TODO: `StoreHandle::spawn(config.shards)` (or `StoreHandle::locked()` for `Backend::Mutex`);
    // an `Arc<Semaphore>` with `max_connections` permits; a `TaskTracker`. Loop: `tokio::select!`
    // over `shutdown.cancelled()` (break) and `listener.accept()` (log and carry on after an
    // error; never let one bad accept end the server). No permit free (`try_acquire_owned`)? Write
    // `-ERR max number of clients reached\r\n` and drop the connection. Otherwise spawn
    // `connection::serve` on the tracker, holding the permit until it ends. After the loop:
    // `tracker.close()`, then `tracker.wait()` inside `tokio::time::timeout` (a few seconds): a
    // client that stopped reading blocks its connection's writes forever, and must not keep the
    // server from exiting. Call `set_nodelay(true)` on each accepted stream, as
    // Redis does: the replies are small, and Nagle's algorithm would hold them back until the
    // client's (delayed) ACK.
    todo!()
}
