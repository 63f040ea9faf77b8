//! A small RELP client for tests (librelp's `doc/relp.md`): send commands, read the server's
//! frames before a deadline.
//!
//! Written for the suite and independent of any tree's code, so a learner's RELP is checked
//! against a second implementation, not against itself.

use std::fmt;
use std::net::SocketAddr;

use crate::framed::FramedConn;

/// A frame from the server: `TXNR COMMAND DATALEN [DATA]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelpFrame {
    /// The transaction number (0 for a hint such as `serverclose`).
    pub txnr: u64,
    /// `rsp`, `serverclose`...
    pub command: String,
    /// The data, possibly empty.
    pub data: Vec<u8>,
}

impl RelpFrame {
    /// The data as text (lossy), for messages and checks.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// A frame as it went on the wire, in backquotes, its data escaped: `` `1 rsp 6 200 OK` ``.
impl fmt::Display for RelpFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{} {} {}", self.txnr, self.command, self.data.len())?;
        if !self.data.is_empty() {
            write!(f, " {}", self.data.escape_ascii())?;
        }
        write!(f, "`")
    }
}

/// One command frame, as a client writes it.
pub fn encode(txnr: u64, command: &str, data: &[u8]) -> Vec<u8> {
    let mut out = format!("{txnr} {command} {}", data.len()).into_bytes();
    if !data.is_empty() {
        out.push(b' ');
        out.extend_from_slice(data);
    }
    out.push(b'\n');
    out
}

/// Splits `buf` at its first space, within `limit` bytes: `Ok(None)` when no space came yet.
fn field(buf: &[u8], limit: usize, what: &str) -> Result<Option<(String, usize)>, String> {
    match buf
        .iter()
        .take(limit + 1)
        .position(|&b| b == b' ' || b == b'\n')
    {
        Some(end) => Ok(Some((
            String::from_utf8_lossy(&buf[..end]).into_owned(),
            end,
        ))),
        None if buf.len() > limit => Err(format!(
            "no end to the {what} in \"{}\"",
            buf.escape_ascii()
        )),
        None => Ok(None),
    }
}

/// Parses one frame off the front of `buf`.
pub fn parse(buf: &[u8]) -> Result<Option<(RelpFrame, usize)>, String> {
    let garbage = |what: &str| Err(format!("{what}: \"{}\"", buf.escape_ascii()));
    let Some((txnr, a)) = field(buf, 9, "TXNR")? else {
        return Ok(None);
    };
    let Ok(txnr) = txnr.parse::<u64>() else {
        return garbage("a TXNR that is not a number");
    };
    if buf[a] != b' ' {
        return garbage("no COMMAND after the TXNR");
    }
    let Some((command, c)) = field(&buf[a + 1..], 32, "COMMAND")? else {
        return Ok(None);
    };
    let at = a + 1 + c;
    if buf[at] != b' ' {
        return garbage("no DATALEN after the COMMAND");
    }
    let rest = &buf[at + 1..];
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == rest.len() {
        return Ok(None);
    }
    let Ok(len) = String::from_utf8_lossy(&rest[..digits]).parse::<usize>() else {
        return garbage("a DATALEN that is not a number");
    };
    let mut at = at + 1 + digits;
    if len > 0 {
        if buf[at] != b' ' {
            return garbage("no space before the DATA");
        }
        at += 1;
    }
    if buf.len() < at + len + 1 {
        return Ok(None);
    }
    let data = buf[at..at + len].to_vec();
    if buf[at + len] != b'\n' {
        return garbage("no LF after the DATA");
    }
    Ok(Some((
        RelpFrame {
            txnr,
            command,
            data,
        },
        at + len + 1,
    )))
}

/// A connection that speaks RELP.
pub type RelpConn = FramedConn<RelpFrame>;

impl FramedConn<RelpFrame> {
    /// Connects to a RELP server.
    pub fn connect(addr: SocketAddr) -> std::io::Result<RelpConn> {
        FramedConn::connect_with(addr, parse)
    }

    /// Sends one command.
    pub fn command(&mut self, txnr: u64, command: &str, data: &[u8]) -> std::io::Result<()> {
        self.send_raw(&encode(txnr, command, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_answers_and_hints() {
        let wire = b"1 rsp 6 200 OK\n0 serverclose 0\n";
        let (a, used) = parse(wire).unwrap().unwrap();
        assert_eq!(
            (a.txnr, a.command.as_str(), a.text().as_str()),
            (1, "rsp", "200 OK")
        );
        let (b, _) = parse(&wire[used..]).unwrap().unwrap();
        assert_eq!(
            (b.txnr, b.command.as_str(), b.data.len()),
            (0, "serverclose", 0)
        );
        assert_eq!(parse(b"1 rsp 6 200").unwrap(), None);
        assert!(parse(b"x rsp 0\n").is_err());
    }
}
