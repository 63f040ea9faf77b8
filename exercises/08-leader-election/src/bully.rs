//! The seed's plain algorithm, kept to be watched failing: the bully algorithm over heartbeats.
//!
//! Your task (stage 5): [`Bully::on_message`] and [`Bully::tick`].
//!
//! Every node hears every node's heartbeats and takes as leader the live node of highest
//! priority, itself included. No votes, no quorum, no lease: when a partition cuts the cluster,
//! each side crowns its own best node, and both act as leader at once (split brain). A node that
//! crowns itself takes a term one above any it has seen, so the events still name terms.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::election::{Dest, ElectionConfig, Output};
use crate::persist::Durable;
use crate::protocol::{Event, Message, Role};

/// One node running the bully algorithm.
#[derive(Debug)]
pub struct Bully {
    cfg: ElectionConfig,
    durable: Durable,
    role: Role,
    leader: Option<String>,
    /// Priority and last-heard time of each peer.
    peers: BTreeMap<String, (Option<u64>, Option<Instant>)>,
    started: Instant,
    seq: u64,
    next_heartbeat: Instant,
}

impl Bully {
    /// A node starting at `now`.
    pub fn new(cfg: ElectionConfig, durable: Durable, now: Instant) -> Bully {
        let peers = cfg
            .peers
            .iter()
            .map(|p| (p.clone(), (None, None)))
            .collect();
        Bully {
            cfg,
            durable,
            role: Role::Follower,
            leader: None,
            peers,
            started: now,
            seq: 0,
            next_heartbeat: now,
        }
    }

    /// The event a node prints when it starts.
    pub fn start_event(&self) -> Event {
        self.event("start")
    }

    /// The durable state.
    pub fn durable(&self) -> &Durable {
        &self.durable
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The leader this node follows, or itself.
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    /// Whether this node acts as leader: with no lease, whenever it thinks so.
    pub fn leads(&self, _now: Instant) -> bool {
        self.role == Role::Leader
    }

    /// Priority and last-heard time of a peer.
    pub fn peer(&self, id: &str) -> Option<(Option<u64>, Option<Instant>)> {
        self.peers.get(id).copied()
    }

    /// When to tick next at the latest.
    pub fn next_wakeup(&self) -> Instant {
        self.next_heartbeat
    }

    fn event(&self, reason: &str) -> Event {
        Event {
            event: self.role,
            node: self.cfg.id.clone(),
            term: self.durable.term,
            leader: self.leader.clone(),
            reason: reason.to_owned(),
            time_ms: 0,
        }
    }

    /// Notes the sender's liveness, priority and term.
    pub fn on_message(&mut self, message: Message, now: Instant) -> Output {
        // TODO: a `Heartbeat` from a peer: remember its priority and `Some(now)`; adopt a higher
        // term (that changes the durable state: `out.save = true`). Other messages: nothing.
        todo!()
    }

    /// Sends heartbeats and re-reads who is the best live node.
    pub fn tick(&mut self, now: Instant) -> Output {
        // TODO: the contract's "The bully algorithm": heartbeats when due (to `Dest::All`, as
        // `Election` sends them), and from one timeout after the start the live node of highest
        // `(priority, id)`, this one included, followed or led, each change one `bully` event;
        // crowning itself takes a term one above any seen.
        todo!()
    }
}
