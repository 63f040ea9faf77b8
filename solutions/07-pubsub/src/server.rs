//! The accept loop: a bounded number of connections, each served by its own tasks, and the
//! two-step graceful shutdown.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::broker::Broker;
use crate::connection::{self, Limits, Shutdown};
use crate::protocol;

/// How the broker is shaped.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// The most clients connected at once; others get `-ERR 'Maximum Connections Exceeded'`.
    pub max_connections: usize,
    /// The largest payload a `PUB` may carry, announced in `INFO` as `max_payload`.
    pub max_payload: usize,
    /// The most bytes queued for one client before it is a slow consumer.
    pub max_pending: usize,
    /// The most subscriptions one client may hold.
    pub max_subscriptions: usize,
    /// The most bytes one client's subscriptions may hold in all, as
    /// [`Subscription::memory`](crate::broker::Subscription::memory) estimates them.
    pub max_subscription_bytes: usize,
    /// How long one write to a client may take before it is a slow consumer.
    pub write_deadline: Duration,
    /// How long a client may stay silent before it is sent `PING`; after
    /// [`MAX_PINGS_OUT`](connection::MAX_PINGS_OUT) unanswered, it is disconnected.
    pub ping_interval: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            max_connections: 1024,
            max_payload: protocol::DEFAULT_MAX_PAYLOAD,
            max_pending: 8 * 1024 * 1024,
            max_subscriptions: 65_536,
            max_subscription_bytes: 128 * 1024 * 1024,
            write_deadline: Duration::from_secs(10),
            ping_interval: Duration::from_secs(120),
        }
    }
}

/// Serves clients on `listener` until `shutdown` is cancelled. Then it stops accepting, lets
/// every connection stop reading (so nothing more is published), flushes every client's queue,
/// tells each client the server is going (`INFO {"ldm":true}`), and closes.
pub async fn run(
    listener: TcpListener,
    config: BrokerConfig,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let broker = Arc::new(Broker::new());
    let port = listener.local_addr()?.port();
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let limits = Limits {
        max_payload: config.max_payload,
        max_pending: config.max_pending,
        max_subscriptions: config.max_subscriptions,
        max_subscription_bytes: config.max_subscription_bytes,
        write_deadline: config.write_deadline,
        ping_interval: config.ping_interval,
        server_id: format!("PUBSUB{:X}{port}", std::process::id()),
        port,
    };
    let signals = Shutdown {
        stop: shutdown.clone(),
        drain: CancellationToken::new(),
    };
    let tracker = TaskTracker::new();
    let readers = TaskTracker::new();
    loop {
        let (mut stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, usually: one failed accept must not end the server.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            // Bounded, like every write: a client that does not read must not hold up shutdown.
            let deadline = config.write_deadline;
            tracker.spawn(async move {
                let refusal = protocol::err_line("Maximum Connections Exceeded");
                let _ = tokio::time::timeout(deadline, stream.write_all(&refusal)).await;
            });
            continue;
        };
        // Many small messages per write already; Nagle's algorithm would only add latency.
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%peer, "cannot set TCP_NODELAY: {e}");
        }
        let (broker, limits, signals) = (Arc::clone(&broker), limits.clone(), signals.clone());
        let reading = readers.token();
        tracker.spawn(async move {
            if let Err(e) = connection::serve(stream, peer, broker, limits, signals, reading).await
            {
                debug!(%peer, "connection ended: {e}");
            }
            drop(permit);
        });
    }
    readers.close();
    readers.wait().await;
    signals.drain.cancel();
    tracker.close();
    tracker.wait().await;
    info!("shut down");
    Ok(())
}
