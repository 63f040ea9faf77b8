//! The edge agent: applications send it StatsD over UDP on their own machine; it batches the
//! lines and forwards them over one TCP connection to the collector, keeping every batch until
//! the collector acknowledges it, resending after a reconnect. The collector drops what it has
//! already taken, by (agent, sequence), so a cut connection neither loses nor doubles a batch.
//! With a spool directory, a batch sealed while the collector is away (or while the memory
//! buffer is full) is written there instead of kept in memory, and read back to be resent.

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
        let Some(spool) = &self.spool else {
            return Body::Memory(payload);
        };
        if self.connected.load(Ordering::Relaxed) && !memory_full {
            return Body::Memory(payload);
        }
        let path = spool.dir.join(format!("{seq:020}.batch"));
        match std::fs::write(&path, &payload) {
            Ok(()) => Body::Spooled {
                path,
                len: payload.len(),
            },
            Err(e) => {
                warn!(
                    "cannot spool to {}: {e}; keeping the batch in memory",
                    path.display()
                );
                Body::Memory(payload)
            }
        }
    }

    fn push(&self, seq: u64, received_ms: u64, payload: Bytes, max_bytes: usize) {
        let memory_full = self.outbox().bytes + payload.len() > max_bytes;
        // The file is written outside the lock: the sender may go on meanwhile.
        let body = self.spill(seq, payload, memory_full);
        let max_spool = self.spool.as_ref().map_or(0, |s| s.max_bytes);
        let mut dropped = 0;
        {
            let mut outbox = self.outbox();
            match &body {
                Body::Memory(payload) => outbox.bytes += payload.len(),
                Body::Spooled { len, .. } => outbox.spooled += len,
            }
            outbox.queue.push_back(Batch {
                seq,
                received_ms,
                body,
            });
            while outbox.bytes > max_bytes && outbox.queue.len() > 1 && outbox.drop_oldest(false) {
                dropped += 1;
            }
            while outbox.spooled > max_spool && outbox.drop_oldest(true) {
                dropped += 1;
            }
        }
        if dropped > 0 {
            warn!("unacknowledged buffer full: dropped the {dropped} oldest batches");
            println!("{}", json!({"event": "dropped", "batches": dropped}));
        }
        self.more.notify_one();
    }

    /// Forgets every batch up to `seq`.
    fn acked(&self, seq: u64) {
        let mut outbox = self.outbox();
        while outbox.queue.front().is_some_and(|b| b.seq <= seq) {
            if let Some(b) = outbox.queue.pop_front() {
                outbox.forget(&b);
            }
        }
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
    let shared = Arc::new(Shared {
        spool: open_spool(&config)?,
        ..Shared::default()
    });
    let stop_sending = CancellationToken::new();
    let sender = tokio::spawn(send_loop(
        Arc::clone(&shared),
        config.clone(),
        stop_sending.clone(),
    ));
    receive_loop(&socket, &shared, &config, &shutdown).await;
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while shared.unacked() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_sending.cancel();
    let _ = sender.await;
    println!(
        "{}",
        json!({"event": "stopped", "unacked": shared.unacked()})
    );
    Ok(())
}

async fn receive_loop(
    socket: &UdpSocket,
    shared: &Shared,
    config: &AgentConfig,
    shutdown: &CancellationToken,
) {
    let mut buf = vec![0u8; 65_536];
    let mut open: Vec<u8> = Vec::new();
    let mut lines = 0;
    let mut first_ms = 0;
    let mut seq = 0;
    let mut deadline = None;
    loop {
        let wait = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let full = tokio::select! {
            () = shutdown.cancelled() => {
                if lines > 0 {
                    seq += 1;
                    seal(shared, config, seq, first_ms, &mut open);
                }
                return;
            }
            () = wait => true,
            received = socket.recv_from(&mut buf) => {
                let Ok((n, _)) = received else { continue };
                for line in buf[..n].split(|&b| b == b'\n') {
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if line.is_empty() {
                        continue;
                    }
                    if lines == 0 {
                        first_ms = now_ms();
                        deadline = Some(tokio::time::Instant::now() + config.batch_wait);
                    }
                    open.extend_from_slice(line);
                    open.push(b'\n');
                    lines += 1;
                }
                lines >= config.batch || open.len() >= MAX_BATCH_BYTES
            }
        };
        if full && lines > 0 {
            seq += 1;
            seal(shared, config, seq, first_ms, &mut open);
            lines = 0;
            deadline = None;
        }
    }
}

fn seal(shared: &Shared, config: &AgentConfig, seq: u64, received_ms: u64, open: &mut Vec<u8>) {
    let payload = Bytes::from(std::mem::take(open));
    shared.push(seq, received_ms, payload, config.max_buffer);
}

async fn send_loop(shared: Arc<Shared>, config: AgentConfig, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let session = tokio::select! {
            () = stop.cancelled() => return,
            session = session(&shared, &config, &stop) => session,
        };
        match session {
            Ok(()) => return,
            Err(e) => {
                shared.connected.store(false, Ordering::Relaxed);
                debug!("collector connection: {e:#}");
                println!(
                    "{}",
                    json!({"event": "disconnected", "error": format!("{e:#}"),
                           "unacked": shared.unacked()})
                );
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(config.max_backoff);
    }
}

/// One connection: HELLO, resend what is unacknowledged, then send batches as they are sealed
/// while reading acknowledgements. Returns `Ok` only when `stop` is cancelled.
async fn session(shared: &Shared, config: &AgentConfig, stop: &CancellationToken) -> Result<()> {
    let addr = plumbing::resolve(&config.to).await?;
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut replies = BufReader::new(read).lines();
    write
        .write_all(format!("HELLO {}\n", config.id).as_bytes())
        .await?;
    let taken = match next_reply(&mut replies).await? {
        CollectorReply::Ok(seq) => seq,
        other => bail!("expected OK, got {other:?}"),
    };
    shared.acked(taken);
    shared.connected.store(true, Ordering::Relaxed);
    println!(
        "{}",
        json!({"event": "connected", "collector": addr.to_string(), "taken": taken})
    );
    // Acknowledgements are read while batches are written: a collector blocked writing ACKs
    // to an agent blocked writing batches would otherwise wait on each other forever.
    let acks = async {
        loop {
            match next_reply(&mut replies).await? {
                CollectorReply::Ack(seq) => shared.acked(seq),
                other => bail!("expected ACK, got {other:?}"),
            }
        }
    };
    let batches = async {
        let mut sent = taken;
        loop {
            let pending = shared.after(sent);
            if pending.is_empty() {
                tokio::select! {
                    () = stop.cancelled() => return anyhow::Ok(()),
                    () = shared.more.notified() => continue,
                }
            }
            let mut out = Vec::new();
            for batch in &pending {
                let payload = match &batch.body {
                    Body::Memory(payload) => payload.clone(),
                    Body::Spooled { path, .. } => match tokio::fs::read(path).await {
                        Ok(bytes) => Bytes::from(bytes),
                        // Dropped meanwhile (the spool's bound), or removed by hand.
                        Err(e) => {
                            warn!("cannot read the spooled {}: {e}", path.display());
                            sent = batch.seq;
                            continue;
                        }
                    },
                };
                let header = format!(
                    "BATCH {} {} {}\n",
                    batch.seq,
                    batch.received_ms,
                    payload.len()
                );
                out.extend_from_slice(header.as_bytes());
                out.extend_from_slice(&payload);
                sent = batch.seq;
            }
            write.write_all(&out).await?;
        }
    };
    tokio::select! {
        acked = acks => acked,
        written = batches => written,
    }
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
