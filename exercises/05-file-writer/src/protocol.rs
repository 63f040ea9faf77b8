//! The tus 1.0.0 headers: their names, the values this server announces, and the parsing of
//! every header a client sends. Pure and synchronous: no I/O, no clock.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The one protocol version spoken, in `Tus-Resumable` and `Tus-Version`.
pub const TUS_VERSION: &str = "1.0.0";

/// The extensions announced in `Tus-Extension`, in the order the specification lists them.
pub const EXTENSIONS: &str = "creation,creation-with-upload,creation-defer-length,termination,\
                              expiration,checksum,concatenation,concatenation-unfinished";

/// The checksum algorithms announced in `Tus-Checksum-Algorithm`.
pub const CHECKSUM_ALGORITHMS: &str = "sha1,sha256";

/// The only content type a PATCH (or a POST with data) may carry.
pub const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

/// The path under which uploads are created and live: `POST /files/`, `PATCH /files/ID`.
pub const FILES_PATH: &str = "/files/";

/// A header a client sent that this server cannot accept: each one answers 400 with its message
/// as the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A header that must be a non-negative integer is not.
    #[error("{header}: expected a non-negative integer, got {value:?}")]
    BadNumber {
        /// The header's name.
        header: &'static str,
        /// What came.
        value: String,
    },
    /// `Upload-Defer-Length` other than `1`.
    #[error("Upload-Defer-Length: must be 1, got {0:?}")]
    BadDeferLength(String),
    /// Neither or both of `Upload-Length` and `Upload-Defer-Length`.
    #[error("a new upload needs exactly one of Upload-Length and Upload-Defer-Length: 1")]
    LengthChoice,
    /// `Upload-Metadata` that is not `key base64,key base64`.
    #[error("Upload-Metadata: {0}")]
    BadMetadata(String),
    /// `Upload-Checksum` that is not `algorithm base64`.
    #[error("Upload-Checksum: expected `ALGORITHM BASE64-DIGEST`, got {0:?}")]
    BadChecksum(String),
    /// A checksum algorithm this server does not compute.
    #[error("Upload-Checksum: unsupported algorithm {0:?} (supported: sha1, sha256)")]
    UnsupportedAlgorithm(String),
    /// `Upload-Concat` that is neither `partial` nor `final;URL URL...`.
    #[error("Upload-Concat: {0}")]
    BadConcat(String),
    /// A header whose bytes are not visible ASCII.
    #[error("{0}: not printable ASCII")]
    NotAscii(&'static str),
}

/// Parses the value of `Upload-Offset` or `Upload-Length`: decimal digits only (no sign, no
/// spaces), at most 19 of them so that it fits in a `u64` with room to add.
pub fn parse_number(header: &'static str, value: &[u8]) -> Result<u64, ProtocolError> {
    // TODO: Stage 1. Digits only (`u8::is_ascii_digit`), 1 to 19 of them, then `str::parse`;
    // anything else is `ProtocolError::BadNumber { header, value }` (`String::from_utf8_lossy`).
    todo!()
}

/// Checks `Upload-Defer-Length`, whose only legal value is `1`.
pub fn parse_defer_length(value: &[u8]) -> Result<(), ProtocolError> {
    // TODO: Stage 1. `value == b"1"` or `ProtocolError::BadDeferLength`.
    todo!()
}

/// Parses `Upload-Metadata`: comma-separated pairs `KEY BASE64`, the value optional, keys
/// non-empty, without spaces or commas, and unique; an empty header is no metadata. Returns the decoded pairs; the server keeps
/// the header as it came (validated, so it is safe to echo) and never uses a value as a path.
pub fn parse_metadata(value: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ProtocolError> {
    // TODO: Stage 1. `ascii("Upload-Metadata", value)?`; an empty header is `Ok(vec![])`. Split on
    // `,`, each pair on its first space (`split_once`); decode with `STANDARD.decode`; refuse an
    // empty key, a second space, bad base64 and a repeated key with `ProtocolError::BadMetadata`.
    todo!()
}

/// A checksum algorithm of the checksum extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `sha1`, which every server of the extension must support.
    Sha1,
    /// `sha256`.
    Sha256,
}

impl Algorithm {
    /// The digest's length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
        }
    }
}

/// A parsed `Upload-Checksum`: the algorithm and the digest the chunk must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    /// How to hash.
    pub algorithm: Algorithm,
    /// The expected digest, decoded from base64.
    pub digest: Vec<u8>,
}

/// Parses `Upload-Checksum: ALGORITHM BASE64`. An unknown algorithm is its own error (the
/// specification answers it with 400 too, but says why).
pub fn parse_checksum(value: &[u8]) -> Result<Checksum, ProtocolError> {
    // TODO: Stage 2 (`upload` sends a checksum), tested in stage 3. `ascii(...)?`,
    // `split_once(' ')`; `sha1`/`sha256` or `UnsupportedAlgorithm`; the digest is base64 and
    // exactly `algorithm.digest_len()` bytes, else `BadChecksum`.
    todo!()
}

/// What `Upload-Concat` declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Concat {
    /// `partial`: one part of a later final upload.
    Partial,
    /// `final;URL URL...`: the ids of the partial uploads, in order.
    Final(Vec<String>),
}

/// Parses `Upload-Concat`. The URLs of a final may be absolute (`http://host/files/ID`) or
/// relative (`/files/ID`); each must end in an upload id.
pub fn parse_concat(value: &[u8]) -> Result<Concat, ProtocolError> {
    // TODO: Stage 5. `partial`, or `final;` then space-separated URLs whose last `/` segment must pass
    // `is_upload_id`; no URL at all is `BadConcat` too.
    todo!()
}

/// Whether `s` has the shape of an upload id: 32 lowercase hex digits (128 random bits). Only
/// such a string ever becomes a file name.
pub fn is_upload_id(s: &str) -> bool {
    // TODO: Stage 1. 32 bytes, each `b'0'..=b'9' | b'a'..=b'f'`.
    todo!()
}

/// The id for 16 random bytes: their lowercase hex.
pub fn upload_id(random: [u8; 16]) -> String {
    // TODO: Stage 1. Each byte as `format!("{b:02x}")`, collected into one `String`.
    todo!()
}

/// The header as text, if every byte is printable ASCII.
fn ascii<'a>(header: &'static str, value: &'a [u8]) -> Result<&'a str, ProtocolError> {
    if value.iter().all(|b| (0x20..0x7f).contains(b)) {
        // Printable ASCII is UTF-8.
        std::str::from_utf8(value).map_err(|_| ProtocolError::NotAscii(header))
    } else {
        Err(ProtocolError::NotAscii(header))
    }
}
