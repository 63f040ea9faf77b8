//! The server: one UDP socket, one task, one membership table.
//!
//! There is no connection to accept and nothing to share between tasks: a single task receives
//! every datagram, so the table needs no lock at all. A timer wakes the same task every check
//! period to ask the detector about silent nodes.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::time::{self, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::detector::Detector;
use crate::membership::{Membership, Transition, millis};
use crate::protocol::{
    self, Event, MAX_DATAGRAM, ProtocolError, Request, ServerStats, StatusRequest,
};
use crate::ratelimit::{LogThrottle, TokenBucket};

/// Status replies the server sends in a burst before the rate applies.
pub const STATUS_BURST: u32 = 100;

/// Status replies the server sends per second once the burst is spent.
pub const STATUS_PER_SECOND: u32 = 1000;

/// Datagrams handled per wake-up before the task yields to its timer: a flood must never starve
/// failure detection.
pub const RECV_BATCH: usize = 256;

/// How the server judges and bounds its members.
#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    /// The failure detector, with its timeout.
    pub detector: Detector,
    /// How often silent nodes are checked: detection takes at most timeout + one period.
    pub check_interval: Duration,
    /// The most nodes the table holds; heartbeats from further new nodes are refused.
    pub max_nodes: usize,
}

/// Runs the server on `socket` until `shutdown` is cancelled, writing one JSON line per
/// membership event to `events`.
///
/// Errors only when `events` cannot be written; a bad datagram or a failed reply is counted,
/// logged and survived.
pub async fn run<W: Write>(
    socket: UdpSocket,
    config: ServerConfig,
    events: W,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let mut server = Server::new(config, events, Instant::now());
    let mut check = time::interval(config.check_interval);
    // After a stall, check once and carry on, rather than firing a burst of catch-up checks.
    check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // One byte more than the limit, so that an over-long datagram shows itself by filling it.
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            _ = check.tick() => server.check(Instant::now())?,
            ready = socket.readable() => {
                if let Err(e) = ready {
                    warn!("socket not readable: {e}");
                    continue;
                }
                for _ in 0..RECV_BATCH {
                    match socket.try_recv_from(&mut buf) {
                        Ok((len, from)) => server.handle(&buf[..len], from, &socket)?,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            // On Linux an ICMP error from an earlier reply can surface here;
                            // it concerns that peer only.
                            debug!("receive error: {e}");
                            break;
                        }
                    }
                }
            }
        }
    }
    info!(nodes = server.members.len(), "shutting down");
    server.events.flush()
}

/// The state the receive loop owns.
struct Server<W> {
    members: Membership,
    stats: ServerStats,
    started: Instant,
    status_limit: TokenBucket,
    reject_log: LogThrottle,
    refuse_log: LogThrottle,
    events: W,
}

impl<W: Write> Server<W> {
    fn new(config: ServerConfig, events: W, now: Instant) -> Self {
        Self {
            members: Membership::new(config.detector, config.max_nodes),
            stats: ServerStats {
                detector: config.detector.name().to_owned(),
                timeout_ms: millis(config.detector.timeout()),
                ..ServerStats::default()
            },
            started: now,
            status_limit: TokenBucket::new(STATUS_BURST, STATUS_PER_SECOND, now),
            reject_log: LogThrottle::new(Duration::from_secs(1)),
            refuse_log: LogThrottle::new(Duration::from_secs(1)),
            events,
        }
    }

    fn handle(&mut self, datagram: &[u8], from: SocketAddr, socket: &UdpSocket) -> io::Result<()> {
        let now = Instant::now();
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
            Ok(Request::Status(request)) => self.answer_status(&request, from, socket, now),
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

    fn answer_status(
        &mut self,
        request: &StatusRequest,
        from: SocketAddr,
        socket: &UdpSocket,
        now: Instant,
    ) {
        self.stats.status_requests += 1;
        if !self.status_limit.try_take(now) {
            self.stats.status_dropped += 1;
            return;
        }
        let dead = self.members.dead_count();
        let stats = ServerStats {
            nodes: self.members.len() as u64,
            alive: (self.members.len() - dead) as u64,
            dead: dead as u64,
            uptime_ms: millis(now.saturating_duration_since(self.started)),
            ..self.stats.clone()
        };
        let page = protocol::encode_page(
            &stats,
            self.members.rows_after(request.after.as_deref(), now),
        );
        // Never wait for room in the send buffer: the receive loop must keep going. A reply
        // that does not fit now is dropped, and the asker retries.
        if let Err(e) = socket.try_send_to(&page, from) {
            self.stats.status_dropped += 1;
            debug!(%from, "status reply not sent: {e}");
        }
    }

    fn check(&mut self, now: Instant) -> io::Result<()> {
        for transition in self.members.sweep(now) {
            self.announce(transition)?;
        }
        Ok(())
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
        let mut line = protocol::encode(&event);
        line.push(b'\n');
        self.events.write_all(&line)?;
        // Events are for whoever watches right now: a line stuck in a buffer is a late alarm.
        self.events.flush()
    }
}

/// Milliseconds since the Unix epoch by the wall clock (0 if the clock is before 1970).
pub fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(millis)
        .unwrap_or(0)
}
