//! The accept loop: a bounded number of connections, each served by its own task.

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

/// How long shutdown waits for connections to finish their work. A client that stopped reading
/// its replies blocks its connection's writes for good; it must not hold the server open too.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

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
    let store = match config.backend {
        Backend::Actors => StoreHandle::spawn(config.shards),
        Backend::Mutex => StoreHandle::locked(),
    };
    let permits = Arc::new(Semaphore::new(config.max_connections));
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
                let _ = stream
                    .write_all(b"-ERR max number of clients reached\r\n")
                    .await;
            });
            continue;
        };
        // Replies are small and already batched per pipeline: Nagle's algorithm would only hold
        // them back waiting for an ACK that the client delays in turn (40 ms on Linux).
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%peer, "cannot set TCP_NODELAY: {e}");
        }
        let (store, shutdown) = (store.clone(), shutdown.clone());
        tracker.spawn(async move {
            if let Err(e) = connection::serve(stream, store, shutdown).await {
                debug!(%peer, "connection ended: {e}");
            }
            drop(permit);
        });
    }
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        // Returning drops the runtime, and with it those connections' tasks and sockets.
        warn!(
            "{} connections still busy after {SHUTDOWN_GRACE:?}: closing them",
            tracker.len()
        );
    }
    info!("shut down");
    Ok(())
}
