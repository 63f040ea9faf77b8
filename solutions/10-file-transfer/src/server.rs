//! The receiver's server: the shared accept loop serving each sender with its own task.

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
    // `TCP_NODELAY` on (the default): control frames are small and must not wait for the
    // sender's delayed ACK.
    let accept = plumbing::AcceptConfig::new(config.max_connections);
    let grace = config.frame_timeout;
    let shared = Arc::new(Shared::new(config, events));
    let tracker = TaskTracker::new();
    plumbing::accept_loop(
        &listener,
        &accept,
        &shutdown,
        &tracker,
        |mut stream| async move {
            let _ = frame::write_frame(&mut stream, Kind::Error, &[REFUSAL]).await;
        },
        |stream, peer| {
            let (shared, shutdown) = (Arc::clone(&shared), shutdown.clone());
            receiver::serve(stream, peer, shared, shutdown)
        },
    )
    .await;
    // A connection stops at once on shutdown, saying so in an ERROR frame: the grace bounds
    // that last write to a sender that does not read, as `frame_timeout` bounds a frame.
    plumbing::drain(&tracker, grace).await;
    info!("shut down");
    Ok(())
}
