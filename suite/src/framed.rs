//! A blocking TCP connection that reads whole frames of some protocol before a deadline: the
//! part the suite's RESP and NATS clients share. Each protocol brings only its `parse`.

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A protocol's parser: `Ok(None)` wants more bytes; `Ok(Some((frame, used)))` is one whole
/// frame and the bytes it took; `Err` is bytes that are not the protocol.
pub type Parse<F> = fn(&[u8]) -> Result<Option<(F, usize)>, String>;

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

/// Why no frame came, as a failure message says it: `no reply in time`, `the server closed the
/// connection`, or the bytes that are not the protocol, quoted.
impl fmt::Display for NoFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoFrame::Timeout => write!(f, "no reply in time"),
            NoFrame::Closed => write!(f, "the server closed the connection"),
            NoFrame::Garbage(g) => write!(f, "{g}"),
        }
    }
}

impl NoFrame {
    /// As [`Display`](fmt::Display), naming the wait when nothing came: `no reply within 5s`.
    pub fn after(&self, waited: Duration) -> String {
        match self {
            NoFrame::Timeout => format!("no reply within {waited:?}"),
            other => other.to_string(),
        }
    }
}

/// What a read gave, for a failure message: the frame in its protocol's notation (its
/// `Display`), or why none came within `waited` ([`NoFrame::after`]).
pub fn describe<F: fmt::Display>(got: &Result<F, NoFrame>, waited: Duration) -> String {
    match got {
        Ok(frame) => frame.to_string(),
        Err(no) => no.after(waited),
    }
}

/// A TCP connection that reads frames of type `F`.
pub struct FramedConn<F> {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Where the unread part of `buf` starts: frames are taken from the front without moving
    /// the rest each time, which would make reading megabytes quadratic.
    start: usize,
    parse: Parse<F>,
}

impl<F> FramedConn<F> {
    /// Connects to `addr` within a few seconds, with Nagle's algorithm off.
    pub fn connect_with(addr: SocketAddr, parse: Parse<F>) -> std::io::Result<FramedConn<F>> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        Ok(FramedConn {
            stream,
            buf: Vec::new(),
            start: 0,
            parse,
        })
    }

    /// Writes raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads the next frame, waiting at most `timeout`.
    pub fn read(&mut self, timeout: Duration) -> Result<F, NoFrame> {
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match (self.parse)(&self.buf[self.start..]) {
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
