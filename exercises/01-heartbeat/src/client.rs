//! The client: one heartbeat per tick, to every server it was given.
//!
//! Your task (stage 1): [`run`].

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::net::UdpSocket;
use tokio::time::{self, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::protocol::{self, Heartbeat};
use crate::server::wall_clock_ms;

/// What the client sends, where, and how often.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Every server to send to (the "broadcast": each gets every heartbeat).
    pub servers: Vec<SocketAddr>,
    /// This node's id, already validated.
    pub node: String,
    /// Time between heartbeats.
    pub interval: Duration,
    /// Stop after this many heartbeats; `None` runs until shutdown.
    pub count: Option<u64>,
    /// Sent with every heartbeat.
    pub meta: Option<Map<String, Value>>,
}

/// Sends heartbeats until `count` is reached or `shutdown` is cancelled, and returns how many
/// ticks it sent (each tick goes to every server).
///
/// The first heartbeat leaves at once; a send that fails is logged and the next tick tries
/// again, since a server that is down now may be up by then.
pub async fn run(config: ClientConfig, shutdown: CancellationToken) -> io::Result<u64> {
    // TODO:
    // - `UdpSocket::bind("0.0.0.0:0")` gives a socket on a free port (for IPv6 servers you need
    //   one bound to `[::]:0`; a socket speaks one address family).
    // - `tokio::time::interval(config.interval)` ticks at once, then every interval; set
    //   `MissedTickBehavior::Delay` so a stalled client does not send a burst to catch up.
    // - Each tick: `seq` += 1 (the first heartbeat has seq 1), `sent_ms = wall_clock_ms()`,
    //   `protocol::encode` the `Heartbeat` once and `send_to` every server (its `meta` is
    //   `config.meta` made into a `protocol::Meta` once, with `Meta::from_map`). A failed send is
    //   logged (`tracing::warn!`) and the loop goes on.
    // - Stop after `config.count` ticks, or when `shutdown` is cancelled: `tokio::select!` on
    //   `shutdown.cancelled()` and `ticks.tick()`. Return the number of ticks sent.
    todo!()
}
