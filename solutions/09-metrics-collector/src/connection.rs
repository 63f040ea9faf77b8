//! The readers: StatsD and Graphite lines over TCP, StatsD datagrams over UDP, and agents'
//! batches. Each parses what it reads, stamps it with its receive time, and hands it to the
//! [`Router`]; a malformed line is counted by reason, logged at most once a second, and skipped.

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
        let before = out.len();
        for line in bytes.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            self.parse_line(line, parse, received_ms, out);
        }
        // One add per read, not per sample: every reader shares this counter, and an atomic
        // add per line would pass its cache line between the cores thousands of times a read.
        let taken = out.len() - before;
        self.counters
            .samples
            .fetch_add(taken as u64, Ordering::Relaxed);
    }

    fn parse_line(&self, line: &[u8], parse: Parser, received_ms: u64, out: &mut Vec<Stamped>) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        if line.len() > self.max_line {
            return self.refuse(&ProtocolError::LineTooLong, line);
        }
        let parsed = std::str::from_utf8(line)
            .map_err(|_| ProtocolError::NotUtf8)
            .and_then(parse);
        match parsed {
            Ok(sample) => {
                out.push(Stamped {
                    sample,
                    received_ms,
                });
            }
            Err(e) => self.refuse(&e, line),
        }
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
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    // Inside a line longer than the limit: drop bytes until its newline.
    let mut skipping = false;
    // Samples the last read gave: the next one's vector starts that large, instead of growing
    // (and copying) a dozen times through a full 64 KiB read.
    let mut last_count = 0;
    loop {
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        let read = tokio::select! {
            () = shutdown.cancelled() => break,
            read = stream.read_buf(&mut buf) => read,
        };
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                debug!("read failed: {e}");
                break;
            }
        };
        let received_ms = now_ms();
        let mut samples = Vec::with_capacity(last_count);
        let eof = n == 0;
        let end = if eof {
            buf.len()
        } else {
            buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
        };
        let mut whole = &buf[..end];
        if skipping && let Some(nl) = whole.iter().position(|&b| b == b'\n') {
            whole = &whole[nl + 1..];
            skipping = false;
        }
        if !skipping {
            ingest.parse_lines(whole, parse, received_ms, &mut samples);
        }
        last_count = samples.len();
        buf.drain(..end);
        if buf.len() > ingest.max_line {
            if !skipping {
                ingest.refuse(&ProtocolError::LineTooLong, &buf);
            }
            skipping = true;
            buf.clear();
        }
        if ingest.router.send(samples).await.is_err() || eof {
            break;
        }
    }
}

/// Receives StatsD datagrams (several lines each) on `socket` until `shutdown`.
pub async fn serve_udp(socket: UdpSocket, ingest: Ingest, shutdown: CancellationToken) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => break,
            received = socket.recv_from(&mut buf) => received,
        };
        let n = match received {
            Ok((n, _)) => n,
            Err(e) => {
                debug!("udp receive failed: {e}");
                continue;
            }
        };
        let mut samples = Vec::new();
        ingest.parse_lines(&buf[..n], protocol::parse_statsd, now_ms(), &mut samples);
        if ingest.router.send(samples).await.is_err() {
            break;
        }
    }
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
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&seq) = taken.get(agent) {
            return Some(seq);
        }
        if taken.len() >= self.max_agents {
            return None;
        }
        taken.insert(agent.to_owned(), 0);
        Some(0)
    }

    /// Claims `seq` for `agent`: true if it is new (and now taken), false for a duplicate.
    fn claim(&self, agent: &str, seq: u64) -> bool {
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        let highest = taken.entry(agent.to_owned()).or_insert(0);
        if seq <= *highest {
            return false;
        }
        *highest = seq;
        true
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
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut agent: Option<String> = None;
    loop {
        // Parse every whole frame already in the buffer before reading more.
        let frame = match protocol::parse_agent_frame(&buf, max_frame) {
            Ok(frame) => frame,
            Err(e) => {
                ingest.refuse(&e, &buf[..buf.len().min(120)]);
                let _ = stream.write_all(format!("ERR {e}\n").as_bytes()).await;
                return;
            }
        };
        let reply = match frame {
            Some((AgentFrame::Hello(id), used)) => {
                buf.drain(..used);
                let Some(seq) = agents.hello(&id) else {
                    let _ = stream.write_all(b"ERR too many agents\n").await;
                    return;
                };
                agent = Some(id);
                format!("OK {seq}\n")
            }
            Some((
                AgentFrame::Batch {
                    seq,
                    received_ms,
                    len,
                },
                used,
            )) if buf.len() >= used + len => {
                let Some(id) = agent.as_deref() else {
                    let _ = stream.write_all(b"ERR HELLO first\n").await;
                    return;
                };
                if agents.claim(id, seq) {
                    let mut samples = Vec::new();
                    let payload = &buf[used..used + len];
                    ingest.parse_lines(payload, protocol::parse_statsd, received_ms, &mut samples);
                    if ingest.router.send(samples).await.is_err() {
                        return;
                    }
                } else {
                    ingest.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                buf.drain(..used + len);
                format!("ACK {seq}\n")
            }
            _ => {
                let read = tokio::select! {
                    () = shutdown.cancelled() => return,
                    read = stream.read_buf(&mut buf) => read,
                };
                match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        };
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}
