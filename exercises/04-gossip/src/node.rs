//! The broadcast node as a state machine, with no I/O and no clock of its own: [`Node::handle`]
//! takes one decoded message and [`Node::tick`] one gossip round, and both return the lines to
//! write. The server (`server.rs`) feeds it stdin and a timer; tests can feed it anything.
//!
//! How values spread: every value a node holds is, for each peer it gossips with, either known
//! to be held by that peer, in flight to it (sent, not yet acknowledged), or *unsent*. Each
//! round sends a peer its unsent values in one `gossip` message (batching); `gossip_ok`
//! settles them; a message unacknowledged after `retry` (or twice the peer's last round trip, if
//! longer) puts its values back to unsent, so lost messages and partitions only delay values. A
//! value received from a peer is never sent back
//! to it. Anti-entropy: now and then the node sends a random node a digest of its whole set
//! (`sync`); a node whose digest differs answers with its values (`sync_values`), and the first
//! node sends back what the second lacks. That repairs whatever the rounds missed.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::protocol::{self, Bad, Incoming, Payload, TEMPORARILY_UNAVAILABLE};
use crate::rng::Rng;
use crate::server::{Overlay, ServerConfig};

/// A node's whole state.
#[derive(Debug)]
pub struct Node {
    config: ServerConfig,
    rng: Rng,
    /// This node's id and every node's id, once `init` came.
    id: Option<String>,
    ids: Vec<String>,
    /// The topology Maelstrom gave, if any.
    topology: HashMap<String, Vec<String>>,
    /// The peers whose unsent values are tracked (the overlay neighbours, or everyone).
    peers: Vec<String>,
    values: HashSet<i64>,
    /// XOR of `value_hash` over `values`: with `values.len()`, the anti-entropy digest.
    digest: u64,
    unsent: HashMap<String, BTreeSet<i64>>,
    in_flight: HashMap<u64, Flight>,
    /// Each peer's latest round trip, from a `gossip` to its `gossip_ok`.
    rtt: HashMap<String, Duration>,
    next_msg_id: u64,
    last_sync: Option<Instant>,
}

/// A `gossip` message sent and not yet acknowledged.
#[derive(Debug)]
struct Flight {
    peer: String,
    values: Vec<i64>,
    sent: Instant,
    /// Whether its retry time passed: its values went back to `unsent`, and it is only kept
    /// so that a `gossip_ok` that comes late still measures the round trip.
    late: bool,
}

/// How long a late flight is kept for its `gossip_ok`, in retry times.
const LATE_KEPT: u32 = 16;

impl Node {
    /// A node that has not been initialised yet.
    pub fn new(config: ServerConfig) -> Node {
        let rng = Rng::new(config.seed);
        Node {
            config,
            rng,
            id: None,
            ids: Vec::new(),
            topology: HashMap::new(),
            peers: Vec::new(),
            values: HashSet::new(),
            digest: 0,
            unsent: HashMap::new(),
            in_flight: HashMap::new(),
            rtt: HashMap::new(),
            next_msg_id: 1,
            last_sync: None,
        }
    }

    /// The values this node holds, in ascending order.
    pub fn values(&self) -> Vec<i64> {
        let mut all: Vec<i64> = self.values.iter().copied().collect();
        all.sort_unstable();
        all
    }

    /// The peers this node gossips with each round.
    pub fn peers(&self) -> &[String] {
        &self.peers
    }

    /// Acts on one decoded message; returns the lines to write.
    pub fn handle(&mut self, message: Incoming, now: Instant) -> Vec<String> {
        // TODO: every request answered as the contract's "Messages" and "Errors" say (`init`
        // always; before it, error 11 from the request's `dest`), and the node-to-node messages:
        // (stage 3) `gossip` learned from `src` and acknowledged, `gossip_ok` ending its flight,
        // late or not, its round trip kept as the peer's `rtt`; (stage 4) a `sync` digest that
        // differs answered with `sync_values` in `max_batch` chunks, each chunk handled alone as
        // "Messages" says. `init`, `choose_peers`, `learn`, `reply`, `send_gossip`, `values`.
        todo!()
    }

    /// The reply to a line that could not be decoded: Maelstrom's `error`, when the line said
    /// who sent it and its `msg_id`.
    pub fn reject(&self, bad: &Bad) -> Option<String> {
        // TODO: No `reply_to`, no reply. Otherwise an `error` body (`protocol::error_body`)
        // with `bad.error.code()` and its text, encoded from this node's id (or "").
        todo!()
    }

    /// One gossip round at `now`: retries, batches to the round's peers, and anti-entropy.
    pub fn tick(&mut self, now: Instant) -> Vec<String> {
        // TODO: (stage 3) one round: each peer owed values gets at most `max_batch` of them in one
        // `gossip` (with `Overlay::Random`, only `fanout` such peers, at random); nothing before
        // `init`. (Stage 4) late flights first go back to be sent again (`expire`), and every
        // `anti_entropy` (not zero) one random other node gets a `sync` with this node's `digest`.
        // `send_gossip`, `self.rng.shuffle`, `Rng::below_except`. Until stage 3, returning nothing
        // keeps stage 1 going.
        todo!()
    }

    fn init(&mut self, node_id: String, node_ids: Vec<String>) {
        // TODO: Seed `self.rng` from `config.seed` mixed with the node's id (so nodes pick
        // different peers), store `id` and `ids`, then `choose_peers`.
        todo!()
    }

    /// Sets `peers` from the overlay: the tree over `node_ids`, the given topology, or everyone.
    fn choose_peers(&mut self) {
        // TODO: (stage 3) the peers `config.overlay` names (contract: `node --overlay`): `Random`
        // every other node; `Topology` this node's neighbours in `self.topology` (every other node
        // until one came); `Tree` its parent and children in a tree of `branching` children a node
        // over `ids` in order. Rebuild `unsent` for exactly these peers: a peer kept keeps its set,
        // a new one is owed every value held.
        todo!()
    }

    /// Takes in `value`, from peer `from` or from a client.
    fn learn(&mut self, value: i64, from: Option<&str>) {
        // TODO: A new value: insert it, XOR its `protocol::value_hash` into `digest`, and add it
        // to every peer's `unsent` except `from`'s. A value already held, sent by a peer: that peer
        // has it, so remove it from that peer's `unsent`.
        todo!()
    }

    /// Puts the values of messages unacknowledged for their timeout back to unsent; forgets
    /// late messages after `LATE_KEPT` retry times. The timeout is `retry`, or twice the
    /// peer's latest round trip if that is longer: a fixed timeout shorter than the round trip
    /// would send every value again each `retry` for as long as the delay lasts, each time in
    /// bigger messages, which make the delay longer still (on a busy machine, a collapse).
    fn expire(&mut self, now: Instant) {
        // TODO: A flight not yet `late` whose age reaches the larger of `config.retry` and twice
        // its peer's `rtt` becomes `late`: its values move back into its peer's `unsent` (the
        // flight stays, empty, for a late `gossip_ok`). A late flight older than `LATE_KEPT`
        // times `config.retry` is removed from `in_flight`.
        todo!()
    }

    fn send_gossip(&mut self, out: &mut Vec<String>, peer: &str, values: Vec<i64>, now: Instant) {
        // TODO: `send` a `gossip` body with `values`, and record the returned `msg_id` in
        // `in_flight` as a `Flight` (peer, values, `now`, not late).
        todo!()
    }

    /// Sends `body` to `dest` with a fresh `msg_id`, which it returns.
    fn send(&mut self, out: &mut Vec<String>, dest: &str, mut body: Value) -> u64 {
        // TODO: Set `body["msg_id"]` to `next_msg_id` (then increment it), push
        // `protocol::encode(id, dest, body)` onto `out`, and return the id.
        todo!()
    }

    /// Answers request `msg_id` from `dest` (nothing when the request had no `msg_id`).
    fn reply(&mut self, out: &mut Vec<String>, dest: &str, msg_id: Option<u64>, mut body: Value) {
        // TODO: No `msg_id` on the request: no reply. Otherwise set `body["in_reply_to"]`
        // and `send` it.
        todo!()
    }
}
