//! What one message becomes in the output file: one JSON object per line, or the message as
//! received.
//!
//! Your task (stages 1, 3 and 4): [`write`].

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::SystemTime;

use base64::Engine as _;
use serde::Serialize;

use crate::protocol::{self, Frame, TRUNCATION_MARKER};

/// How messages are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// One JSON object per line, with the parsed header fields.
    Json,
    /// The message as received (an LF inside it written as [`LF_ESCAPE`]), then LF.
    Raw,
}

/// What an LF inside a message becomes in raw output, as rsyslog writes it: each record stays
/// one line, and a sender cannot forge a record by putting an LF in an octet-counted message.
pub const LF_ESCAPE: &[u8] = b"#012";

/// Where a batch of messages came from, and when: one read from one connection.
#[derive(Debug, Clone)]
pub struct Origin {
    /// When the bytes were read, in RFC 3339 with microseconds.
    pub received: String,
    /// The sender's address.
    pub peer: String,
    /// `tcp` or `relp`.
    pub transport: &'static str,
}

impl Origin {
    /// Bytes read from `peer` just now.
    pub fn now(peer: SocketAddr, transport: &'static str) -> Origin {
        Origin {
            received: humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
            peer: peer.to_string(),
            transport,
        }
    }
}

/// One line of JSON output. Fields a message does not have are left out.
#[derive(Serialize)]
struct Record<'a> {
    received: &'a str,
    peer: &'a str,
    transport: &'static str,
    format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    facility: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_name: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    procid: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    msgid: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    structured_data: Option<Cow<'a, str>>,
    msg: Cow<'a, str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
    /// The whole message as received, when it is not valid UTF-8: `msg` and the header fields
    /// then hold U+FFFD for the bytes that are not, and this keeps every byte.
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_base64: Option<String>,
}

/// Appends `frame` to `out` as one line in `format`. A truncated message ends with
/// [`TRUNCATION_MARKER`] in raw output, and has `"truncated":true` in JSON; in raw output, each
/// LF inside the message is written as [`LF_ESCAPE`].
pub fn write(out: &mut Vec<u8>, format: OutputFormat, origin: &Origin, frame: &Frame) {
    // TODO: (stage 1) one line per message as the contract's "Parsing and output" says: `raw` (LFs
    // written as `LF_ESCAPE`, the truncation marker) or one JSON `Record` (stage 3 fills it from
    // `protocol::parse`; until then `Format::Plain` will do). (Stage 4) `raw_base64` only for a
    // message that is not UTF-8. `String::from_utf8_lossy`,
    // `base64::engine::general_purpose::STANDARD`, `serde_json::to_writer`.
    todo!()
}
