//! The membership table: every node ever heard from, its state and its sequence accounting.
//!
//! The table is plain data driven by the caller's clock (`now: Instant` is always a parameter),
//! so every rule here can be tested without sockets or sleeping.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::detector::{ArrivalWindow, Detector};
use crate::protocol::{Heartbeat, Meta, NodeState, NodeStatus};

/// How many sequence numbers behind the highest one a node's window remembers.
pub const SEQ_WINDOW: u64 = 64;

/// What one sequence number meant, given those seen before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqOutcome {
    /// Higher than any before; `skipped` numbers in between are missing (so far).
    Advanced {
        /// How many numbers were jumped over.
        skipped: u64,
    },
    /// Seen already.
    Duplicate,
    /// Lower than the highest but not seen before: it fills a gap.
    Reordered,
    /// So far below the highest that the sender must have started counting again.
    Restarted,
}

/// The last [`SEQ_WINDOW`] sequence numbers of a node, as a bitmap anchored at the highest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqWindow {
    highest: u64,
    /// Bit `i` is set when `highest - i` has been seen.
    seen: u64,
}

impl SeqWindow {
    /// A window whose first sequence number is `seq`.
    pub fn new(seq: u64) -> Self {
        Self {
            highest: seq,
            seen: 1,
        }
    }

    /// The highest sequence number seen.
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// Takes in one sequence number and says what it meant.
    pub fn observe(&mut self, seq: u64) -> SeqOutcome {
        if seq > self.highest {
            let shift = seq - self.highest;
            self.seen = if shift >= SEQ_WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.highest = seq;
            return SeqOutcome::Advanced { skipped: shift - 1 };
        }
        let behind = self.highest - seq;
        if behind >= SEQ_WINDOW {
            *self = Self::new(seq);
            return SeqOutcome::Restarted;
        }
        let bit = 1u64 << behind;
        if self.seen & bit != 0 {
            SeqOutcome::Duplicate
        } else {
            self.seen |= bit;
            SeqOutcome::Reordered
        }
    }
}

/// A change of a node's state, for the caller to announce.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// First heartbeat from `node`.
    Joined {
        /// The node id.
        node: String,
        /// Where it came from.
        addr: SocketAddr,
    },
    /// `node` was declared dead after `silent` without a heartbeat.
    Dead {
        /// The node id.
        node: String,
        /// Time since its last heartbeat.
        silent: Duration,
    },
    /// `node` came back after being dead for `down`.
    Recovered {
        /// The node id.
        node: String,
        /// Where it came from.
        addr: SocketAddr,
        /// Time since it was declared dead.
        down: Duration,
    },
}

/// What the table knows of one node.
#[derive(Debug, Clone)]
struct Member {
    addr: SocketAddr,
    last_seen: Instant,
    dead_since: Option<Instant>,
    window: SeqWindow,
    arrivals: ArrivalWindow,
    received: u64,
    lost: u64,
    duplicates: u64,
    reordered: u64,
    restarts: u64,
    meta: Option<Meta>,
}

/// Why a heartbeat was not taken into the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The table already holds its maximum number of nodes and this one is new.
    #[error("the table is full")]
    TableFull,
}

/// How much the table may hold, in nodes and in bytes of `meta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableLimits {
    /// The most nodes; heartbeats from further new nodes are refused.
    pub max_nodes: usize,
    /// The most bytes of `meta` one node may keep; a longer one is not kept.
    pub max_meta_bytes: usize,
    /// The most bytes of `meta` all nodes together may keep; one that would pass it is not kept.
    pub max_meta_total: usize,
}

/// Every node heard from, keyed and ordered by node id.
#[derive(Debug)]
pub struct Membership {
    // A BTreeMap rather than a HashMap: status pages walk the nodes in id order from a cursor,
    // which a sorted map answers with `range` instead of sorting the whole table per request.
    members: BTreeMap<String, Member>,
    detector: Detector,
    limits: TableLimits,
    // Kept up to date on every transition so that status replies never walk the whole table.
    dead: usize,
    // The bytes of every `meta` kept, so that the table's total is known without a walk.
    meta_bytes: usize,
    meta_dropped: u64,
}

impl Membership {
    /// An empty table that judges silence with `detector` and holds no more than `limits`.
    pub fn new(detector: Detector, limits: TableLimits) -> Self {
        Self {
            members: BTreeMap::new(),
            detector,
            limits,
            dead: 0,
            meta_bytes: 0,
            meta_dropped: 0,
        }
    }

    /// The `meta` a node may keep, given the bytes `held` its previous one took: `meta` itself
    /// if it fits both limits, else nothing (and it is counted as dropped).
    fn admit_meta(&mut self, meta: Option<Meta>, held: usize) -> Option<Meta> {
        let others = self.meta_bytes - held;
        let meta = meta.filter(|m| {
            let fits = m.len() <= self.limits.max_meta_bytes
                && others + m.len() <= self.limits.max_meta_total;
            if !fits {
                self.meta_dropped += 1;
            }
            fits
        });
        self.meta_bytes = others + meta.as_ref().map_or(0, Meta::len);
        meta
    }

    /// Bytes of `meta` the table holds.
    pub fn meta_bytes(&self) -> usize {
        self.meta_bytes
    }

    /// Heartbeats whose `meta` was not kept, over either limit.
    pub fn meta_dropped(&self) -> u64 {
        self.meta_dropped
    }

    /// The detector in use.
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// Takes in a valid heartbeat received at `now` from `from`.
    ///
    /// Returns the transition it caused, if any: `Joined` for a new node, `Recovered` for a dead
    /// one. Every heartbeat, even a duplicate, proves the node alive and refreshes its address.
    pub fn record(
        &mut self,
        heartbeat: Heartbeat,
        from: SocketAddr,
        now: Instant,
    ) -> Result<Option<Transition>, Refused> {
        let Heartbeat {
            node, seq, meta, ..
        } = heartbeat;
        let held = match self.members.get(&node) {
            Some(member) => member.meta.as_ref().map_or(0, Meta::len),
            None if self.members.len() >= self.limits.max_nodes => {
                return Err(Refused::TableFull);
            }
            None => 0,
        };
        let meta = self.admit_meta(meta, held);
        let Some(member) = self.members.get_mut(&node) else {
            let member = Member {
                addr: from,
                last_seen: now,
                dead_since: None,
                window: SeqWindow::new(seq),
                arrivals: ArrivalWindow::new(),
                received: 1,
                lost: 0,
                duplicates: 0,
                reordered: 0,
                restarts: 0,
                meta,
            };
            self.members.insert(node.clone(), member);
            return Ok(Some(Transition::Joined { node, addr: from }));
        };

        let since_last = now.saturating_duration_since(member.last_seen);
        member.addr = from;
        member.last_seen = now;
        member.meta = meta;

        if let Some(dead_since) = member.dead_since.take() {
            // After an outage the old window and rhythm say nothing useful: start afresh, and
            // do not count the beats missed while dead as lost.
            self.dead -= 1;
            member.window = SeqWindow::new(seq);
            member.arrivals.clear();
            member.received += 1;
            let down = now.saturating_duration_since(dead_since);
            return Ok(Some(Transition::Recovered {
                node,
                addr: from,
                down,
            }));
        }

        match member.window.observe(seq) {
            SeqOutcome::Advanced { skipped } => {
                member.received += 1;
                // Saturating: a sender (or a forger) may jump from 1 to 2^64 - 1, twice.
                member.lost = member.lost.saturating_add(skipped);
                member.arrivals.record(since_last);
            }
            SeqOutcome::Duplicate => member.duplicates += 1,
            SeqOutcome::Reordered => {
                member.received += 1;
                member.reordered += 1;
                member.lost = member.lost.saturating_sub(1);
            }
            SeqOutcome::Restarted => {
                member.received += 1;
                member.restarts += 1;
            }
        }
        Ok(None)
    }

    /// Declares dead every alive node the detector gives up on at `now`, in id order.
    pub fn sweep(&mut self, now: Instant) -> Vec<Transition> {
        let detector = self.detector;
        let mut transitions = Vec::new();
        for (node, member) in &mut self.members {
            if member.dead_since.is_some() {
                continue;
            }
            let silent = now.saturating_duration_since(member.last_seen);
            if detector.is_dead(&member.arrivals, silent) {
                member.dead_since = Some(now);
                self.dead += 1;
                transitions.push(Transition::Dead {
                    node: node.clone(),
                    silent,
                });
            }
        }
        transitions
    }

    /// How many nodes the table holds.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// How many nodes are dead.
    pub fn dead_count(&self) -> usize {
        self.dead
    }

    /// The rows of the nodes whose id sorts after `after` (all of them for `None`), in id order.
    ///
    /// Lazy, so a status page clones only the rows it sends; boxed, so the signature names a type.
    pub fn rows_after<'a>(
        &'a self,
        after: Option<&str>,
        now: Instant,
    ) -> Box<dyn Iterator<Item = NodeStatus> + 'a> {
        use std::ops::Bound;
        let start = match after {
            Some(after) => Bound::Excluded(after.to_owned()),
            None => Bound::Unbounded,
        };
        // Phi is reported where it decides deaths: the exercise writes it in its last stage.
        let phi_decides = matches!(self.detector, Detector::Phi { .. });
        Box::new(
            self.members
                .range((start, Bound::Unbounded))
                .map(move |(node, m)| {
                    let silence = now.saturating_duration_since(m.last_seen);
                    NodeStatus {
                        node: node.clone(),
                        state: if m.dead_since.is_some() {
                            NodeState::Dead
                        } else {
                            NodeState::Alive
                        },
                        addr: m.addr,
                        last_seen_ms_ago: millis(silence),
                        last_seq: m.window.highest(),
                        received: m.received,
                        lost: m.lost,
                        duplicates: m.duplicates,
                        reordered: m.reordered,
                        restarts: m.restarts,
                        interval_ms: m.arrivals.stats(),
                        phi: phi_decides.then(|| m.arrivals.phi(silence)).flatten(),
                        meta: m.meta.clone(),
                    }
                }),
        )
    }
}

/// A duration in whole milliseconds, saturating (a u64 of milliseconds outlasts the universe).
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(node: &str, seq: u64) -> Heartbeat {
        Heartbeat {
            node: node.into(),
            seq,
            sent_ms: 0,
            meta: None,
        }
    }

    fn limits(max_nodes: usize) -> TableLimits {
        TableLimits {
            max_nodes,
            max_meta_bytes: 512,
            max_meta_total: 1024,
        }
    }

    fn addr() -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }

    #[test]
    fn sequence_accounting() {
        let mut w = SeqWindow::new(1);
        assert_eq!(w.observe(2), SeqOutcome::Advanced { skipped: 0 });
        assert_eq!(w.observe(5), SeqOutcome::Advanced { skipped: 2 });
        assert_eq!(w.observe(4), SeqOutcome::Reordered);
        assert_eq!(w.observe(4), SeqOutcome::Duplicate);
        assert_eq!(w.observe(5), SeqOutcome::Duplicate);
        assert_eq!(w.observe(200), SeqOutcome::Advanced { skipped: 194 });
        assert_eq!(
            w.observe(137),
            SeqOutcome::Reordered,
            "63 behind is still in the window"
        );
        assert_eq!(w.observe(136), SeqOutcome::Restarted, "64 behind is not");
        assert_eq!(w.highest(), 136);
    }

    #[test]
    fn join_die_recover() {
        let timeout = Duration::from_millis(500);
        let mut table = Membership::new(Detector::Timeout { timeout }, limits(10));
        let t0 = Instant::now();
        let joined = table.record(hb("a", 1), addr(), t0).unwrap();
        assert!(matches!(joined, Some(Transition::Joined { .. })));
        assert_eq!(table.record(hb("a", 2), addr(), t0).unwrap(), None);
        assert!(
            table.sweep(t0 + timeout).is_empty(),
            "not before the timeout"
        );
        let dead = table.sweep(t0 + timeout + Duration::from_millis(1));
        assert!(matches!(&dead[..], [Transition::Dead { .. }]));
        assert!(table.sweep(t0 + timeout * 3).is_empty(), "dead only once");
        let back = table.record(hb("a", 9), addr(), t0 + timeout * 4).unwrap();
        assert!(matches!(back, Some(Transition::Recovered { .. })));
        let row = table.rows_after(None, t0 + timeout * 4).next().unwrap();
        assert_eq!(
            (row.state, row.received, row.lost),
            (NodeState::Alive, 3, 0)
        );
    }

    #[test]
    fn a_full_table_refuses_new_nodes_but_not_known_ones() {
        let mut table = Membership::new(
            Detector::Timeout {
                timeout: Duration::from_secs(1),
            },
            limits(1),
        );
        let now = Instant::now();
        table.record(hb("a", 1), addr(), now).unwrap();
        assert_eq!(
            table.record(hb("b", 1), addr(), now),
            Err(Refused::TableFull)
        );
        assert_eq!(table.record(hb("a", 2), addr(), now), Ok(None));
    }

    #[test]
    fn lost_saturates() {
        let mut table = Membership::new(
            Detector::Timeout {
                timeout: Duration::from_secs(1),
            },
            limits(1),
        );
        let now = Instant::now();
        for seq in [1, u64::MAX, 1, u64::MAX] {
            table.record(hb("a", seq), addr(), now).unwrap();
        }
        let row = table.rows_after(None, now).next().unwrap();
        assert_eq!((row.lost, row.restarts), (u64::MAX, 1));
    }

    #[test]
    fn meta_is_bounded_per_node_and_in_all() {
        let mut table = Membership::new(
            Detector::Timeout {
                timeout: Duration::from_secs(1),
            },
            limits(10),
        );
        let now = Instant::now();
        let with_meta = |node: &str, len: usize| {
            let mut facts = serde_json::Map::new();
            facts.insert("p".into(), "x".repeat(len - 8).into());
            let meta = Meta::from_map(&facts);
            assert_eq!(meta.len(), len);
            Heartbeat {
                meta: Some(meta),
                ..hb(node, 1)
            }
        };
        table.record(with_meta("big", 513), addr(), now).unwrap();
        table.record(with_meta("a", 500), addr(), now).unwrap();
        table.record(with_meta("b", 500), addr(), now).unwrap();
        table.record(with_meta("c", 100), addr(), now).unwrap();
        assert_eq!((table.meta_bytes(), table.meta_dropped()), (1000, 2));
        // A node's new meta replaces its old one in the total.
        table.record(with_meta("a", 20), addr(), now).unwrap();
        table.record(with_meta("c", 100), addr(), now).unwrap();
        assert_eq!((table.meta_bytes(), table.meta_dropped()), (620, 2));
        let kept: Vec<bool> = table
            .rows_after(None, now)
            .map(|r| r.meta.is_some())
            .collect();
        assert_eq!(kept, [true, true, false, true]);
    }

    #[test]
    fn pages_start_after_the_cursor() {
        let mut table = Membership::new(
            Detector::Timeout {
                timeout: Duration::from_secs(1),
            },
            limits(10),
        );
        let now = Instant::now();
        for n in ["c", "a", "b"] {
            table.record(hb(n, 1), addr(), now).unwrap();
        }
        let ids: Vec<_> = table.rows_after(Some("a"), now).map(|r| r.node).collect();
        assert_eq!(ids, ["b", "c"]);
    }
}
