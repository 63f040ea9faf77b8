//! Syslog over TCP, pure and synchronous: RFC 6587 framing (octet counting and LF-terminated
//! lines, told apart per message) and the two message formats, RFC 5424 and RFC 3164, with
//! plain text for everything else. "Need more bytes" is `Ok(None)`; a framing the server cannot
//! go on from is an `Err`, and the connection is closed.

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

/// What the start of a buffer says about its framing.
enum Header {
    NeedMore,
    Count { len: usize, header_len: usize },
    Line,
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
        if !self.skip_dropped(buf) {
            return Ok(None);
        }
        let blank = buf
            .iter()
            .position(|&b| b != b'\n' && b != b'\r')
            .unwrap_or(buf.len());
        buf.advance(blank);
        if buf.is_empty() {
            return Ok(None);
        }
        match self.header(buf)? {
            Header::NeedMore => Ok(None),
            Header::Count { len, header_len } => Ok(self.counted(buf, len, header_len)),
            Header::Line => Ok(self.line(buf)),
        }
    }

    /// What is left in `buf` when the connection has ended: a last line without its LF is a
    /// message; the start of an octet-counted frame is an error.
    ///
    /// # Errors
    /// [`ProtocolError::CutShort`] when the stream ended inside an octet-counted frame.
    pub fn finish(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        if let Skip::Bytes(missing) = self.skip {
            return Err(ProtocolError::CutShort { missing });
        }
        if buf.is_empty() || self.skip == Skip::ToLineEnd {
            buf.clear();
            return Ok(None);
        }
        if let Ok(Header::Count { len, header_len }) = self.header(buf) {
            let missing = header_len + len - buf.len();
            buf.clear();
            return Err(ProtocolError::CutShort { missing });
        }
        let mut message = buf.split().freeze();
        if message.last() == Some(&b'\r') {
            message.truncate(message.len() - 1);
        }
        Ok(Some(Frame {
            message,
            framing: Framing::NonTransparent,
            truncated: false,
        }))
    }

    /// Drops what is left of a truncated message; whether the decoder is past it.
    fn skip_dropped(&mut self, buf: &mut BytesMut) -> bool {
        match self.skip {
            Skip::Nothing => true,
            Skip::Bytes(n) => {
                let k = n.min(buf.len());
                buf.advance(k);
                self.skip = if n > k {
                    Skip::Bytes(n - k)
                } else {
                    Skip::Nothing
                };
                n == k
            }
            Skip::ToLineEnd => match buf.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    buf.advance(i + 1);
                    self.skip = Skip::Nothing;
                    true
                }
                None => {
                    buf.clear();
                    false
                }
            },
        }
    }

    fn header(&self, buf: &[u8]) -> Result<Header, ProtocolError> {
        let digits = buf.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > MAX_COUNT_DIGITS {
            return Ok(Header::Line);
        }
        match (buf.get(digits), buf.get(digits + 1)) {
            (None, _) | (Some(b' '), None) => return Ok(Header::NeedMore),
            (Some(b' '), Some(b'<')) => {}
            _ => return Ok(Header::Line),
        }
        let text = String::from_utf8_lossy(&buf[..digits]).into_owned();
        if buf[0] == b'0' {
            return Err(ProtocolError::BadOctetCount(text));
        }
        let count: u64 = text.parse().unwrap_or(u64::MAX);
        match usize::try_from(count) {
            Ok(len) if len <= self.max_frame => Ok(Header::Count {
                len,
                header_len: digits + 1,
            }),
            _ => Err(ProtocolError::OctetCountTooLarge {
                count,
                max: self.max_frame,
            }),
        }
    }

    fn counted(&mut self, buf: &mut BytesMut, len: usize, header_len: usize) -> Option<Frame> {
        let keep = len.min(self.max_message);
        if buf.len() < header_len + keep {
            return None;
        }
        buf.advance(header_len);
        let mut message = buf.split_to(keep).freeze();
        let truncated = len > keep;
        if truncated {
            self.skip = Skip::Bytes(len - keep);
        } else {
            // Senders such as rsyslog's omfwd end an octet-counted message with LF anyway.
            while matches!(message.last(), Some(b'\n' | b'\r')) {
                message.truncate(message.len() - 1);
            }
        }
        Some(Frame {
            message,
            framing: Framing::OctetCounting,
            truncated,
        })
    }

    fn line(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        let window = buf.len().min(self.max_message + 1);
        let (message, truncated) = match buf[..window].iter().position(|&b| b == b'\n') {
            Some(end) => {
                let mut message = buf.split_to(end).freeze();
                buf.advance(1);
                if message.last() == Some(&b'\r') {
                    message.truncate(end - 1);
                }
                (message, false)
            }
            None if buf.len() > self.max_message => {
                let message = buf.split_to(self.max_message).freeze();
                self.skip = Skip::ToLineEnd;
                self.skip_dropped(buf);
                (message, true)
            }
            None => return None,
        };
        Some(Frame {
            message,
            framing: Framing::NonTransparent,
            truncated,
        })
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
    let Some((pri, rest)) = parse_pri(message) else {
        return Syslog {
            format: Format::Plain,
            pri: None,
            timestamp: None,
            hostname: None,
            app_name: None,
            procid: None,
            msgid: None,
            structured_data: None,
            msg: message,
        };
    };
    parse_5424(pri, rest).unwrap_or_else(|| parse_3164(pri, rest))
}

/// `<PRIVAL>` with PRIVAL 0 to 191 in one to three digits.
fn parse_pri(message: &[u8]) -> Option<(u8, &[u8])> {
    let rest = message.strip_prefix(b"<")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if !(1..=3).contains(&digits) || rest.get(digits) != Some(&b'>') {
        return None;
    }
    let value: u16 = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let pri = u8::try_from(value).ok().filter(|&p| p <= 191)?;
    Some((pri, &rest[digits + 1..]))
}

/// Splits off one space-terminated token; `None` when it is empty.
fn token(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = input.iter().position(|&b| b == b' ')?;
    (end > 0).then(|| (&input[..end], &input[end + 1..]))
}

fn nil(field: &[u8]) -> Option<&[u8]> {
    (field != b"-").then_some(field)
}

fn parse_5424(pri: u8, rest: &[u8]) -> Option<Syslog<'_>> {
    let rest = rest.strip_prefix(b"1 ")?;
    let (timestamp, rest) = token(rest)?;
    let (hostname, rest) = token(rest)?;
    let (app_name, rest) = token(rest)?;
    let (procid, rest) = token(rest)?;
    let (msgid, rest) = token(rest)?;
    let sd_len = structured_data_len(rest)?;
    let (sd, rest) = rest.split_at(sd_len);
    let msg = match rest {
        [] => rest,
        [b' ', msg @ ..] => msg.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(msg),
        _ => return None,
    };
    Some(Syslog {
        format: Format::Rfc5424,
        pri: Some(pri),
        timestamp: nil(timestamp),
        hostname: nil(hostname),
        app_name: nil(app_name),
        procid: nil(procid),
        msgid: nil(msgid),
        structured_data: nil(sd),
        msg,
    })
}

/// The length of the STRUCTURED-DATA at the start of `input`: `-`, or one or more
/// `[ID PARAM="VALUE"...]` elements, where `\"`, `\\` and `\]` are escapes inside a value.
fn structured_data_len(input: &[u8]) -> Option<usize> {
    if input.first() == Some(&b'-') {
        return Some(1);
    }
    let mut i = 0;
    while input.get(i) == Some(&b'[') {
        let mut quoted = false;
        i += 1;
        loop {
            match *input.get(i)? {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                b']' if !quoted => break,
                _ => {}
            }
            i += 1;
        }
        i += 1;
    }
    (i > 0).then_some(i)
}

const MONTHS: [&[u8]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// `Mmm dd hh:mm:ss`, the day padded with a space.
fn is_3164_timestamp(t: &[u8]) -> bool {
    let digit = |i: usize| t[i].is_ascii_digit();
    t.len() == 15
        && MONTHS.contains(&&t[..3])
        && t[3] == b' '
        && (t[4] == b' ' || digit(4))
        && digit(5)
        && t[6] == b' '
        && digit(7)
        && digit(8)
        && t[9] == b':'
        && digit(10)
        && digit(11)
        && t[12] == b':'
        && digit(13)
        && digit(14)
}

/// `YYYY-MM-DDT`, the start of an RFC 3339 timestamp.
fn is_rfc3339_start(t: &[u8]) -> bool {
    t.len() > 11
        && t[..4].iter().all(u8::is_ascii_digit)
        && t[4] == b'-'
        && t[7] == b'-'
        && t[10] == b'T'
}

fn parse_3164(pri: u8, rest: &[u8]) -> Syslog<'_> {
    let mut parsed = Syslog {
        format: Format::Rfc3164,
        pri: Some(pri),
        timestamp: None,
        hostname: None,
        app_name: None,
        procid: None,
        msgid: None,
        structured_data: None,
        msg: rest,
    };
    let mut rest = if rest.len() > 15 && is_3164_timestamp(&rest[..15]) && rest[15] == b' ' {
        parsed.timestamp = Some(&rest[..15]);
        &rest[16..]
    } else if let Some((stamp, after)) = token(rest)
        && is_rfc3339_start(stamp)
    {
        // rsyslog's forwarding format: RFC 3164 with an RFC 3339 timestamp.
        parsed.timestamp = Some(stamp);
        after
    } else {
        return parsed;
    };
    if let Some((host, after)) = token(rest)
        && !host.ends_with(b":")
    {
        parsed.hostname = Some(host);
        rest = after;
    }
    if let Some((tag, after)) = token(rest)
        && let Some(tag) = tag.strip_suffix(b":")
    {
        match tag.iter().position(|&b| b == b'[') {
            Some(open) if tag.ends_with(b"]") => {
                parsed.app_name = Some(&tag[..open]);
                parsed.procid = Some(&tag[open + 1..tag.len() - 1]);
            }
            _ => parsed.app_name = Some(tag),
        }
        rest = after;
    }
    parsed.msg = rest;
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(decoder: &mut Decoder, input: &[u8]) -> Vec<Frame> {
        let mut buf = BytesMut::from(input);
        let mut frames = Vec::new();
        while let Some(frame) = decoder.decode(&mut buf).unwrap() {
            frames.push(frame);
        }
        frames
    }

    #[test]
    fn framings_are_told_apart_per_message() {
        let mut d = Decoder::new(100, 1000);
        let frames = all(&mut d, b"7 <13>abc42 is the answer\n\n<13>x\r\n5 <1>a\n");
        let got: Vec<&[u8]> = frames.iter().map(|f| &f.message[..]).collect();
        assert_eq!(
            got,
            [&b"<13>abc"[..], b"42 is the answer", b"<13>x", b"<1>a"]
        );
        assert_eq!(frames[0].framing, Framing::OctetCounting);
        assert_eq!(frames[1].framing, Framing::NonTransparent);
    }

    #[test]
    fn byte_by_byte_gives_the_same_frames() {
        let input = b"7 <13>abc42 is the answer\n13 <13>1 - - - -\n";
        let mut d = Decoder::new(100, 1000);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &b in input {
            buf.extend_from_slice(&[b]);
            while let Some(f) = d.decode(&mut buf).unwrap() {
                got.push(f.message);
            }
        }
        assert_eq!(got.len(), 3, "{got:?}");
    }

    #[test]
    fn long_messages_are_truncated_and_the_rest_dropped() {
        let mut d = Decoder::new(4, 1000);
        let frames = all(&mut d, b"abcdefgh\nok\n10 <123456789next\n");
        let got: Vec<(&[u8], bool)> = frames
            .iter()
            .map(|f| (&f.message[..], f.truncated))
            .collect();
        assert_eq!(
            got,
            [
                (&b"abcd"[..], true),
                (b"ok", false),
                (b"<123", true),
                (b"next", false)
            ]
        );
    }

    #[test]
    fn absurd_and_bad_counts_are_errors() {
        let mut d = Decoder::new(100, 1000);
        let mut buf = BytesMut::from(&b"99999999999 <13>x"[..]);
        assert!(matches!(
            d.decode(&mut buf),
            Err(ProtocolError::OctetCountTooLarge { .. })
        ));
        let mut buf = BytesMut::from(&b"012 <13>x"[..]);
        assert!(matches!(
            d.decode(&mut buf),
            Err(ProtocolError::BadOctetCount(_))
        ));
    }

    #[test]
    fn finish_keeps_a_last_line_and_reports_a_cut_frame() {
        let mut d = Decoder::new(100, 1000);
        let mut buf = BytesMut::from(&b"last"[..]);
        assert_eq!(d.finish(&mut buf).unwrap().unwrap().message, &b"last"[..]);
        let mut buf = BytesMut::from(&b"10 <13>"[..]);
        assert_eq!(
            d.finish(&mut buf),
            Err(ProtocolError::CutShort { missing: 6 })
        );
    }

    #[test]
    fn rfc5424() {
        let m = parse(
            b"<165>1 2003-10-11T22:14:15.003Z host app 42 ID47 [a b=\"c\\]\"] \xEF\xBB\xBFhi",
        );
        assert_eq!(m.format, Format::Rfc5424);
        assert_eq!(m.pri, Some(165));
        assert_eq!(m.hostname, Some(&b"host"[..]));
        assert_eq!(m.procid, Some(&b"42"[..]));
        assert_eq!(m.structured_data, Some(&b"[a b=\"c\\]\"]"[..]));
        assert_eq!(m.msg, b"hi");
        let m = parse(b"<13>1 - - - - - -");
        assert_eq!(
            (m.format, m.hostname, m.msg),
            (Format::Rfc5424, None, &b""[..])
        );
    }

    #[test]
    fn rfc3164_and_plain() {
        let m = parse(b"<13>Dec  1 10:21:12 box myapp[99]: hello there");
        assert_eq!(m.format, Format::Rfc3164);
        assert_eq!(m.timestamp, Some(&b"Dec  1 10:21:12"[..]));
        assert_eq!(m.hostname, Some(&b"box"[..]));
        assert_eq!(m.app_name, Some(&b"myapp"[..]));
        assert_eq!(m.procid, Some(&b"99"[..]));
        assert_eq!(m.msg, b"hello there");
        let m = parse(b"<13>2026-12-01T10:00:00+00:00 h t: fwd");
        assert_eq!(
            (m.timestamp, m.app_name, m.msg),
            (
                Some(&b"2026-12-01T10:00:00+00:00"[..]),
                Some(&b"t"[..]),
                &b"fwd"[..]
            )
        );
        let m = parse(b"<13>no timestamp");
        assert_eq!((m.format, m.msg), (Format::Rfc3164, &b"no timestamp"[..]));
        let m = parse(b"<999>x");
        assert_eq!(m.format, Format::Plain);
    }
}
