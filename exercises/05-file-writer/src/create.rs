//! POST: creation (with upload, with a deferred length), partial uploads, and final uploads
//! that concatenate them into one preallocated file; and the recovery after a restart of a
//! concatenation a crash interrupted.

use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use tracing::warn;

use crate::patch::{self, apply, too_large};
use crate::protocol::{self, Concat, FILES_PATH, OFFSET_OCTET_STREAM};
use crate::store::{self, Info, Kind, Placement, lock};
use crate::tus::{self, App, event, header, locked, reason, set, set_expires};

/// POST /files/.
pub async fn create(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    // TODO: Stage 1 (single uploads), 2 (a body), 5 (Upload-Concat). 503 past `max_uploads`; parse
    // `Upload-Concat` and `Upload-Metadata` (400 with the error's text); a final goes to
    // `create_final`. Exactly one of `Upload-Length` / `Upload-Defer-Length`; 413 past `max_size`;
    // a body needs the offset+octet-stream type (415). New `Info` with `upload_id(rand::random())`,
    // `on_disk`, `store.insert`, the `created` event; a body goes through `patch::apply` under the
    // slot's write lock (204 becomes 201). Always a `Location`.
    todo!()
}

/// Where uploads live, as the client named this server: `http://HOST/files/` when the `Host`
/// header is a plain authority, `/files/` otherwise.
fn location(headers: &HeaderMap) -> String {
    match header(headers, "host") {
        Some(host)
            if !host.is_empty()
                && host.iter().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'-' | b'[' | b']')
                }) =>
        {
            format!("http://{}{FILES_PATH}", String::from_utf8_lossy(host))
        }
        _ => FILES_PATH.to_owned(),
    }
}

/// Creates the files of `info` on the blocking pool.
async fn on_disk(app: &App, info: &Info, size: u64) -> io::Result<()> {
    let dir = app.store.dir().to_owned();
    let info = info.clone();
    tokio::task::spawn_blocking(move || store::create(&dir, &info, size))
        .await
        .map_err(io::Error::other)?
}

/// A final upload: one file as long as its parts together, each part given its range. Bytes a
/// part has already are copied there (in parallel, kernel to kernel); bytes it receives later
/// are written there directly.
async fn create_final(
    app: &App,
    parts: Vec<String>,
    concat: String,
    metadata: Option<String>,
    location: String,
) -> Response {
    // TODO: Stage 5. Every listed id must exist (and appear once), be partial, have a length, and not be
    // an unfinished part elsewhere (400). Lock every part, sum the lengths (413), create the final
    // at full length with `on_disk(.., total)` and insert it; then `place` each part at its base
    // on the blocking pool (a `JoinSet`, in parallel) and store the placed record in its slot.
    // The `created` event, `patch::finish_final`, 201 with `Location`.
    todo!()
}

/// Copies the bytes `part` has so far to `base` of the final upload's file and, if the part was
/// not placed yet, records it there and removes its own file. Idempotent, so that a restart can
/// run it again.
fn place(dir: &Path, final_id: &str, base: u64, mut part: Info) -> io::Result<Info> {
    // TODO: Stage 5. `copy_range` the part's `offset` bytes from where they are (`part.target()`) to
    // `base` of the final's file. If it was not placed yet: record `Placement`, `persist`, remove
    // its own bytes file (NotFound is fine). Return the new record.
    todo!()
}

/// After a restart: finishes placing the parts of every final upload (a crash may have come
/// between creating the final and recording its parts), and removes files no record names.
pub fn recover(app: &App) -> io::Result<()> {
    // TODO: Stage 1 (`run` calls it at start), tested in stage 6. For every final upload in
    // `snapshot()`, walk its parts with a running base and `place` those still `placed: None`.
    // Then remove `ID.tmp` files and `ID` files no record names.
    todo!()
}
