//! The server: one UDP socket, one task, one membership table, and a thread that prints events.
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
    // Every datagram the kernel cannot queue while this task is busy is lost, heartbeats as much
    // as floods: the default buffer holds only a few hundred small datagrams.
    if let Err(e) = socket2::SockRef::from(&socket).set_recv_buffer_size(config.recv_buffer) {
        warn!(
            "cannot set the receive buffer to {} bytes: {e}",
            config.recv_buffer
        );
    }
    let mut server = Server::new(config, EventQueue::spawn(events, config.event_queue)?);
    let mut check = time::interval(config.check_interval);
    // After a stall, check once and carry on, rather than firing a burst of catch-up checks.
    check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // One byte more than the limit, so that an over-long datagram shows itself by filling it.
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            _ = check.tick() => {
                // What already waits in the socket is heard before anyone is judged: after a
                // stall (this process descheduled for a second), the heartbeats that came
                // meanwhile are in the kernel's buffer, and their senders are alive.
                server.receive_batch(&socket, &mut buf)?;
                server.check(Instant::now())?;
            }
            ready = socket.readable() => {
                if let Err(e) = ready {
                    warn!("socket not readable: {e}");
                    continue;
                }
                server.receive_batch(&socket, &mut buf)?;
            }
        }
    }
    info!(nodes = server.members.len(), "shutting down");
    server.events.finish().await
}

/// The state the receive loop owns.
struct Server {
    members: Membership,
    stats: ServerStats,
    started: Instant,
    status_limit: TokenBucket,
    /// Status requests of this batch, given a token, to answer after its heartbeats.
    status_due: Vec<(Option<String>, SocketAddr)>,
    reject_log: LogThrottle,
    refuse_log: LogThrottle,
    events: EventQueue,
}

impl Server {
    /// Handles up to [`RECV_BATCH`] datagrams already waiting, without waiting for more, then
    /// answers the batch's status requests: heartbeats first, so a status reply counts them.
    fn receive_batch(&mut self, socket: &UdpSocket, buf: &mut [u8]) -> io::Result<()> {
        for _ in 0..RECV_BATCH {
            match socket.try_recv_from(buf) {
                Ok((len, from)) => self.handle(&buf[..len], from, Instant::now())?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // On Linux an ICMP error from an earlier reply can surface here; it concerns
                    // that peer only.
                    debug!("receive error: {e}");
                    break;
                }
            }
        }
        self.answer_status(socket, Instant::now());
        Ok(())
    }

    fn new(config: ServerConfig, events: EventQueue) -> Self {
        let now = Instant::now();
        let limits = TableLimits {
            max_nodes: config.max_nodes,
            max_meta_bytes: config.max_meta_bytes,
            max_meta_total: config.max_meta_total,
        };
        Self {
            members: Membership::new(config.detector, limits),
            stats: ServerStats {
                detector: config.detector.name().to_owned(),
                timeout_ms: millis(config.detector.timeout()),
                ..ServerStats::default()
            },
            started: now,
            status_limit: TokenBucket::new(STATUS_BURST, STATUS_PER_SECOND, now),
            status_due: Vec::with_capacity(RECV_BATCH),
            reject_log: LogThrottle::new(Duration::from_secs(1)),
            refuse_log: LogThrottle::new(Duration::from_secs(1)),
            events,
        }
    }

    fn handle(&mut self, datagram: &[u8], from: SocketAddr, now: Instant) -> io::Result<()> {
        // A status request that could not be answered anyway costs no parse: a flood of them
        // is what this path meets, and every microsecond spent on one is a heartbeat the kernel
        // may have to drop.
        let is_status = protocol::looks_like_status(datagram);
        if is_status && !self.status_limit.try_take(now) {
            self.stats.status_requests += 1;
            self.stats.status_dropped += 1;
            return Ok(());
        }
        match protocol::decode(datagram) {
            Ok(Request::Heartbeat(heartbeat)) => {
                self.stats.received += 1;
                match self.members.record(heartbeat, from, now) {
                    Ok(Some(transition)) => self.announce(transition)?,
                    Ok(None) => {}
                    Err(refused) => {
                        self.stats.nodes_refused += 1;
                        if let Some(held) = self.refuse_log.allow(now) {
                            warn!(%from, held_back = held, "heartbeat refused: {refused}");
                        }
                    }
                }
            }
            Ok(Request::Status(request)) => {
                self.stats.status_requests += 1;
                if is_status || self.status_limit.try_take(now) {
                    self.status_due.push((request.after, from));
                } else {
                    self.stats.status_dropped += 1;
                }
            }
            Err(error) => self.reject(&error, from, now),
        }
        Ok(())
    }

    fn reject(&mut self, error: &ProtocolError, from: SocketAddr, now: Instant) {
        self.stats.rejected += 1;
        if let Some(held) = self.reject_log.allow(now) {
            warn!(%from, held_back = held, "rejected datagram: {error}");
        }
    }

    /// Answers the status requests of the batch just received.
    fn answer_status(&mut self, socket: &UdpSocket, now: Instant) {
        if self.status_due.is_empty() {
            return;
        }
        let dead = self.members.dead_count();
        let stats = ServerStats {
            nodes: self.members.len() as u64,
            alive: (self.members.len() - dead) as u64,
            dead: dead as u64,
            uptime_ms: millis(now.saturating_duration_since(self.started)),
            meta_dropped: self.members.meta_dropped(),
            meta_bytes: self.members.meta_bytes() as u64,
            events_dropped: self.events.dropped,
            ..self.stats.clone()
        };
        for (after, from) in std::mem::take(&mut self.status_due) {
            let page =
                protocol::encode_page(&stats, self.members.rows_after(after.as_deref(), now));
            // Never wait for room in the send buffer: the receive loop must keep going. A reply
            // that does not fit now is dropped, and the asker retries.
            if let Err(e) = socket.try_send_to(&page, from) {
                self.stats.status_dropped += 1;
                debug!(%from, "status reply not sent: {e}");
            }
        }
    }

    fn check(&mut self, now: Instant) -> io::Result<()> {
        for transition in self.members.sweep(now) {
            self.announce(transition)?;
        }
        // Say that events were lost as soon as there is room, not only at the next event.
        self.events.report_dropped()
    }

    fn announce(&mut self, transition: Transition) -> io::Result<()> {
        let at_ms = wall_clock_ms();
        let event = match transition {
            Transition::Joined { node, addr } => {
                info!(%node, %addr, "joined");
                Event::Joined { node, addr, at_ms }
            }
            Transition::Dead { node, silent } => {
                warn!(%node, silent_ms = millis(silent), "dead");
                Event::Dead {
                    node,
                    at_ms,
                    silent_ms: millis(silent),
                }
            }
            Transition::Recovered { node, addr, down } => {
                info!(%node, %addr, down_ms = millis(down), "recovered");
                Event::Recovered {
                    node,
                    addr,
                    at_ms,
                    down_ms: millis(down),
                }
            }
        };
        self.events.push(&event)
    }
}

/// The bounded queue of event lines between the receive loop and the thread that prints them.
struct EventQueue {
    /// `None` once shutdown has begun.
    lines: Option<SyncSender<Vec<u8>>>,
    writer: Option<JoinHandle<io::Result<()>>>,
    /// Every event dropped so far.
    dropped: u64,
    /// Those not yet announced by a `dropped` event.
    unreported: u64,
    log: LogThrottle,
}

impl EventQueue {
    /// Starts the thread that writes to `out`, with room for `capacity` lines.
    fn spawn<W: Write + Send + 'static>(mut out: W, capacity: usize) -> io::Result<Self> {
        let (lines, queue) = mpsc::sync_channel::<Vec<u8>>(capacity.max(1));
        // A thread, not a task: a write to a pipe nobody reads blocks the thread that makes it,
        // and the runtime has one thread, the receive loop's.
        let writer = std::thread::Builder::new()
            .name("events".into())
            .spawn(move || {
                while let Ok(line) = queue.recv() {
                    out.write_all(&line)?;
                    // Whatever else is queued goes in the same flush.
                    while let Ok(line) = queue.try_recv() {
                        out.write_all(&line)?;
                    }
                    // Events are for whoever watches right now: a line stuck in a buffer is a
                    // late alarm.
                    out.flush()?;
                }
                out.flush()
            })?;
        Ok(Self {
            lines: Some(lines),
            writer: Some(writer),
            dropped: 0,
            unreported: 0,
            log: LogThrottle::new(Duration::from_secs(1)),
        })
    }

    /// Queues `event` if there is room, after a `dropped` event for any left out before it.
    fn push(&mut self, event: &Event) -> io::Result<()> {
        self.report_dropped()?;
        if self.unreported > 0 || !self.offer(event)? {
            self.dropped += 1;
            self.unreported += 1;
            if let Some(held) = self.log.allow(Instant::now()) {
                warn!(
                    dropped = self.dropped,
                    held_back = held,
                    "event dropped: stdout is not read fast enough"
                );
            }
        }
        Ok(())
    }

    /// Queues a `dropped` event for the events left out, if any and if there is room.
    fn report_dropped(&mut self) -> io::Result<()> {
        if self.unreported > 0 {
            let marker = Event::Dropped {
                events: self.unreported,
                at_ms: wall_clock_ms(),
            };
            if self.offer(&marker)? {
                self.unreported = 0;
            }
        }
        Ok(())
    }

    /// Queues one event line; `false` if the queue is full.
    fn offer(&mut self, event: &Event) -> io::Result<bool> {
        let mut line = protocol::encode(event);
        line.push(b'\n');
        let Some(lines) = &self.lines else {
            return Ok(false);
        };
        match lines.try_send(line) {
            Ok(()) => Ok(true),
            Err(TrySendError::Full(_)) => Ok(false),
            // The writer stopped: it failed, and says why.
            Err(TrySendError::Disconnected(_)) => Err(self.writer_error()),
        }
    }

    fn writer_error(&mut self) -> io::Error {
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            _ => io::Error::other("the event writer stopped"),
        }
    }

    /// Closes the queue and waits, up to [`EVENT_FLUSH_GRACE`], for its lines to be written.
    async fn finish(mut self) -> io::Result<()> {
        self.report_dropped()?;
        self.lines = None;
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + EVENT_FLUSH_GRACE;
        while !writer.is_finished() {
            if Instant::now() >= deadline {
                // A reader that takes nothing must not hold the server open.
                warn!("events still queued at shutdown: stdout is not being read");
                return Ok(());
            }
            time::sleep(Duration::from_millis(5)).await;
        }
        writer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the event writer panicked")))
    }
}

/// Milliseconds since the Unix epoch by the wall clock (0 if the clock is before 1970).
pub fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(millis)
        .unwrap_or(0)
}
