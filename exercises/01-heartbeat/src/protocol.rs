//! The wire protocol: what travels in a datagram, and how it is checked.
//!
//! Your task (stages 1, 2 and 5): write
//! [`validate_node_id`], [`decode`], [`encode`] and [`encode_page`]. The types are given; read
//! their serde attributes, they are half the contract. The book's page "The contract" has every rule.
//!
//! Everything here is pure and synchronous, so it can be tested without a socket. One datagram
//! carries exactly one JSON message; UDP keeps the boundaries for us, so there is no framing.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The largest request datagram the server accepts, in bytes. Anything longer is rejected whole:
/// a heartbeat is tiny, and a bound on input is what keeps a server's memory predictable.
pub const MAX_DATAGRAM: usize = 1024;

/// The largest status reply the server sends, in bytes. It stays under the 65,507-byte UDP limit
/// with room to spare; a table that does not fit is sent in pages.
pub const MAX_REPLY: usize = 60_000;

/// The longest node id, in bytes.
pub const MAX_NODE_ID: usize = 64;

/// A heartbeat: "I, `node`, am alive; this is my `seq`-th beat, sent at `sent_ms`".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// Who is speaking: 1 to [`MAX_NODE_ID`] bytes, no whitespace or control characters.
    pub node: String,
    /// Starts at 1 and grows by one per beat; gaps and repeats reveal loss and duplication.
    pub seq: u64,
    /// The sender's wall clock, in milliseconds since the Unix epoch. Informative only: clocks
    /// of different machines disagree, so the server never uses it to decide liveness.
    pub sent_ms: u64,
    /// Free-form facts about the node (a version, a role): a JSON object, bounded by
    /// [`MAX_DATAGRAM`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
}

/// A node's `meta`: a JSON object kept as the text it arrived in.
///
/// Not a `Map<String, Value>`: a parsed map costs a string, a value and a tree node per key,
/// about 17 times its size on the wire, and a server keeps one per node. The text costs its own
/// length, and a status reply copies it out as it came in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Meta(Box<RawValue>);

impl Meta {
    /// The `meta` holding `facts`.
    pub fn from_map(facts: &Map<String, Value>) -> Meta {
        // A map of JSON values always serialises, and what it serialises to is valid JSON.
        let text = serde_json::to_string(facts).expect("a JSON map always serialises");
        Meta(RawValue::from_string(text).expect("serde_json writes valid JSON"))
    }

    /// Its JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// Its size in bytes: what the server counts against its limits on `meta`.
    pub fn len(&self) -> usize {
        self.0.get().len()
    }

    /// Whether it is empty (never, for a valid object: `{}` is two bytes).
    pub fn is_empty(&self) -> bool {
        self.0.get().is_empty()
    }

    /// Whether it is a JSON object, as `meta` must be.
    pub fn is_object(&self) -> bool {
        self.0.get().starts_with('{')
    }
}

impl PartialEq for Meta {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

/// The only operation a status request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Ask for a page of the membership table.
    Status,
}

/// A request for one page of the membership table: `{"op":"status"}`, then
/// `{"op":"status","after":"<last node of the previous page>"}` until a reply's `next` is null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    /// Always [`Op::Status`].
    pub op: Op,
    /// Only nodes whose id sorts after this one; `None` for the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// Any datagram a server can receive, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// A node says it is alive.
    Heartbeat(Heartbeat),
    /// Someone asks for the membership table.
    Status(StatusRequest),
}

/// Why a datagram was rejected. The server counts and logs these; it never answers them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Zero bytes.
    #[error("empty datagram")]
    Empty,
    /// Over [`MAX_DATAGRAM`].
    #[error("datagram of {len} bytes or more is over the {MAX_DATAGRAM}-byte limit")]
    TooLong {
        /// How many bytes arrived (the receiver may have cut it at `MAX_DATAGRAM + 1`).
        len: usize,
    },
    /// The bytes are not UTF-8 text.
    #[error("datagram is not UTF-8")]
    NotUtf8,
    /// Not JSON, or JSON of the wrong shape (a missing, unknown or mistyped field).
    #[error("not a heartbeat or status request: {0}")]
    Malformed(String),
    /// A well-formed heartbeat whose node id breaks the rules.
    #[error("bad node id: {0}")]
    BadNodeId(NodeIdError),
    /// A heartbeat whose `meta` is not a JSON object.
    #[error("meta is not a JSON object")]
    MetaNotObject,
}

/// What is wrong with a node id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NodeIdError {
    /// Zero bytes.
    #[error("it is empty")]
    Empty,
    /// Over [`MAX_NODE_ID`] bytes.
    #[error("it is longer than {MAX_NODE_ID} bytes")]
    TooLong,
    /// Holds whitespace or a control character, which would garble logs and tables.
    #[error("it holds whitespace or a control character")]
    BadChar,
}

/// Checks a node id against the rules in [`Heartbeat::node`].
pub fn validate_node_id(node: &str) -> Result<(), NodeIdError> {
    // TODO: return the first rule `node` breaks, in this order: empty (`str::is_empty`), longer
    // than MAX_NODE_ID bytes (`str::len` counts bytes, which is what a datagram carries), holding
    // whitespace or a control character (`str::chars` with `char::is_whitespace` and
    // `char::is_control`). Otherwise `Ok(())`.
    todo!()
}

/// Decodes one datagram into a [`Request`], or says precisely why it cannot.
pub fn decode(datagram: &[u8]) -> Result<Request, ProtocolError> {
    // TODO: the contract's "Bad input", each reason its own `ProtocolError`, the cheap checks
    // first: the size (empty, past MAX_DATAGRAM), UTF-8, then a `Heartbeat` (its node id valid:
    // `BadNodeId`; its `meta` an object: `MetaNotObject`) or a `StatusRequest`. JSON that is
    // neither is `Malformed` with the heartbeat's error text: heartbeats are what senders mostly
    // mean to send. The types' `#[serde(deny_unknown_fields)]` refuses an extra field.
    // `std::str::from_utf8`, `serde_json::from_str`, `validate_node_id`, `Meta::is_object`.
    todo!()
}

/// Whether a datagram looks like a status request, by its first key alone (`{"op"`, spaces
/// allowed): the server's cheap test for a request it would refuse anyway, when no status reply
/// may be sent, so that a flood of them costs no JSON parse.
pub fn looks_like_status(datagram: &[u8]) -> bool {
    // TODO: whether the datagram is a JSON object whose first key is `"op"`, allowing ASCII
    // whitespace where JSON does, by a look at its first bytes and no parsing
    // (`<[u8]>::trim_ascii_start`, `strip_prefix`, `starts_with`).
    todo!()
}

/// Encodes a message as the bytes of one datagram.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // TODO: `serde_json::to_vec`. It cannot fail for these types (string keys only), so
    // `expect` with a message that says so is the honest choice. It does not refuse a float
    // that is NaN or infinite either: it writes `null`. So never let one reach a row.
    todo!()
}

/// Whether a node is currently believed alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Heard from recently enough.
    Alive,
    /// Declared dead by the failure detector.
    Dead,
}

/// One row of the membership table, as a status reply carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node id.
    pub node: String,
    /// Alive or dead.
    pub state: NodeState,
    /// Where its last heartbeat came from.
    pub addr: SocketAddr,
    /// Milliseconds since its last valid heartbeat, by the server's monotonic clock.
    pub last_seen_ms_ago: u64,
    /// The highest sequence number seen since the last reset of its window.
    pub last_seq: u64,
    /// Distinct heartbeats received (duplicates excluded).
    pub received: u64,
    /// Sequence numbers skipped and not (yet) filled by a late arrival.
    pub lost: u64,
    /// Heartbeats whose sequence number had been seen already.
    pub duplicates: u64,
    /// Heartbeats that arrived after a later one and filled a gap.
    pub reordered: u64,
    /// Times the node started counting again from a much lower sequence number.
    pub restarts: u64,
    /// The mean and standard deviation of its last
    /// [`PHI_WINDOW`](crate::detector::PHI_WINDOW) intervals between heartbeats (since it last
    /// recovered), or `None` before two are known.
    pub interval_ms: Option<Intervals>,
    /// Under `--detector phi`, phi for its silence so far (`last_seen_ms_ago`); `None` under
    /// the fixed timeout, or before two intervals are known.
    pub phi: Option<f64>,
    /// The `meta` of its last heartbeat, unless it was over the server's limits on `meta`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
}

/// The rhythm of a node's heartbeats: the mean and standard deviation of the intervals between
/// them, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Intervals {
    /// The mean interval.
    pub mean: f64,
    /// Their standard deviation (the population's, over the window).
    pub sd: f64,
}

/// The server's own counters, at the head of every status reply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerStats {
    /// Nodes in the table.
    pub nodes: u64,
    /// Of which alive.
    pub alive: u64,
    /// Of which dead.
    pub dead: u64,
    /// Valid heartbeat datagrams received, duplicates and refused ones included.
    pub received: u64,
    /// Datagrams rejected as malformed.
    pub rejected: u64,
    /// Status requests received.
    pub status_requests: u64,
    /// Status requests left unanswered by the rate limit.
    pub status_dropped: u64,
    /// Heartbeats from new nodes refused because the table was full.
    pub nodes_refused: u64,
    /// Heartbeats whose `meta` was not kept: over the limit for one node, or for the table.
    pub meta_dropped: u64,
    /// Bytes of `meta` the table holds.
    pub meta_bytes: u64,
    /// Events not printed because the queue to stdout was full (the reader is too slow).
    pub events_dropped: u64,
    /// Milliseconds since the server started.
    pub uptime_ms: u64,
    /// `timeout` or `phi`.
    pub detector: String,
    /// The configured timeout, in milliseconds.
    pub timeout_ms: u64,
}

/// One page of the membership table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReply {
    /// The server's counters.
    pub server: ServerStats,
    /// Nodes in id order.
    pub nodes: Vec<NodeStatus>,
    /// The `after` to ask for the next page with, or `None` on the last page.
    pub next: Option<String>,
}

/// Encodes as many of `nodes` as fit in one [`MAX_REPLY`]-byte reply, in order.
///
/// Returns the datagram; its `next` names the last node included when some were left out.
pub fn encode_page(server: &ServerStats, nodes: impl IntoIterator<Item = NodeStatus>) -> Vec<u8> {
    // TODO: one `StatusReply` document of at most MAX_REPLY bytes: the rows in order, as many as
    // fit, and `next` the id of the last row sent when some were left out, `null` when all fitted
    // (contract: "Status"). serde cannot stop at a size, so build the JSON around `encode` of each
    // part; parse the result back with `serde_json::from_slice::<StatusReply>` in a test.
    todo!()
}

/// A membership event, printed by the server as one JSON line on stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    /// First heartbeat from a node.
    Joined {
        /// The node id.
        node: String,
        /// Where the heartbeat came from.
        addr: SocketAddr,
        /// Server wall clock, ms since the Unix epoch.
        at_ms: u64,
    },
    /// The failure detector gave up on a node.
    Dead {
        /// The node id.
        node: String,
        /// Server wall clock, ms since the Unix epoch.
        at_ms: u64,
        /// How long the node had been silent, in ms.
        silent_ms: u64,
    },
    /// A dead node was heard from again.
    Recovered {
        /// The node id.
        node: String,
        /// Where the heartbeat came from.
        addr: SocketAddr,
        /// Server wall clock, ms since the Unix epoch.
        at_ms: u64,
        /// How long it had been dead, in ms.
        down_ms: u64,
    },
    /// Events were left out just before this one: stdout was read too slowly to take them.
    Dropped {
        /// How many were left out.
        events: u64,
        /// Server wall clock, ms since the Unix epoch.
        at_ms: u64,
    },
}
