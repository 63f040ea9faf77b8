//! PATCH: bytes written at their offset, counted only once they are on disk (and match their
//! checksum, if one came). Creation-with-upload uses the same [`apply`].

use std::fs::{File, OpenOptions};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use http_body_util::BodyExt;
use sha1::Digest as _;
use sha2::Digest as _;
use tracing::warn;

use crate::protocol::{self, Algorithm, Checksum, OFFSET_OCTET_STREAM};
use crate::store::{self, Info, Kind, Slot, lock};
use crate::tus::{self, App, event, header, locked, reason, set, set_expires};

/// How many bytes of a body are gathered before one positioned write: big enough that a write
/// is one system call per megabyte, small enough that a thousand uploads fit in memory.
pub const WRITE_BUFFER: usize = 1 << 20;

/// The status tus gives a chunk whose checksum does not match.
pub const CHECKSUM_MISMATCH: u16 = 460;

/// PATCH /files/ID.
pub async fn patch(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // TODO: Stage 2. The contract's "PATCH" table, in its order, each refusal writing nothing, then
    // `apply`. The write lock is waited for at most `lock_wait` (else `locked()`), and the slot
    // must still be the store's once it is held. `find`, `protocol::parse_*`, `header`, the slot's
    // `write` lock (`tokio::time::timeout`).
    todo!()
}

/// 413 for an upload longer than `--max-size`.
pub fn too_large(length: u64, max: u64) -> Response {
    reason(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("an upload of {length} bytes is larger than Tus-Max-Size, {max} bytes"),
    )
}

/// How the body ended.
#[derive(Debug)]
enum End {
    /// Every byte came.
    Whole,
    /// The client went silent or the connection broke: what came is kept.
    Cut(&'static str),
    /// More bytes came than the upload has room for: those that fit are kept.
    TooLarge,
    /// The disk refused.
    Failed(std::io::Error),
}

/// Writes `body` at `info`'s offset and answers: 204 with the new offset once the bytes are
/// synced and the record says so. The caller holds the upload's write lock.
pub async fn apply(
    app: &App,
    slot: &Slot,
    mut info: Info,
    length_changed: bool,
    mut body: Body,
    checksum: Option<&Checksum>,
) -> Response {
    // TODO: Stage 2. The body written at the offset as "PATCH" says: never past the length (413,
    // keeping what fits), a silence of `idle_timeout` or a broken body a cut that keeps what came,
    // the buffer at most `WRITE_BUFFER` before `flush`. The offset moves only once the bytes are
    // synced, and the record is persisted before the slot's: a crash leaves it between the last
    // acked and the bytes sent. Checksum (stage 3): bytes count only if the body came whole and
    // matched, else 460.
    todo!()
}

/// Writes `buffer` at `at` on the blocking pool, hashing it there too. Returns the number of
/// bytes written (the buffer's length: add it to the position), the buffer emptied for reuse, and
/// the hasher.
async fn flush(
    file: &Arc<File>,
    buffer: Vec<u8>,
    at: u64,
    hasher: Option<Hasher>,
) -> std::io::Result<(u64, Vec<u8>, Option<Hasher>)> {
    // TODO: Stage 2. `buffer` written at `at` and hashed, off the runtime
    // (`tokio::task::spawn_blocking`, `store::write_at`); returns the bytes written, the buffer
    // emptied for reuse, and the hasher.
    todo!()
}

/// Announces a finished upload and, for a part, finishes its final upload if it was the last.
pub async fn completed(app: &App, info: &Info) {
    // TODO: Stage 2. The `complete` event; for a placed part (stage 5) `finish_final` its final.
    todo!()
}

/// Records a final upload as complete once all its parts are, and announces it (once).
pub async fn finish_final(app: &App, final_id: &str) {
    // TODO: Stage 5. If `tus::final_progress` says the final is complete and its record does not say so
    // yet, set `offset` and `length`, `persist`, and emit `complete` for it (once).
    todo!()
}

/// A running checksum of a chunk.
enum Hasher {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl Hasher {
    fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha1(h) => h.update(bytes),
            Hasher::Sha256(h) => h.update(bytes),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
        }
    }
}
