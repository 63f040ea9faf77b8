//! The accept loop: a bounded number of connections, each served by its own tasks, and the
//! two-step graceful shutdown.
//!
//! Your task (stages 1, 7 and 8): [`run`]. The configuration is given.

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
    // TODO: an `Arc<Broker>`; a `Semaphore` of `max_connections` permits; `Limits` from the config
    // (a `server_id` of your choice, the listener's port); `Shutdown { stop: shutdown.clone(),
    // drain: CancellationToken::new() }`; two `TaskTracker`s, one for the connection tasks and one
    // whose tokens (`readers.token()`) the readers hold. Loop: `tokio::select!` over
    // `shutdown.cancelled()` (break) and `listener.accept()` (log an error and carry on). No permit
    // (`try_acquire_owned`)? Write `-ERR 'Maximum Connections Exceeded'\r\n` and drop the stream.
    // Else `set_nodelay(true)` and spawn `connection::serve` on the tracker, holding the permit.
    // After the loop: close and wait for the readers, cancel `drain`, close and wait for the
    // tracker.
    todo!()
}
