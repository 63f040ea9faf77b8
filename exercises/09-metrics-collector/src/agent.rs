//! The edge agent: applications send it StatsD over UDP on their own machine; it batches the
//! lines and forwards them over one TCP connection to the collector, keeping every batch until
//! the collector acknowledges it, resending after a reconnect. The collector drops what it has
//! already taken, by (agent, sequence), so a cut connection neither loses nor doubles a batch.
//!
//! With a spool directory, a batch sealed while the collector is away (or while the memory
//! buffer is full) is written there instead of kept in memory, and read back to be resent.
//!
//! Your task (stage 5): `Shared::push`, `Shared::spill`, `Shared::acked`, [`run`], and the
//! private `receive_loop`, `send_loop` and `session`. The config, the batch and outbox types
//! (with `drop_oldest` and `forget`), `open_spool`, `seal`, `after`, `unacked` and `next_reply`
//! are given.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::connection::now_ms;
use crate::protocol::{self, CollectorReply};

/// Lines per batch.
pub const DEFAULT_BATCH: usize = 1000;
/// How long the first line of a batch waits for the batch to fill.
pub const DEFAULT_BATCH_WAIT: Duration = Duration::from_millis(100);
/// A batch is sealed once it holds this many bytes, whatever `--batch` says: one datagram adds at
/// most 64 KiB, so a batch stays well under the collector's default `--max-frame` of 1 MiB.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// The most bytes of unacknowledged batches kept; past it the oldest are dropped and counted.
pub const DEFAULT_MAX_BUFFER: usize = 64 * 1024 * 1024;
/// The most bytes of batches kept in the spool directory; past it the oldest spooled are dropped.
pub const DEFAULT_MAX_SPOOL: usize = 256 * 1024 * 1024;
/// The longest wait between two reconnection attempts.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long shutdown waits for the collector to acknowledge what is left.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The agent's settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The collector's agent address (`HOST:PORT`), resolved at each connection attempt.
    pub to: String,
    /// The agent's name, unique among the collector's agents: the key of deduplication.
    pub id: String,
    /// See [`DEFAULT_BATCH`].
    pub batch: usize,
    /// See [`DEFAULT_BATCH_WAIT`].
    pub batch_wait: Duration,
    /// See [`DEFAULT_MAX_BUFFER`].
    pub max_buffer: usize,
    /// See [`DEFAULT_MAX_BACKOFF`].
    pub max_backoff: Duration,
    /// Where batches go while the collector is away; each run spools into its own
    /// subdirectory, named after its id. `None`: memory only.
    pub spool: Option<PathBuf>,
    /// See [`DEFAULT_MAX_SPOOL`].
    pub max_spool: usize,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            to: "127.0.0.1:8126".into(),
            id: format!("agent-{}-{}", std::process::id(), now_ms()),
            batch: DEFAULT_BATCH,
            batch_wait: DEFAULT_BATCH_WAIT,
            max_buffer: DEFAULT_MAX_BUFFER,
            max_backoff: DEFAULT_MAX_BACKOFF,
            spool: None,
            max_spool: DEFAULT_MAX_SPOOL,
        }
    }
}

/// Where a batch's lines are.
#[derive(Debug, Clone)]
enum Body {
    Memory(Bytes),
    /// In a file of the spool, `len` bytes.
    Spooled {
        path: PathBuf,
        len: usize,
    },
}

#[derive(Debug, Clone)]
struct Batch {
    seq: u64,
    received_ms: u64,
    body: Body,
}

/// Batches sealed and not yet acknowledged, oldest first, bounded in bytes in memory and in the
/// spool.
#[derive(Debug, Default)]
struct Outbox {
    queue: VecDeque<Batch>,
    bytes: usize,
    spooled: usize,
    dropped: u64,
}

impl Outbox {
    /// Drops the oldest batch held in memory (`spooled` false) or in the spool; whether there
    /// was one.
    fn drop_oldest(&mut self, spooled: bool) -> bool {
        let Some(i) = self
            .queue
            .iter()
            .position(|b| matches!(b.body, Body::Spooled { .. }) == spooled)
        else {
            return false;
        };
        if let Some(old) = self.queue.remove(i) {
            self.forget(&old);
            self.dropped += 1;
        }
        true
    }

    /// Takes `batch`'s bytes off the counts, and its file off the disk.
    fn forget(&mut self, batch: &Batch) {
        match &batch.body {
            Body::Memory(payload) => self.bytes -= payload.len(),
            Body::Spooled { path, len } => {
                self.spooled -= len;
                if let Err(e) = std::fs::remove_file(path) {
                    warn!("cannot remove the spooled {}: {e}", path.display());
                }
            }
        }
    }
}

/// The spool directory of this run, and its bound.
#[derive(Debug)]
struct Spool {
    dir: PathBuf,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct Shared {
    outbox: Mutex<Outbox>,
    more: Notify,
    /// Whether a session with the collector is open: while not, batches go to the spool.
    connected: AtomicBool,
    spool: Option<Spool>,
}

impl Shared {
    fn outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `payload` to the spool if there is one and the collector is away or memory is
    /// full; the body to queue.
    fn spill(&self, seq: u64, payload: Bytes, memory_full: bool) -> Body {
        // TODO: no spool, or connected and memory not full: `Body::Memory`. Otherwise
        //   `std::fs::write` the payload to `dir/{seq:020}.batch` and return `Body::Spooled`; if
        //   the write fails, `warn!` and keep it in memory.
        todo!()
    }

    fn push(&self, seq: u64, received_ms: u64, payload: Bytes, max_bytes: usize) {
        // TODO: the batch queued, in memory or spilled to the spool (`spill`, outside the lock),
        // within the bounds of the contract's "Limits": past `max_bytes` in memory, or the spool's
        // own bound, the oldest batches are dropped (one is always kept) and reported in one
        // `dropped` event; the counts `bytes` and `spooled` stay exact; the sender is woken
        // (`more.notify_one()`).
        todo!()
    }

    /// Forgets every batch up to `seq`.
    fn acked(&self, seq: u64) {
        // TODO: pop every batch at the front whose `seq` is at or below `seq`, and `forget` it.
        todo!()
    }

    /// Copies of the batches after `seq` (a spooled one by its file name).
    fn after(&self, seq: u64) -> Vec<Batch> {
        self.outbox()
            .queue
            .iter()
            .filter(|b| b.seq > seq)
            .cloned()
            .collect()
    }

    fn unacked(&self) -> usize {
        self.outbox().queue.len()
    }
}

/// Creates this run's spool directory, `DIR/ID` (the id's `/` replaced), and says how many
/// batches earlier runs left beside it: they belong to another session, and are not resent.
fn open_spool(config: &AgentConfig) -> Result<Option<Spool>> {
    let Some(root) = &config.spool else {
        return Ok(None);
    };
    let dir = root.join(config.id.replace(['/', '\\'], "_"));
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the spool {}", dir.display()))?;
    let left = std::fs::read_dir(root)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path() != dir)
                .filter_map(|e| std::fs::read_dir(e.path()).ok())
                .map(Iterator::count)
                .sum::<usize>()
        })
        .unwrap_or(0);
    if left > 0 {
        warn!(
            "{left} batches spooled by earlier runs are left in {} (not resent)",
            root.display()
        );
    }
    Ok(Some(Spool {
        dir,
        max_bytes: config.max_spool,
    }))
}

/// Runs the agent until `shutdown`; then seals the open batch and waits up to
/// [`SHUTDOWN_GRACE`] for the collector to acknowledge everything.
///
/// # Errors
/// When the spool directory cannot be created; a collector that is away is retried, never an
/// error.
pub async fn run(
    socket: UdpSocket,
    config: AgentConfig,
    shutdown: CancellationToken,
) -> Result<()> {
    // TODO: the agent until `shutdown`, then its `stopped` event
    // (`{"event":"stopped","unacked":n}`) once what is unacknowledged is acked or SHUTDOWN_GRACE
    // has passed: `receive_loop` on the socket and `send_loop` beside it, with a stop token of its
    // own, sharing one `Shared` (`open_spool`).
    todo!()
}

async fn receive_loop(
    socket: &UdpSocket,
    shared: &Shared,
    config: &AgentConfig,
    shutdown: &CancellationToken,
) {
    // TODO: the lines received, non-empty ones kept (each ending in '\n'), sealed into batches
    // (`seal`, the next `seq`, the first line's receive time) at `batch` lines, at MAX_BATCH_BYTES,
    // or `batch_wait` after the first line; what is open is sealed at `shutdown`. `tokio::select!`,
    // `sleep_until`, `recv_from`.
    todo!()
}

fn seal(shared: &Shared, config: &AgentConfig, seq: u64, received_ms: u64, open: &mut Vec<u8>) {
    let payload = Bytes::from(std::mem::take(open));
    shared.push(seq, received_ms, payload, config.max_buffer);
}

async fn send_loop(shared: Arc<Shared>, config: AgentConfig, stop: CancellationToken) {
    // TODO: sessions again and again until `stop`: after an error, `connected` cleared, a
    // `disconnected` event, and a backoff from 50 ms doubling up to `max_backoff`.
    todo!()
}

/// One connection: HELLO, resend what is unacknowledged, then send batches as they are sealed
/// while reading acknowledgements. Returns `Ok` only when `stop` is cancelled.
async fn session(shared: &Shared, config: &AgentConfig, stop: &CancellationToken) -> Result<()> {
    // TODO: one session of the contract's "The agent protocol", from the agent's side: `HELLO`,
    // then what `OK n` says was taken forgotten (`acked`), `connected` set and the `connected`
    // event (`taken: n`); then, at once, `ACK`s read and every batch after the last one sent
    // written (a spooled one read back from its file), waiting on `more` when there is none.
    todo!()
}

async fn next_reply<R: tokio::io::AsyncBufRead + Unpin>(
    replies: &mut tokio::io::Lines<R>,
) -> Result<CollectorReply> {
    let Some(line) = replies.next_line().await? else {
        bail!("the collector closed the connection");
    };
    match protocol::parse_reply(&line)? {
        CollectorReply::Err(reason) => bail!("the collector refused: {reason}"),
        reply => Ok(reply),
    }
}
