//! The server: one UDP socket, one task, one membership table, and a thread that prints events.
//!
//! Your task (stages 2 to 6): [`run`]. Everything it needs is in the other modules; this is where
//! they meet the socket. `wall_clock_ms` is given.
//!
//! There is no connection to accept and nothing to share between tasks: a single task receives
//! every datagram, so the table needs no lock at all. A timer wakes the same task every check
//! period to ask the detector about silent nodes. Events go to stdout through a bounded queue
//! and a thread of their own, so that a reader of stdout who stalls never stalls detection.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::time::{self, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::detector::Detector;
use crate::membership::{Membership, TableLimits, Transition, millis};
use crate::protocol::{self, Event, MAX_DATAGRAM, ProtocolError, Request, ServerStats};
use crate::ratelimit::{LogThrottle, TokenBucket};

/// Status replies the server sends in a burst before the rate applies.
pub const STATUS_BURST: u32 = 100;

/// Status replies the server sends per second once the burst is spent.
pub const STATUS_PER_SECOND: u32 = 1000;

/// Datagrams handled per wake-up before the task yields to its timer: a flood must never starve
/// failure detection.
pub const RECV_BATCH: usize = 256;

/// The default of [`ServerConfig::max_nodes`] (and of `--max-nodes`).
pub const DEFAULT_MAX_NODES: usize = 100_000;

/// The default of [`ServerConfig::max_meta_bytes`]: 512 bytes.
pub const DEFAULT_MAX_META_BYTES: usize = 512;

/// The default of [`ServerConfig::max_meta_total`]: 16 MiB.
pub const DEFAULT_MAX_META_TOTAL: usize = 16 * 1024 * 1024;

/// The default of [`ServerConfig::event_queue`], in events.
pub const DEFAULT_EVENT_QUEUE: usize = 4096;

/// The default of [`ServerConfig::recv_buffer`]: 4 MiB.
pub const DEFAULT_RECV_BUFFER: usize = 4 * 1024 * 1024;

/// How long shutdown waits for the queued events to reach stdout.
pub const EVENT_FLUSH_GRACE: Duration = Duration::from_secs(1);

/// How the server judges and bounds its members.
#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    /// The failure detector, with its timeout.
    pub detector: Detector,
    /// How often silent nodes are checked: detection takes at most timeout + one period.
    pub check_interval: Duration,
    /// The most nodes the table holds; heartbeats from further new nodes are refused.
    pub max_nodes: usize,
    /// The most bytes of `meta` one node keeps; a longer `meta` is not kept.
    pub max_meta_bytes: usize,
    /// The most bytes of `meta` the whole table keeps; a `meta` that would pass it is not kept.
    pub max_meta_total: usize,
    /// The most events waiting for stdout; further ones are dropped and counted.
    pub event_queue: usize,
    /// The receive buffer asked of the kernel for the socket, in bytes (capped by the kernel,
    /// on Linux at `net.core.rmem_max`): what absorbs a burst while the task is busy.
    pub recv_buffer: usize,
}

/// Runs the server on `socket` until `shutdown` is cancelled, writing one JSON line per
/// membership event to `events` (from a thread of its own).
///
/// Errors only when `events` cannot be written; a bad datagram or a failed reply is counted,
/// logged and survived.
pub async fn run<W: Write + Send + 'static>(
    socket: UdpSocket,
    config: ServerConfig,
    events: W,
    shutdown: CancellationToken,
) -> io::Result<()> {
    // TODO: one task owns the `Membership` (no locks): `tokio::select!` over `shutdown`, the
    // `config.check_interval` timer (`sweep`, announce each transition) and the socket (`decode`,
    // then `record` or a status page, every outcome counted in `ServerStats` as the contract's
    // "Status" names it). Stage 5 adds the flood defences of "Limits" and "Floods", stage 6 the
    // event queue. `cargo xtask hint heartbeat 2` (then 5 and 6) has the steps.
    todo!()
}

/// Milliseconds since the Unix epoch by the wall clock (0 if the clock is before 1970).
pub fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(millis)
        .unwrap_or(0)
}
