//! The wire protocol: frames, the manifest and the receiver's answers. Pure and synchronous.
//!
//! Your task: [`header`], [`parse_header`], [`chunk_count`], the [`Manifest`] methods (with
//! `chunk_len`), [`encode_accept`] and [`decode_accept`] in stage 1 (even a fresh transfer
//! exchanges an ACCEPT, with no chunk held); [`decode_index`] in stage 3 (RESEND); every check
//! in `Manifest::decode` by stage 6. The constants, [`Kind`] and [`ProtocolError`] are given.
//! The contract page has every byte.
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
    // TODO: the body length as a big-endian `u32` (`u32::to_be_bytes`), then `kind as u8`.
    todo!()
}

/// Decodes a frame header: the kind and the body length.
pub fn parse_header(bytes: [u8; HEADER_LEN]) -> Result<(Kind, usize), ProtocolError> {
    // TODO: `u32::from_be_bytes` of the first four bytes; `Kind::from_byte` of the fifth, or
    // `ProtocolError::UnknownKind`.
    todo!()
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
    // TODO: the hashes fed in order to one `Sha256` used as a stream (`Digest::update`,
    // `finalize`), not joined into a buffer first.
    todo!()
}

/// How many chunks a file of `size` bytes has in chunks of `chunk_size`: none when empty.
pub fn chunk_count(size: u64, chunk_size: u32) -> u64 {
    // TODO: `u64::div_ceil`.
    todo!()
}

impl Manifest {
    /// How many chunks the file has.
    pub fn chunks(&self) -> u32 {
        // TODO: the number of chunk hashes (decoding keeps it below MAX_CHUNKS, so `as u32` is safe).
        todo!()
    }

    /// Where chunk `index` starts in the file.
    pub fn offset(&self, index: u32) -> u64 {
        // TODO: index times chunk size, in `u64` (a `u32` product overflows past 4 GiB).
        todo!()
    }

    /// Whether every chunk is one block of the content hash: its chunk hashes are then the block
    /// hashes, and the whole-file hash follows from them alone.
    pub fn chunks_are_blocks(&self) -> bool {
        // TODO: compare `chunk_size` with BLOCK_SIZE.
        todo!()
    }

    /// How long chunk `index` is: `chunk_size`, except for a shorter last chunk.
    pub fn chunk_len(&self, index: u32) -> usize {
        // TODO: the bytes left from `offset(index)`, at most `chunk_size`.
        todo!()
    }

    /// The manifest's body: version, name, size, chunk size, file hash, chunk count, chunk hashes,
    /// then the SHA-256 of everything before it, which catches a manifest damaged in transit.
    pub fn encode(&self) -> Vec<u8> {
        // TODO: push the fields in the contract's order into a `Vec<u8>` (`to_be_bytes` for the
        // integers, `extend_from_slice` for bytes), then `Sha256::digest(&out)` and append it.
        todo!()
    }

    /// Reads a manifest body, checking everything that can be checked without the file: its own
    /// hash, the version, the chunk size's range, and that the chunk count fits the size.
    pub fn decode(body: &[u8]) -> Result<Manifest, ProtocolError> {
        // TODO: the manifest of the contract's "The protocol", or `ProtocolError::BadManifest`
        // saying which field is wrong (the sender prints it): its own SHA-256 checked first, then
        // every field read with a cursor that never reads past the end, the version, name (UTF-8,
        // MAX_NAME_LEN), chunk size, count (`chunk_count`, MAX_CHUNKS) and hashes filling the rest
        // exactly.
        todo!()
    }
}

/// The ACCEPT body: the chunk count, then bit `i` (byte `i / 8`, bit `i % 8`, least significant
/// first) set for each chunk the receiver already holds.
pub fn encode_accept(held: &[bool]) -> Vec<u8> {
    // TODO: the layout this doc and the contract give: a big-endian `u32`, then just enough
    // bytes for the bits (`usize::div_ceil`).
    todo!()
}

/// Reads an ACCEPT body for a file of `chunks` chunks: which chunks the receiver holds.
pub fn decode_accept(body: &[u8], chunks: u32) -> Result<Vec<bool>, ProtocolError> {
    // TODO: the body must be exactly 4 + ceil(chunks / 8) bytes (`ProtocolError::WrongLength`)
    // and its count must equal `chunks`; then test each bit.
    todo!()
}

/// A body that is one `u32` (RESEND), checked for its length.
pub fn decode_index(kind: Kind, body: &[u8]) -> Result<u32, ProtocolError> {
    // TODO: `<[u8; 4]>::try_from(body)`, or `ProtocolError::WrongLength`; `u32::from_be_bytes`.
    todo!()
}
