//! The broker's server: the shared accept loop serving each connection with its own tasks, and
//! the two-step graceful shutdown.
//!
//! Your task (stages 1, 7 and 8): [`run`]. The configuration is given.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use crate::broker::Broker;
use crate::connection::{self, Settings, Shutdown};
use crate::protocol;

/// The default of [`ServerConfig::max_connections`] (and of `--max-connections`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The default of [`ServerConfig::max_pending`]: 8 MiB.
pub const DEFAULT_MAX_PENDING: usize = 8 * 1024 * 1024;
/// The default of [`ServerConfig::max_subscriptions`].
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 65_536;
/// The default of [`ServerConfig::max_subscription_bytes`]: 128 MiB.
pub const DEFAULT_MAX_SUBSCRIPTION_BYTES: usize = 128 * 1024 * 1024;
/// The default of [`ServerConfig::max_total_pending`]: 1 GiB.
pub const DEFAULT_MAX_TOTAL_PENDING: usize = 1024 * 1024 * 1024;
/// The default of [`ServerConfig::max_total_subscription_bytes`]: 1 GiB.
pub const DEFAULT_MAX_TOTAL_SUBSCRIPTION_BYTES: usize = 1024 * 1024 * 1024;
/// The default of [`ServerConfig::write_deadline`].
pub const DEFAULT_WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// The default of [`ServerConfig::ping_interval`]: two minutes, as NATS has it.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(120);

/// How the broker is shaped.
#[derive(Debug, Clone)]
pub struct ServerConfig {
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
    /// The most bytes queued for all clients together; past it, a client with bytes already
    /// queued is a slow consumer.
    pub max_total_pending: usize,
    /// The most bytes all clients' subscriptions may hold together, estimated as for
    /// `max_subscription_bytes`; past it, `SUB` is refused.
    pub max_total_subscription_bytes: usize,
    /// How long one write to a client may take before it is a slow consumer.
    pub write_deadline: Duration,
    /// How long a client may stay silent before it is sent `PING`; after
    /// [`MAX_PINGS_OUT`](connection::MAX_PINGS_OUT) unanswered, it is disconnected.
    pub ping_interval: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_payload: protocol::DEFAULT_MAX_PAYLOAD,
            max_pending: DEFAULT_MAX_PENDING,
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            max_subscription_bytes: DEFAULT_MAX_SUBSCRIPTION_BYTES,
            max_total_pending: DEFAULT_MAX_TOTAL_PENDING,
            max_total_subscription_bytes: DEFAULT_MAX_TOTAL_SUBSCRIPTION_BYTES,
            write_deadline: DEFAULT_WRITE_DEADLINE,
            ping_interval: DEFAULT_PING_INTERVAL,
        }
    }
}

/// Serves clients on `listener` until `shutdown` is cancelled. Then it stops accepting, lets
/// every connection stop reading (so nothing more is published), flushes every client's queue,
/// tells each client the server is going (`INFO {"ldm":true}`), and closes.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: CancellationToken,
) -> io::Result<()> {
    // TODO: the broker of the contract until `shutdown`: one `Broker` with the config's two
    // process-wide budgets, the connections served through `plumbing::accept_loop` (at most
    // `max_connections`, a refusal `-ERR 'Maximum Connections Exceeded'` within the write
    // deadline), and the shutdown of "Shutdown": every reader stopped (a `TaskTracker` whose tokens
    // they hold) before `drain` is cancelled, then every connection finished. `Settings`,
    // `Shutdown`, `connection::serve`.
    todo!()
}
