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
    // TODO: an `Arc<Shared>` of the config and `events`, a `TaskTracker`, then the shared
    // accept loop (given, in `plumbing`): `plumbing::accept_loop(&listener,
    // &plumbing::AcceptConfig::new(config.max_connections), &shutdown, &tracker, refuse, serve)`, where `refuse` sends an ERROR frame
    // holding `REFUSAL` and `serve` runs `receiver::serve`. When it returns (shutdown):
    // `plumbing::drain(&tracker, config.frame_timeout)`. Stage 4: beside it, on the tracker, a
    // task that calls `Shared::sweep` on `spawn_blocking` at once and then every quarter of
    // `partial_ttl` (at least 100 ms, at most 60 s: `tokio::time::interval`) until shutdown.
    todo!()
}
