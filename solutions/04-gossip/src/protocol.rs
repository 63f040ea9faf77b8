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
    let value: Value = serde_json::from_str(line).map_err(|e| Bad {
        reply_to: None,
        error: ProtocolError::NotJson(e.to_string()),
    })?;
    let not_message = |why| Bad {
        reply_to: None,
        error: ProtocolError::NotAMessage(why),
    };
    let Value::Object(mut envelope) = value else {
        return Err(not_message("the line is not a JSON object"));
    };
    let src = match envelope.remove("src") {
        Some(Value::String(s)) => s,
        _ => return Err(not_message("`src` must be a string")),
    };
    let msg_id = envelope
        .get("body")
        .and_then(|b| b.get("msg_id"))
        .and_then(Value::as_u64);
    let reply_to = msg_id.map(|msg_id| ReplyTo {
        src: src.clone(),
        msg_id,
    });
    let bad = |error| Bad {
        reply_to: reply_to.clone(),
        error,
    };
    let dest = match envelope.remove("dest") {
        Some(Value::String(s)) => s,
        _ => return Err(bad(ProtocolError::NotAMessage("`dest` must be a string"))),
    };
    let Some(Value::Object(body)) = envelope.remove("body") else {
        return Err(bad(ProtocolError::NotAMessage("`body` must be an object")));
    };
    let Some(Value::String(ty)) = body.get("type") else {
        return Err(bad(ProtocolError::NotAMessage(
            "`body.type` must be a string",
        )));
    };
    let ty = ty.clone();
    let in_reply_to = body.get("in_reply_to").and_then(Value::as_u64);
    let payload = payload(&ty, &body).map_err(bad)?;
    Ok(Incoming {
        src,
        dest,
        msg_id,
        in_reply_to,
        payload,
    })
}

fn payload(ty: &str, body: &Map<String, Value>) -> Result<Payload, ProtocolError> {
    let field = |field: &'static str| {
        body.get(field).ok_or_else(|| ProtocolError::MissingField {
            ty: ty.to_owned(),
            field,
        })
    };
    let wrong = |field: &'static str, expected: &'static str| ProtocolError::BadField {
        ty: ty.to_owned(),
        field,
        expected,
    };
    let int = |field: &'static str| {
        field_value(body, ty, field)?
            .as_i64()
            .ok_or_else(|| wrong(field, "an integer"))
    };
    let u64_field = |field: &'static str| {
        field_value(body, ty, field)?
            .as_u64()
            .ok_or_else(|| wrong(field, "a non-negative integer"))
    };
    let ints = |field: &'static str| -> Result<Vec<i64>, ProtocolError> {
        let Value::Array(items) = field_value(body, ty, field)? else {
            return Err(wrong(field, "an array of integers"));
        };
        items
            .iter()
            .map(|v| {
                v.as_i64()
                    .ok_or_else(|| wrong(field, "an array of integers"))
            })
            .collect()
    };
    Ok(match ty {
        "init" => {
            let node_id = field("node_id")?
                .as_str()
                .ok_or_else(|| wrong("node_id", "a string"))?
                .to_owned();
            let node_ids = strings(field("node_ids")?)
                .ok_or_else(|| wrong("node_ids", "an array of strings"))?;
            if !node_ids.contains(&node_id) {
                return Err(wrong("node_ids", "an array of strings that holds node_id"));
            }
            Payload::Init { node_id, node_ids }
        }
        "echo" => Payload::Echo {
            echo: field("echo")?.clone(),
        },
        "topology" => {
            let Value::Object(map) = field("topology")? else {
                return Err(wrong("topology", "an object of arrays of strings"));
            };
            let mut topology = HashMap::with_capacity(map.len());
            for (node, neighbours) in map {
                let list = strings(neighbours)
                    .ok_or_else(|| wrong("topology", "an object of arrays of strings"))?;
                topology.insert(node.clone(), list);
            }
            Payload::Topology { topology }
        }
        "broadcast" => Payload::Broadcast {
            message: int("message")?,
        },
        "read" => Payload::Read,
        "gossip" => Payload::Gossip {
            values: ints("values")?,
        },
        "gossip_ok" => Payload::GossipOk,
        "sync" => Payload::Sync {
            count: u64_field("count")?,
            hash: u64_field("hash")?,
        },
        "sync_values" => Payload::SyncValues {
            values: ints("values")?,
        },
        "init_ok" | "echo_ok" | "topology_ok" | "broadcast_ok" | "read_ok" | "error" => {
            Payload::Ignored
        }
        other => return Err(ProtocolError::UnknownType(other.to_owned())),
    })
}

fn field_value<'a>(
    body: &'a Map<String, Value>,
    ty: &str,
    field: &'static str,
) -> Result<&'a Value, ProtocolError> {
    body.get(field).ok_or_else(|| ProtocolError::MissingField {
        ty: ty.to_owned(),
        field,
    })
}

fn strings(value: &Value) -> Option<Vec<String>> {
    value
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_broadcast() {
        let m = decode(
            r#"{"src":"c1","dest":"n1","body":{"type":"broadcast","msg_id":7,"message":42}}"#,
        )
        .unwrap();
        assert_eq!(m.payload, Payload::Broadcast { message: 42 });
        assert_eq!((m.src.as_str(), m.msg_id), ("c1", Some(7)));
    }

    #[test]
    fn says_where_to_reply() {
        let bad = decode(r#"{"src":"c1","dest":"n1","body":{"type":"broadcast","msg_id":3}}"#)
            .unwrap_err();
        assert_eq!(bad.reply_to.unwrap().msg_id, 3);
        assert_eq!(bad.error.code(), MALFORMED_REQUEST);
        let bad =
            decode(r#"{"src":"c1","dest":"n1","body":{"type":"cas","msg_id":4}}"#).unwrap_err();
        assert_eq!(bad.error.code(), NOT_SUPPORTED);
        assert!(decode("{").unwrap_err().reply_to.is_none());
    }
}
