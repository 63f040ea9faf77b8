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
    let bad = || ProtocolError::BadNumber {
        header,
        value: String::from_utf8_lossy(value).into_owned(),
    };
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)
}

/// Checks `Upload-Defer-Length`, whose only legal value is `1`.
pub fn parse_defer_length(value: &[u8]) -> Result<(), ProtocolError> {
    if value == b"1" {
        Ok(())
    } else {
        Err(ProtocolError::BadDeferLength(
            String::from_utf8_lossy(value).into_owned(),
        ))
    }
}

/// Parses `Upload-Metadata`: comma-separated pairs `KEY BASE64`, the value optional, keys
/// non-empty, without spaces or commas, and unique; an empty header is no metadata. Returns the decoded pairs; the server keeps
/// the header as it came (validated, so it is safe to echo) and never uses a value as a path.
pub fn parse_metadata(value: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ProtocolError> {
    let text = ascii("Upload-Metadata", value)?;
    let mut pairs: Vec<(String, Vec<u8>)> = Vec::new();
    // tuspy sends an empty header when it has no metadata; tusd takes that as none, and so
    // does this server.
    if text.trim().is_empty() {
        return Ok(pairs);
    }
    for pair in text.split(',') {
        let (key, encoded) = pair.split_once(' ').unwrap_or((pair, ""));
        if key.is_empty() {
            return Err(ProtocolError::BadMetadata("an empty key".into()));
        }
        if encoded.contains(' ') {
            return Err(ProtocolError::BadMetadata(format!(
                "key {key:?}: more than one space-separated value"
            )));
        }
        let decoded = STANDARD.decode(encoded).map_err(|e| {
            ProtocolError::BadMetadata(format!("key {key:?}: the value is not base64 ({e})"))
        })?;
        if pairs.iter().any(|(k, _)| k == key) {
            return Err(ProtocolError::BadMetadata(format!(
                "key {key:?} appears twice"
            )));
        }
        pairs.push((key.to_owned(), decoded));
    }
    Ok(pairs)
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
    let text = ascii("Upload-Checksum", value)?;
    let bad = || ProtocolError::BadChecksum(text.to_owned());
    let (name, encoded) = text.split_once(' ').ok_or_else(bad)?;
    let algorithm = match name {
        "sha1" => Algorithm::Sha1,
        "sha256" => Algorithm::Sha256,
        other => return Err(ProtocolError::UnsupportedAlgorithm(other.to_owned())),
    };
    let digest = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    if digest.len() != algorithm.digest_len() {
        return Err(bad());
    }
    Ok(Checksum { algorithm, digest })
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
    let text = ascii("Upload-Concat", value)?;
    if text == "partial" {
        return Ok(Concat::Partial);
    }
    let Some(list) = text.strip_prefix("final;") else {
        return Err(ProtocolError::BadConcat(format!(
            "expected `partial` or `final;URL URL...`, got {text:?}"
        )));
    };
    let mut ids = Vec::new();
    for url in list.split(' ').filter(|u| !u.is_empty()) {
        let id = url.rsplit('/').next().unwrap_or("");
        if !is_upload_id(id) {
            return Err(ProtocolError::BadConcat(format!(
                "{url:?} is not the URL of an upload of this server"
            )));
        }
        ids.push(id.to_owned());
    }
    if ids.is_empty() {
        return Err(ProtocolError::BadConcat(
            "a final upload lists no partial upload".into(),
        ));
    }
    Ok(Concat::Final(ids))
}

/// Whether `s` has the shape of an upload id: 32 lowercase hex digits (128 random bits). Only
/// such a string ever becomes a file name.
pub fn is_upload_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The id for 16 random bytes: their lowercase hex.
pub fn upload_id(random: [u8; 16]) -> String {
    random.iter().map(|b| format!("{b:02x}")).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_number("Upload-Offset", b"0"), Ok(0));
        assert_eq!(parse_number("Upload-Offset", b"123"), Ok(123));
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b" 1",
            b"1.0",
            b"99999999999999999999",
        ] {
            assert!(parse_number("Upload-Offset", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn metadata() {
        let pairs = parse_metadata(b"filename d29ybGQ=,is_confidential").unwrap();
        assert_eq!(pairs[0], ("filename".into(), b"world".to_vec()));
        assert_eq!(pairs[1], ("is_confidential".into(), Vec::new()));
        assert!(parse_metadata(b"a Zm9v,a YmFy").is_err());
        assert!(parse_metadata(b" Zm9v").is_err());
        assert!(parse_metadata(b"a !!!").is_err());
        assert!(parse_metadata(b"a \x01").is_err());
    }

    #[test]
    fn checksums() {
        let c = parse_checksum(b"sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=").unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha1);
        assert_eq!(c.digest.len(), 20);
        assert_eq!(
            parse_checksum(b"md5 AAAA"),
            Err(ProtocolError::UnsupportedAlgorithm("md5".into()))
        );
        assert!(parse_checksum(b"sha1 AAAA").is_err());
        assert!(parse_checksum(b"sha1").is_err());
    }

    #[test]
    fn concat() {
        let a = "0123456789abcdef0123456789abcdef";
        let b = "fedcba9876543210fedcba9876543210";
        assert_eq!(parse_concat(b"partial"), Ok(Concat::Partial));
        let value = format!("final;/files/{a} http://h:1/files/{b}");
        assert_eq!(
            parse_concat(value.as_bytes()),
            Ok(Concat::Final(vec![a.into(), b.into()]))
        );
        assert!(parse_concat(b"final;").is_err());
        assert!(parse_concat(b"final;/files/../../etc").is_err());
        assert!(parse_concat(b"whole").is_err());
    }
}
