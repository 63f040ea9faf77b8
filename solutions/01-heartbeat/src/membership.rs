//! The membership table: every node ever heard from, its state and its sequence accounting.
//!
//! The table is plain data driven by the caller's clock (`now: Instant` is always a parameter),
//! so every rule here can be tested without sockets or sleeping.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::detector::{ArrivalWindow, Detector};
use crate::protocol::{Heartbeat, NodeState, NodeStatus};

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
    meta: Option<Map<String, Value>>,
}

/// Why a heartbeat was not taken into the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The table already holds its maximum number of nodes and this one is new.
    #[error("the table is full")]
    TableFull,
}

/// Every node heard from, keyed and ordered by node id.
#[derive(Debug)]
pub struct Membership {
    // A BTreeMap rather than a HashMap: status pages walk the nodes in id order from a cursor,
    // which a sorted map answers with `range` instead of sorting the whole table per request.
    members: BTreeMap<String, Member>,
    detector: Detector,
    max_nodes: usize,
    // Kept up to date on every transition so that status replies never walk the whole table.
    dead: usize,
}

impl Membership {
    /// An empty table that judges silence with `detector` and holds at most `max_nodes` nodes.
    pub fn new(detector: Detector, max_nodes: usize) -> Self {
        Self {
            members: BTreeMap::new(),
            detector,
            max_nodes,
            dead: 0,
        }
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
        let Some(member) = self.members.get_mut(&node) else {
            if self.members.len() >= self.max_nodes {
                return Err(Refused::TableFull);
            }
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
                member.lost += skipped;
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
        Box::new(
            self.members
                .range((start, Bound::Unbounded))
                .map(move |(node, m)| NodeStatus {
                    node: node.clone(),
                    state: if m.dead_since.is_some() {
                        NodeState::Dead
                    } else {
                        NodeState::Alive
                    },
                    addr: m.addr,
                    last_seen_ms_ago: millis(now.saturating_duration_since(m.last_seen)),
                    last_seq: m.window.highest(),
                    received: m.received,
                    lost: m.lost,
                    duplicates: m.duplicates,
                    reordered: m.reordered,
                    restarts: m.restarts,
                    meta: m.meta.clone(),
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
        let mut table = Membership::new(Detector::Timeout { timeout }, 10);
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
            1,
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
    fn pages_start_after_the_cursor() {
        let mut table = Membership::new(
            Detector::Timeout {
                timeout: Duration::from_secs(1),
            },
            10,
        );
        let now = Instant::now();
        for n in ["c", "a", "b"] {
            table.record(hb(n, 1), addr(), now).unwrap();
        }
        let ids: Vec<_> = table.rows_after(Some("a"), now).map(|r| r.node).collect();
        assert_eq!(ids, ["b", "c"]);
    }
}
