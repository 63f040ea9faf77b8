//! Maelstrom's wire format, pure and synchronous: one JSON object per line,
//! `{"src": .., "dest": .., "body": {"type": .., "msg_id": .., "in_reply_to": .., ...}}`.
//!
//! [`decode`] turns a line into an [`Incoming`] message or says why it cannot, with enough of
//! the message (its sender and `msg_id`) to address an `error` reply when the line had them.
//! [`encode`] writes a message back as one line.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

/// Maelstrom's error code for a request the node does not implement (definite).
pub const NOT_SUPPORTED: u64 = 10;
/// Maelstrom's error code for a request that cannot be served now, e.g. before `init` (definite).
pub const TEMPORARILY_UNAVAILABLE: u64 = 11;
/// Maelstrom's error code for a request that is not well formed (definite).
pub const MALFORMED_REQUEST: u64 = 12;

/// Why a line is not a message this node can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The line is not JSON at all.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// The line is JSON but not an object with `src`, `dest` and an object `body`.
    #[error("not a Maelstrom message: {0}")]
    NotAMessage(&'static str),
    /// A field the message type needs is absent.
    #[error("`{ty}` needs the field `{field}`")]
    MissingField {
        /// The message type.
        ty: String,
        /// The missing field.
        field: &'static str,
    },
    /// A field is present with the wrong JSON type.
    #[error("`{ty}`: the field `{field}` must be {expected}")]
    BadField {
        /// The message type.
        ty: String,
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// The body's `type` is not one this node knows.
    #[error("unknown message type `{0}`")]
    UnknownType(String),
}

impl ProtocolError {
    /// The Maelstrom error code an `error` reply carries for this error.
    pub fn code(&self) -> u64 {
        match self {
            ProtocolError::UnknownType(_) => NOT_SUPPORTED,
            _ => MALFORMED_REQUEST,
        }
    }
}

/// Where an `error` reply to a bad line goes: its sender and the request's `msg_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    /// The `src` of the bad message.
    pub src: String,
    /// Its body's `msg_id`.
    pub msg_id: u64,
}

/// A line that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bad {
    /// Where to send the `error` reply, if the line said (a request with `src` and `msg_id`).
    pub reply_to: Option<ReplyTo>,
    /// What is wrong with it.
    pub error: ProtocolError,
}

/// The typed part of a body: the message types a broadcast node sends and receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// `init`: who this node is and who the cluster is.
    Init {
        /// This node's id.
        node_id: String,
        /// Every node's id, this one included, in the same order on every node.
        node_ids: Vec<String>,
    },
    /// `echo`: answer with the same `echo` value.
    Echo {
        /// Any JSON value.
        echo: Value,
    },
    /// `topology`: the neighbours Maelstrom suggests, for every node.
    Topology {
        /// Node id to its neighbours' ids.
        topology: HashMap<String, Vec<String>>,
    },
    /// `broadcast`: remember this value and spread it to every node.
    Broadcast {
        /// The value (an integer, unique per broadcast).
        message: i64,
    },
    /// `read`: answer with every value seen.
    Read,
    /// `gossip` (node to node): values the sender has and thinks the receiver lacks.
    Gossip {
        /// The values.
        values: Vec<i64>,
    },
    /// `gossip_ok` (node to node): the `gossip` it answers arrived.
    GossipOk,
    /// `sync` (node to node): a digest of the sender's whole set, for anti-entropy.
    Sync {
        /// How many values the sender has.
        count: u64,
        /// The XOR of [`value_hash`] over the sender's values.
        hash: u64,
    },
    /// `sync_values` (node to node): the digests differed; here is (a chunk of) the sender's set.
    SyncValues {
        /// Values the sender has.
        values: Vec<i64>,
    },
    /// A reply this node has no use for (`init_ok`, `topology_ok`, `error`, ...): ignored.
    Ignored,
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// The sender.
    pub src: String,
    /// The addressee.
    pub dest: String,
    /// The body's `msg_id`, if any.
    pub msg_id: Option<u64>,
    /// The body's `in_reply_to`, if any.
    pub in_reply_to: Option<u64>,
    /// The typed body.
    pub payload: Payload,
}

/// Decodes one line (without its newline).
pub fn decode(line: &str) -> Result<Incoming, Bad> {
    // TODO: the contract's "Messages" and "Errors" as `ProtocolError`s: `NotJson`, `NotAMessage`
    // (the envelope), then each variant's fields required (`MissingField`) with the JSON type its
    // doc says (`BadField`; `init`'s `node_ids` must hold its `node_id`, else `BadField` on
    // `node_ids`); replies are `Payload::Ignored`, other types `UnknownType`. Once `src` and
    // `msg_id` are read, every error carries `reply_to`. `serde_json::Value`, `as_i64`, `as_str`...
    todo!()
}

/// Encodes a message as one line (no newline). `body` must be a JSON object.
pub fn encode(src: &str, dest: &str, body: Value) -> String {
    json!({ "src": src, "dest": dest, "body": body }).to_string()
}

/// The body of an `error` reply, as Maelstrom defines it.
pub fn error_body(in_reply_to: u64, code: u64, text: &str) -> Value {
    json!({ "type": "error", "in_reply_to": in_reply_to, "code": code, "text": text })
}

/// A value's 64-bit hash for set digests (SplitMix64's finaliser: cheap, and every bit of the
/// value moves about half the bits of the hash, so XOR digests of different sets differ).
pub fn value_hash(value: i64) -> u64 {
    let mut z = (value as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
