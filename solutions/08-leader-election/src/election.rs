//! The safe election: terms, pre-vote, majority votes, priority, leases and hand-over.
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
        let mut rng = Rng::from_str_seed(&cfg.id);
        let peers = cfg
            .peers
            .iter()
            .map(|p| (p.clone(), PeerView::default()))
            .collect();
        // The first timeout also gives the node time to hear everyone's priority.
        let deadline = now + cfg.timeout + rng.below(cfg.heartbeat);
        Election {
            cfg,
            durable,
            role: Role::Follower,
            leader: None,
            peers,
            promised_at: None,
            deadline,
            leaderless_since: now,
            prevote: None,
            votes: BTreeSet::new(),
            round_sent: now,
            seq: 0,
            sent: BTreeMap::new(),
            next_heartbeat: now,
            lease_until: now,
            rng,
        }
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
        self.role == Role::Leader && now < self.lease_until
    }

    /// Priority and last-heard time of a peer, for status replies.
    pub fn peer(&self, id: &str) -> Option<(Option<u64>, Option<Instant>)> {
        self.peers.get(id).map(|p| (p.priority, p.last_heard))
    }

    /// When the caller should call [`tick`](Self::tick) next, at the latest.
    pub fn next_wakeup(&self) -> Instant {
        let mut at = self.next_heartbeat;
        if self.role == Role::Leader {
            at = at.min(self.lease_until);
        } else {
            at = at.min(self.deadline);
        }
        at
    }

    fn majority(&self) -> usize {
        let members = self.cfg.peers.len() + 1;
        members / 2 + 1
    }

    fn alive(&self, view: &PeerView, now: Instant) -> bool {
        view.last_heard
            .is_some_and(|t| now.duration_since(t) < self.cfg.timeout)
    }

    /// The best (priority, id) among this node and the peers it hears.
    fn best_live(&self, now: Instant) -> (u64, String) {
        let mut best = (self.cfg.priority, self.cfg.id.clone());
        for (id, view) in &self.peers {
            if let (true, Some(p)) = (self.alive(view, now), view.priority) {
                best = best.max((p, id.clone()));
            }
        }
        best
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

    /// Becomes a follower of `leader`; prints an event if anything changed or `term_changed`.
    fn follow(
        &mut self,
        leader: Option<String>,
        term_changed: bool,
        now: Instant,
        out: &mut Output,
        why: &str,
    ) {
        let changed = term_changed || self.role != Role::Follower || self.leader != leader;
        if self.leader.is_some() && leader.is_none() {
            self.leaderless_since = now;
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.prevote = None;
        self.votes.clear();
        if changed {
            out.events.push(self.event(why));
        }
    }

    fn become_follower(
        &mut self,
        leader: Option<String>,
        now: Instant,
        out: &mut Output,
        why: &str,
    ) {
        self.follow(leader, false, now, out, why);
    }

    /// Raises the term to `term` if it is higher (forgetting the vote); returns whether it was.
    fn raise_term(&mut self, term: u64, out: &mut Output) -> bool {
        if term <= self.durable.term {
            return false;
        }
        self.durable.term = term;
        self.durable.voted_for = None;
        out.save = true;
        true
    }

    fn adopt_term(&mut self, term: u64, now: Instant, out: &mut Output) {
        if self.raise_term(term, out) {
            self.follow(None, true, now, out, "higher_term");
        }
    }

    fn retry_deadline(&mut self, now: Instant) -> Instant {
        now + self.cfg.timeout + self.rng.below(self.cfg.timeout)
    }

    /// Whether we would vote for `candidate` at `priority` now (pre-vote and vote alike).
    fn would_vote(&self, candidate: &str, priority: u64, now: Instant) -> bool {
        if self.leads(now) {
            return false;
        }
        if self
            .promised_at
            .is_some_and(|t| now.duration_since(t) < self.cfg.timeout)
        {
            return false;
        }
        (priority, candidate.to_owned()) >= self.best_live(now)
    }

    /// Handles one message from member `from` (the caller has checked the membership).
    pub fn on_message(&mut self, message: Message, now: Instant) -> Output {
        let mut out = Output::default();
        let Some(from) = message.from().map(str::to_owned) else {
            return out;
        };
        let Some(view) = self.peers.get_mut(&from) else {
            return out;
        };
        let was_alive = view
            .last_heard
            .is_some_and(|t| now.duration_since(t) < self.cfg.timeout);
        if !was_alive {
            view.alive_since = Some(now);
        }
        view.last_heard = Some(now);
        match message {
            Message::Heartbeat {
                term,
                priority,
                leader,
                seq,
                ..
            } => {
                if let Some(view) = self.peers.get_mut(&from) {
                    view.priority = Some(priority);
                }
                if leader.as_deref() == Some(from.as_str()) {
                    self.on_leader_heartbeat(from, term, seq, now, &mut out);
                }
            }
            Message::Ack { term, seq, .. } => {
                self.adopt_term(term, now, &mut out);
                if self.role == Role::Leader
                    && term == self.durable.term
                    && let Some(&sent) = self.sent.get(&seq)
                    && let Some(view) = self.peers.get_mut(&from)
                {
                    view.acked = Some(view.acked.map_or(sent, |a| a.max(sent)));
                    self.renew_lease();
                }
            }
            Message::Prevote { term, priority, .. } => {
                if let Some(view) = self.peers.get_mut(&from) {
                    view.priority = Some(priority);
                }
                let granted = term > self.durable.term && self.would_vote(&from, priority, now);
                let term = if granted { term } else { self.durable.term };
                out.send.push((
                    Dest::Peer(from.clone()),
                    Message::PrevoteReply {
                        from: self.cfg.id.clone(),
                        term,
                        granted,
                    },
                ));
            }
            Message::PrevoteReply { term, granted, .. } => {
                if granted {
                    if let Some((round, grants)) = &mut self.prevote
                        && *round == term
                    {
                        grants.insert(from);
                        if grants.len() + 1 >= self.majority() {
                            self.stand(now, &mut out);
                        }
                    }
                } else {
                    self.adopt_term(term, now, &mut out);
                }
            }
            Message::Vote { term, priority, .. } => {
                if let Some(view) = self.peers.get_mut(&from) {
                    view.priority = Some(priority);
                }
                let mut granted = false;
                if term == self.durable.term && self.durable.voted_for.as_deref() == Some(&from) {
                    // A repeated request (the reply was lost): the vote is already given.
                    granted = true;
                } else if term >= self.durable.term && self.would_vote(&from, priority, now) {
                    self.adopt_term(term, now, &mut out);
                    if self.durable.voted_for.as_deref().is_none_or(|v| v == from) {
                        if self.durable.voted_for.is_none() {
                            self.durable.voted_for = Some(from.clone());
                            out.save = true;
                        }
                        granted = true;
                        self.promised_at = Some(now);
                        self.deadline = self.retry_deadline(now);
                    }
                }
                out.send.push((
                    Dest::Peer(from.clone()),
                    Message::VoteReply {
                        from: self.cfg.id.clone(),
                        term: self.durable.term,
                        granted,
                    },
                ));
            }
            Message::VoteReply { term, granted, .. } => {
                self.adopt_term(term, now, &mut out);
                if granted && self.role == Role::Candidate && term == self.durable.term {
                    self.votes.insert(from);
                    if self.votes.len() + 1 >= self.majority() {
                        self.win(now, &mut out);
                    }
                }
            }
            Message::Resign { term, to, .. } => {
                if term == self.durable.term && self.leader.as_deref() == Some(from.as_str()) {
                    self.promised_at = None;
                    self.become_follower(None, now, &mut out, "resign");
                    if to == self.cfg.id {
                        // Half a heartbeat lets the resignation reach the voters first.
                        self.deadline = now + self.cfg.heartbeat / 2;
                        self.leaderless_since = now - self.cfg.timeout * 3;
                    }
                }
            }
            Message::Status => {}
        }
        out
    }

    fn on_leader_heartbeat(
        &mut self,
        from: String,
        term: u64,
        seq: u64,
        now: Instant,
        out: &mut Output,
    ) {
        if term < self.durable.term {
            // A deposed leader: tell it the term it lost to.
            out.send.push((
                Dest::Peer(from),
                Message::Ack {
                    from: self.cfg.id.clone(),
                    term: self.durable.term,
                    seq,
                },
            ));
            return;
        }
        if term == self.durable.term && self.role == Role::Leader {
            // Two leaders in one term cannot happen with the rules above; never follow it.
            tracing::error!(%from, term, "another leader in my own term");
            return;
        }
        let raised = self.raise_term(term, out);
        self.follow(Some(from.clone()), raised, now, out, "heartbeat");
        self.promised_at = Some(now);
        // Only the best live node stands when the leader falls silent, so the jitter that keeps
        // Raft's candidates apart can be small here (a quarter of a heartbeat, enough to let
        // the voters' promises run out first): failover stays close to one timeout.
        self.deadline = now + self.cfg.timeout + self.rng.below(self.cfg.heartbeat / 4);
        out.send.push((
            Dest::Peer(from),
            Message::Ack {
                from: self.cfg.id.clone(),
                term: self.durable.term,
                seq,
            },
        ));
    }

    fn start_prevote(&mut self, now: Instant, out: &mut Output) {
        let term = self.durable.term + 1;
        self.prevote = Some((term, BTreeSet::new()));
        self.deadline = self.retry_deadline(now);
        if self.majority() == 1 {
            self.stand(now, out);
            return;
        }
        out.send.push((
            Dest::All,
            Message::Prevote {
                from: self.cfg.id.clone(),
                term,
                priority: self.cfg.priority,
            },
        ));
    }

    fn stand(&mut self, now: Instant, out: &mut Output) {
        self.prevote = None;
        self.durable.term += 1;
        self.durable.voted_for = Some(self.cfg.id.clone());
        out.save = true;
        self.role = Role::Candidate;
        self.leader = None;
        self.votes.clear();
        self.round_sent = now;
        self.deadline = self.retry_deadline(now);
        out.events.push(self.event("election"));
        if self.majority() == 1 {
            self.win(now, out);
            return;
        }
        out.send.push((
            Dest::All,
            Message::Vote {
                from: self.cfg.id.clone(),
                term: self.durable.term,
                priority: self.cfg.priority,
            },
        ));
    }

    fn win(&mut self, now: Instant, out: &mut Output) {
        self.role = Role::Leader;
        self.leader = Some(self.cfg.id.clone());
        self.votes.clear();
        // Every voter promised at or after the round was sent.
        self.lease_until = self.round_sent + self.cfg.lease;
        for view in self.peers.values_mut() {
            view.acked = None;
        }
        self.sent.clear();
        self.next_heartbeat = now;
        out.events.push(self.event("elected"));
        self.heartbeat(now, out);
    }

    fn renew_lease(&mut self) {
        let needed = self.majority() - 1;
        if needed == 0 {
            return;
        }
        let mut acked: Vec<Instant> = self.peers.values().filter_map(|v| v.acked).collect();
        if acked.len() < needed {
            return;
        }
        acked.sort_unstable_by(|a, b| b.cmp(a));
        self.lease_until = self.lease_until.max(acked[needed - 1] + self.cfg.lease);
    }

    fn heartbeat(&mut self, now: Instant, out: &mut Output) {
        self.seq += 1;
        if self.role == Role::Leader {
            self.sent.insert(self.seq, now);
            // Acks older than a lease can renew nothing.
            let horizon = self.cfg.lease.as_nanos() / self.cfg.heartbeat.as_nanos().max(1) + 2;
            let keep_from = self.seq.saturating_sub(horizon as u64);
            self.sent.retain(|&s, _| s >= keep_from);
        }
        out.send.push((
            Dest::All,
            Message::Heartbeat {
                from: self.cfg.id.clone(),
                term: self.durable.term,
                priority: self.cfg.priority,
                leader: self.leader.clone(),
                seq: self.seq,
            },
        ));
        self.next_heartbeat = now + self.cfg.heartbeat;
    }

    /// Runs the timers: heartbeats, the lease, hand-over, and standing for election.
    pub fn tick(&mut self, now: Instant) -> Output {
        let mut out = Output::default();
        if self.role == Role::Leader {
            if self.majority() == 1 {
                self.lease_until = now + self.cfg.lease;
            }
            if now >= self.lease_until {
                self.deadline = self.retry_deadline(now);
                self.become_follower(None, now, &mut out, "lease");
                return out;
            }
            if let Some(to) = self.successor(now) {
                self.become_follower(None, now, &mut out, "preempt");
                self.deadline = self.retry_deadline(now);
                out.send.push((
                    Dest::All,
                    Message::Resign {
                        from: self.cfg.id.clone(),
                        term: self.durable.term,
                        to,
                    },
                ));
                return out;
            }
        }
        if now >= self.next_heartbeat {
            self.heartbeat(now, &mut out);
            self.resend_round(&mut out);
        }
        if self.role != Role::Leader && now >= self.deadline {
            if self.role == Role::Candidate {
                // The round failed: back to waiting, in the same term.
                self.become_follower(None, now, &mut out, "election");
            }
            let best = self.best_live(now).1 == self.cfg.id;
            let waited = now.duration_since(self.leaderless_since) >= self.cfg.timeout * 3;
            let leader_silent = self
                .promised_at
                .is_none_or(|t| now.duration_since(t) >= self.cfg.timeout);
            if leader_silent && (best || waited) {
                self.start_prevote(now, &mut out);
            } else {
                self.deadline = self.retry_deadline(now);
            }
        }
        out
    }

    /// Asks again, once a heartbeat, the peers that have not granted the round in progress: a
    /// lost request or reply then costs a heartbeat, not a whole new round. Granting is
    /// idempotent (rule 4), so a duplicate does no harm.
    fn resend_round(&mut self, out: &mut Output) {
        let (message, granted) = match (&self.prevote, self.role) {
            (Some((term, grants)), _) => (
                Message::Prevote {
                    from: self.cfg.id.clone(),
                    term: *term,
                    priority: self.cfg.priority,
                },
                grants,
            ),
            (None, Role::Candidate) => (
                Message::Vote {
                    from: self.cfg.id.clone(),
                    term: self.durable.term,
                    priority: self.cfg.priority,
                },
                &self.votes,
            ),
            _ => return,
        };
        for peer in self.cfg.peers.iter().filter(|p| !granted.contains(*p)) {
            out.send.push((Dest::Peer(peer.clone()), message.clone()));
        }
    }

    /// The live peer of higher priority that has been heard for the hold-down, if any.
    fn successor(&self, now: Instant) -> Option<String> {
        if !self.cfg.preempt {
            return None;
        }
        let me = (self.cfg.priority, self.cfg.id.clone());
        self.peers
            .iter()
            .filter(|(_, v)| self.alive(v, now))
            .filter(|(_, v)| {
                v.alive_since
                    .is_some_and(|t| now.duration_since(t) >= self.cfg.hold_down)
            })
            .filter_map(|(id, v)| Some((v.priority?, id.clone())))
            .filter(|cand| *cand > me)
            .max()
            .map(|(_, id)| id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(id: &str, priority: u64, peers: &[&str]) -> ElectionConfig {
        ElectionConfig {
            id: id.into(),
            priority,
            peers: peers.iter().map(|p| (*p).to_owned()).collect(),
            heartbeat: Duration::from_millis(100),
            timeout: Duration::from_secs(1),
            lease: Duration::from_millis(750),
            preempt: true,
            hold_down: Duration::from_secs(3),
        }
    }

    /// Delivers every message of `out` from `from` to the nodes, and everything they answer,
    /// until the network is quiet.
    fn deliver(nodes: &mut BTreeMap<String, Election>, from: &str, out: Output, now: Instant) {
        let mut queue: Vec<(String, Dest, Message)> = out
            .send
            .into_iter()
            .map(|(d, m)| (from.to_owned(), d, m))
            .collect();
        while let Some((sender, dest, message)) = queue.pop() {
            let targets: Vec<String> = match dest {
                Dest::All => nodes.keys().filter(|k| **k != sender).cloned().collect(),
                Dest::Peer(p) => vec![p],
            };
            for target in targets {
                let node = nodes.get_mut(&target).unwrap();
                let reply = node.on_message(message.clone(), now);
                queue.extend(reply.send.into_iter().map(|(d, m)| (target.clone(), d, m)));
            }
        }
    }

    fn cluster() -> (BTreeMap<String, Election>, Instant) {
        let now = Instant::now();
        let mut nodes = BTreeMap::new();
        for (id, prio) in [("a", 1), ("b", 2), ("c", 3)] {
            let peers: Vec<&str> = ["a", "b", "c"].into_iter().filter(|p| *p != id).collect();
            nodes.insert(
                id.to_owned(),
                Election::new(cfg(id, prio, &peers), Durable::default(), now),
            );
        }
        (nodes, now)
    }

    fn run(nodes: &mut BTreeMap<String, Election>, start: Instant, until: Duration) -> Instant {
        let mut now = start;
        while now < start + until {
            now += Duration::from_millis(10);
            let ids: Vec<String> = nodes.keys().cloned().collect();
            for id in ids {
                let out = nodes.get_mut(&id).unwrap().tick(now);
                deliver(nodes, &id, out, now);
            }
        }
        now
    }

    #[test]
    fn the_highest_priority_leads_and_a_vote_is_never_given_twice() {
        let (mut nodes, now) = cluster();
        run(&mut nodes, now, Duration::from_secs(3));
        let leaders: Vec<&str> = nodes
            .values()
            .filter(|n| n.role() == Role::Leader)
            .map(|n| n.cfg.id.as_str())
            .collect();
        assert_eq!(leaders, ["c"]);
        assert_eq!(nodes["c"].durable.term, 1);
        assert_eq!(nodes["a"].leader(), Some("c"));
        // A voter that follows a live leader refuses, and keeps its term.
        let out = nodes.get_mut("a").unwrap().on_message(
            Message::Vote {
                from: "b".into(),
                term: 9,
                priority: 99,
            },
            now + Duration::from_secs(3),
        );
        assert!(matches!(
            out.send[0].1,
            Message::VoteReply {
                granted: false,
                term: 1,
                ..
            }
        ));
    }

    #[test]
    fn a_leader_cut_off_steps_down_within_its_lease() {
        let (mut nodes, now) = cluster();
        let now = run(&mut nodes, now, Duration::from_secs(3));
        let mut c = nodes.remove("c").unwrap();
        let later = now + Duration::from_millis(800);
        let out = c.tick(later);
        assert_eq!(c.role(), Role::Follower);
        assert_eq!(out.events[0].reason, "lease");
    }
}
