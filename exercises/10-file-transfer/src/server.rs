//! The receiver's server: the shared accept loop serving each sender with its own task.
//!
//! Your task (stages 1, 4, 5 and 6): [`run`].

use std::io::{self, Write};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::frame;
use crate::protocol::Kind;
use crate::receiver::{self, ServerConfig, Shared};

/// What a sender past `max_connections` is told, in an ERROR frame, before it is disconnected.
const REFUSAL: &[u8] = b"too many senders at once; try again later";

/// Receives files on `listener` into `config.dir` until `shutdown` is cancelled, then waits for
/// the connections to stop (a transfer cut short keeps its partial file for a later resume).
/// Events go to `events` as JSON lines (`std::io::stdout()` in the binary).
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    events: impl Write + Send + 'static,
    shutdown: CancellationToken,
) -> io::Result<()> {
    // TODO: the receiver of the contract until `shutdown`: connections served through
    // `plumbing::accept_loop` (at most `config.max_connections`, a refusal an ERROR frame holding
    // `REFUSAL`, `receiver::serve`), drained within `config.frame_timeout`; beside them (from stage
    // 1, tested in stage 4) a sweep of expired partial files (`Shared::sweep`, off the runtime) at
    // once and then every quarter of `partial_ttl`, at least 100 ms and at most 60 s apart.
    todo!()
}
