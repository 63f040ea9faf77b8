//! A small NATS client for tests: send operations or raw bytes, read the server's frames before
//! a deadline.
//!
//! Written for the suite and independent of any tree's code, so a learner's broker is checked
//! against a second implementation of the protocol, not against itself.

use std::fmt;
use std::net::SocketAddr;

use crate::framed::FramedConn;

/// One frame from the server, as the test sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `INFO {json}`: the JSON text.
    Info(String),
    /// `MSG subject sid [reply] size` and its payload.
    Msg {
        /// The subject it was published to.
        subject: String,
        /// The subscription it matched.
        sid: String,
        /// Its reply subject.
        reply: Option<String>,
        /// Its payload.
        payload: Vec<u8>,
    },
    /// `PING`.
    Ping,
    /// `PONG`.
    Pong,
    /// `+OK`.
    Ok,
    /// `-ERR 'text'`: the text between the quotes.
    Err(String),
}

impl Frame {
    /// A `MSG` without a reply subject.
    pub fn msg(subject: &str, sid: &str, payload: &[u8]) -> Frame {
        Frame::Msg {
            subject: subject.to_owned(),
            sid: sid.to_owned(),
            reply: None,
            payload: payload.to_vec(),
        }
    }
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frame::Info(json) => write!(f, "INFO {json}"),
            Frame::Msg {
                subject,
                sid,
                reply,
                payload,
            } => {
                write!(f, "MSG {subject} {sid} ")?;
                if let Some(reply) = reply {
                    write!(f, "{reply} ")?;
                }
                write!(f, "{} \"{}\"", payload.len(), payload.escape_ascii())
            }
            Frame::Ping => write!(f, "PING"),
            Frame::Pong => write!(f, "PONG"),
            Frame::Ok => write!(f, "+OK"),
            Frame::Err(e) => write!(f, "-ERR '{e}'"),
        }
    }
}

/// Parses one frame from the front of `buf`: `Ok(None)` when incomplete, `Err` when malformed.
pub fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, String> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = String::from_utf8_lossy(&buf[..end]).into_owned();
    let used = end + 2;
    let garbage = || format!("not a NATS frame: {:?}", &line[..line.len().min(80)]);
    let (verb, rest) = line.split_once(' ').unwrap_or((&line, ""));
    let frame = match verb {
        "INFO" => Frame::Info(rest.trim().to_owned()),
        "PING" => Frame::Ping,
        "PONG" => Frame::Pong,
        "+OK" => Frame::Ok,
        "-ERR" => Frame::Err(rest.trim().trim_matches('\'').to_owned()),
        "MSG" => {
            let args: Vec<&str> = rest.split_whitespace().collect();
            let (subject, sid, reply, size) = match args[..] {
                [subject, sid, size] => (subject, sid, None, size),
                [subject, sid, reply, size] => (subject, sid, Some(reply), size),
                _ => return Err(garbage()),
            };
            let size: usize = size.parse().map_err(|_| garbage())?;
            if buf.len() < used + size + 2 {
                return Ok(None);
            }
            if &buf[used + size..used + size + 2] != b"\r\n" {
                return Err(format!("the payload of {line:?} is not followed by CRLF"));
            }
            let frame = Frame::Msg {
                subject: subject.to_owned(),
                sid: sid.to_owned(),
                reply: reply.map(str::to_owned),
                payload: buf[used..used + size].to_vec(),
            };
            return Ok(Some((frame, used + size + 2)));
        }
        _ => return Err(garbage()),
    };
    Ok(Some((frame, used)))
}

pub use crate::framed::NoFrame;

/// A TCP connection speaking the NATS protocol.
pub type NatsConn = FramedConn<Frame>;

impl FramedConn<Frame> {
    /// Connects to `addr` within a few seconds. The server's `INFO` is left to be read.
    pub fn connect(addr: SocketAddr) -> std::io::Result<NatsConn> {
        FramedConn::connect_with(addr, parse)
    }

    /// Writes `PUB subject size\r\npayload\r\n`.
    pub fn publish(&mut self, subject: &str, payload: &[u8]) -> std::io::Result<()> {
        self.send_raw(&encode_pub(subject, payload))
    }
}

/// `PUB subject size\r\npayload\r\n`.
pub fn encode_pub(subject: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("PUB {subject} {}\r\n", payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_frames_and_waits_for_whole_payloads() {
        let wire = b"MSG a.b 7 _INBOX.1 5\r\nhe\r\nl\r\n+OK\r\n-ERR 'Slow Consumer'\r\n";
        assert_eq!(parse(&wire[..20]), Ok(None));
        let (frame, used) = parse(wire).unwrap().unwrap();
        assert_eq!(
            frame,
            Frame::Msg {
                subject: "a.b".into(),
                sid: "7".into(),
                reply: Some("_INBOX.1".into()),
                payload: b"he\r\nl".to_vec()
            }
        );
        let (ok, n) = parse(&wire[used..]).unwrap().unwrap();
        assert_eq!(ok, Frame::Ok);
        let (err, _) = parse(&wire[used + n..]).unwrap().unwrap();
        assert_eq!(err, Frame::Err("Slow Consumer".into()));
        assert!(parse(b"HELLO\r\n").is_err());
    }
}
