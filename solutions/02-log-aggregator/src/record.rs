//! What one message becomes in the output file: one JSON object per line, or the message as
//! received.

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

fn text(bytes: Option<&[u8]>) -> Option<Cow<'_, str>> {
    bytes.map(String::from_utf8_lossy)
}

/// Appends `frame` to `out` as one line in `format`. A truncated message ends with
/// [`TRUNCATION_MARKER`] in raw output, and has `"truncated":true` in JSON; in raw output, each
/// LF inside the message is written as [`LF_ESCAPE`].
pub fn write(out: &mut Vec<u8>, format: OutputFormat, origin: &Origin, frame: &Frame) {
    match format {
        OutputFormat::Raw => {
            // An octet-counted or RELP message may hold LFs: written as they are, they would
            // let a sender forge whole records of its own. They are escaped as rsyslog does.
            let mut parts = frame.message.split(|&b| b == b'\n');
            if let Some(first) = parts.next() {
                out.extend_from_slice(first);
            }
            for part in parts {
                out.extend_from_slice(LF_ESCAPE);
                out.extend_from_slice(part);
            }
            if frame.truncated {
                out.extend_from_slice(TRUNCATION_MARKER);
            }
        }
        OutputFormat::Json => {
            let m = protocol::parse(&frame.message);
            let lossless = std::str::from_utf8(&frame.message).is_ok();
            let record = Record {
                received: &origin.received,
                peer: &origin.peer,
                transport: origin.transport,
                format: m.format.name(),
                facility: m.pri.map(|p| p >> 3),
                severity: m.pri.map(|p| p & 7),
                timestamp: text(m.timestamp),
                hostname: text(m.hostname),
                app_name: text(m.app_name),
                procid: text(m.procid),
                msgid: text(m.msgid),
                structured_data: text(m.structured_data),
                msg: String::from_utf8_lossy(m.msg),
                truncated: frame.truncated,
                raw_base64: (!lossless)
                    .then(|| base64::engine::general_purpose::STANDARD.encode(&frame.message)),
            };
            // Writing into a Vec cannot fail, and every field serializes.
            serde_json::to_writer(&mut *out, &record).expect("a record serializes");
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Framing;

    fn line(format: OutputFormat, message: &[u8], truncated: bool) -> String {
        let origin = Origin {
            received: "2026-01-01T00:00:00.000000Z".into(),
            peer: "127.0.0.1:9".into(),
            transport: "tcp",
        };
        let frame = Frame {
            message: bytes::Bytes::copy_from_slice(message),
            framing: Framing::NonTransparent,
            truncated,
        };
        let mut out = Vec::new();
        write(&mut out, format, &origin, &frame);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_has_the_fields_present() {
        let l = line(OutputFormat::Json, b"<165>1 - host app - - - hi", false);
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["facility"], 20);
        assert_eq!(v["severity"], 5);
        assert_eq!(v["hostname"], "host");
        assert_eq!(v["msg"], "hi");
        assert!(v.get("procid").is_none() && v.get("raw_base64").is_none());
    }

    #[test]
    fn invalid_utf8_is_kept_in_base64() {
        let l = line(OutputFormat::Json, b"caf\xe9", false);
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["msg"], "caf\u{fffd}");
        assert_eq!(v["raw_base64"], "Y2Fm6Q==");
    }

    #[test]
    fn raw_marks_truncation() {
        assert_eq!(line(OutputFormat::Raw, b"abc", true), "abc[truncated]\n");
    }
}
