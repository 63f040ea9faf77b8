//! The wire protocol: frames, the manifest and the receiver's answers. Pure and synchronous.
//!
//! TCP delivers a stream of bytes, not messages, so every message travels in a frame: a 5-byte
//! header (`u32` big-endian body length, then a type byte) and the body. All integers are
//! big-endian. One connection carries one file:
//!
//! ```text
//! sender                                   receiver
//!   MANIFEST (name, size, hashes)   --->
//!                                   <---   ACCEPT (bitmap of chunks already held)
//!   CHUNK i (for each chunk not held) --->
//!                                   <---   RESEND i (a chunk failed its check)
//!   SENT_ALL                        --->
//!                                   <---   RESEND j (for each chunk still missing)
//!                                   <---   COMPLETE (whole-file hash matched, file renamed)
//!                                      or  ERROR (a message; the connection closes)
//! ```

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The size of a frame header: the body length (`u32`) and the type byte.
pub const HEADER_LEN: usize = 5;

/// The manifest format's version, its first byte. Version 2: the whole-file hash is the content
/// hash (version 1 carried the plain SHA-256 of the file).
pub const VERSION: u8 = 2;

/// The block size of the content hash: Dropbox's published 4 MiB.
pub const BLOCK_SIZE: u32 = 4 * 1024 * 1024;

/// The smallest chunk size a manifest may declare.
pub const MIN_CHUNK_SIZE: u32 = 1024;

/// The largest chunk size a manifest may declare: it bounds a CHUNK frame, and so the memory a
/// connection holds.
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;

/// The chunk size a sender uses unless told otherwise: the content hash's block, so that every
/// chunk hash is a block hash too and each byte is hashed once on each side.
pub const DEFAULT_CHUNK_SIZE: u32 = BLOCK_SIZE;

/// The most chunks one file may have: it bounds the manifest (32 bytes a chunk: 8 MiB).
pub const MAX_CHUNKS: u32 = 1 << 18;

/// The longest file name, in bytes (the temporary names add a prefix and a suffix, and most file
/// systems stop at 255).
pub const MAX_NAME_LEN: usize = 200;

/// The largest manifest body: the fixed fields, the longest name and every chunk hash.
pub const MAX_MANIFEST_LEN: usize =
    1 + 2 + MAX_NAME_LEN + 8 + 4 + 32 + 4 + 32 * MAX_CHUNKS as usize + 32;

/// The longest ERROR message, in bytes.
pub const MAX_ERROR_LEN: usize = 4096;

/// The type byte of each frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Sender: the manifest, the first frame of a connection.
    Manifest = 0x01,
    /// Sender: one chunk, `u32` index then its bytes.
    Chunk = 0x02,
    /// Sender: every chunk asked for has been sent; empty.
    SentAll = 0x03,
    /// Receiver: the manifest is accepted; `u32` chunk count, then a bitmap of chunks held.
    Accept = 0x81,
    /// Receiver: send chunk `u32` again.
    Resend = 0x82,
    /// Receiver: the file is complete under its final name; empty.
    Complete = 0x83,
    /// Receiver: the transfer is refused or failed; a UTF-8 message.
    Error = 0x84,
}

impl Kind {
    /// The kind for a type byte, if it names one.
    pub fn from_byte(byte: u8) -> Option<Kind> {
        Some(match byte {
            0x01 => Kind::Manifest,
            0x02 => Kind::Chunk,
            0x03 => Kind::SentAll,
            0x81 => Kind::Accept,
            0x82 => Kind::Resend,
            0x83 => Kind::Complete,
            0x84 => Kind::Error,
            _ => return None,
        })
    }
}

/// Why bytes cannot be read as the protocol says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A type byte that names no frame.
    #[error("unknown frame type 0x{0:02x}")]
    UnknownKind(u8),
    /// A frame whose length is wrong for its type.
    #[error("a {kind:?} frame of {len} bytes is the wrong length ({expected})")]
    WrongLength {
        /// The frame's type.
        kind: Kind,
        /// Its declared body length.
        len: usize,
        /// What was allowed, in words.
        expected: String,
    },
    /// A manifest that cannot be read or is inconsistent.
    #[error("bad manifest: {0}")]
    BadManifest(String),
    /// A frame that makes no sense at this point of the conversation.
    #[error("unexpected {0:?} frame")]
    Unexpected(Kind),
}

/// Encodes a frame header.
pub fn header(kind: Kind, body_len: usize) -> [u8; HEADER_LEN] {
    let len = u32::try_from(body_len).expect("frame bodies are bounded far below 4 GiB");
    let l = len.to_be_bytes();
    [l[0], l[1], l[2], l[3], kind as u8]
}

/// Decodes a frame header: the kind and the body length.
pub fn parse_header(bytes: [u8; HEADER_LEN]) -> Result<(Kind, usize), ProtocolError> {
    let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let kind = Kind::from_byte(bytes[4]).ok_or(ProtocolError::UnknownKind(bytes[4]))?;
    Ok((kind, len))
}

/// What a sender declares about a file before sending any of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The file's name: a plain name (see [`crate::name::check`]).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// The size of every chunk but the last, which may be shorter.
    pub chunk_size: u32,
    /// The whole file's content hash (see [`content_hash`]).
    pub file_hash: Hash,
    /// The SHA-256 of each chunk, in order.
    pub chunk_hashes: Vec<Hash>,
}

/// The content hash of a file from the SHA-256 of each of its [`BLOCK_SIZE`] blocks (the last
/// one shorter): the SHA-256 of the block hashes one after the other, as Dropbox publishes it.
/// An empty file has no block, and the SHA-256 of nothing.
pub fn content_hash(block_hashes: &[Hash]) -> Hash {
    let mut all = Sha256::new();
    for hash in block_hashes {
        all.update(hash);
    }
    all.finalize().into()
}

/// How many chunks a file of `size` bytes has in chunks of `chunk_size`: none when empty.
pub fn chunk_count(size: u64, chunk_size: u32) -> u64 {
    size.div_ceil(u64::from(chunk_size))
}

impl Manifest {
    /// How many chunks the file has.
    pub fn chunks(&self) -> u32 {
        // The decoder and the sender both keep this below MAX_CHUNKS.
        self.chunk_hashes.len() as u32
    }

    /// Where chunk `index` starts in the file.
    pub fn offset(&self, index: u32) -> u64 {
        u64::from(index) * u64::from(self.chunk_size)
    }

    /// Whether every chunk is one block of the content hash: its chunk hashes are then the block
    /// hashes, and the whole-file hash follows from them alone.
    pub fn chunks_are_blocks(&self) -> bool {
        self.chunk_size == BLOCK_SIZE
    }

    /// How long chunk `index` is: `chunk_size`, except for a shorter last chunk.
    pub fn chunk_len(&self, index: u32) -> usize {
        let left = self.size - self.offset(index);
        left.min(u64::from(self.chunk_size)) as usize
    }

    /// The manifest's body: version, name, size, chunk size, file hash, chunk count, chunk hashes,
    /// then the SHA-256 of everything before it, which catches a manifest damaged in transit.
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(1 + 2 + self.name.len() + 48 + 32 * self.chunk_hashes.len() + 32);
        out.push(VERSION);
        out.extend_from_slice(&(self.name.len() as u16).to_be_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.chunk_size.to_be_bytes());
        out.extend_from_slice(&self.file_hash);
        out.extend_from_slice(&self.chunks().to_be_bytes());
        for hash in &self.chunk_hashes {
            out.extend_from_slice(hash);
        }
        let check: Hash = Sha256::digest(&out).into();
        out.extend_from_slice(&check);
        out
    }

    /// Reads a manifest body, checking everything that can be checked without the file: its own
    /// hash, the version, the chunk size's range, and that the chunk count fits the size.
    pub fn decode(body: &[u8]) -> Result<Manifest, ProtocolError> {
        let bad = |why: &str| ProtocolError::BadManifest(why.to_owned());
        if body.len() < 32 {
            return Err(bad("too short"));
        }
        let (content, check) = body.split_at(body.len() - 32);
        if Sha256::digest(content).as_slice() != check {
            return Err(bad("its own checksum does not match (damaged in transit?)"));
        }
        let mut r = Reader(content);
        let version = r.u8().ok_or_else(|| bad("too short"))?;
        if version != VERSION {
            return Err(ProtocolError::BadManifest(format!(
                "version {version}, expected {VERSION}"
            )));
        }
        let name_len = r.u16().ok_or_else(|| bad("too short"))? as usize;
        if name_len > MAX_NAME_LEN {
            return Err(ProtocolError::BadManifest(format!(
                "a name of {name_len} bytes is longer than {MAX_NAME_LEN}"
            )));
        }
        let name = r.take(name_len).ok_or_else(|| bad("too short"))?;
        let name = String::from_utf8(name.to_vec()).map_err(|_| bad("the name is not UTF-8"))?;
        let size = r.u64().ok_or_else(|| bad("too short"))?;
        let chunk_size = r.u32().ok_or_else(|| bad("too short"))?;
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
            return Err(ProtocolError::BadManifest(format!(
                "chunk size {chunk_size} is outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE}"
            )));
        }
        let file_hash = r.hash().ok_or_else(|| bad("too short"))?;
        let count = r.u32().ok_or_else(|| bad("too short"))?;
        let expected = chunk_count(size, chunk_size);
        if u64::from(count) != expected {
            return Err(ProtocolError::BadManifest(format!(
                "{count} chunks declared, but {size} bytes in chunks of {chunk_size} make {expected}"
            )));
        }
        if count > MAX_CHUNKS {
            return Err(ProtocolError::BadManifest(format!(
                "{count} chunks is more than {MAX_CHUNKS}"
            )));
        }
        if r.0.len() != 32 * count as usize {
            return Err(bad("the chunk hashes do not fill the rest of the frame"));
        }
        let chunk_hashes = (0..count)
            .map(|_| r.hash().expect("length checked above"))
            .collect();
        Ok(Manifest {
            name,
            size,
            chunk_size,
            file_hash,
            chunk_hashes,
        })
    }
}

/// The ACCEPT body: the chunk count, then bit `i` (byte `i / 8`, bit `i % 8`, least significant
/// first) set for each chunk the receiver already holds.
pub fn encode_accept(held: &[bool]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + held.len().div_ceil(8));
    out.extend_from_slice(&(held.len() as u32).to_be_bytes());
    let mut bitmap = vec![0u8; held.len().div_ceil(8)];
    for (i, _) in held.iter().enumerate().filter(|(_, h)| **h) {
        bitmap[i / 8] |= 1 << (i % 8);
    }
    out.extend_from_slice(&bitmap);
    out
}

/// Reads an ACCEPT body for a file of `chunks` chunks: which chunks the receiver holds.
pub fn decode_accept(body: &[u8], chunks: u32) -> Result<Vec<bool>, ProtocolError> {
    let expected = 4 + (chunks as usize).div_ceil(8);
    if body.len() != expected {
        return Err(ProtocolError::WrongLength {
            kind: Kind::Accept,
            len: body.len(),
            expected: format!("{expected} bytes for {chunks} chunks"),
        });
    }
    let count = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    if count != chunks {
        return Err(ProtocolError::BadManifest(format!(
            "the receiver counts {count} chunks, the manifest {chunks}"
        )));
    }
    let bitmap = &body[4..];
    Ok((0..chunks as usize)
        .map(|i| bitmap[i / 8] & (1 << (i % 8)) != 0)
        .collect())
}

/// A body that is one `u32` (RESEND), checked for its length.
pub fn decode_index(kind: Kind, body: &[u8]) -> Result<u32, ProtocolError> {
    let bytes: [u8; 4] = body.try_into().map_err(|_| ProtocolError::WrongLength {
        kind,
        len: body.len(),
        expected: "4 bytes".to_owned(),
    })?;
    Ok(u32::from_be_bytes(bytes))
}

/// A cursor over a byte slice that yields `None` when the bytes run out.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
    }

    fn hash(&mut self) -> Option<Hash> {
        self.take(32).and_then(|b| b.try_into().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            name: "notes.txt".into(),
            size: 2500,
            chunk_size: 1024,
            file_hash: [7; 32],
            chunk_hashes: vec![[1; 32], [2; 32], [3; 32]],
        }
    }

    #[test]
    fn a_manifest_round_trips() {
        let m = sample();
        assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
        assert_eq!(m.chunk_len(0), 1024);
        assert_eq!(m.chunk_len(2), 452);
    }

    #[test]
    fn a_damaged_manifest_is_refused() {
        let mut body = sample().encode();
        body[5] ^= 1;
        assert!(matches!(
            Manifest::decode(&body),
            Err(ProtocolError::BadManifest(_))
        ));
    }

    #[test]
    fn a_chunk_count_that_lies_is_refused() {
        let mut m = sample();
        m.chunk_hashes.pop();
        let err = Manifest::decode(&m.encode()).unwrap_err();
        assert!(err.to_string().contains("2 chunks declared"), "{err}");
    }

    #[test]
    fn the_accept_bitmap_round_trips() {
        let held = vec![true, false, false, true, true, false, false, false, true];
        let body = encode_accept(&held);
        assert_eq!(body.len(), 4 + 2);
        assert_eq!(decode_accept(&body, 9).unwrap(), held);
        assert!(decode_accept(&body, 10).is_err());
    }
}
