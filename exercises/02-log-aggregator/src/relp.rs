//! RELP frames, pure and synchronous (librelp's `doc/relp.md`):
//! `TXNR SP COMMAND SP DATALEN [SP DATA] LF`.
//!
//! Your task (stage 6): [`decode`] and [`encode`].

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

/// Takes one frame off the front of `buf`: `Ok(Some((frame, bytes used)))`, or `Ok(None)`
/// when the frame is not whole yet.
///
/// # Errors
/// [`ProtocolError::BadRelpFrame`] for bytes that are not a RELP frame, and
/// [`ProtocolError::RelpFrameTooLarge`] for a DATALEN above `max_data`.
pub fn decode(buf: &[u8], max_data: usize) -> Result<Option<(RelpFrame, usize)>, ProtocolError> {
    // TODO: (stage 6) the next frame as the contract's "RELP" defines it (librelp may put a space
    // before the LF of an empty frame), `Ok(None)` while bytes are missing, `BadRelpFrame` saying
    // what was wrong, and `RelpFrameTooLarge` as soon as DATALEN is past `max_data`, before waiting
    // for the data.
    todo!()
}

/// Appends the frame `TXNR COMMAND DATALEN [DATA]` and its LF to `out`.
pub fn encode(out: &mut Vec<u8>, txnr: u32, command: &str, data: &[u8]) {
    // TODO: (stage 6) the frame `TXNR SP COMMAND SP DATALEN [SP DATA] LF` of the contract's "RELP",
    // with DATA only when there is some (`write!` into the `Vec`).
    todo!()
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
