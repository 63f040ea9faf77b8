//! A node: one UDP socket, one task, one election state machine.
//!
//! Your task (stage 1): [`run`] and the three methods of `Node`. `Engine`, `each!`, `send`,
//! `emit`, `print_json` and `now_ms` are given.
//!
//! The task receives every datagram, checks that it comes from a member at the member's own
//! address, and hands it to the state machine; a timer wakes it when the machine asks. Before
//! anything the machine says leaves the node, the durable state is saved if it changed: a vote
//! is on disk before the reply that grants it is sent.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::bully::Bully;
use crate::election::{Dest, Election, ElectionConfig, Output};
use crate::persist::{Durable, Store};
use crate::protocol::{
    self, Dropped, Event, Message, PeerStatus, ResourceRequest, Role, StatusReply,
};

/// Time between heartbeats.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(100);
/// Silence from the leader after which a node may stand for election.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a hand-over candidate must have been heard before it takes over.
pub const DEFAULT_HOLD_DOWN: Duration = Duration::from_secs(3);
/// The longest datagram a node reads; longer ones are dropped and counted.
pub const DEFAULT_MAX_MESSAGE: usize = 8 * 1024;
/// Status replies per second; further requests in the same second are dropped.
pub const DEFAULT_STATUS_RATE: u32 = 100;

/// The lease a leader keeps by default: three quarters of the election timeout, which stays
/// safe while no clock runs more than a third faster than another.
pub fn default_lease(timeout: Duration) -> Duration {
    timeout * 3 / 4
}

/// Which election a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// Terms, pre-vote, majority votes and leases.
    #[default]
    Safe,
    /// The plain bully algorithm: highest live priority, no quorum, no lease.
    Bully,
}

/// One node's configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// This node's id.
    pub id: String,
    /// Its priority.
    pub priority: u64,
    /// The other members, by id, with their addresses.
    pub peers: Vec<(String, SocketAddr)>,
    /// Time between heartbeats.
    pub heartbeat: Duration,
    /// The election timeout.
    pub timeout: Duration,
    /// The leader's lease; `None` is [`default_lease`] of the timeout.
    pub lease: Option<Duration>,
    /// Whether a live node of higher priority takes over.
    pub preempt: bool,
    /// How long it must have been heard without a gap first.
    pub hold_down: Duration,
    /// The election algorithm.
    pub algorithm: Algorithm,
    /// Where the term and vote are kept; `None` keeps them in memory.
    pub data: Option<PathBuf>,
    /// A fencing-token store the leader writes to every heartbeat.
    pub resource: Option<SocketAddr>,
    /// The longest datagram accepted.
    pub max_message: usize,
    /// Status replies per second.
    pub status_rate: u32,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            id: "node".into(),
            priority: 0,
            peers: Vec::new(),
            heartbeat: DEFAULT_HEARTBEAT,
            timeout: DEFAULT_TIMEOUT,
            lease: None,
            preempt: true,
            hold_down: DEFAULT_HOLD_DOWN,
            algorithm: Algorithm::Safe,
            data: None,
            resource: None,
            max_message: DEFAULT_MAX_MESSAGE,
            status_rate: DEFAULT_STATUS_RATE,
        }
    }
}

/// Either algorithm, behind one face.
enum Engine {
    Safe(Election),
    Bully(Bully),
}

// Unused until you write the methods below.
#[allow(unused_macros)]
macro_rules! each {
    ($engine:expr, $m:ident => $e:expr) => {
        match $engine {
            Engine::Safe($m) => $e,
            Engine::Bully($m) => $e,
        }
    };
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Node {
    config: ServerConfig,
    engine: Engine,
    store: Store,
    by_id: BTreeMap<String, SocketAddr>,
    dropped: Dropped,
    status_window: (Instant, u32),
}

/// Runs a node on `socket` until `shutdown` is cancelled, printing its events on stdout.
///
/// # Errors
/// When the durable state cannot be read or written (the node stops rather than risk voting
/// twice), or stdout cannot be written.
pub async fn run(
    socket: UdpSocket,
    config: ServerConfig,
    shutdown: CancellationToken,
) -> io::Result<()> {
    // TODO: the node until `shutdown`: its durable state loaded first (an error ends it: better
    // stopped than voting twice), the `Engine` of `config.algorithm` (lease: `config.lease` or
    // `default_lease`) and its `start_event`; then a `tokio::select!` of `shutdown`, the engine's
    // `next_wakeup` (`tick`, `apply`) and datagrams of up to `max_message + 1` bytes (`handle`). A
    // receive error is an ICMP notice about a peer: logged, survived. `Store`, `each!`.
    todo!()
}

impl Node {
    async fn handle(
        &mut self,
        datagram: &[u8],
        from: SocketAddr,
        socket: &UdpSocket,
    ) -> io::Result<()> {
        // TODO: in this order, counting each drop in `self.dropped`: longer than `max_message`
        // (`oversized`); `protocol::decode` fails (`malformed`); no `from` means a status
        // request (`self.status`); a `from` not in `by_id` (`non_member`), or in it with another
        // address than `from` (`forged`). Only then hand the message to the engine and `apply`.
        todo!()
    }

    async fn apply(&mut self, out: Output, now: Instant, socket: &UdpSocket) -> io::Result<()> {
        // TODO: the engine's `Output` obeyed in the order the contract requires: saved (`out.save`)
        // before anything is sent, then sent (`Dest::All` to every peer, `Dest::Peer` to one), then
        // the events printed. (Stage 6) a leader that just sent its heartbeat and still
        // `leads(now)` writes its term as the token to `config.resource`, if set (contract:
        // "Fencing").
        todo!()
    }

    async fn status(&mut self, to: SocketAddr, now: Instant, socket: &UdpSocket) {
        // TODO: at most `status_rate` replies a second (a window in `status_window`), then a
        // `StatusReply` built from the engine (`peer`, `role`, `leader`, `durable`) and
        // `self.dropped`, sent to `to`. `role` reads `leader` only while `leads(now)`.
        todo!()
    }
}

async fn send(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) {
    if let Err(e) = socket.send_to(bytes, to).await {
        // A peer that is down answers with ICMP; that is what elections are for.
        debug!(%to, "send failed: {e}");
    }
}

/// Prints one event as a JSON line on stdout, stamped with the wall clock.
fn emit(mut event: Event) -> io::Result<()> {
    event.time_ms = now_ms();
    print_json(&event)
}

/// Prints one JSON line on stdout and flushes it.
pub fn print_json<T: Serialize>(value: &T) -> io::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()
}
