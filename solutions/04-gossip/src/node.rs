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
        let mut out = Vec::new();
        let Incoming {
            src,
            dest,
            msg_id,
            in_reply_to,
            payload,
        } = message;
        if let Payload::Init { node_id, node_ids } = payload {
            self.init(node_id, node_ids);
            self.reply(&mut out, &src, msg_id, json!({ "type": "init_ok" }));
            return out;
        }
        if self.id.is_none() {
            if let Some(msg_id) = msg_id {
                let body = protocol::error_body(
                    msg_id,
                    TEMPORARILY_UNAVAILABLE,
                    "this node has not been sent `init` yet",
                );
                out.push(protocol::encode(&dest, &src, body));
            }
            return out;
        }
        match payload {
            Payload::Init { .. } | Payload::Ignored => {}
            Payload::Echo { echo } => {
                self.reply(
                    &mut out,
                    &src,
                    msg_id,
                    json!({ "type": "echo_ok", "echo": echo }),
                );
            }
            Payload::Topology { topology } => {
                self.topology = topology;
                self.choose_peers();
                self.reply(&mut out, &src, msg_id, json!({ "type": "topology_ok" }));
            }
            Payload::Broadcast { message } => {
                self.learn(message, None);
                self.reply(&mut out, &src, msg_id, json!({ "type": "broadcast_ok" }));
            }
            Payload::Read => {
                let body = json!({ "type": "read_ok", "messages": self.values() });
                self.reply(&mut out, &src, msg_id, body);
            }
            Payload::Gossip { values } => {
                for value in values {
                    self.learn(value, Some(&src));
                }
                self.reply(&mut out, &src, msg_id, json!({ "type": "gossip_ok" }));
            }
            Payload::GossipOk => {
                // Delivered: the values left `unsent` when sent. Late or not, the answer
                // measures the round trip, which sets how long the next flights may take.
                if let Some(flight) = in_reply_to.and_then(|id| self.in_flight.remove(&id)) {
                    self.rtt
                        .insert(flight.peer, now.duration_since(flight.sent));
                }
            }
            Payload::Sync { count, hash } => {
                if count != self.values.len() as u64 || hash != self.digest {
                    let all = self.values();
                    for chunk in all.chunks(self.config.max_batch.max(1)) {
                        let body = json!({ "type": "sync_values", "values": chunk });
                        self.send(&mut out, &src, body);
                    }
                    if all.is_empty() {
                        self.send(
                            &mut out,
                            &src,
                            json!({ "type": "sync_values", "values": [] }),
                        );
                    }
                }
            }
            Payload::SyncValues { values } => {
                let theirs: HashSet<i64> = values.iter().copied().collect();
                for value in values {
                    self.learn(value, Some(&src));
                }
                let missing: Vec<i64> = self
                    .values()
                    .into_iter()
                    .filter(|v| !theirs.contains(v))
                    .collect();
                for chunk in missing.chunks(self.config.max_batch.max(1)) {
                    self.send_gossip(&mut out, &src, chunk.to_vec(), now);
                }
            }
        }
        out
    }

    /// The reply to a line that could not be decoded: Maelstrom's `error`, when the line said
    /// who sent it and its `msg_id`.
    pub fn reject(&self, bad: &Bad) -> Option<String> {
        let reply_to = bad.reply_to.as_ref()?;
        let body = protocol::error_body(reply_to.msg_id, bad.error.code(), &bad.error.to_string());
        Some(protocol::encode(
            self.id.as_deref().unwrap_or(""),
            &reply_to.src,
            body,
        ))
    }

    /// One gossip round at `now`: retries, batches to the round's peers, and anti-entropy.
    pub fn tick(&mut self, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        if self.id.is_none() {
            return out;
        }
        self.expire(now);
        let mut targets: Vec<String> = self
            .peers
            .iter()
            .filter(|p| self.unsent.get(*p).is_some_and(|u| !u.is_empty()))
            .cloned()
            .collect();
        if self.config.overlay == Overlay::Random {
            self.rng.shuffle(&mut targets);
            targets.truncate(self.config.fanout);
        }
        for peer in targets {
            let Some(unsent) = self.unsent.get_mut(&peer) else {
                continue;
            };
            let batch: Vec<i64> = unsent.iter().take(self.config.max_batch).copied().collect();
            for value in &batch {
                unsent.remove(value);
            }
            self.send_gossip(&mut out, &peer, batch, now);
        }
        let due = self
            .last_sync
            .is_none_or(|at| now.duration_since(at) >= self.config.anti_entropy);
        if !self.config.anti_entropy.is_zero() && due && self.ids.len() > 1 {
            self.last_sync = Some(now);
            let me = self.ids.iter().position(|i| Some(i) == self.id.as_ref());
            let pick = self
                .rng
                .below_except(self.ids.len() as u64, me.unwrap_or(0) as u64);
            let peer = self.ids[pick as usize].clone();
            let body = json!({ "type": "sync", "count": self.values.len(), "hash": self.digest });
            self.send(&mut out, &peer, body);
        }
        out
    }

    fn init(&mut self, node_id: String, node_ids: Vec<String>) {
        self.rng = Rng::new(
            self.config.seed ^ protocol::value_hash(node_ids.len() as i64) ^ {
                // Every node of a cluster gets the same seed flag; mixing in its id gives each its
                // own sequence of peers.
                node_id
                    .bytes()
                    .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
            },
        );
        self.id = Some(node_id);
        self.ids = node_ids;
        self.choose_peers();
    }

    /// Sets `peers` from the overlay: the tree over `node_ids`, the given topology, or everyone.
    fn choose_peers(&mut self) {
        let Some(me) = self.id.clone() else { return };
        let peers: Vec<String> = match self.config.overlay {
            Overlay::Random => self.ids.iter().filter(|i| **i != me).cloned().collect(),
            Overlay::Topology => self
                .topology
                .get(&me)
                .cloned()
                .unwrap_or_else(|| self.ids.iter().filter(|i| **i != me).cloned().collect()),
            Overlay::Tree => {
                let b = self.config.branching.max(1);
                let i = self.ids.iter().position(|x| *x == me).unwrap_or(0);
                let mut near: Vec<usize> = (b * i + 1..=b * i + b)
                    .filter(|&c| c < self.ids.len())
                    .collect();
                if i > 0 {
                    near.push((i - 1) / b);
                }
                near.into_iter().map(|j| self.ids[j].clone()).collect()
            }
        };
        // A peer that stays keeps what it was owed; a new one is owed everything held.
        let mut unsent = HashMap::with_capacity(peers.len());
        for peer in &peers {
            let owed = self
                .unsent
                .remove(peer)
                .unwrap_or_else(|| self.values.iter().copied().collect());
            unsent.insert(peer.clone(), owed);
        }
        self.unsent = unsent;
        self.peers = peers;
    }

    /// Takes in `value`, from peer `from` or from a client.
    fn learn(&mut self, value: i64, from: Option<&str>) {
        if self.values.insert(value) {
            self.digest ^= protocol::value_hash(value);
            for (peer, unsent) in &mut self.unsent {
                if Some(peer.as_str()) != from {
                    unsent.insert(value);
                }
            }
        } else if let Some(unsent) = from.and_then(|f| self.unsent.get_mut(f)) {
            unsent.remove(&value);
        }
    }

    /// Puts the values of messages unacknowledged for their timeout back to unsent; forgets
    /// late messages after `LATE_KEPT` retry times. The timeout is `retry`, or twice the
    /// peer's latest round trip if that is longer: a fixed timeout shorter than the round trip
    /// would send every value again each `retry` for as long as the delay lasts, each time in
    /// bigger messages, which make the delay longer still (on a busy machine, a collapse).
    fn expire(&mut self, now: Instant) {
        let keep = self.config.retry.saturating_mul(LATE_KEPT);
        let mut due = Vec::new();
        let mut gone = Vec::new();
        for (id, flight) in &self.in_flight {
            let age = now.duration_since(flight.sent);
            let rtt = self.rtt.get(&flight.peer).copied().unwrap_or_default();
            if flight.late {
                if age >= keep {
                    gone.push(*id);
                }
            } else if age >= self.config.retry.max(rtt.saturating_mul(2)) {
                due.push(*id);
            }
        }
        for id in gone {
            self.in_flight.remove(&id);
        }
        for id in due {
            if let Some(flight) = self.in_flight.get_mut(&id) {
                flight.late = true;
                let values = std::mem::take(&mut flight.values);
                if let Some(unsent) = self.unsent.get_mut(&flight.peer) {
                    unsent.extend(values);
                }
            }
        }
    }

    fn send_gossip(&mut self, out: &mut Vec<String>, peer: &str, values: Vec<i64>, now: Instant) {
        let msg_id = self.send(out, peer, json!({ "type": "gossip", "values": values }));
        self.in_flight.insert(
            msg_id,
            Flight {
                peer: peer.to_owned(),
                values,
                sent: now,
                late: false,
            },
        );
    }

    /// Sends `body` to `dest` with a fresh `msg_id`, which it returns.
    fn send(&mut self, out: &mut Vec<String>, dest: &str, mut body: Value) -> u64 {
        let msg_id = self.next_msg_id;
        self.next_msg_id += 1;
        body["msg_id"] = json!(msg_id);
        out.push(protocol::encode(
            self.id.as_deref().unwrap_or(""),
            dest,
            body,
        ));
        msg_id
    }

    /// Answers request `msg_id` from `dest` (nothing when the request had no `msg_id`).
    fn reply(&mut self, out: &mut Vec<String>, dest: &str, msg_id: Option<u64>, mut body: Value) {
        let Some(request) = msg_id else { return };
        body["in_reply_to"] = json!(request);
        self.send(out, dest, body);
    }
}
