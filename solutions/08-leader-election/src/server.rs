//! A node: one UDP socket, one task, one election state machine.
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
    let store = Store::new(config.data.clone());
    let durable = store.load()?;
    let now = Instant::now();
    let election = ElectionConfig {
        id: config.id.clone(),
        priority: config.priority,
        peers: config.peers.iter().map(|(id, _)| id.clone()).collect(),
        heartbeat: config.heartbeat,
        timeout: config.timeout,
        lease: config
            .lease
            .unwrap_or_else(|| default_lease(config.timeout)),
        preempt: config.preempt,
        hold_down: config.hold_down,
    };
    let engine = match config.algorithm {
        Algorithm::Safe => Engine::Safe(Election::new(election, durable, now)),
        Algorithm::Bully => Engine::Bully(Bully::new(election, durable, now)),
    };
    let mut node = Node {
        by_id: config.peers.iter().cloned().collect(),
        config,
        engine,
        store,
        dropped: Dropped::default(),
        status_window: (now, 0),
    };
    emit(each!(&node.engine, e => e.start_event()))?;
    // One byte more than the limit, so that an over-long datagram shows itself by filling it.
    let mut buf = vec![0u8; node.config.max_message + 1];
    loop {
        let wake = each!(&node.engine, e => e.next_wakeup());
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep_until(wake.into()) => {
                let now = Instant::now();
                let out = each!(&mut node.engine, e => e.tick(now));
                node.apply(out, now, &socket).await?;
            }
            received = socket.recv_from(&mut buf) => match received {
                Ok((len, from)) => node.handle(&buf[..len], from, &socket).await?,
                // An ICMP error from an earlier send (a peer down): it concerns that peer only.
                Err(e) => debug!("receive error: {e}"),
            },
        }
    }
    Ok(())
}

impl Node {
    async fn handle(
        &mut self,
        datagram: &[u8],
        from: SocketAddr,
        socket: &UdpSocket,
    ) -> io::Result<()> {
        if datagram.len() > self.config.max_message {
            self.dropped.oversized += 1;
            debug!(%from, "dropped an oversized datagram");
            return Ok(());
        }
        let message = match protocol::decode(datagram) {
            Ok(m) => m,
            Err(e) => {
                self.dropped.malformed += 1;
                debug!(%from, "dropped: {e}");
                return Ok(());
            }
        };
        let now = Instant::now();
        let Some(sender) = message.from() else {
            self.status(from, now, socket).await;
            return Ok(());
        };
        match self.by_id.get(sender) {
            None => {
                self.dropped.non_member += 1;
                debug!(%from, sender, "dropped a message from a non-member");
            }
            Some(addr) if *addr != from => {
                self.dropped.forged += 1;
                debug!(%from, sender, "dropped a message naming a member from another address");
            }
            Some(_) => {
                let out = each!(&mut self.engine, e => e.on_message(message, now));
                self.apply(out, now, socket).await?;
            }
        }
        Ok(())
    }

    async fn apply(&mut self, out: Output, now: Instant, socket: &UdpSocket) -> io::Result<()> {
        if out.save {
            let durable: &Durable = each!(&self.engine, e => e.durable());
            self.store.save(durable)?;
        }
        let mut leader_beat = false;
        for (dest, message) in &out.send {
            if matches!(message, Message::Heartbeat { leader: Some(l), .. } if *l == self.config.id)
            {
                leader_beat = true;
            }
            let bytes = protocol::encode(message);
            match dest {
                Dest::All => {
                    for addr in self.by_id.values() {
                        send(socket, &bytes, *addr).await;
                    }
                }
                Dest::Peer(id) => {
                    if let Some(addr) = self.by_id.get(id) {
                        send(socket, &bytes, *addr).await;
                    }
                }
            }
        }
        for event in out.events {
            emit(event)?;
        }
        // The leader acts on its authority only while its lease runs, and always with its term
        // as the fencing token.
        if leader_beat
            && let Some(resource) = self.config.resource
            && each!(&self.engine, e => e.leads(now))
        {
            let write = ResourceRequest::Write {
                token: each!(&self.engine, e => e.durable().term),
                key: "leader".into(),
                value: self.config.id.clone(),
                from: Some(self.config.id.clone()),
            };
            send(socket, &protocol::encode(&write), resource).await;
        }
        Ok(())
    }

    async fn status(&mut self, to: SocketAddr, now: Instant, socket: &UdpSocket) {
        let (start, count) = &mut self.status_window;
        if now.duration_since(*start) >= Duration::from_secs(1) {
            *start = now;
            *count = 0;
        }
        if *count >= self.config.status_rate {
            return;
        }
        *count += 1;
        let peers = self
            .config
            .peers
            .iter()
            .map(|(id, addr)| {
                let (priority, heard) = each!(&self.engine, e => e.peer(id)).unwrap_or_default();
                let age = heard.map(|t| now.duration_since(t));
                PeerStatus {
                    id: id.clone(),
                    addr: addr.to_string(),
                    priority,
                    last_heard_ms: age.map(|a| a.as_millis() as u64),
                    alive: age.is_some_and(|a| a < self.config.timeout),
                }
            })
            .collect();
        let (role, leader, durable) = each!(&self.engine, e => (
            e.role(),
            e.leader().map(str::to_owned),
            e.durable().clone(),
        ));
        let reply = StatusReply {
            kind: "status_reply".into(),
            id: self.config.id.clone(),
            priority: self.config.priority,
            algorithm: match self.config.algorithm {
                Algorithm::Safe => "safe".into(),
                Algorithm::Bully => "bully".into(),
            },
            role: if role == Role::Leader && !each!(&self.engine, e => e.leads(now)) {
                Role::Follower
            } else {
                role
            },
            term: durable.term,
            voted_for: durable.voted_for,
            leader,
            peers,
            dropped: self.dropped.clone(),
        };
        send(socket, &protocol::encode(&reply), to).await;
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
