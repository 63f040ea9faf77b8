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
    let mut response = empty(StatusCode::NO_CONTENT);
    set(&mut response, "tus-version", TUS_VERSION);
    set(&mut response, "tus-extension", EXTENSIONS);
    set(&mut response, "tus-max-size", app.config.max_size);
    set(&mut response, "tus-checksum-algorithm", CHECKSUM_ALGORITHMS);
    response
}

async fn not_found() -> Response {
    reason(StatusCode::NOT_FOUND, "uploads are created at /files/")
}

/// When the group `info` belongs to expires: a final upload and the parts placed in it live as
/// long as the latest of their expiries, since a PATCH to any part is activity of the whole.
fn group_expiry(app: &App, info: &Info) -> Option<u64> {
    let parts = match &info.kind {
        Kind::Final { parts, .. } => parts.clone(),
        Kind::Partial {
            placed: Some(place),
        } => match app.store.get(&place.final_id) {
            Some(final_slot) => {
                let final_info = lock(&final_slot.info).clone();
                return group_expiry(app, &final_info).max(info.expires);
            }
            None => return info.expires,
        },
        _ => return info.expires,
    };
    let mut latest = info.expires;
    for id in parts {
        if let Some(slot) = app.store.get(&id) {
            let part = lock(&slot.info).clone();
            let placed_here = matches!(&part.kind,
                Kind::Partial { placed: Some(p) } if p.final_id == info.id);
            if placed_here {
                latest = latest.max(part.expires);
            }
        }
    }
    latest
}

/// `info` with the expiry of its group, for `Upload-Expires`.
pub(crate) fn with_group_expiry(app: &App, info: &Info) -> Info {
    Info {
        expires: group_expiry(app, info),
        ..info.clone()
    }
}

/// The offset and length of a final upload from its parts: `(offset if complete, length)`.
pub fn final_progress(app: &App, parts: &[String]) -> (Option<u64>, Option<u64>) {
    let mut length = Some(0u64);
    let mut complete = true;
    for id in parts {
        let part = app.store.get(id).map(|slot| lock(&slot.info).clone());
        match part {
            Some(info) => {
                complete &= info.is_complete();
                length = length.zip(info.length).map(|(a, b)| a + b);
            }
            None => {
                complete = false;
                length = None;
            }
        }
    }
    (complete.then_some(length).flatten(), length)
}

/// HEAD: the honest offset, the length, and what the upload was created with.
async fn head_upload(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let slot = match find(&app, &id) {
        Ok(slot) => slot,
        Err(response) => return response,
    };
    let info = lock(&slot.info).clone();
    let mut response = empty(StatusCode::OK);
    set(&mut response, "cache-control", "no-store");
    match &info.kind {
        Kind::Final { parts, concat } => {
            let (offset, length) = final_progress(&app, parts);
            if let Some(offset) = offset {
                set(&mut response, "upload-offset", offset);
            }
            if let Some(length) = length.or(info.length) {
                set(&mut response, "upload-length", length);
            }
            set(&mut response, "upload-concat", concat);
        }
        kind => {
            set(&mut response, "upload-offset", info.offset);
            match info.length {
                Some(length) => set(&mut response, "upload-length", length),
                None => set(&mut response, "upload-defer-length", 1),
            }
            if matches!(kind, Kind::Partial { .. }) {
                set(&mut response, "upload-concat", "partial");
            }
        }
    }
    if let Some(metadata) = &info.metadata {
        set(&mut response, "upload-metadata", metadata);
    }
    set_expires(&mut response, &with_group_expiry(&app, &info));
    response
}

/// DELETE: termination. A final upload takes the parts it holds with it; a part of an unfinished
/// final takes that final (their bytes share one file).
async fn terminate(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let slot = match find(&app, &id) {
        Ok(slot) => slot,
        Err(response) => return response,
    };
    let info = lock(&slot.info).clone();
    let doomed = match &info.kind {
        Kind::Partial {
            placed: Some(place),
        } => match app.store.get(&place.final_id) {
            Some(final_slot) if final_progress(&app, &final_parts(&final_slot)).0.is_none() => {
                group(&app, &place.final_id, &final_slot)
            }
            _ => vec![(id.clone(), slot)],
        },
        Kind::Final { .. } => group(&app, &id, &slot),
        _ => vec![(id.clone(), slot)],
    };
    match remove_all(&app, doomed, "terminated", || false).await {
        Ok(()) => empty(StatusCode::NO_CONTENT),
        Err(response) => response,
    }
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
    let mut guards = Vec::new();
    for (_, slot) in &doomed {
        match tokio::time::timeout(app.config.lock_wait, Arc::clone(&slot.write).lock_owned()).await
        {
            Ok(guard) => guards.push(guard),
            Err(_) => return Err(locked()),
        }
    }
    if keep() {
        return Ok(());
    }
    let dir = app.store.dir().to_owned();
    let ids: Vec<String> = doomed.iter().map(|(id, _)| id.clone()).collect();
    for id in &ids {
        app.store.forget(id);
    }
    let removed =
        tokio::task::spawn_blocking(move || ids.iter().try_for_each(|id| store::remove(&dir, id)))
            .await;
    for (id, _) in &doomed {
        event(serde_json::json!({"event": what, "id": id}));
    }
    match removed {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            warn!("removing uploads: {e}");
            Err(reason(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot remove: {e}"),
            ))
        }
        Err(e) => Err(reason(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// 423 Locked: another request is writing this upload.
pub fn locked() -> Response {
    reason(
        StatusCode::LOCKED,
        "another request is writing this upload; retry once it ends",
    )
}

/// Whether upload `id` is complete now (a final: all its parts), or gone.
fn finished(app: &App, id: &str) -> bool {
    let Some(slot) = app.store.get(id) else {
        return true;
    };
    let info = lock(&slot.info).clone();
    match &info.kind {
        Kind::Final { parts, .. } => final_progress(app, parts).0.is_some(),
        _ => info.is_complete(),
    }
}

/// Removes unfinished uploads past their `Upload-Expires`, until `shutdown`. A part placed in a
/// final expires with its final, and the final only once none of its parts has been written
/// for the lifetime either.
pub async fn expire_loop(app: Arc<App>, shutdown: CancellationToken) {
    if app.config.expire.is_zero() {
        return;
    }
    let every = (app.config.expire / 4).clamp(Duration::from_millis(50), Duration::from_secs(30));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let now = now_secs();
        for info in app.store.snapshot() {
            let due = group_expiry(&app, &info).is_some_and(|at| at <= now);
            let placed = matches!(info.kind, Kind::Partial { placed: Some(_) });
            if !due || placed || finished(&app, &info.id) {
                continue;
            }
            let Some(slot) = app.store.get(&info.id) else {
                continue;
            };
            let doomed = match info.kind {
                Kind::Final { .. } => group(&app, &info.id, &slot),
                _ => vec![(info.id.clone(), slot)],
            };
            let keep = || {
                finished(&app, &info.id)
                    || app.store.get(&info.id).is_some_and(|slot| {
                        let now_info = lock(&slot.info).clone();
                        group_expiry(&app, &now_info).is_some_and(|at| at > now_secs())
                    })
            };
            if let Err(e) = remove_all(&app, doomed, "expired", keep).await {
                warn!(id = info.id, "cannot expire yet: {}", e.status());
            }
        }
    }
}
