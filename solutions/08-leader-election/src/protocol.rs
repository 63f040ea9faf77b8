//! The wire format: one JSON object per UDP datagram, tagged by `type`, and the JSON events a
//! node prints. Pure and synchronous: no sockets, no clocks.

use serde::{Deserialize, Serialize};

/// The longest node id, in bytes.
pub const MAX_ID_BYTES: usize = 64;

/// The highest term a message may carry: JSON numbers are exact up to 2^53, and a term that
/// high can only be a forgery or a bug, never the result of elections.
pub const MAX_TERM: u64 = 1 << 53;

/// Why a datagram was dropped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// Not JSON, or not one of the messages below.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A node id that is empty, too long or holds whitespace or control characters.
    #[error("invalid node id {0:?}")]
    BadId(String),
    /// A term above [`MAX_TERM`].
    #[error("term {0} is out of range")]
    TermOutOfRange(u64),
}

/// A message between nodes, or a status request from a tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// Sent by every node to every peer each heartbeat interval: liveness and priority; from
    /// the leader, also its authority for `term` (the `leader` field names itself).
    Heartbeat {
        /// The sender's id.
        from: String,
        /// The sender's current term.
        term: u64,
        /// The sender's priority (higher wins).
        priority: u64,
        /// The leader the sender follows, or itself if it leads; `null` if none.
        leader: Option<String>,
        /// The sender's heartbeat counter, echoed by acks.
        seq: u64,
    },
    /// A follower's answer to its leader's heartbeat `seq`: what renews the leader's lease.
    Ack {
        /// The sender's id.
        from: String,
        /// The sender's current term.
        term: u64,
        /// The heartbeat acknowledged.
        seq: u64,
    },
    /// "Would you vote for me in `term`?" Changes no state at the voter (pre-vote).
    Prevote {
        /// The candidate's id.
        from: String,
        /// The term the candidate would stand in: its current term plus one.
        term: u64,
        /// The candidate's priority.
        priority: u64,
    },
    /// The answer to a prevote.
    PrevoteReply {
        /// The voter's id.
        from: String,
        /// The term asked about if granted, else the voter's current term.
        term: u64,
        /// Whether the voter would vote.
        granted: bool,
    },
    /// A request for a vote in `term`.
    Vote {
        /// The candidate's id.
        from: String,
        /// The term of the election.
        term: u64,
        /// The candidate's priority.
        priority: u64,
    },
    /// The answer to a vote request, sent only once the vote is on disk.
    VoteReply {
        /// The voter's id.
        from: String,
        /// The voter's current term.
        term: u64,
        /// Whether the vote was granted.
        granted: bool,
    },
    /// A leader stepping down in favour of `to`, a live node of higher priority.
    Resign {
        /// The leader's id.
        from: String,
        /// Its term.
        term: u64,
        /// The node it hands over to.
        to: String,
    },
    /// A status request, from any address.
    Status,
}

impl Message {
    /// The sender's id, for every message between nodes.
    pub fn from(&self) -> Option<&str> {
        match self {
            Message::Heartbeat { from, .. }
            | Message::Ack { from, .. }
            | Message::Prevote { from, .. }
            | Message::PrevoteReply { from, .. }
            | Message::Vote { from, .. }
            | Message::VoteReply { from, .. }
            | Message::Resign { from, .. } => Some(from),
            Message::Status => None,
        }
    }

    /// The term a message carries, if any.
    pub fn term(&self) -> Option<u64> {
        match self {
            Message::Heartbeat { term, .. }
            | Message::Ack { term, .. }
            | Message::Prevote { term, .. }
            | Message::PrevoteReply { term, .. }
            | Message::Vote { term, .. }
            | Message::VoteReply { term, .. }
            | Message::Resign { term, .. } => Some(*term),
            Message::Status => None,
        }
    }

    /// Whether it belongs to an election (what "messages per election" counts).
    pub fn is_election(&self) -> bool {
        matches!(
            self,
            Message::Prevote { .. }
                | Message::PrevoteReply { .. }
                | Message::Vote { .. }
                | Message::VoteReply { .. }
        )
    }
}

/// Checks a node id: 1 to [`MAX_ID_BYTES`] bytes, no whitespace or control characters.
///
/// # Errors
/// [`ProtocolError::BadId`] otherwise.
pub fn validate_id(id: &str) -> Result<(), ProtocolError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && !id.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(ProtocolError::BadId(id.to_owned()))
    }
}

/// Decodes one datagram.
///
/// # Errors
/// When it is not a message of this protocol, names an invalid id or carries a term above
/// [`MAX_TERM`].
pub fn decode(datagram: &[u8]) -> Result<Message, ProtocolError> {
    let message: Message =
        serde_json::from_slice(datagram).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    if let Some(from) = message.from() {
        validate_id(from)?;
    }
    if let Message::Resign { to, .. } = &message {
        validate_id(to)?;
    }
    if let Some(term) = message.term()
        && term > MAX_TERM
    {
        return Err(ProtocolError::TermOutOfRange(term));
    }
    Ok(message)
}

/// Encodes a message as one datagram.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail: no maps with non-string keys, no I/O.
    serde_json::to_vec(message).expect("a message always serialises")
}

/// A node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Follows a leader, or waits for one.
    Follower,
    /// Asks for votes.
    Candidate,
    /// Leads its term.
    Leader,
}

/// A line a node prints on stdout whenever its role, term or leader changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The new role: `follower`, `candidate` or `leader`.
    pub event: Role,
    /// The node that prints it.
    pub node: String,
    /// Its term.
    pub term: u64,
    /// The leader it follows (itself if it leads), or `null`.
    pub leader: Option<String>,
    /// Why: `start`, `heartbeat`, `elected`, `election`, `lease`, `higher_term`, `resign`,
    /// `preempt`, `bully` (the contract's table says when each is used).
    pub reason: String,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub time_ms: u64,
}

/// What a peer looks like from one node, in a status reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Its id.
    pub id: String,
    /// Its address.
    pub addr: String,
    /// Its priority, once heard.
    pub priority: Option<u64>,
    /// Milliseconds since it was last heard, or `null` if never.
    pub last_heard_ms: Option<u64>,
    /// Whether it was heard within the election timeout.
    pub alive: bool,
}

/// Counts of dropped datagrams, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    /// Not JSON or not a message of this protocol (bad id, term out of range).
    pub malformed: u64,
    /// From an id that is not a member.
    pub non_member: u64,
    /// Naming a member but from another address than the member's.
    pub forged: u64,
    /// Longer than `--max-message`.
    pub oversized: u64,
}

/// The answer to [`Message::Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    /// Always `status_reply`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The node's id.
    pub id: String,
    /// Its priority.
    pub priority: u64,
    /// `safe` or `bully`.
    pub algorithm: String,
    /// Its role.
    pub role: Role,
    /// Its term.
    pub term: u64,
    /// Whom it voted for in `term`.
    pub voted_for: Option<String>,
    /// The leader it follows.
    pub leader: Option<String>,
    /// Its peers.
    pub peers: Vec<PeerStatus>,
    /// Dropped datagrams.
    pub dropped: Dropped,
}

/// A request to the fencing-token store (`resource`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ResourceRequest {
    /// Sets `key` to `value`, if `token` is at least the highest token seen.
    Write {
        /// The writer's fencing token: a leader's term.
        token: u64,
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Who writes, for the store's events.
        #[serde(default)]
        from: Option<String>,
    },
    /// Reads `key`.
    Read {
        /// The key.
        key: String,
    },
}

/// The store's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceReply {
    /// Whether the request was carried out.
    pub ok: bool,
    /// The highest token seen (after this request).
    pub highest: u64,
    /// For a read: the value, or `null` if the key was never written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Why the request was refused: `stale token`, `too many keys`, or a parse error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_nonsense() {
        let m = Message::Vote {
            from: "a".into(),
            term: 3,
            priority: 7,
        };
        let bytes = encode(&m);
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            r#"{"type":"vote","from":"a","term":3,"priority":7}"#
        );
        assert_eq!(decode(&bytes), Ok(m));
        assert_eq!(decode(br#"{"type":"status"}"#), Ok(Message::Status));
        assert!(matches!(decode(b"{"), Err(ProtocolError::Malformed(_))));
        assert!(matches!(
            decode(br#"{"type":"ack","from":"a b","term":1,"seq":1}"#),
            Err(ProtocolError::BadId(_))
        ));
        assert!(matches!(
            decode(br#"{"type":"ack","from":"a","term":18446744073709551615,"seq":1}"#),
            Err(ProtocolError::TermOutOfRange(_))
        ));
    }
}
