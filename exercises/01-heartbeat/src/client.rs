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
    // TODO: one `Heartbeat` to every server each `config.interval`, the first at once, `seq` 1, 2,
    // 3... with no gap; stop after `config.count` ticks or when `shutdown` fires, and return the
    // ticks sent. A failed send is logged and the loop goes on. Reach for `tokio::net::UdpSocket`,
    // `tokio::time::interval`, `protocol::encode`, `Meta::from_map` and `tokio::select!` (contract:
    // "Heartbeats"; `cargo xtask hint heartbeat 1` has the steps).
    todo!()
}
