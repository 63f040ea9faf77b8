//! The status client: ask a server for its table, page by page, and show it.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::time::{self, Instant};

use crate::protocol::{self, MAX_REPLY, NodeStatus, Op, ServerStats, StatusReply, StatusRequest};

/// The most pages one fetch follows: a bound on a misbehaving server that never says "last".
pub const MAX_PAGES: usize = 10_000;

/// A whole membership table, every page merged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The server's counters, from the last page.
    pub server: ServerStats,
    /// Every node, in id order.
    pub nodes: Vec<NodeStatus>,
}

/// Why a table could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The local socket failed.
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    /// Nothing came back.
    #[error("no answer from {server} after {tries} tries ({wait:?} each): is the server running?")]
    NoAnswer {
        /// Who was asked.
        server: SocketAddr,
        /// How often.
        tries: u32,
        /// How long each try waited.
        wait: Duration,
    },
    /// The server kept answering without ever sending the last page.
    #[error("{server} sent more than {MAX_PAGES} pages")]
    TooManyPages {
        /// Who was asked.
        server: SocketAddr,
    },
}

/// Fetches the whole table from `server`, asking again up to `tries` times per page when no
/// answer comes within `wait` (UDP may lose the request, the reply, or the server may be
/// rate-limiting status replies).
pub async fn fetch(server: SocketAddr, wait: Duration, tries: u32) -> Result<Status, StatusError> {
    let any: std::net::IpAddr = if server.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let socket = UdpSocket::bind((any, 0)).await?;
    let mut nodes: Vec<NodeStatus> = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let request = protocol::encode(&StatusRequest {
            op: Op::Status,
            after: after.clone(),
        });
        let reply = ask(&socket, server, &request, after.as_deref(), wait, tries).await?;
        nodes.extend(reply.nodes);
        match reply.next {
            Some(next) => after = Some(next),
            None => {
                return Ok(Status {
                    server: reply.server,
                    nodes,
                });
            }
        }
    }
    Err(StatusError::TooManyPages { server })
}

/// Sends one page request until a reply to it arrives.
async fn ask(
    socket: &UdpSocket,
    server: SocketAddr,
    request: &[u8],
    after: Option<&str>,
    wait: Duration,
    tries: u32,
) -> Result<StatusReply, StatusError> {
    let mut buf = vec![0u8; MAX_REPLY + 1];
    for _ in 0..tries {
        socket.send_to(request, server).await?;
        let deadline = Instant::now() + wait;
        while let Ok(received) = time::timeout_at(deadline, socket.recv_from(&mut buf)).await {
            let (len, from) = received?;
            if from != server {
                continue;
            }
            let Ok(reply) = serde_json::from_slice::<StatusReply>(&buf[..len]) else {
                continue;
            };
            // A late reply to an earlier try of an earlier page starts at or before `after`.
            let stale = match (after, reply.nodes.first()) {
                (Some(after), Some(first)) => first.node.as_str() <= after,
                _ => false,
            };
            if !stale {
                return Ok(reply);
            }
        }
    }
    Err(StatusError::NoAnswer {
        server,
        tries,
        wait,
    })
}

/// Renders the table for a terminal: one row per node, then the server's counters.
pub fn render_table(status: &Status) -> String {
    let width = status
        .nodes
        .iter()
        .map(|n| n.node.chars().count())
        .chain([4])
        .max()
        .unwrap_or(4);
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = writeln!(
        out,
        "{:<width$}  {:<5}  {:>9}  {:>8}  {:>6}  {:>6}  {:>9}  {:>8}  {:>5}",
        "NODE", "STATE", "LAST SEEN", "RECEIVED", "LOST", "DUPS", "REORDERED", "RESTARTS", "PHI"
    );
    for n in &status.nodes {
        let state = match n.state {
            protocol::NodeState::Alive => "alive",
            protocol::NodeState::Dead => "dead",
        };
        let seen =
            humantime::format_duration(Duration::from_millis(n.last_seen_ms_ago)).to_string();
        // Phi past 99.9 (any node dead a while) says no more than "very dead".
        let phi = n
            .phi
            .map_or_else(|| "-".to_owned(), |p| format!("{:.1}", p.min(99.9)));
        let _ = writeln!(
            out,
            "{:<width$}  {:<5}  {:>9}  {:>8}  {:>6}  {:>6}  {:>9}  {:>8}  {:>5}",
            n.node, state, seen, n.received, n.lost, n.duplicates, n.reordered, n.restarts, phi
        );
    }
    let s = &status.server;
    let _ = writeln!(
        out,
        "{} nodes ({} alive, {} dead); {} heartbeats received, {} datagrams rejected, {} new nodes \
         refused; detector {} (timeout {}); up {}",
        s.nodes,
        s.alive,
        s.dead,
        s.received,
        s.rejected,
        s.nodes_refused,
        s.detector,
        humantime::format_duration(Duration::from_millis(s.timeout_ms)),
        humantime::format_duration(Duration::from_secs(s.uptime_ms / 1000)),
    );
    out
}
