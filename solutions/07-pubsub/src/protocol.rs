//! The NATS client protocol: parsing what a client sends, encoding what the broker sends, and
//! the other way round for this crate's own clients.
//!
//! Pure and synchronous. Every operation is one control line (`VERB args\r\n`, verbs in any
//! case, arguments separated by spaces or tabs); `PUB` and `MSG` are followed by exactly as many
//! payload bytes as they announce and `\r\n`, so payloads are binary-safe. Parsing distinguishes
//! "not enough bytes yet" (`Ok(None)`: read more and try again) from "malformed" (`Err`: the
//! broker answers `-ERR` and closes, since the stream can no longer be framed).

use serde::Deserialize;

/// The longest control line, in bytes, as in `nats-server`.
pub const MAX_CONTROL_LINE: usize = 4096;

/// The default largest payload, in bytes (1 MiB, as in `nats-server`); announced in `INFO`.
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

/// Why the broker refuses what a client sent. The text is what follows `-ERR ` (quoted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A verb the protocol does not have, or a payload not followed by `\r\n`. Closes.
    #[error("Unknown Protocol Operation")]
    UnknownOperation,
    /// A verb with arguments that do not parse (a missing size, a size that is not a number, a
    /// `CONNECT` that is not JSON). Closes.
    #[error("Parser Error")]
    Parser,
    /// A control line longer than [`MAX_CONTROL_LINE`]. Closes. (The text is `nats-server`'s.)
    #[error("maximum control line exceeded")]
    ControlLine,
    /// A `PUB` announcing more than the maximum payload. Closes.
    #[error("Maximum Payload Violation")]
    MaxPayload,
}

impl ProtocolError {
    /// The whole `-ERR` line this error is sent as.
    pub fn line(&self) -> Vec<u8> {
        err_line(&self.to_string())
    }
}

/// `-ERR 'TEXT'\r\n`.
pub fn err_line(text: &str) -> Vec<u8> {
    format!("-ERR '{text}'\r\n").into_bytes()
}

/// The options of a client's `CONNECT`. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ConnectOptions {
    /// Acknowledge every operation with `+OK`.
    pub verbose: bool,
    /// Extra checks. `nats-server` checks a `PUB`'s subject only in pedantic mode (its
    /// default); this broker always does, so the flag changes nothing here.
    pub pedantic: bool,
    /// Deliver the client's own messages back to it when it subscribes to them.
    pub echo: bool,
    /// A name for logs.
    pub name: Option<String>,
}

impl Default for ConnectOptions {
    /// What a client has before it sends `CONNECT`, and for the fields a `CONNECT` leaves out:
    /// like `nats-server`, verbose and pedantic.
    fn default() -> Self {
        ConnectOptions {
            verbose: true,
            pedantic: true,
            echo: true,
            name: None,
        }
    }
}

/// One operation from a client, borrowing from the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp<'a> {
    /// `CONNECT {json}`.
    Connect(ConnectOptions),
    /// `PUB subject [reply] size` and the payload.
    Pub {
        /// Where to publish.
        subject: &'a [u8],
        /// Where answers should go, passed on to subscribers.
        reply: Option<&'a [u8]>,
        /// The message.
        payload: &'a [u8],
    },
    /// `SUB subject [queue] sid`.
    Sub {
        /// What to receive: a subject, possibly with wildcards.
        subject: &'a [u8],
        /// The queue group: each message goes to one member of it.
        queue: Option<&'a [u8]>,
        /// The client's name for this subscription.
        sid: &'a [u8],
    },
    /// `UNSUB sid [max]`.
    Unsub {
        /// The subscription.
        sid: &'a [u8],
        /// Remove it after this many messages in all, instead of now.
        max: Option<u64>,
    },
    /// `PING`.
    Ping,
    /// `PONG`.
    Pong,
    /// `INFO`, `+OK` or `-ERR` sent by a client: accepted and ignored, as `nats-server` does.
    Ignored,
}

/// A parsed operation and how many bytes of the buffer it took.
pub type Parsed<'a, T> = (T, usize);

/// The control line at the front of `buf` (without `\r\n` or `\n`) and the bytes it used.
fn control_line(buf: &[u8]) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(end) if end > MAX_CONTROL_LINE => Err(ProtocolError::ControlLine),
        Some(end) => {
            let text = &buf[..end];
            Ok(Some((text.strip_suffix(b"\r").unwrap_or(text), end + 1)))
        }
        None if buf.len() > MAX_CONTROL_LINE => Err(ProtocolError::ControlLine),
        None => Ok(None),
    }
}

/// The verb and the rest of a control line.
fn split_verb(line: &[u8]) -> (&[u8], &[u8]) {
    let line = trim_start(line);
    let end = line
        .iter()
        .position(|b| b.is_ascii_whitespace())
        .unwrap_or(line.len());
    (&line[..end], trim_start(&line[end..]))
}

/// A verb in upper case, on the stack: every operation has one, so no allocation for it.
struct Upper {
    bytes: [u8; 8],
    len: usize,
}

impl Upper {
    /// A verb longer than any the protocol has becomes empty, which matches none.
    fn new(verb: &[u8]) -> Upper {
        let mut bytes = [0u8; 8];
        let len = if verb.len() <= bytes.len() {
            verb.len()
        } else {
            0
        };
        bytes[..len].copy_from_slice(&verb[..len]);
        bytes.make_ascii_uppercase();
        Upper { bytes, len }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// Up to `N` space- or tab-separated arguments; `None` if there are more.
fn args<const N: usize>(rest: &[u8]) -> Option<([&[u8]; N], usize)> {
    let mut out: [&[u8]; N] = [&[]; N];
    let mut count = 0;
    for arg in rest
        .split(|b| *b == b' ' || *b == b'\t')
        .filter(|a| !a.is_empty())
    {
        *out.get_mut(count)? = arg;
        count += 1;
    }
    Some((out, count))
}

/// A decimal number that fits `u64`, or `None`. Only digits: `u64`'s parser alone would take
/// a leading `+`.
pub fn number(digits: &[u8]) -> Option<u64> {
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The payload of `size` bytes after a control line of `used` bytes, and the total used, or
/// `None` if it has not all arrived.
fn payload(buf: &[u8], used: usize, size: usize) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let end = used + size;
    if buf.len() < end + 2 {
        return Ok(None);
    }
    if &buf[end..end + 2] != b"\r\n" {
        return Err(ProtocolError::UnknownOperation);
    }
    Ok(Some((&buf[used..end], end + 2)))
}

/// Parses one client operation from the front of `buf`, refusing payloads over `max_payload`.
pub fn parse_client(
    buf: &[u8],
    max_payload: usize,
) -> Result<Option<Parsed<'_, ClientOp<'_>>>, ProtocolError> {
    let Some((line, used)) = control_line(buf)? else {
        return Ok(None);
    };
    let (verb, rest) = split_verb(line);
    let op = match Upper::new(verb).as_bytes() {
        b"PING" => ClientOp::Ping,
        b"PONG" => ClientOp::Pong,
        b"INFO" | b"+OK" | b"-ERR" => ClientOp::Ignored,
        b"CONNECT" => {
            ClientOp::Connect(serde_json::from_slice(rest).map_err(|_| ProtocolError::Parser)?)
        }
        b"PUB" => {
            let (subject, reply, size) = match args::<3>(rest) {
                Some(([subject, size, _], 2)) => (subject, None, size),
                Some(([subject, reply, size], 3)) => (subject, Some(reply), size),
                _ => return Err(ProtocolError::Parser),
            };
            let size = number(size).ok_or(ProtocolError::Parser)?;
            let size = usize::try_from(size).map_err(|_| ProtocolError::MaxPayload)?;
            if size > max_payload {
                return Err(ProtocolError::MaxPayload);
            }
            let Some((payload, used)) = payload(buf, used, size)? else {
                return Ok(None);
            };
            return Ok(Some((
                ClientOp::Pub {
                    subject,
                    reply,
                    payload,
                },
                used,
            )));
        }
        b"SUB" => match args::<3>(rest) {
            Some(([subject, sid, _], 2)) => ClientOp::Sub {
                subject,
                queue: None,
                sid,
            },
            Some(([subject, queue, sid], 3)) => ClientOp::Sub {
                subject,
                queue: Some(queue),
                sid,
            },
            _ => return Err(ProtocolError::Parser),
        },
        b"UNSUB" => match args::<2>(rest) {
            Some(([sid, _], 1)) => ClientOp::Unsub { sid, max: None },
            Some(([sid, max], 2)) => ClientOp::Unsub {
                sid,
                max: Some(number(max).ok_or(ProtocolError::Parser)?),
            },
            _ => return Err(ProtocolError::Parser),
        },
        _ => return Err(ProtocolError::UnknownOperation),
    };
    Ok(Some((op, used)))
}

/// The `INFO` line a client is sent when it connects: who the broker is and its limits.
pub fn info_line(server_id: &str, port: u16, max_payload: usize, client_id: u64) -> Vec<u8> {
    let info = serde_json::json!({
        "server_id": server_id,
        "server_name": "pubsub",
        "version": env!("CARGO_PKG_VERSION"),
        "proto": 1,
        "host": "127.0.0.1",
        "port": port,
        "headers": false,
        "max_payload": max_payload,
        "client_id": client_id,
    });
    format!("INFO {info}\r\n").into_bytes()
}

/// Appends `MSG subject sid [reply] size\r\npayload\r\n` to `out`.
pub fn encode_msg(
    out: &mut Vec<u8>,
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    payload: &[u8],
) {
    out.extend_from_slice(b"MSG ");
    out.extend_from_slice(subject);
    out.push(b' ');
    out.extend_from_slice(sid);
    out.push(b' ');
    push_tail(out, reply, payload);
}

/// The bytes [`encode_msg`] appends, without encoding anything: for the bound on a queue.
pub fn msg_len(subject: &[u8], sid: &[u8], reply: Option<&[u8]>, payload: &[u8]) -> usize {
    // "MSG " + 3 separators and CRLFs, and up to 20 digits of size.
    let digits = payload.len().checked_ilog10().unwrap_or(0) as usize + 1;
    4 + subject.len()
        + 1
        + sid.len()
        + 1
        + reply.map_or(0, |r| r.len() + 1)
        + digits
        + 4
        + payload.len()
}

/// Appends `PUB subject [reply] size\r\npayload\r\n` to `out` (the client's side).
pub fn encode_pub(out: &mut Vec<u8>, subject: &[u8], reply: Option<&[u8]>, payload: &[u8]) {
    out.extend_from_slice(b"PUB ");
    out.extend_from_slice(subject);
    out.push(b' ');
    push_tail(out, reply, payload);
}

/// What `PUB` and `MSG` end with: `[reply ]size\r\npayload\r\n`.
fn push_tail(out: &mut Vec<u8>, reply: Option<&[u8]>, payload: &[u8]) {
    if let Some(reply) = reply {
        out.extend_from_slice(reply);
        out.push(b' ');
    }
    push_number(out, payload.len());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// Appends a number in decimal without allocating a `String` for it.
fn push_number(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        // `n % 10` is a single digit, so the cast cannot truncate.
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// One operation from the broker, as a client sees it, borrowing from the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOp<'a> {
    /// `INFO {json}`: the JSON text.
    Info(&'a [u8]),
    /// `MSG subject sid [reply] size` and the payload.
    Msg {
        /// The subject it was published to.
        subject: &'a [u8],
        /// The subscription it matched.
        sid: &'a [u8],
        /// Where answers should go.
        reply: Option<&'a [u8]>,
        /// The message.
        payload: &'a [u8],
    },
    /// `PING`.
    Ping,
    /// `PONG`.
    Pong,
    /// `+OK`.
    Ok,
    /// `-ERR 'text'`: the text, without the quotes.
    Err(&'a [u8]),
}

/// Parses one broker operation from the front of `buf` (the client's side), or `None` if
/// incomplete. Payloads up to `max_payload` bytes are accepted.
pub fn parse_server(
    buf: &[u8],
    max_payload: usize,
) -> Result<Option<Parsed<'_, ServerOp<'_>>>, ProtocolError> {
    let Some((line, used)) = control_line(buf)? else {
        return Ok(None);
    };
    let (verb, rest) = split_verb(line);
    let op = match Upper::new(verb).as_bytes() {
        b"PING" => ServerOp::Ping,
        b"PONG" => ServerOp::Pong,
        b"+OK" => ServerOp::Ok,
        b"INFO" => ServerOp::Info(rest),
        b"-ERR" => {
            let text = rest.trim_ascii();
            let text = text
                .strip_prefix(b"'")
                .and_then(|t| t.strip_suffix(b"'"))
                .unwrap_or(text);
            ServerOp::Err(text)
        }
        b"MSG" => {
            let (subject, sid, reply, size) = match args::<4>(rest) {
                Some(([subject, sid, size, _], 3)) => (subject, sid, None, size),
                Some(([subject, sid, reply, size], 4)) => (subject, sid, Some(reply), size),
                _ => return Err(ProtocolError::Parser),
            };
            let size = number(size)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or(ProtocolError::Parser)?;
            if size > max_payload {
                return Err(ProtocolError::MaxPayload);
            }
            let Some((payload, used)) = payload(buf, used, size)? else {
                return Ok(None);
            };
            return Ok(Some((
                ServerOp::Msg {
                    subject,
                    sid,
                    reply,
                    payload,
                },
                used,
            )));
        }
        _ => return Err(ProtocolError::UnknownOperation),
    };
    Ok(Some((op, used)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pub_incrementally_and_binary_safe() {
        let wire = b"PUB a.b reply.1 7\r\nx\r\ny\0z!\r\n";
        for cut in 0..wire.len() {
            assert_eq!(parse_client(&wire[..cut], 100), Ok(None), "cut at {cut}");
        }
        assert_eq!(
            parse_client(wire, 100),
            Ok(Some((
                ClientOp::Pub {
                    subject: b"a.b",
                    reply: Some(b"reply.1"),
                    payload: b"x\r\ny\0z!"
                },
                wire.len()
            )))
        );
    }

    #[test]
    fn verbs_are_case_insensitive_and_spacing_is_loose() {
        let (op, used) = parse_client(b"sub  foo\tq  7\nrest", 10).unwrap().unwrap();
        assert_eq!(
            op,
            ClientOp::Sub {
                subject: b"foo",
                queue: Some(b"q"),
                sid: b"7"
            }
        );
        assert_eq!(used, 14);
        assert_eq!(
            parse_client(b"unsub 7 3\r\n", 10).unwrap().unwrap().0,
            ClientOp::Unsub {
                sid: b"7",
                max: Some(3)
            }
        );
        let (op, _) = parse_client(b"CONNECT {\"verbose\":false,\"x\":[1]}\r\n", 10)
            .unwrap()
            .unwrap();
        assert!(matches!(op, ClientOp::Connect(o) if !o.verbose && o.echo));
    }

    #[test]
    fn refuses_what_cannot_be_framed() {
        let cases: [(&[u8], ProtocolError); 9] = [
            (b"FLY away\r\n", ProtocolError::UnknownOperation),
            (b"PUB foo\r\n", ProtocolError::Parser),
            (b"PUB foo -1\r\n", ProtocolError::Parser),
            (b"PUB foo 1 2 3\r\n", ProtocolError::Parser),
            (b"PUB foo 11\r\n", ProtocolError::MaxPayload),
            (
                b"PUB foo 99999999999999999999999\r\n",
                ProtocolError::Parser,
            ),
            (b"PUB foo 1\r\nab\r\n", ProtocolError::UnknownOperation),
            (b"SUB foo\r\n", ProtocolError::Parser),
            (b"CONNECT {nope\r\n", ProtocolError::Parser),
        ];
        for (wire, expected) in cases {
            assert_eq!(
                parse_client(wire, 10),
                Err(expected),
                "{:?}",
                wire.escape_ascii()
            );
        }
        assert_eq!(
            parse_client(&[b'a'; MAX_CONTROL_LINE + 1], 10),
            Err(ProtocolError::ControlLine)
        );
    }

    #[test]
    fn msg_round_trips_and_its_length_is_known() {
        for (reply, payload) in [(None, &b""[..]), (Some(&b"r"[..]), &[7u8; 1234][..])] {
            let mut out = Vec::new();
            encode_msg(&mut out, b"s.t", b"42", reply, payload);
            assert_eq!(out.len(), msg_len(b"s.t", b"42", reply, payload));
            let (op, used) = parse_server(&out, 2000).unwrap().unwrap();
            assert_eq!(used, out.len());
            assert_eq!(
                op,
                ServerOp::Msg {
                    subject: b"s.t",
                    sid: b"42",
                    reply,
                    payload
                }
            );
        }
        assert_eq!(
            parse_server(b"-ERR 'Slow Consumer'\r\n", 0)
                .unwrap()
                .unwrap()
                .0,
            ServerOp::Err(b"Slow Consumer")
        );
    }
}
