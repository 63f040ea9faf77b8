//! The safe election: terms, pre-vote, majority votes, priority, leases and hand-over.
//!
//! Your task (stages 1 to 5): [`Election::new`], [`Election::leads`],
//! [`Election::next_wakeup`], [`Election::on_message`] and [`Election::tick`]. The fields are
//! given; add private helpers as you like (`become_follower`, `start_prevote`, `win`, ...).
//! The contract's "rules of the safe algorithm" are what the tests check, rule by rule.
//!
//! [`Election`] is a state machine driven by the caller's clock: it is given messages and
//! ticks with the current [`Instant`], and answers with messages to send and events to print.
//! It never sleeps and never touches a socket, so the server drives it for real and the unit
//! tests drive it with a made-up clock.
//!
//! The rules, in short (the chapter explains why each is there):
//! - a node stands for election only when it has heard no leader for the election timeout and,
//!   among the nodes it hears, it has the highest priority (or it has waited three timeouts);
//! - it first asks for pre-votes, which change nothing at the voters, and only with a majority
//!   of them raises its term, votes for itself (on disk) and asks for real votes;
//! - a voter refuses while it has heard a leader within the election timeout, and refuses a
//!   candidate of lower priority than a live node it hears: neither refusal changes its term;
//! - a leader renews its lease with every majority of acks, and steps down when the lease,
//!   shorter than the election timeout, runs out.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::persist::Durable;
use crate::protocol::{Event, Message, Role};
use crate::rng::Rng;

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// Every peer.
    All,
    /// One peer, by id.
    Peer(String),
}

/// What a step asks the caller to do, in this order: save the durable state (if `save`), then
/// send the messages and print the events.
#[derive(Debug, Default)]
pub struct Output {
    /// The durable state changed and must be on disk before anything is sent.
    pub save: bool,
    /// Messages to send.
    pub send: Vec<(Dest, Message)>,
    /// Events to print (their `time_ms` is the caller's to fill in).
    pub events: Vec<Event>,
}

/// The timing and identity of one node.
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    /// This node's id.
    pub id: String,
    /// Its priority; higher wins, ties go to the greater id.
    pub priority: u64,
    /// The other members' ids.
    pub peers: Vec<String>,
    /// Time between heartbeats.
    pub heartbeat: Duration,
    /// Silence from the leader after which a node may stand for election.
    pub timeout: Duration,
    /// How long a majority of acks keeps the leader in office; shorter than `timeout`.
    pub lease: Duration,
    /// Whether a live node of higher priority takes over from a leader.
    pub preempt: bool,
    /// How long that node must have been heard without a gap before it takes over.
    pub hold_down: Duration,
}

#[derive(Debug, Default)]
struct PeerView {
    priority: Option<u64>,
    last_heard: Option<Instant>,
    /// Since when it has been heard without a gap longer than the timeout.
    alive_since: Option<Instant>,
    /// The send time of the newest of our heartbeats it acknowledged in our term.
    acked: Option<Instant>,
}

/// One node's election state.
#[derive(Debug)]
pub struct Election {
    cfg: ElectionConfig,
    durable: Durable,
    role: Role,
    leader: Option<String>,
    peers: BTreeMap<String, PeerView>,
    /// When we last heard the leader we follow, or granted a vote: until a timeout after
    /// that, we vote for no one (the leader's lease relies on it).
    promised_at: Option<Instant>,
    /// When we may next stand for election.
    deadline: Instant,
    /// Since when no leader has been known (for the fallback of lower-priority nodes).
    leaderless_since: Instant,
    /// The pre-vote or vote round in progress: its term and who granted.
    prevote: Option<(u64, BTreeSet<String>)>,
    votes: BTreeSet<String>,
    /// When the current vote round was sent: the start of a new leader's lease.
    round_sent: Instant,
    seq: u64,
    /// Send times of our recent heartbeats, by seq.
    sent: BTreeMap<u64, Instant>,
    next_heartbeat: Instant,
    lease_until: Instant,
    rng: Rng,
}

impl Election {
    /// A node starting at `now` from its durable state, as a follower with no leader.
    pub fn new(cfg: ElectionConfig, durable: Durable, now: Instant) -> Election {
        // TODO: a follower with no leader, every peer unheard, its first heartbeat due at once; it
        // stands no sooner than one timeout from `now` (time to hear everyone's priority), plus a
        // jitter below one heartbeat drawn from `Rng::from_str_seed(&cfg.id)` (`rng.below`).
        todo!()
    }

    /// The event a node prints when it starts.
    pub fn start_event(&self) -> Event {
        self.event("start")
    }

    /// The durable state, to save when an [`Output`] says so.
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

    /// Whether this node leads with a lease still running at `now`: what a leader checks
    /// before acting on its authority.
    pub fn leads(&self, now: Instant) -> bool {
        // TODO: a leader acts only while its lease runs: `role == Leader && now < lease_until`
        // (stage 5; until the lease is renewed, stage 1 passes with `role == Leader`).
        todo!()
    }

    /// Priority and last-heard time of a peer, for status replies.
    pub fn peer(&self, id: &str) -> Option<(Option<u64>, Option<Instant>)> {
        self.peers.get(id).map(|p| (p.priority, p.last_heard))
    }

    /// When the caller should call [`tick`](Self::tick) next, at the latest.
    pub fn next_wakeup(&self) -> Instant {
        // TODO: the earliest of the next heartbeat and, for a leader, the end of its lease
        // (stage 5), for anyone else the election `deadline`. The server sleeps until then.
        todo!()
    }

    fn majority(&self) -> usize {
        let members = self.cfg.peers.len() + 1;
        members / 2 + 1
    }

    fn alive(&self, view: &PeerView, now: Instant) -> bool {
        view.last_heard
            .is_some_and(|t| now.duration_since(t) < self.cfg.timeout)
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

    /// Handles one message from member `from` (the caller has checked the membership).
    pub fn on_message(&mut self, message: Message, now: Instant) -> Output {
        // TODO: the contract's "The rules of the safe algorithm", rules 1, 3, 4, 5, 7 and 8 (and 6
        // in stage 5: acks renew the lease), each change of role, term or leader one event with its
        // reason from "Events", and `out.save = true` whenever `term` or `voted_for` changes. Every
        // valid message makes `from` heard (`last_heard`; `alive_since` after a silence of a
        // timeout). A refused vote never changes the term. One `would_vote` helper serves prevotes
        // and votes.
        todo!()
    }

    /// Runs the timers: heartbeats, the lease, hand-over, and standing for election.
    pub fn tick(&mut self, now: Instant) -> Output {
        // TODO: the timers of the contract's rules: heartbeats every `cfg.heartbeat` (a candidate
        // asks again the peers that have not granted yet, rule 4); standing past the `deadline`
        // (rule 2), a failed round going back to follower (reason `election`), the next deadline a
        // timeout plus a random part of one; (stage 3) hand-over (rule 8); (stage 5) the lease
        // running out (rule 6).
        todo!()
    }
}
