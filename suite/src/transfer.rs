//! The file-transfer protocol written out from its contract, for tests that count bytes or lie:
//! frame and manifest encoders, and a connection that reads whole frames before a deadline.
//!
//! Written for the suite and independent of any tree's code, so a learner's receiver is checked
//! against a second implementation of the protocol, not against itself.

use std::fmt;
use std::net::SocketAddr;

use sha2::{Digest, Sha256};

use crate::framed::FramedConn;

/// Frame types, as the contract numbers them: the sender's...
pub const MANIFEST: u8 = 0x01;
/// ... a chunk ...
pub const CHUNK: u8 = 0x02;
/// ... and "that was every chunk".
pub const SENT_ALL: u8 = 0x03;
/// The receiver's answers: the manifest is accepted (with the chunks it already holds) ...
pub const ACCEPT: u8 = 0x81;
/// ... send these chunks again ...
pub const RESEND: u8 = 0x82;
/// ... the file is complete ...
pub const COMPLETE: u8 = 0x83;
/// ... or an error, with a message.
pub const ERROR: u8 = 0x84;

/// The largest frame the suite reads: more means the receiver sent nonsense.
const MAX_FRAME: usize = 1 << 20;

/// One frame: its type and its body.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// The frame type (`ACCEPT`, `ERROR`, ...).
    pub kind: u8,
    /// What follows the header.
    pub body: Vec<u8>,
}

impl Frame {
    /// The body as text (an ERROR's message).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.kind {
            MANIFEST => "MANIFEST",
            CHUNK => "CHUNK",
            SENT_ALL => "SENT_ALL",
            ACCEPT => "ACCEPT",
            RESEND => "RESEND",
            COMPLETE => "COMPLETE",
            ERROR => return write!(f, "ERROR (0x84) {:?}", self.text()),
            _ => "an unknown frame type",
        };
        write!(
            f,
            "{name} (0x{:02x}, {} body bytes)",
            self.kind,
            self.body.len()
        )
    }
}

/// As [`Display`](fmt::Display): what a failure message shows of a frame (not its bytes).
impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// A frame: 4-byte big-endian body length, type, body.
pub fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).expect("a frame body fits in 4 GiB");
    let mut out = len.to_be_bytes().to_vec();
    out.push(kind);
    out.extend_from_slice(body);
    out
}

/// A manifest body with every field given, so that a test can make it lie.
pub fn manifest_with(
    name: &[u8],
    size: u64,
    chunk_size: u32,
    file_hash: [u8; 32],
    chunk_hashes: &[[u8; 32]],
) -> Vec<u8> {
    let mut body = vec![1u8];
    let name_len = u16::try_from(name.len()).expect("a name fits in 64 KiB");
    body.extend_from_slice(&name_len.to_be_bytes());
    body.extend_from_slice(name);
    body.extend_from_slice(&size.to_be_bytes());
    body.extend_from_slice(&chunk_size.to_be_bytes());
    body.extend_from_slice(&file_hash);
    let count = u32::try_from(chunk_hashes.len()).expect("fewer than 2^32 chunks");
    body.extend_from_slice(&count.to_be_bytes());
    for h in chunk_hashes {
        body.extend_from_slice(h);
    }
    let check = sha256(&body);
    body.extend_from_slice(&check);
    body
}

/// The honest manifest body for `data` sent as `name` in chunks of `chunk_size`.
pub fn manifest(name: &str, data: &[u8], chunk_size: u32) -> Vec<u8> {
    let hashes: Vec<[u8; 32]> = data.chunks(chunk_size as usize).map(sha256).collect();
    manifest_with(
        name.as_bytes(),
        data.len() as u64,
        chunk_size,
        sha256(data),
        &hashes,
    )
}

/// A CHUNK frame: the index, then the data.
pub fn chunk(index: u32, data: &[u8]) -> Vec<u8> {
    let mut body = index.to_be_bytes().to_vec();
    body.extend_from_slice(data);
    frame(CHUNK, &body)
}

/// Parses one frame from the front of `buf`.
///
/// # Errors
/// A header declaring more than the suite reads.
pub fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, String> {
    let Some(header) = buf.get(..5) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len > MAX_FRAME {
        return Err(format!("a frame header declaring {len} bytes"));
    }
    match buf.get(5..5 + len) {
        Some(body) => Ok(Some((
            Frame {
                kind: header[4],
                body: body.to_vec(),
            },
            5 + len,
        ))),
        None => Ok(None),
    }
}

/// A connection to a receiver, reading its frames.
pub type TransferConn = FramedConn<Frame>;

impl FramedConn<Frame> {
    /// Connects to a receiver.
    pub fn connect(addr: SocketAddr) -> std::io::Result<TransferConn> {
        FramedConn::connect_with(addr, parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let wire = frame(ERROR, b"no");
        assert_eq!(
            parse(&wire).unwrap(),
            Some((
                Frame {
                    kind: ERROR,
                    body: b"no".to_vec()
                },
                7
            ))
        );
        assert_eq!(parse(&wire[..6]).unwrap(), None);
        assert!(parse(&[0xff, 0xff, 0xff, 0xff, 1]).is_err());
    }
}
