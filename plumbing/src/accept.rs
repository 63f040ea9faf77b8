//! The accept loop of a TCP server: a bounded number of connections, each served by its own
//! task; past the bound a refusal the client can read; a failed accept (out of file descriptors,
//! usually) never ends the server; and on shutdown, a bounded wait for connections to finish.
//!
//! Every TCP server of the workbook accepts the same way, so this is plumbing: what each
//! project teaches is what its connections do, in its own `connection.rs`.
//!
//! ```no_run
//! # async fn example(listener: tokio::net::TcpListener, shutdown: tokio_util::sync::CancellationToken) {
//! use std::time::Duration;
//! use tokio::io::AsyncWriteExt;
//! use tokio_util::task::TaskTracker;
//!
//! let config = plumbing::AcceptConfig::new(1024);
//! let tracker = TaskTracker::new();
//! plumbing::accept_loop(
//!     &listener,
//!     &config,
//!     &shutdown,
//!     &tracker,
//!     |mut stream| async move {
//!         let _ = stream.write_all(b"-ERR max number of clients reached\r\n").await;
//!     },
//!     |stream, peer| async move { /* serve the connection */ },
//! )
//! .await;
//! plumbing::drain(&tracker, Duration::from_secs(3)).await;
//! # }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

/// How a server accepts.
#[derive(Debug, Clone)]
pub struct AcceptConfig {
    /// The most connections served at once; one more is refused.
    pub max_connections: usize,
    /// Whether to set `TCP_NODELAY`: servers whose replies are small and already batched do, so
    /// that Nagle's algorithm does not hold a reply back for the client's delayed ACK.
    pub nodelay: bool,
    /// How long a refusal may take to write: a client that does not read must not hold a task.
    pub refusal_deadline: Duration,
}

impl AcceptConfig {
    /// At most `max_connections` at once, `TCP_NODELAY` on, a refusal bounded to 5 s.
    pub fn new(max_connections: usize) -> Self {
        AcceptConfig {
            max_connections,
            nodelay: true,
            refusal_deadline: Duration::from_secs(5),
        }
    }
}

/// Accepts connections on `listener` until `shutdown` is cancelled, spawning `serve(stream,
/// peer)` on `tracker` for each while fewer than `config.max_connections` are being served, and
/// `refuse(stream)` (bounded by `config.refusal_deadline`) for one more. Returns when `shutdown`
/// is cancelled; the connections go on, and the caller closes and waits on `tracker` (see
/// [`drain`]) once it has told them to stop.
pub async fn accept_loop<S, SF, R, RF>(
    listener: &TcpListener,
    config: &AcceptConfig,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
    refuse: R,
    mut serve: S,
) where
    S: FnMut(TcpStream, SocketAddr) -> SF,
    SF: Future<Output = ()> + Send + 'static,
    R: Fn(TcpStream) -> RF,
    RF: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(config.max_connections));
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, usually: one failed accept must not end the
                    // server, and retrying at once would spin.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            debug!(%peer, "refused: {} connections already", config.max_connections);
            let refusal = refuse(stream);
            let deadline = config.refusal_deadline;
            tracker.spawn(async move {
                let _ = tokio::time::timeout(deadline, refusal).await;
            });
            continue;
        };
        if config.nodelay
            && let Err(e) = stream.set_nodelay(true)
        {
            debug!(%peer, "cannot set TCP_NODELAY: {e}");
        }
        let served = serve(stream, peer);
        tracker.spawn(async move {
            served.await;
            drop(permit);
        });
    }
}

/// Closes `tracker` and waits up to `grace` for its tasks to finish. Returns whether they all
/// did; those still running (a client that stopped reading, blocking its connection's writes)
/// are named in a warning and end when the runtime does.
pub async fn drain(tracker: &TaskTracker, grace: Duration) -> bool {
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_ok() {
        return true;
    }
    warn!(
        "{} connections still busy after {grace:?}: closing them",
        tracker.len()
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn serves_up_to_the_limit_and_refuses_one_more() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let (stop, served) = (shutdown.clone(), tracker.clone());
        let server = tokio::spawn(async move {
            accept_loop(
                &listener,
                &AcceptConfig::new(1),
                &stop,
                &served,
                |mut s| async move {
                    let _ = s.write_all(b"full\n").await;
                },
                |mut s, _| async move {
                    // Holds its permit until the client closes.
                    let mut buf = [0; 1];
                    let _ = s.read(&mut buf).await;
                },
            )
            .await;
        });
        let _first = TcpStream::connect(addr).await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        let mut reply = String::new();
        second.read_to_string(&mut reply).await.unwrap();
        assert_eq!(reply, "full\n");
        shutdown.cancel();
        server.await.unwrap();
        drop(_first);
        assert!(drain(&tracker, Duration::from_secs(5)).await);
    }
}
