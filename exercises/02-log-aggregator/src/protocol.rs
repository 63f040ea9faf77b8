//! Syslog over TCP, pure and synchronous: RFC 6587 framing (octet counting and LF-terminated
//! lines, told apart per message) and the two message formats, RFC 5424 and RFC 3164, with
//! plain text for everything else. "Need more bytes" is `Ok(None)`; a framing the server cannot
//! go on from is an `Err`, and the connection is closed.
//!
//! Your task (stages 1, 3 and 4): [`Decoder::decode`], [`Decoder::finish`] and [`parse`].

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

/// The longest message kept, in bytes; the rest of a longer one is dropped and the message is
/// marked as truncated.
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;

/// The largest octet count (or RELP DATALEN) accepted, in bytes; a larger one closes the
/// connection, since no honest sender announces it.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// Appended to a message that was cut at `--max-message`, so a reader sees it was.
pub const TRUNCATION_MARKER: &[u8] = b"[truncated]";

/// An octet count has at most this many digits; a longer run of digits is plain text.
const MAX_COUNT_DIGITS: usize = 20;

/// Input a connection cannot go on from.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// An octet count that is not a valid number (it starts with `0`).
    #[error("octet count {0:?} is not a number of bytes")]
    BadOctetCount(String),
    /// An octet count larger than any message accepted.
    #[error("octet count {count} is absurd (the largest frame accepted is {max} bytes)")]
    OctetCountTooLarge {
        /// The count announced.
        count: u64,
        /// The largest accepted.
        max: usize,
    },
    /// The connection ended inside an octet-counted frame.
    #[error("connection closed {missing} bytes short of the octet-counted frame")]
    CutShort {
        /// How many bytes the frame still lacked.
        missing: usize,
    },
    /// A RELP frame that does not follow the grammar.
    #[error("malformed RELP frame: {0}")]
    BadRelpFrame(&'static str),
    /// A RELP DATALEN larger than any frame accepted.
    #[error("RELP DATALEN {len} is larger than the largest frame accepted ({max} bytes)")]
    RelpFrameTooLarge {
        /// The DATALEN announced.
        len: u64,
        /// The largest accepted.
        max: usize,
    },
}

/// How a message was framed on the wire (RFC 6587).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `LEN SP MSG` (section 3.4.1).
    OctetCounting,
    /// `MSG LF` (section 3.4.2).
    NonTransparent,
}

/// One message taken off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The message, without its framing, cut to `max_message` bytes.
    pub message: Bytes,
    /// How it was framed.
    pub framing: Framing,
    /// Whether bytes past `max_message` were dropped.
    pub truncated: bool,
}

/// What is left of a message that was too long: dropped as it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    Nothing,
    Bytes(usize),
    ToLineEnd,
}

/// Splits a byte stream into syslog messages, whatever mix of framings the sender uses. Its
/// memory is bounded: it holds at most one message of `max_message` bytes and a header.
#[derive(Debug, Clone)]
pub struct Decoder {
    max_message: usize,
    max_frame: usize,
    skip: Skip,
}

impl Decoder {
    /// A decoder that keeps messages up to `max_message` bytes and refuses octet counts above
    /// `max_frame`.
    pub fn new(max_message: usize, max_frame: usize) -> Decoder {
        Decoder {
            max_message,
            max_frame: max_frame.max(max_message),
            skip: Skip::Nothing,
        }
    }

    /// Takes the next whole message off the front of `buf`: `Ok(None)` when it needs more
    /// bytes. An octet-counted frame is told by `DIGITS SP <` (a count, then a syslog PRI);
    /// anything else runs to the next LF. Empty lines are skipped; a CR before the LF is not
    /// part of the message.
    ///
    /// # Errors
    /// [`ProtocolError::BadOctetCount`] or [`ProtocolError::OctetCountTooLarge`]: the stream
    /// cannot be followed any further.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        // TODO: (stage 1) the next whole message, LF-terminated (a CR before the LF dropped, blank
        // lines skipped), or `Ok(None)` until there is one. (Stage 3) octet counting as the
        // contract's "Framing" defines it, trailing LFs and CRs inside the count dropped. (Stage 4)
        // the bounds of "Limits": a message past `max_message` is cut, marked `truncated`, and the
        // rest dropped as it arrives (`self.skip`); a bad count is `BadOctetCount` or
        // `OctetCountTooLarge`. `BytesMut::split_to`, `Bytes::freeze`, `Buf::advance`.
        todo!()
    }

    /// What is left in `buf` when the connection has ended: a last line without its LF is a
    /// message; the start of an octet-counted frame is an error.
    ///
    /// # Errors
    /// [`ProtocolError::CutShort`] when the stream ended inside an octet-counted frame.
    pub fn finish(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        // TODO: (stage 1) Try `decode` first. Then, what is left is a last line without its LF (a
        // message), or the start of an octet-counted frame (`CutShort`), or nothing.
        todo!()
    }
}

/// Which format a message was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The syslog protocol, RFC 5424: `<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG`.
    Rfc5424,
    /// BSD syslog, RFC 3164: `<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG`.
    Rfc3164,
    /// Anything else: the whole message is the text.
    Plain,
}

impl Format {
    /// The name written in the JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Format::Rfc5424 => "rfc5424",
            Format::Rfc3164 => "rfc3164",
            Format::Plain => "plain",
        }
    }
}

/// A message's parts, borrowed from it. A header field absent from the message (or the
/// RFC 5424 NILVALUE `-`) is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Syslog<'a> {
    /// The format it was read as.
    pub format: Format,
    /// The PRI value, `facility * 8 + severity`.
    pub pri: Option<u8>,
    /// The timestamp, as written.
    pub timestamp: Option<&'a [u8]>,
    /// The sender's host name.
    pub hostname: Option<&'a [u8]>,
    /// RFC 5424 APP-NAME, or the RFC 3164 tag.
    pub app_name: Option<&'a [u8]>,
    /// RFC 5424 PROCID, or the RFC 3164 `[PID]`.
    pub procid: Option<&'a [u8]>,
    /// RFC 5424 MSGID.
    pub msgid: Option<&'a [u8]>,
    /// RFC 5424 STRUCTURED-DATA, as written.
    pub structured_data: Option<&'a [u8]>,
    /// The free-form message (an RFC 5424 UTF-8 BOM removed).
    pub msg: &'a [u8],
}

/// Reads `message` as RFC 5424, else RFC 3164 (anything with a valid PRI), else plain text.
/// Never fails: every message is kept.
pub fn parse(message: &[u8]) -> Syslog<'_> {
    // TODO: (stage 3) the fields of the contract's "Parsing and output": RFC 5424, else RFC 3164
    // (the host only after a timestamp), else plain; a PRI is 0 to 191, and nothing is ever dropped
    // (what does not fit a header is `msg`). Small helpers that split off one token and return
    // `Option` keep it short.
    todo!()
}
