//! The client: one heartbeat per tick, to every server it was given.

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
    let v4 = bind_if_needed(
        &config.servers,
        SocketAddr::is_ipv4,
        Ipv4Addr::UNSPECIFIED.into(),
    )
    .await?;
    let v6 = bind_if_needed(
        &config.servers,
        SocketAddr::is_ipv6,
        Ipv6Addr::UNSPECIFIED.into(),
    )
    .await?;
    let mut ticks = time::interval(config.interval);
    // A late tick is sent late and the rhythm resumes from there: a burst of catch-up
    // heartbeats would only hide the stall from the server's failure detector.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut heartbeat = Heartbeat {
        node: config.node.clone(),
        seq: 0,
        sent_ms: 0,
        meta: config.meta.as_ref().map(protocol::Meta::from_map),
    };
    while config.count.is_none_or(|count| heartbeat.seq < count) {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        heartbeat.seq += 1;
        heartbeat.sent_ms = wall_clock_ms();
        let datagram = protocol::encode(&heartbeat);
        for server in &config.servers {
            let socket = if server.is_ipv4() { &v4 } else { &v6 };
            // Bound just above for every family present in `servers`.
            let socket = socket
                .as_ref()
                .expect("a socket for each address family in use");
            match socket.send_to(&datagram, server).await {
                Ok(_) => debug!(%server, seq = heartbeat.seq, "sent"),
                Err(e) => warn!(%server, seq = heartbeat.seq, "heartbeat not sent: {e}"),
            }
        }
    }
    Ok(heartbeat.seq)
}

async fn bind_if_needed(
    servers: &[SocketAddr],
    family: fn(&SocketAddr) -> bool,
    any: std::net::IpAddr,
) -> io::Result<Option<UdpSocket>> {
    if servers.iter().any(family) {
        Ok(Some(UdpSocket::bind((any, 0)).await?))
    } else {
        Ok(None)
    }
}
