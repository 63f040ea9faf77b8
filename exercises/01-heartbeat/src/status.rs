//! The status client: ask a server for its table, page by page, and show it.
//!
//! Your task (stage 2): [`fetch`] and [`render_table`].

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
    // TODO: every page of the table (contract: "Status"), at most MAX_PAGES, each page tried up to
    // `tries` times with `wait` for each, else `StatusError::NoAnswer`. Ignore datagrams not from
    // `server`, not a `StatusReply`, or a late reply to an earlier page. `UdpSocket::bind` in the
    // server's address family, `tokio::time::timeout`.
    todo!()
}

/// Renders the table for a terminal: one row per node, then the server's counters.
pub fn render_table(status: &Status) -> String {
    // TODO: a header line with the columns NODE STATE LAST SEEN RECEIVED LOST DUPS REORDERED
    // RESTARTS PHI, one line per node (pad with `format!("{:<width$}")`; make the NODE column as
    // wide as the longest id; `humantime::format_duration` prints `last_seen_ms_ago` nicely;
    // phi to one decimal, or `-` while it is `None`), then one line with the server's counters.
    // `use std::fmt::Write` lets you `writeln!` into a `String`.
    todo!()
}
