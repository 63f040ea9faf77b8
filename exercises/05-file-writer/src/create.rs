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
    // TODO: Stage 1 (single uploads), 2 (a body), 5 (Upload-Concat). The contract's "POST
    // (creation)" table, every refusal with its status and reason; a final goes to `create_final`.
    // A new upload is on disk (`on_disk`) and in the store before its `created` event; a body is
    // applied as a PATCH (`patch::apply`) under the slot's write lock, 204 becoming 201. Always a
    // `Location`. `upload_id(rand::random())`, `protocol::parse_*`, `too_large`.
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
    // TODO: Stage 5. The final upload of the contract's "Concatenation": the parts checked (each
    // exists once, is partial, has a length, is no unfinished part elsewhere: 400; the sum past
    // `max_size`: 413) while every part is locked; the final created at full length and inserted,
    // then each part's bytes placed at its base in parallel (`place` on the blocking pool, a
    // `JoinSet`) and its placed record stored in its slot; `created`, `patch::finish_final`, 201
    // with `Location`.
    todo!()
}

/// Copies the bytes `part` has so far to `base` of the final upload's file and, if the part was
/// not placed yet, records it there and removes its own file. Idempotent, so that a restart can
/// run it again.
fn place(dir: &Path, final_id: &str, base: u64, mut part: Info) -> io::Result<Info> {
    // TODO: Stage 5. The part's `offset` bytes at `base` of the final's file (`store::copy_range`
    // from `part.target()`); a part not yet placed gets its `Placement` recorded (`store::persist`)
    // before its own bytes file goes (NotFound is fine). Idempotent: a restart runs it again.
    todo!()
}

/// After a restart: finishes placing the parts of every final upload (a crash may have come
/// between creating the final and recording its parts), and removes files no record names.
pub fn recover(app: &App) -> io::Result<()> {
    // TODO: Stage 1 (`run` calls it at start: until stage 5 there is nothing to place), tested in
    // stage 6. Every final upload in `snapshot()` ends with all its parts placed (`place`, at the
    // running base of each part still `placed: None`), and DIR holds no `ID.tmp` and no `ID` file
    // that no record names (contract: "Concatenation").
    todo!()
}
