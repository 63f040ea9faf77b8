//! PATCH: bytes written at their offset, counted only once they are on disk (and match their
//! checksum, if one came). Creation-with-upload uses the same [`apply`].

use std::fs::{File, OpenOptions};
use std::sync::{Arc, Mutex};

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
    let slot = match tus::find(&app, &id) {
        Ok(slot) => slot,
        Err(response) => return response,
    };
    if header(&headers, "content-type") != Some(OFFSET_OCTET_STREAM.as_bytes()) {
        return reason(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("a PATCH must have Content-Type: {OFFSET_OCTET_STREAM}"),
        );
    }
    let Some(offset) = header(&headers, "upload-offset") else {
        return reason(StatusCode::BAD_REQUEST, "a PATCH needs Upload-Offset");
    };
    let parsed = (|| {
        let offset = protocol::parse_number("Upload-Offset", offset)?;
        let checksum = header(&headers, "upload-checksum")
            .map(protocol::parse_checksum)
            .transpose()?;
        let length = header(&headers, "upload-length")
            .map(|v| protocol::parse_number("Upload-Length", v))
            .transpose()?;
        let content_length = header(&headers, "content-length")
            .map(|v| protocol::parse_number("Content-Length", v))
            .transpose()?;
        Ok::<_, protocol::ProtocolError>((offset, checksum, length, content_length))
    })();
    let (offset, checksum, new_length, content_length) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return reason(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let Ok(_guard) =
        tokio::time::timeout(app.config.lock_wait, Arc::clone(&slot.write).lock_owned()).await
    else {
        return locked();
    };
    // Terminated or expired while this request waited for the lock.
    if !app.store.get(&id).is_some_and(|s| Arc::ptr_eq(&s, &slot)) {
        return tus::missing(&app, &id);
    }
    let mut info = lock(&slot.info).clone();
    if matches!(info.kind, Kind::Final { .. }) {
        return reason(
            StatusCode::FORBIDDEN,
            "a final upload is written through its partial uploads",
        );
    }
    if offset != info.offset {
        let mut response = reason(
            StatusCode::CONFLICT,
            format!(
                "Upload-Offset is {offset}, but this upload's offset is {}",
                info.offset
            ),
        );
        set(&mut response, "upload-offset", info.offset);
        return response;
    }
    let mut length_changed = false;
    match (info.length, new_length) {
        (Some(known), Some(new)) if known != new => {
            return reason(
                StatusCode::BAD_REQUEST,
                format!("Upload-Length is {known} already and cannot change to {new}"),
            );
        }
        (None, Some(new)) => {
            if new > app.config.max_size {
                return too_large(new, app.config.max_size);
            }
            if new < info.offset {
                return reason(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "Upload-Length {new} is less than the {} bytes received",
                        info.offset
                    ),
                );
            }
            info.length = Some(new);
            length_changed = true;
        }
        _ => {}
    }
    let limit = info.length.unwrap_or(app.config.max_size);
    if let Some(len) = content_length
        && info.offset.saturating_add(len) > limit
    {
        return reason(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{len} bytes at offset {} go past the upload's end at {limit}",
                info.offset
            ),
        );
    }
    apply(&app, &slot, info, length_changed, body, checksum.as_ref()).await
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
    let (file_id, base) = info.target();
    let path = app.store.data_path(file_id);
    let opened = tokio::task::spawn_blocking(move || OpenOptions::new().write(true).open(path))
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
    let file = match opened {
        Ok(file) => Arc::new(file),
        Err(e) => {
            warn!(id = info.id, "cannot open the upload's file: {e}");
            return reason(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot open the upload's file",
            );
        }
    };
    let limit = info.length.unwrap_or(app.config.max_size);
    let mut hasher = checksum.map(|c| Hasher::new(c.algorithm));
    let mut position = info.offset;
    let mut buffer = spare_buffer();
    let mut end = End::Whole;
    // One write on the blocking pool at a time, while the next buffer fills from the socket: the
    // disk and the network work at once. Writes land in order, so `position` only ever counts a
    // prefix of the body that is written.
    let mut pending: Option<Flush> = None;
    let mut queued = 0u64;
    'body: loop {
        let frame = match tokio::time::timeout(app.config.idle_timeout, body.frame()).await {
            Err(_) => {
                end = End::Cut("the client went silent");
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(_))) => {
                end = End::Cut("the body was cut");
                break;
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let room = limit - position - queued - buffer.len() as u64;
        let take = data.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        // The buffer is filled to exactly `WRITE_BUFFER` bytes, never grown: a frame that does
        // not fit goes on in the next buffer.
        let mut rest = &data[..take];
        while !rest.is_empty() {
            let n = rest.len().min(WRITE_BUFFER - buffer.len());
            buffer.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if buffer.len() < WRITE_BUFFER {
                continue;
            }
            let mut spare = None;
            if let Some(previous) = pending.take() {
                match finish(previous).await {
                    Ok((written, emptied, h)) => {
                        position += written;
                        spare = Some(emptied);
                        hasher = h;
                    }
                    Err(e) => {
                        buffer.clear();
                        hasher = None;
                        end = End::Failed(e);
                        break 'body;
                    }
                }
            }
            queued = buffer.len() as u64;
            let full = std::mem::replace(&mut buffer, spare.unwrap_or_else(spare_buffer));
            pending = Some(start_flush(&file, full, base + position, hasher.take()));
        }
        if take < data.len() {
            end = End::TooLarge;
            break;
        }
    }
    if let Some(previous) = pending.take() {
        match finish(previous).await {
            Ok((written, emptied, h)) => {
                position += written;
                hasher = h;
                give_back(emptied);
            }
            Err(e) => {
                buffer.clear();
                hasher = None;
                end = End::Failed(e);
            }
        }
    }
    if !buffer.is_empty() && !matches!(end, End::Failed(_)) {
        match flush(&file, buffer, base + position, hasher).await {
            Ok((written, emptied, h)) => {
                position += written;
                hasher = h;
                give_back(emptied);
            }
            Err(e) => {
                hasher = None;
                end = End::Failed(e);
            }
        }
    } else {
        give_back(buffer);
    }
    let written = position - info.offset;
    let mut mismatch = false;
    let counted = match (checksum, hasher) {
        (None, _) => written,
        (Some(expected), Some(h)) if matches!(end, End::Whole) => {
            mismatch = h.finish() != expected.digest;
            if mismatch { 0 } else { written }
        }
        // A chunk that did not arrive whole cannot be checked: it is discarded.
        (Some(_), _) => 0,
    };
    if counted > 0 || length_changed {
        info.offset += counted;
        if counted > 0 {
            // Activity: the lifetime starts again (see `App::expiry_from_now`).
            info.expires = app.expiry_from_now().or(info.expires);
        }
        let dir = app.store.dir().to_owned();
        let record = info.clone();
        let durable = tokio::task::spawn_blocking(move || {
            if counted > 0 {
                file.sync_data()?;
            }
            store::persist(&dir, &record)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        if let Err(e) = durable {
            warn!(id = info.id, "cannot record the new offset: {e}");
            return reason(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot record the new offset",
            );
        }
        *lock(&slot.info) = info.clone();
        // Complete by this PATCH's bytes, or by a deferred length it declared equal to the bytes
        // already here (a PATCH with no body): either way the upload has just completed, and its
        // bytes are on disk (each PATCH's were synced before its offset counted them).
        if info.is_complete() {
            completed(app, &info).await;
        }
    }
    let mut response = match end {
        _ if mismatch => reason(
            StatusCode::from_u16(CHECKSUM_MISMATCH).unwrap_or(StatusCode::BAD_REQUEST),
            "Upload-Checksum does not match the chunk: the chunk is discarded",
        ),
        End::Whole => tus::empty(StatusCode::NO_CONTENT),
        End::TooLarge => reason(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body goes past the upload's end at {limit}"),
        ),
        End::Cut(why) => reason(StatusCode::REQUEST_TIMEOUT, why),
        End::Failed(e) => {
            warn!(id = info.id, "cannot write: {e}");
            reason(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot write the upload's file",
            )
        }
    };
    set(&mut response, "upload-offset", info.offset);
    set_expires(&mut response, &tus::with_group_expiry(app, &info));
    response
}

/// How many emptied write buffers are kept for the next PATCHes (`WRITE_BUFFER` bytes each):
/// enough for four PATCHes at once, each with one buffer filling and one being written.
const SPARE_BUFFERS: usize = 8;

/// Emptied write buffers, kept between PATCHes. A buffer freed at the end of each PATCH would go
/// back to the kernel and come again as fresh pages, each faulted in and zeroed: with 8 MiB
/// PATCHes that was about a tenth of the server's CPU.
static SPARE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer of `WRITE_BUFFER` bytes' capacity, a kept one if there is one.
fn spare_buffer() -> Vec<u8> {
    lock(&SPARE)
        .pop()
        .unwrap_or_else(|| Vec::with_capacity(WRITE_BUFFER))
}

/// Keeps `buffer` for a later PATCH, unless enough are kept already.
fn give_back(mut buffer: Vec<u8>) {
    buffer.clear();
    let mut spare = lock(&SPARE);
    if spare.len() < SPARE_BUFFERS && buffer.capacity() >= WRITE_BUFFER {
        spare.push(buffer);
    }
}

/// A write on the blocking pool: the bytes written, the buffer emptied, the hasher.
type Flush = tokio::task::JoinHandle<std::io::Result<(u64, Vec<u8>, Option<Hasher>)>>;

/// Waits for a write started by [`start_flush`].
async fn finish(flush: Flush) -> std::io::Result<(u64, Vec<u8>, Option<Hasher>)> {
    flush.await.map_err(std::io::Error::other)?
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
    finish(start_flush(file, buffer, at, hasher)).await
}

/// Starts [`flush`]'s work without waiting for it.
fn start_flush(file: &Arc<File>, buffer: Vec<u8>, at: u64, hasher: Option<Hasher>) -> Flush {
    let file = Arc::clone(file);
    tokio::task::spawn_blocking(move || {
        let mut buffer = buffer;
        let mut hasher = hasher;
        store::write_at(&file, &buffer, at)?;
        if let Some(h) = hasher.as_mut() {
            h.update(&buffer);
        }
        let written = buffer.len() as u64;
        buffer.clear();
        Ok((written, buffer, hasher))
    })
}

/// Announces a finished upload and, for a part, finishes its final upload if it was the last.
pub async fn completed(app: &App, info: &Info) {
    event(serde_json::json!({"event": "complete", "id": info.id, "length": info.offset}));
    if let Kind::Partial {
        placed: Some(place),
    } = &info.kind
    {
        finish_final(app, &place.final_id).await;
    }
}

/// Records a final upload as complete once all its parts are, and announces it (once).
pub async fn finish_final(app: &App, final_id: &str) {
    let Some(slot) = app.store.get(final_id) else {
        return;
    };
    let parts = match &lock(&slot.info).kind {
        Kind::Final { parts, .. } => parts.clone(),
        _ => return,
    };
    let Some(length) = tus::final_progress(app, &parts).0 else {
        return;
    };
    let record = {
        let mut info = lock(&slot.info);
        if info.offset == length && info.length == Some(length) {
            return;
        }
        info.offset = length;
        info.length = Some(length);
        info.clone()
    };
    let dir = app.store.dir().to_owned();
    let saved = record.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store::persist(&dir, &saved)).await {
        warn!(
            id = final_id,
            "cannot record the final upload as complete: {e}"
        );
    }
    event(serde_json::json!({"event": "complete", "id": final_id, "length": length}));
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
