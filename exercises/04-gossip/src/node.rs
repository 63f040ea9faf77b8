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
        // TODO: Destructure the message. `init` is answered always (call `self.init`, reply
        // `init_ok`); before it, any request with a `msg_id` gets `error` 11 (sent with the request's
        // `dest` as `src`, since the node has no id yet). After: `echo` -> `echo_ok` with the same
        // `echo`; `topology` -> store it, `choose_peers`, `topology_ok`; `broadcast` -> `learn` it,
        // `broadcast_ok`; `read` -> `read_ok` with `messages: self.values()`; `gossip` -> `learn` each
        // value from `src`, then `gossip_ok`; `gossip_ok` -> remove its flight (`in_reply_to`),
        // late or not, and store `now - sent` as its peer's `rtt`;
        // `sync` -> if `count`/`hash` differ from yours, answer `sync_values` with your values in
        // chunks of `max_batch`; `sync_values` -> learn them, then `send_gossip` (in `max_batch`
        // chunks) every value you hold that is not in this chunk: each chunk is handled alone.
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
        // TODO: Nothing before `init`. First `expire` late flights. Then the targets: the
        // peers whose `unsent` set is not empty; with `Overlay::Random`, shuffle them
        // (`self.rng.shuffle`) and keep `fanout`. To each, take up to `max_batch` values out of its
        // `unsent` and `send_gossip` them. Last, anti-entropy: if `anti_entropy` is not zero and that
        // long has passed since `last_sync`, send `sync` (`count` and `hash` = `self.digest`) to one
        // random other node (`rng.below_except`).
        todo!()
    }

    fn init(&mut self, node_id: String, node_ids: Vec<String>) {
        // TODO: Seed `self.rng` from `config.seed` mixed with the node's id (so nodes pick
        // different peers), store `id` and `ids`, then `choose_peers`.
        todo!()
    }

    /// Sets `peers` from the overlay: the tree over `node_ids`, the given topology, or everyone.
    fn choose_peers(&mut self) {
        // TODO: Compute the peer list for `config.overlay`: `Random` is every other node;
        // `Topology` the neighbours `self.topology` lists for this node (every other node until a
        // topology came); `Tree` the parent `(i - 1) / b` and children `b*i+1 ..= b*i+b` of this
        // node's index `i` in `ids`. Rebuild `unsent` for exactly these peers: a peer already there
        // keeps its set, a new one is owed every value held.
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
