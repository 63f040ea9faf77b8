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

/// The block of the content hash, Dropbox's: 4 MiB.
pub const BLOCK: usize = 4 << 20;

/// The manifest format's version: 2, whose whole-file hash is the content hash.
pub const VERSION: u8 = 2;

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

/// A frame as failure messages show it, in the contract's names: `COMPLETE (0x83)`, `ERROR
/// (0x84) "message"`, a short body in hexadecimal (`ACCEPT (0x81) body 00 00 00 0c 0d 02`), a
/// long one by its length (`CHUNK (0x02) with 4100 body bytes`).
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
            _ => "a frame of unknown type",
        };
        write!(f, "{name} (0x{:02x})", self.kind)?;
        match self.body.len() {
            0 => Ok(()),
            1..=16 => write!(f, " body {}", crate::shown::hex_bytes(&self.body)),
            n => write!(f, " with {n} body bytes"),
        }
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

/// The content hash of `data`, as Dropbox publishes it: the SHA-256 of each 4 MiB block (the
/// last one shorter), and the SHA-256 of those digests one after the other. Nothing for an empty
/// file: the SHA-256 of no bytes.
pub fn content_hash(data: &[u8]) -> [u8; 32] {
    let mut digests = Vec::with_capacity(32 * data.len().div_ceil(BLOCK));
    for block in data.chunks(BLOCK) {
        digests.extend_from_slice(&sha256(block));
    }
    sha256(&digests)
}

/// Lowercase hexadecimal, as `sha256sum` prints a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
    let mut body = vec![VERSION];
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
        content_hash(data),
        &hashes,
    )
}

/// What a manifest body says, read back: for a test that plays the receiver and checks a sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFields {
    /// The version byte.
    pub version: u8,
    /// The file name's bytes.
    pub name: Vec<u8>,
    /// The declared size.
    pub size: u64,
    /// The chunk size.
    pub chunk_size: u32,
    /// The whole-file hash.
    pub file_hash: [u8; 32],
    /// The chunk hashes.
    pub chunk_hashes: Vec<[u8; 32]>,
    /// The trailing SHA-256 of everything before it.
    pub check: [u8; 32],
}

/// Reads a manifest body field by field, as the contract lays it out.
///
/// # Errors
/// A body too short for the fields it declares, or with bytes left over.
pub fn parse_manifest(body: &[u8]) -> Result<ManifestFields, String> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let got = body
            .get(at..at + n)
            .ok_or_else(|| format!("a manifest of {} bytes ends inside its fields", body.len()))?;
        at += n;
        Ok(got)
    };
    let hash = |b: &[u8]| -> [u8; 32] { b.try_into().expect("32 bytes taken") };
    let version = take(1)?[0];
    let name_len = u16::from_be_bytes(take(2)?.try_into().expect("2 bytes taken")) as usize;
    let name = take(name_len)?.to_vec();
    let size = u64::from_be_bytes(take(8)?.try_into().expect("8 bytes taken"));
    let chunk_size = u32::from_be_bytes(take(4)?.try_into().expect("4 bytes taken"));
    let file_hash = hash(take(32)?);
    let count = u32::from_be_bytes(take(4)?.try_into().expect("4 bytes taken")) as usize;
    let mut chunk_hashes = Vec::new();
    for _ in 0..count {
        chunk_hashes.push(hash(take(32)?));
    }
    let check = hash(take(32)?);
    if at != body.len() {
        return Err(format!(
            "{} bytes after the manifest's fields",
            body.len() - at
        ));
    }
    Ok(ManifestFields {
        version,
        name,
        size,
        chunk_size,
        file_hash,
        chunk_hashes,
        check,
    })
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
    parse_up_to(buf, MAX_FRAME)
}

/// Parses one frame from the front of `buf`, of any length the header declares up to 17 MiB (the
/// largest CHUNK): for reading what a sender sends.
///
/// # Errors
/// A header declaring more.
pub fn parse_any(buf: &[u8]) -> Result<Option<(Frame, usize)>, String> {
    parse_up_to(buf, 17 << 20)
}

fn parse_up_to(buf: &[u8], max: usize) -> Result<Option<(Frame, usize)>, String> {
    let Some(header) = buf.get(..5) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len > max {
        return Err(format!("a frame header declaring {len} bytes"));
    }
    Ok(buf.get(5..5 + len).map(|body| {
        (
            Frame {
                kind: header[4],
                body: body.to_vec(),
            },
            5 + len,
        )
    }))
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

    #[test]
    fn the_content_hash_is_over_4_mib_blocks() {
        assert_eq!(content_hash(b""), sha256(b""));
        assert_eq!(content_hash(b"abc"), sha256(&sha256(b"abc")));
        let data = vec![7u8; BLOCK + 1];
        let mut digests = sha256(&data[..BLOCK]).to_vec();
        digests.extend_from_slice(&sha256(&data[BLOCK..]));
        assert_eq!(content_hash(&data), sha256(&digests));
        assert_eq!(
            hex(&sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn a_manifest_reads_back() {
        let body = manifest("a.bin", &[1, 2, 3], 1024);
        let fields = parse_manifest(&body).unwrap();
        assert_eq!(
            (fields.version, fields.name.as_slice(), fields.size),
            (2, &b"a.bin"[..], 3)
        );
        assert_eq!(fields.chunk_hashes, vec![sha256(&[1, 2, 3])]);
        assert_eq!(fields.check, sha256(&body[..body.len() - 32]));
    }
}
