//! The receiver's accept loop: a bounded number of senders, each served by its own task.
//!
//! Your task (stages 1, 5 and 6): [`run`].

use std::io;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::frame;
use crate::protocol::Kind;
use crate::receiver::{self, RecvConfig, Shared};

/// Receives files on `listener` into `config.dir` until `shutdown` is cancelled, then waits for
/// the connections to stop (a transfer cut short keeps its partial file for a later resume).
pub async fn run(
    listener: TcpListener,
    config: RecvConfig,
    shutdown: CancellationToken,
) -> io::Result<()> {
    // TODO: an `Arc<Semaphore>` of `max_connections` permits, an `Arc<Shared>`, a `TaskTracker`.
    // Loop: `tokio::select!` over `shutdown.cancelled()` (break) and `listener.accept()` (log and
    // carry on after an error). No permit free (`try_acquire_owned`)? Send an ERROR frame saying
    // so and drop the connection. Otherwise `set_nodelay(true)` and spawn `receiver::serve` on the
    // tracker, holding the permit until it ends. After the loop: `tracker.close()`, `wait()`.
    todo!()
}
