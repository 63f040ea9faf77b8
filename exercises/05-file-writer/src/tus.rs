//! The tus routes: the shared state, OPTIONS, HEAD, DELETE, expiration, and the answers they
//! share. POST is in [`crate::create`], PATCH in [`crate::patch`].

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{head, post};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::protocol::{self, CHECKSUM_ALGORITHMS, EXTENSIONS, TUS_VERSION};
use crate::server::ServerConfig;
use crate::store::{self, Info, Kind, Slot, Store, lock};

/// What every handler shares.
#[derive(Debug)]
pub struct App {
    /// The uploads.
    pub store: Store,
    /// The server's configuration.
    pub config: ServerConfig,
}

impl App {
    /// The state of a server over `store`.
    pub fn new(store: Store, config: ServerConfig) -> App {
        App { store, config }
    }

    /// When an upload created or written now expires, unless expiration is off. The lifetime
    /// counts from an upload's last activity (its creation or its last PATCH that counted bytes),
    /// as tusd does: a slow client that keeps sending is never cut off mid-upload.
    pub fn expiry_from_now(&self) -> Option<u64> {
        // Rounded up, so that an upload lives at least `--expire`, never a moment less.
        (!self.config.expire.is_zero()).then(|| {
            let at = SystemTime::now() + self.config.expire;
            let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
            since.as_secs() + u64::from(since.subsec_nanos() > 0)
        })
    }
}

/// The routes, `POST /files/` and `/files/ID`.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/files/", post(crate::create::create).options(describe))
        .route("/files", post(crate::create::create).options(describe))
        .route(
            "/files/{id}",
            head(head_upload)
                .patch(crate::patch::patch)
                .delete(terminate)
                .options(describe),
        )
        .fallback(not_found)
        .with_state(app)
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A plain-text answer: the status and why.
pub fn reason(status: StatusCode, why: impl Into<String>) -> Response {
    let mut text = why.into();
    text.push('\n');
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// An empty answer with `status`.
pub fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

/// Sets a header whose value is a number or a checked string.
pub fn set(response: &mut Response, name: &'static str, value: impl ToString) {
    if let Ok(value) = HeaderValue::from_str(&value.to_string()) {
        response.headers_mut().insert(name, value);
    }
}

/// `Upload-Expires` in the HTTP date format, if the upload expires.
pub fn set_expires(response: &mut Response, info: &Info) {
    if let Some(at) = info.expires
        && !info.is_complete()
    {
        let when = UNIX_EPOCH + Duration::from_secs(at);
        set(response, "upload-expires", httpdate::fmt_http_date(when));
    }
}

/// 410 for an upload terminated or expired in this run, 404 for one never seen.
pub fn missing(app: &App, id: &str) -> Response {
    if app.store.is_gone(id) {
        reason(
            StatusCode::GONE,
            format!("upload {id} was terminated or expired"),
        )
    } else {
        reason(StatusCode::NOT_FOUND, "no such upload")
    }
}

/// The upload `id`, or the answer saying it does not exist.
// The error is the answer itself, built once per request: boxing it would buy nothing.
#[allow(clippy::result_large_err)]
pub fn find(app: &App, id: &str) -> Result<Arc<Slot>, Response> {
    if !protocol::is_upload_id(id) {
        return Err(reason(StatusCode::NOT_FOUND, "no such upload"));
    }
    app.store.get(id).ok_or_else(|| missing(app, id))
}

/// A header's raw value, if present.
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers.get(name).map(HeaderValue::as_bytes)
}

/// Prints one event as a JSON line on stdout.
pub fn event(value: serde_json::Value) {
    println!("{value}");
}

/// OPTIONS: what this server speaks.
async fn describe(State(app): State<Arc<App>>) -> Response {
    // TODO: Stage 1. 204 with `Tus-Version`, `Tus-Extension` (EXTENSIONS), `Tus-Max-Size` and
    // `Tus-Checksum-Algorithm`; `set` writes each header.
    todo!()
}

async fn not_found() -> Response {
    reason(StatusCode::NOT_FOUND, "uploads are created at /files/")
}

/// The offset and length of a final upload from its parts: `(offset if complete, length)`.
pub fn final_progress(app: &App, parts: &[String]) -> (Option<u64>, Option<u64>) {
    // TODO: Stage 5. Sum the parts' lengths (`None` if one is unknown or missing); the offset is that
    // sum only if every part `is_complete()`.
    todo!()
}

/// HEAD: the honest offset, the length, and what the upload was created with.
async fn head_upload(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    // TODO: Stage 1. `find`, then 200 with `Cache-Control: no-store`, `Upload-Offset`, `Upload-Length`
    // or `Upload-Defer-Length: 1`, `Upload-Metadata`, `Upload-Concat` and `set_expires`. A final
    // upload (stage 5) shows `Upload-Offset` only once `final_progress` says it is complete.
    todo!()
}

/// DELETE: termination. A final upload takes the parts it holds with it; a part of an unfinished
/// final takes that final (their bytes share one file).
async fn terminate(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    // TODO: Stage 4. `find`; what goes: the upload alone, or for a final (or a part of an unfinished
    // final) the whole `group`. `remove_all(.., "terminated", || false)` then 204.
    todo!()
}

fn final_parts(slot: &Slot) -> Vec<String> {
    match &lock(&slot.info).kind {
        Kind::Final { parts, .. } => parts.clone(),
        _ => Vec::new(),
    }
}

/// A final upload and the parts whose bytes it holds.
fn group(app: &App, final_id: &str, final_slot: &Arc<Slot>) -> Vec<(String, Arc<Slot>)> {
    let mut members = vec![(final_id.to_owned(), Arc::clone(final_slot))];
    for part in final_parts(final_slot) {
        if let Some(slot) = app.store.get(&part) {
            let placed_here = matches!(&lock(&slot.info).kind,
                Kind::Partial { placed: Some(p) } if p.final_id == final_id);
            if placed_here {
                members.push((part, slot));
            }
        }
    }
    members
}

/// Removes uploads and announces each as `what`, once no request writes them (waiting up to the
/// lock wait, else 423), unless `keep` says otherwise by then (an upload finished while the
/// sweeper waited for it).
#[allow(clippy::result_large_err)]
async fn remove_all(
    app: &App,
    doomed: Vec<(String, Arc<Slot>)>,
    what: &'static str,
    keep: impl Fn() -> bool,
) -> Result<(), Response> {
    // TODO: Stage 4. No upload removed while a request writes it: every slot's `write` lock held
    // first, each waited for at most `lock_wait` (else `locked()`); then, unless `keep()`, every id
    // forgotten by the store, its files removed on the blocking pool, and `{"event": what, "id":
    // id}` printed for each. `Store::forget`, `store::remove`, `event`.
    todo!()
}

/// 423 Locked: another request is writing this upload.
pub fn locked() -> Response {
    reason(
        StatusCode::LOCKED,
        "another request is writing this upload; retry once it ends",
    )
}

/// Removes unfinished uploads past their `Upload-Expires`, until `shutdown`. A part placed in a
/// final expires with its final, and the final only once none of its parts has been written
/// for the lifetime either.
pub async fn expire_loop(app: Arc<App>, shutdown: CancellationToken) {
    // TODO: Stage 1 (`run` starts it), tested in stage 4. The contract's "Expiration": nothing when
    // `expire` is zero; else, until `shutdown`, a sweep every `expire / 4` (clamped to 50 ms..30 s)
    // removes each unfinished group past its latest expiry (`remove_all(.., "expired", keep)`,
    // `keep` checking that it is still unfinished: it may have finished while the sweep waited).
    // `snapshot`, `group`.
    todo!()
}
