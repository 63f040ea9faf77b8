//! RELP frames, pure and synchronous (librelp's `doc/relp.md`):
//! `TXNR SP COMMAND SP DATALEN [SP DATA] LF`.

use crate::protocol::ProtocolError;

/// The transaction number of hints such as `serverclose`, which get no answer.
pub const HINT_TXNR: u32 = 0;

/// A TXNR or DATALEN has at most nine digits.
const MAX_DIGITS: usize = 9;

/// A COMMAND is one to 32 letters.
const MAX_COMMAND: usize = 32;

/// One RELP frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelpFrame {
    /// The transaction number: 1 to 999 999 999 for commands, 0 for hints.
    pub txnr: u32,
    /// `open`, `syslog`, `close`, `rsp`, `serverclose`...
    pub command: String,
    /// The command's data (empty when DATALEN is 0).
    pub data: Vec<u8>,
}

/// Parses a number of one to nine digits at the front of `buf`, followed by `end`; `Ok(None)`
/// when more bytes are needed.
fn number(buf: &[u8], what: &'static str) -> Result<Option<(u64, usize)>, ProtocolError> {
    let digits = buf.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits > MAX_DIGITS {
        return Err(ProtocolError::BadRelpFrame(what));
    }
    if digits == buf.len() {
        return Ok(None);
    }
    if digits == 0 {
        return Err(ProtocolError::BadRelpFrame(what));
    }
    let text =
        std::str::from_utf8(&buf[..digits]).map_err(|_| ProtocolError::BadRelpFrame(what))?;
    let value = text
        .parse()
        .map_err(|_| ProtocolError::BadRelpFrame(what))?;
    Ok(Some((value, digits)))
}

/// Takes one frame off the front of `buf`: `Ok(Some((frame, bytes used)))`, or `Ok(None)`
/// when the frame is not whole yet.
///
/// # Errors
/// [`ProtocolError::BadRelpFrame`] for bytes that are not a RELP frame, and
/// [`ProtocolError::RelpFrameTooLarge`] for a DATALEN above `max_data`.
pub fn decode(buf: &[u8], max_data: usize) -> Result<Option<(RelpFrame, usize)>, ProtocolError> {
    let Some((txnr, mut at)) = number(buf, "TXNR is not a number of 1 to 9 digits")? else {
        return Ok(None);
    };
    if buf[at] != b' ' {
        return Err(ProtocolError::BadRelpFrame("no space after TXNR"));
    }
    at += 1;
    let letters = buf[at..]
        .iter()
        .take_while(|b| b.is_ascii_alphabetic())
        .count();
    if letters > MAX_COMMAND
        || (letters > 0 && at + letters < buf.len() && buf[at + letters] != b' ')
    {
        return Err(ProtocolError::BadRelpFrame(
            "COMMAND is not 1 to 32 letters",
        ));
    }
    if at + letters == buf.len() {
        return Ok(None);
    }
    if letters == 0 {
        return Err(ProtocolError::BadRelpFrame(
            "COMMAND is not 1 to 32 letters",
        ));
    }
    let command = String::from_utf8_lossy(&buf[at..at + letters]).into_owned();
    at += letters + 1;
    let Some((len, digits)) = number(&buf[at..], "DATALEN is not a number of 1 to 9 digits")?
    else {
        return Ok(None);
    };
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= max_data)
        .ok_or(ProtocolError::RelpFrameTooLarge { len, max: max_data })?;
    at += digits;
    let data = if len == 0 {
        // librelp writes `TXNR close 0` with or without a space before the LF.
        if buf[at] == b' ' {
            at += 1;
        }
        Vec::new()
    } else {
        if buf[at] != b' ' {
            return Err(ProtocolError::BadRelpFrame("no space before DATA"));
        }
        at += 1;
        if buf.len() < at + len {
            return Ok(None);
        }
        at += len;
        buf[at - len..at].to_vec()
    };
    match buf.get(at) {
        None => Ok(None),
        Some(b'\n') => Ok(Some((
            RelpFrame {
                txnr: u32::try_from(txnr).unwrap_or(u32::MAX),
                command,
                data,
            },
            at + 1,
        ))),
        Some(_) => Err(ProtocolError::BadRelpFrame("no LF after DATA")),
    }
}

/// Appends the frame `TXNR COMMAND DATALEN [DATA]` and its LF to `out`.
pub fn encode(out: &mut Vec<u8>, txnr: u32, command: &str, data: &[u8]) {
    out.extend_from_slice(format!("{txnr} {command} {}", data.len()).as_bytes());
    if !data.is_empty() {
        out.push(b' ');
        out.extend_from_slice(data);
    }
    out.push(b'\n');
}

/// The offers a server answers `open` with: the RELP version the client offered (rsyslog
/// sends `relp_version=0`), this software, and the one command it serves, `syslog`.
pub fn open_response(offers: &[u8]) -> Vec<u8> {
    let version = offers
        .split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(b"relp_version="))
        .map_or_else(
            || "0".to_owned(),
            |v| String::from_utf8_lossy(v).into_owned(),
        );
    format!(
        "200 OK\nrelp_version={version}\nrelp_software=log-aggregator,{},https://www.rsyslog.com/doc/relp.html\ncommands=syslog",
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_frames_whole_or_not_at_all() {
        let wire = b"1 open 14 relp_version=0\n2 syslog 5 <13>x\n3 close 0\n";
        let mut at = 0;
        let mut got = Vec::new();
        while let Some((frame, used)) = decode(&wire[at..], 1024).unwrap() {
            got.push((frame.txnr, frame.command, frame.data));
            at += used;
        }
        assert_eq!(at, wire.len());
        assert_eq!(got[1], (2, "syslog".into(), b"<13>x".to_vec()));
        assert_eq!(got[2], (3, "close".into(), Vec::new()));
        for cut in 0..24 {
            assert_eq!(decode(&wire[..cut], 1024).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn refuses_garbage_and_huge_frames() {
        assert!(decode(b"x open 0\n", 10).is_err());
        assert!(decode(b"1 open 5 abcdef\n", 10).is_err());
        assert!(decode(b"1 syslog 999999 ", 10).is_err());
        assert!(decode(b"1234567890 open", 10).is_err());
    }

    #[test]
    fn encodes_and_answers_open() {
        let mut out = Vec::new();
        encode(&mut out, 7, "rsp", b"200 OK");
        encode(&mut out, HINT_TXNR, "serverclose", b"");
        assert_eq!(out, b"7 rsp 6 200 OK\n0 serverclose 0\n");
        let rsp = open_response(b"relp_version=0\ncommands=syslog");
        assert!(rsp.starts_with(b"200 OK\nrelp_version=0\n"));
    }
}
