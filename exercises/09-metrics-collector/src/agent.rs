//! The edge agent: applications send it StatsD over UDP on their own machine; it batches the
//! lines and forwards them over one TCP connection to the collector, keeping every batch until
//! the collector acknowledges it, resending after a reconnect. The collector drops what it has
//! already taken, by (agent, sequence), so a cut connection neither loses nor doubles a batch.
//!
//! Your task (stage 5): `Shared::push`, `Shared::acked`, [`run`], and the private `receive_loop`,
//! `send_loop` and `session`. The config, the batch and outbox types, `seal`, `after`, `unacked`
//! and `next_reply` are given.

use std::collections::VecDeque;
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
        }
    }
}

#[derive(Debug, Clone)]
struct Batch {
    seq: u64,
    received_ms: u64,
    payload: Bytes,
}

/// Batches sealed and not yet acknowledged, oldest first, bounded in bytes.
#[derive(Debug, Default)]
struct Outbox {
    queue: VecDeque<Batch>,
    bytes: usize,
    dropped: u64,
}

#[derive(Debug, Default)]
struct Shared {
    outbox: Mutex<Outbox>,
    more: Notify,
}

impl Shared {
    fn outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, batch: Batch, max_bytes: usize) {
        // TODO: add the batch and its bytes to the outbox; while over `max_bytes` (and more than one
        //   is left) drop the oldest and count them; print a `dropped` event if any; `more.notify_one()`.
        todo!()
    }

    /// Forgets every batch up to `seq`.
    fn acked(&self, seq: u64) {
        // TODO: pop every batch at the front whose `seq` is at or below `seq`, subtracting its bytes.
        todo!()
    }

    /// Copies of the batches after `seq`.
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

/// Runs the agent until `shutdown`; then seals the open batch and waits up to
/// [`SHUTDOWN_GRACE`] for the collector to acknowledge everything.
///
/// # Errors
/// None in practice: a collector that is away is retried, never an error.
pub async fn run(
    socket: UdpSocket,
    config: AgentConfig,
    shutdown: CancellationToken,
) -> Result<()> {
    // TODO: spawn `send_loop` with its own stop token; run `receive_loop` until `shutdown`; then wait
    //   (bounded by SHUTDOWN_GRACE) for `unacked()` to reach 0, stop the sender, await it, and print
    //   `{"event":"stopped","unacked":n}`.
    todo!()
}

async fn receive_loop(
    socket: &UdpSocket,
    shared: &Shared,
    config: &AgentConfig,
    shutdown: &CancellationToken,
) {
    // TODO: `select!` on shutdown, the batch deadline (`sleep_until`, or pending when no batch
    //   is open) and `recv_from`: append each non-empty line (with '\n') to the open batch; the first
    //   line sets the deadline (`batch_wait`) and the receive time. Seal (next `seq`) when `batch` lines
    //   (or MAX_BATCH_BYTES) are in or the deadline passes; on shutdown seal what is open and return.
    todo!()
}

fn seal(shared: &Shared, config: &AgentConfig, seq: u64, received_ms: u64, open: &mut Vec<u8>) {
    let payload = Bytes::from(std::mem::take(open));
    shared.push(
        Batch {
            seq,
            received_ms,
            payload,
        },
        config.max_buffer,
    );
}

async fn send_loop(shared: Arc<Shared>, config: AgentConfig, stop: CancellationToken) {
    // TODO: loop: run `session` (in a `select!` with `stop`); on error print a `disconnected`
    //   event, sleep the backoff (from 50 ms, doubling up to `max_backoff`), and try again.
    todo!()
}

/// One connection: HELLO, resend what is unacknowledged, then send batches as they are sealed
/// while reading acknowledgements. Returns `Ok` only when `stop` is cancelled.
async fn session(shared: &Shared, config: &AgentConfig, stop: &CancellationToken) -> Result<()> {
    // TODO: resolve and connect; send `HELLO id`; the `OK n` reply: `acked(n)` and print the
    //   `connected` event with `taken: n`. Then, at the same time (one `select!` of two futures): read
    //   replies (`ACK seq` -> `acked`), and write every batch after the last one sent
    //   (`BATCH seq received_ms len` + payload), waiting on `more.notified()` when there is none.
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
