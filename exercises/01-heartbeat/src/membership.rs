//! The membership table: every node ever heard from, its state and its sequence accounting.
//!
//! Your task: [`SeqWindow`] and [`Membership`] (written in stage 2, since every heartbeat goes
//! through them; stages 3 and 4 test their timing and accounting). The private `Member`
//! struct is given as a suggestion of what to remember per node; change it as you like.
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
        // TODO: `seq` is both the highest seen and the only one seen, in the fields' meaning
        // above.
        todo!()
    }

    /// The highest sequence number seen.
    pub fn highest(&self) -> u64 {
        // TODO: the field that anchors the window.
        todo!()
    }

    /// Takes in one sequence number and says what it meant.
    pub fn observe(&mut self, seq: u64) -> SeqOutcome {
        // TODO: the outcome of `seq` by the contract's "Sequence accounting" (cases 2 to 5), with
        // the window updated so that a second copy of any number it remembers is a `Duplicate`. Bit
        // `i` of `seen` stands for `highest - i`; mind that `u64 << 64` panics in a debug build.
        todo!()
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
        // TODO: an empty table, nothing dead, no `meta` held or dropped yet.
        todo!()
    }

    /// Bytes of `meta` the table holds.
    pub fn meta_bytes(&self) -> usize {
        // TODO: the running total kept up to date by `record` (no walk of the table).
        todo!()
    }

    /// Heartbeats whose `meta` was not kept, over either limit.
    pub fn meta_dropped(&self) -> u64 {
        // TODO: the counter `record` bumps for each `meta` it does not keep.
        todo!()
    }

    /// The detector in use.
    pub fn detector(&self) -> &Detector {
        // TODO: the detector the table was made with.
        todo!()
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
        // TODO: the contract's "Sequence accounting" (every case, `lost` saturating with
        // `u64::saturating_add`) and "Limits": a new node when the table is full is
        // `Err(Refused::TableFull)`; a `meta` beyond `max_meta_bytes`, or one that would take the
        // table's total past `max_meta_total`, is not kept and counts in `meta_dropped` (stage 5).
        // Keep `meta_bytes` and the dead count exact here and in `sweep`, so their getters are
        // O(1).
        todo!()
    }

    /// Declares dead every alive node the detector gives up on at `now`, in id order.
    pub fn sweep(&mut self, now: Instant) -> Vec<Transition> {
        // TODO: each node that `self.detector.is_dead` gives up on (its silence measured with
        // `Instant::saturating_duration_since`) declared dead once, not at every sweep, with the
        // time it died kept (a recovery reports `down`), and one `Transition::Dead` returned for
        // it.
        todo!()
    }

    /// How many nodes the table holds.
    pub fn len(&self) -> usize {
        // TODO: how many nodes the map holds, alive or dead.
        todo!()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        // TODO: whether the map holds no node.
        todo!()
    }

    /// How many nodes are dead.
    pub fn dead_count(&self) -> usize {
        // TODO: the count kept up to date on every transition (no walk of the table).
        todo!()
    }

    /// The rows of the nodes whose id sorts after `after` (all of them for `None`), in id order.
    ///
    /// Lazy, so a status page clones only the rows it sends; boxed, so the signature names a type.
    pub fn rows_after<'a>(
        &'a self,
        after: Option<&str>,
        now: Instant,
    ) -> Box<dyn Iterator<Item = NodeStatus> + 'a> {
        // TODO: the nodes strictly after the cursor, in id order, each as a `NodeStatus`
        // (`last_seen_ms_ago` through `millis`, `interval_ms` from `ArrivalWindow::stats`, and
        // `phi` for that same silence only under `Detector::Phi`, `None` under the timeout),
        // cloning nothing until asked: `BTreeMap::range` with `std::ops::Bound`,
        // `Iterator::map`, `Box::new`.
        todo!()
    }
}

/// A duration in whole milliseconds, saturating (a u64 of milliseconds outlasts the universe).
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
