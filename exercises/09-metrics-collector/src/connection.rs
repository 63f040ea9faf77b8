//! The readers: StatsD and Graphite lines over TCP, StatsD datagrams over UDP, and agents'
//! batches. Each parses what it reads, stamps it with its receive time, and hands it to the
//! [`Router`]; a malformed line is counted by reason, logged at most once a second, and skipped.
//!
//! Your task: [`Ingest::parse_lines`] (stage 1), [`serve_lines`] (stage 1; the line limit in
//! stage 7), [`serve_udp`] (stage 2), and the agent's side: `Agents::hello`, `Agents::claim` and
//! [`serve_agent`] (stage 5). `now_ms`, the rate-limited [`Ingest::refuse`] and the types are
//! given.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::aggregate::Stamped;
use crate::pipeline::{Counters, Router};
use crate::protocol::{self, AgentFrame, ProtocolError, Sample};

/// Milliseconds since the Unix epoch, by this machine's clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A line parser: [`protocol::parse_statsd`] or [`protocol::parse_graphite`].
pub type Parser = fn(&str) -> Result<Sample, ProtocolError>;

/// What every reader shares.
#[derive(Debug, Clone)]
pub struct Ingest {
    /// Where samples go.
    pub router: Router,
    /// The counts.
    pub counters: Arc<Counters>,
    /// The longest line accepted, in bytes.
    pub max_line: usize,
    /// When a malformed line was last logged (ms), so that a flood logs once a second.
    last_log: Arc<AtomicU64>,
}

impl Ingest {
    /// Readers for `router`, counting into `counters`.
    pub fn new(router: Router, counters: Arc<Counters>, max_line: usize) -> Self {
        Ingest {
            router,
            counters,
            max_line,
            last_log: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Counts (and perhaps logs) one malformed line.
    pub fn refuse(&self, error: &ProtocolError, line: &[u8]) {
        self.counters.malformed(error.reason());
        let now = now_ms();
        let last = self.last_log.load(Ordering::Relaxed);
        if now >= last + 1000
            && self
                .last_log
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let shown = &line[..line.len().min(120)];
            warn!(
                "malformed line ({}): {:?} (further ones this second are only counted)",
                error.reason().as_str(),
                String::from_utf8_lossy(shown)
            );
        }
    }

    /// Parses every line of `bytes` (newline-separated, a trailing `\r` allowed, blank lines
    /// skipped) into `out`, stamped `received_ms`.
    pub fn parse_lines(
        &self,
        bytes: &[u8],
        parse: Parser,
        received_ms: u64,
        out: &mut Vec<Stamped>,
    ) {
        // TODO: split `bytes` on '\n', strip a trailing '\r', and hand each line to `parse_line`;
        //   then add the samples it took to `counters.samples`, once (every reader shares it).
        todo!()
    }

    fn parse_line(&self, line: &[u8], parse: Parser, received_ms: u64, out: &mut Vec<Stamped>) {
        // TODO: skip blank lines; longer than `max_line` is `LineTooLong`; not UTF-8 is
        //   `NotUtf8`; else `parse`. On success push a `Stamped`; on error `refuse`.
        todo!()
    }
}

/// Serves one TCP connection of newline-delimited lines (StatsD or Graphite) until it closes or
/// `shutdown`. A line longer than the limit is skipped up to its newline and counted.
pub async fn serve_lines(
    mut stream: TcpStream,
    ingest: Ingest,
    parse: Parser,
    shutdown: CancellationToken,
) {
    // TODO: the lines of one stream, each stamped with its read time (`now_ms()`), parsed
    // (`parse_lines`) and sent to the router until EOF (a last line without '\n' is a line) or
    // `shutdown`. Memory stays bounded by `max_line`: a partial line past it is refused once and
    // skipped to its next '\n'. `read_buf`, `tokio::select!`, `Router::send`.
    todo!()
}

/// Receives StatsD datagrams (several lines each) on `socket` until `shutdown`.
pub async fn serve_udp(socket: UdpSocket, ingest: Ingest, shutdown: CancellationToken) {
    // TODO: `recv_from` into a 64 KiB buffer in a `select!` with shutdown; each datagram is
    //   several lines: `parse_lines` with `protocol::parse_statsd`, then `router.send`.
    todo!()
}

/// The highest sequence number taken from each agent, shared by all agent connections: a batch
/// resent after a reconnect, to this connection or another, is acknowledged and not counted twice.
#[derive(Debug)]
pub struct Agents {
    taken: Mutex<HashMap<String, u64>>,
    max_agents: usize,
}

impl Agents {
    /// An empty table for at most `max_agents` agents.
    pub fn new(max_agents: usize) -> Self {
        Agents {
            taken: Mutex::new(HashMap::new()),
            max_agents,
        }
    }

    /// The highest sequence taken from `agent`, registering it; `None` when the table is full.
    fn hello(&self, agent: &str) -> Option<u64> {
        // TODO: under the lock: a known agent's highest sequence; a new one is registered at 0 unless
        //   the table holds `max_agents` already (`None`).
        todo!()
    }

    /// Claims `seq` for `agent`: true if it is new (and now taken), false for a duplicate.
    fn claim(&self, agent: &str, seq: u64) -> bool {
        // TODO: under the lock: true (and record it) if `seq` is above the agent's highest.
        todo!()
    }
}

/// Serves one agent connection: `HELLO`, then batches, each acknowledged once its samples are
/// queued to the workers (so the next flush reports them).
pub async fn serve_agent(
    mut stream: TcpStream,
    ingest: Ingest,
    agents: Arc<Agents>,
    max_frame: usize,
    shutdown: CancellationToken,
) {
    // TODO: the collector's side of the contract's "The agent protocol": `HELLO` answered `OK
    // <highest>`, a whole `BATCH` claimed (a new one parsed with its agent's `received_ms` and
    // routed, a duplicate counted) and answered `ACK seq` once routed, and every error `ERR ...`
    // then a close. `protocol::parse_agent_frame`, `Agents`, `tokio::select!` with `shutdown`.
    todo!()
}
