//! A small NATS client for tests: send operations or raw bytes, read the server's frames before
//! a deadline.
//!
//! Written for the suite and independent of any tree's code, so a learner's broker is checked
//! against a second implementation of the protocol, not against itself.

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

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

/// What came back instead of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoFrame {
    /// Nothing within the deadline.
    Timeout,
    /// The server closed the connection.
    Closed,
    /// Bytes that are not the protocol.
    Garbage(String),
}

impl fmt::Display for NoFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoFrame::Timeout => write!(f, "nothing came in time"),
            NoFrame::Closed => write!(f, "the connection was closed"),
            NoFrame::Garbage(g) => write!(f, "{g}"),
        }
    }
}

/// A TCP connection speaking the NATS protocol.
pub struct NatsConn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Where the unread part of `buf` starts: frames are taken from the front without moving
    /// the rest each time, which would make reading megabytes quadratic.
    start: usize,
}

impl NatsConn {
    /// Connects to `addr` within a few seconds. The server's `INFO` is left to be read.
    pub fn connect(addr: SocketAddr) -> std::io::Result<NatsConn> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        Ok(NatsConn {
            stream,
            buf: Vec::new(),
            start: 0,
        })
    }

    /// Writes raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Writes `PUB subject size\r\npayload\r\n`.
    pub fn publish(&mut self, subject: &str, payload: &[u8]) -> std::io::Result<()> {
        self.send_raw(&encode_pub(subject, payload))
    }

    /// Reads the next frame, waiting at most `timeout`.
    pub fn read(&mut self, timeout: Duration) -> Result<Frame, NoFrame> {
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match parse(&self.buf[self.start..]) {
                Ok(Some((frame, used))) => {
                    self.start += used;
                    if self.start == self.buf.len() {
                        self.buf.clear();
                        self.start = 0;
                    }
                    return Ok(frame);
                }
                Ok(None) => {}
                Err(garbage) => return Err(NoFrame::Garbage(garbage)),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NoFrame::Timeout);
            }
            // A zero read timeout means "block forever" to the OS, hence the floor.
            let _ = self
                .stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))));
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(NoFrame::Closed),
                Ok(n) => {
                    self.buf.drain(..self.start);
                    self.start = 0;
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(NoFrame::Timeout);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(NoFrame::Closed),
            }
        }
    }

    /// Whether the server has closed the connection (waiting at most `timeout` to find out).
    pub fn is_closed(&mut self, timeout: Duration) -> bool {
        matches!(self.read(timeout), Err(NoFrame::Closed))
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
