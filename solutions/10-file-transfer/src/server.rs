//! The receiver's accept loop: a bounded number of senders, each served by its own task.

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
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let shared = Arc::new(Shared::new(config));
    let tracker = TaskTracker::new();
    loop {
        let (mut stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, usually: one failed accept must not end the server.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracker.spawn(async move {
                let message = b"too many senders at once; try again later";
                let _ = frame::write_frame(&mut stream, Kind::Error, &[message]).await;
            });
            continue;
        };
        // Control frames are small and must not wait for the sender's delayed ACK.
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%peer, "cannot set TCP_NODELAY: {e}");
        }
        let (shared, shutdown) = (Arc::clone(&shared), shutdown.clone());
        tracker.spawn(async move {
            receiver::serve(stream, peer, shared, shutdown).await;
            drop(permit);
        });
    }
    tracker.close();
    tracker.wait().await;
    info!("shut down");
    Ok(())
}
