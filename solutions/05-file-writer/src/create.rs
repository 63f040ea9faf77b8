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
    if app.store.len() >= app.config.max_uploads {
        return reason(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{} uploads exist already, the most allowed",
                app.config.max_uploads
            ),
        );
    }
    let parsed = (|| {
        let concat = header(&headers, "upload-concat")
            .map(protocol::parse_concat)
            .transpose()?;
        let metadata = match header(&headers, "upload-metadata") {
            Some(raw) if protocol::parse_metadata(raw)?.is_empty() => None,
            Some(raw) => {
                // Printable ASCII, checked by the parser.
                Some(String::from_utf8_lossy(raw).into_owned())
            }
            None => None,
        };
        Ok::<_, protocol::ProtocolError>((concat, metadata))
    })();
    let (concat, metadata) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return reason(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let location = location(&headers);
    if let Some(Concat::Final(parts)) = concat {
        let raw = String::from_utf8_lossy(header(&headers, "upload-concat").unwrap_or_default());
        return create_final(&app, parts, raw.into_owned(), metadata, location).await;
    }
    let length = match (
        header(&headers, "upload-length"),
        header(&headers, "upload-defer-length"),
    ) {
        (Some(value), None) => match protocol::parse_number("Upload-Length", value) {
            Ok(length) => Some(length),
            Err(e) => return reason(StatusCode::BAD_REQUEST, e.to_string()),
        },
        (None, Some(value)) => match protocol::parse_defer_length(value) {
            Ok(()) => None,
            Err(e) => return reason(StatusCode::BAD_REQUEST, e.to_string()),
        },
        _ => {
            return reason(
                StatusCode::BAD_REQUEST,
                protocol::ProtocolError::LengthChoice.to_string(),
            );
        }
    };
    if let Some(length) = length
        && length > app.config.max_size
    {
        return too_large(length, app.config.max_size);
    }
    let has_body = headers.contains_key("transfer-encoding")
        || header(&headers, "content-length").is_some_and(|v| v != b"0");
    if has_body && header(&headers, "content-type") != Some(OFFSET_OCTET_STREAM.as_bytes()) {
        return reason(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("data sent with a POST must have Content-Type: {OFFSET_OCTET_STREAM}"),
        );
    }
    let checksum = match header(&headers, "upload-checksum")
        .map(protocol::parse_checksum)
        .transpose()
    {
        Ok(checksum) => checksum,
        Err(e) => return reason(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let info = Info {
        id: protocol::upload_id(rand::random()),
        length,
        offset: 0,
        metadata,
        kind: match concat {
            Some(_) => Kind::Partial { placed: None },
            None => Kind::Single,
        },
        expires: app.expiry_from_now(),
    };
    if let Err(e) = on_disk(&app, &info, 0).await {
        warn!("cannot create an upload: {e}");
        return reason(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot create the upload",
        );
    }
    let slot = app.store.insert(info.clone());
    event(serde_json::json!({"event": "created", "id": info.id, "length": info.length}));
    let mut response = if has_body {
        let _guard = Arc::clone(&slot.write).lock_owned().await;
        let mut response = apply(&app, &slot, info.clone(), false, body, checksum.as_ref()).await;
        if response.status() == StatusCode::NO_CONTENT {
            *response.status_mut() = StatusCode::CREATED;
        }
        response
    } else {
        if info.length == Some(0) {
            patch::completed(&app, &info).await;
        }
        let mut response = tus::empty(StatusCode::CREATED);
        set_expires(&mut response, &info);
        response
    };
    set(&mut response, "location", format!("{location}{}", info.id));
    response
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
    let mut slots = Vec::with_capacity(parts.len());
    for (i, id) in parts.iter().enumerate() {
        if parts[..i].contains(id) {
            return reason(StatusCode::BAD_REQUEST, format!("{id} is listed twice"));
        }
        match app.store.get(id) {
            Some(slot) => slots.push(slot),
            None => {
                return reason(
                    StatusCode::BAD_REQUEST,
                    format!("Upload-Concat: no partial upload {id}"),
                );
            }
        }
    }
    let mut guards = Vec::with_capacity(slots.len());
    for slot in &slots {
        match tokio::time::timeout(app.config.lock_wait, Arc::clone(&slot.write).lock_owned()).await
        {
            Ok(guard) => guards.push(guard),
            Err(_) => return locked(),
        }
    }
    let infos: Vec<Info> = slots.iter().map(|s| lock(&s.info).clone()).collect();
    let mut total = 0u64;
    for info in &infos {
        let fault = match (&info.kind, info.length) {
            (Kind::Partial { .. }, None) => Some("has no Upload-Length yet"),
            (Kind::Partial { placed: Some(_) }, _) if !info.is_complete() => {
                Some("is an unfinished part of another final upload")
            }
            (Kind::Partial { .. }, Some(_)) => None,
            _ => Some("is not a partial upload"),
        };
        if let Some(fault) = fault {
            return reason(
                StatusCode::BAD_REQUEST,
                format!("upload {} {fault}", info.id),
            );
        }
        total = total.saturating_add(info.length.unwrap_or(0));
    }
    if total > app.config.max_size {
        return too_large(total, app.config.max_size);
    }
    let final_info = Info {
        id: protocol::upload_id(rand::random()),
        length: Some(total),
        offset: 0,
        metadata,
        kind: Kind::Final {
            parts: parts.clone(),
            concat,
        },
        expires: app.expiry_from_now(),
    };
    if let Err(e) = on_disk(app, &final_info, total).await {
        warn!("cannot create a final upload: {e}");
        return reason(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot create the upload",
        );
    }
    let final_id = final_info.id.clone();
    app.store.insert(final_info.clone());
    let mut copies = tokio::task::JoinSet::new();
    let mut base = 0;
    for (slot, info) in slots.iter().zip(infos) {
        let dir = app.store.dir().to_owned();
        let (slot, final_id, at) = (Arc::clone(slot), final_id.clone(), base);
        base += info.length.unwrap_or(0);
        copies.spawn_blocking(move || {
            let placed = place(&dir, &final_id, at, info)?;
            *lock(&slot.info) = placed;
            Ok::<_, io::Error>(())
        });
    }
    while let Some(done) = copies.join_next().await {
        if let Err(e) = done.map_err(io::Error::other).and_then(|r| r) {
            warn!(
                id = final_id,
                "cannot place a part in the final upload: {e}"
            );
            return reason(StatusCode::INTERNAL_SERVER_ERROR, "cannot concatenate");
        }
    }
    drop(guards);
    event(serde_json::json!({"event": "created", "id": final_id, "length": total}));
    patch::finish_final(app, &final_id).await;
    let mut response = tus::empty(StatusCode::CREATED);
    set(&mut response, "location", format!("{location}{final_id}"));
    set_expires(&mut response, &final_info);
    response
}

/// Copies the bytes `part` has so far to `base` of the final upload's file and, if the part was
/// not placed yet, records it there and removes its own file. Idempotent, so that a restart can
/// run it again.
fn place(dir: &Path, final_id: &str, base: u64, mut part: Info) -> io::Result<Info> {
    let (source, source_base) = part.target();
    store::copy_range(
        &dir.join(source),
        source_base,
        &dir.join(final_id),
        base,
        part.offset,
    )?;
    if let Kind::Partial { placed: None } = part.kind {
        part.kind = Kind::Partial {
            placed: Some(Placement {
                final_id: final_id.to_owned(),
                base,
            }),
        };
        store::persist(dir, &part)?;
        match fs::remove_file(dir.join(&part.id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(part)
}

/// After a restart: finishes placing the parts of every final upload (a crash may have come
/// between creating the final and recording its parts), and removes files no record names.
pub fn recover(app: &App) -> io::Result<()> {
    let dir = app.store.dir();
    for info in app.store.snapshot() {
        let Kind::Final { parts, .. } = &info.kind else {
            continue;
        };
        let mut base = 0;
        for id in parts {
            let Some(slot) = app.store.get(id) else {
                warn!(id = info.id, "part {id} of this final upload is missing");
                break;
            };
            let part = lock(&slot.info).clone();
            let length = part.length.unwrap_or(0);
            if matches!(part.kind, Kind::Partial { placed: None }) {
                let placed = place(dir, &info.id, base, part)?;
                *lock(&slot.info) = placed;
            }
            base += length;
        }
    }
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let orphan = match name.split_once('.') {
            Some((id, "tmp")) => protocol::is_upload_id(id),
            None => protocol::is_upload_id(name) && app.store.get(name).is_none(),
            _ => false,
        };
        if orphan {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}
