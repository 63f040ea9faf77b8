//! A small RESP2 client for tests: send commands or raw bytes, read replies before a deadline.
//!
//! Written for the suite and independent of any tree's code, so a learner's parser is checked
//! against a second implementation, not against itself.

use std::fmt;
use std::net::SocketAddr;

use crate::framed::FramedConn;

/// A reply as the test sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...` (without the `-`).
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$n` with its bytes, or `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*n` with its items (`*-1` reads as empty).
    Array(Vec<Resp>),
}

impl Resp {
    /// A bulk string reply holding `text`.
    pub fn bulk(text: &str) -> Resp {
        Resp::Bulk(Some(text.as_bytes().to_vec()))
    }
}

/// A reply as `redis-cli` prints it, on one line: `OK`, `(error) ERR ...`, `(integer) 2`,
/// `(nil)`, `"value"` (escaped), `1) "a", 2) (nil)`, `(empty array)`.
impl fmt::Display for Resp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resp::Simple(s) => write!(f, "{s}"),
            Resp::Error(e) => write!(f, "(error) {e}"),
            Resp::Integer(n) => write!(f, "(integer) {n}"),
            Resp::Bulk(None) => write!(f, "(nil)"),
            Resp::Bulk(Some(b)) => write!(f, "\"{}\"", b.escape_ascii()),
            Resp::Array(items) if items.is_empty() => write!(f, "(empty array)"),
            Resp::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{}) {item}", i + 1)?;
                }
                Ok(())
            }
        }
    }
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Parses one reply from the front of `buf`: `Ok(None)` when incomplete, `Err` when malformed.
pub fn parse(buf: &[u8]) -> Result<Option<(Resp, usize)>, String> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = &buf[..end];
    let used = end + 2;
    let text = String::from_utf8_lossy(line.get(1..).unwrap_or_default()).into_owned();
    let int = |t: &str| {
        t.parse::<i64>()
            .map_err(|_| format!("bad number in \"{}\"", line.escape_ascii()))
    };
    match line.first() {
        Some(b'+') => Ok(Some((Resp::Simple(text), used))),
        Some(b'-') => Ok(Some((Resp::Error(text), used))),
        Some(b':') => Ok(Some((Resp::Integer(int(&text)?), used))),
        Some(b'$') => {
            let len = int(&text)?;
            if len < 0 {
                return Ok(Some((Resp::Bulk(None), used)));
            }
            let len = usize::try_from(len).map_err(|e| e.to_string())?;
            if buf.len() < used + len + 2 {
                return Ok(None);
            }
            Ok(Some((
                Resp::Bulk(Some(buf[used..used + len].to_vec())),
                used + len + 2,
            )))
        }
        Some(b'*') => {
            let count = int(&text)?;
            let mut items = Vec::new();
            let mut at = used;
            for _ in 0..count.max(0) {
                match parse(&buf[at..])? {
                    Some((item, n)) => {
                        items.push(item);
                        at += n;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Resp::Array(items), at)))
        }
        _ => Err(format!(
            "not a RESP reply: {:?}",
            String::from_utf8_lossy(&buf[..buf.len().min(80)])
        )),
    }
}

/// What came back instead of a reply.
pub use crate::framed::NoFrame as NoReply;

/// A TCP connection speaking RESP.
pub type RespConn = FramedConn<Resp>;

impl FramedConn<Resp> {
    /// Connects to `addr` within a few seconds.
    pub fn connect(addr: SocketAddr) -> std::io::Result<RespConn> {
        FramedConn::connect_with(addr, parse)
    }

    /// Writes one command.
    pub fn send(&mut self, args: &[&str]) -> std::io::Result<()> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.send_raw(&encode(&args))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_and_incomplete_replies() {
        let wire = b"*3\r\n+OK\r\n$3\r\nabc\r\n*1\r\n:-2\r\n";
        assert_eq!(parse(&wire[..wire.len() - 1]), Ok(None));
        let (reply, used) = parse(wire).unwrap().unwrap();
        assert_eq!(used, wire.len());
        assert_eq!(
            reply,
            Resp::Array(vec![
                Resp::Simple("OK".into()),
                Resp::bulk("abc"),
                Resp::Array(vec![Resp::Integer(-2)])
            ])
        );
        assert!(parse(b"hello\r\n").is_err());
    }
}
