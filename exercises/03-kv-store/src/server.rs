//! The server: the store's owners, and the shared accept loop serving each connection.
//!
//! Your task (stages 1 and 6): [`run`].

use std::io;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use crate::actor::StoreHandle;
use crate::connection;

/// How long shutdown waits for connections to finish their work. A client that stopped reading
/// its replies blocks its connection's writes for good; it must not hold the server open too.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// What a client past `max_connections` reads before it is disconnected, as Redis says it.
const REFUSAL: &[u8] = b"-ERR max number of clients reached\r\n";

/// How long a connection may go without completing a request (or without reading any of its
/// replies) before it is closed: idle clients must not hold the connection limit for ever.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// The bytes all connections together may hold of unfinished requests and of replies built but
/// not yet written; a read that would go past it is refused (`-ERR max buffered bytes reached`).
pub const DEFAULT_MAX_BUFFERED: usize = 256 * 1024 * 1024;

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
    /// Idle connections are closed after this long (zero: never).
    pub idle_timeout: Duration,
    /// The process-wide budget, in bytes, for buffered requests and replies.
    pub max_buffered: usize,
}

/// Serves clients on `listener` until `shutdown` is cancelled, then waits (a few seconds at most)
/// for the connections to finish what they were doing.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: CancellationToken,
) -> io::Result<()> {
    // TODO: the store `config.backend` names (`StoreHandle::spawn(config.shards)` or
    // `StoreHandle::locked()`), the connections served through `plumbing::accept_loop` (at most
    // `config.max_connections`, a refusal writes `REFUSAL`, one `connection::Budget` of
    // `config.max_buffered` for all), and at shutdown `plumbing::drain` within `SHUTDOWN_GRACE`
    // (contract: "Shutdown").
    todo!()
}
