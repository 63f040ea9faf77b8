//! The HTTP API: Consul's routes, its status codes and plain-text errors, and blocking queries.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::protocol::{self, ProtocolError, QueryOptions, Status};
use crate::server::Shared;
use crate::state::{Record, Registry, RegistryError, Scope};

type App = Arc<Shared>;

/// The agent's routes.
pub fn router(shared: App) -> Router {
    let put = MethodFilter::PUT;
    // python3-consul sends deregistrations and check updates with GET; Consul documents PUT.
    let put_or_get = MethodFilter::PUT.or(MethodFilter::GET);
    let get = MethodFilter::GET;
    Router::new()
        .route("/v1/agent/service/register", only(put, register))
        .route(
            "/v1/agent/service/deregister/{id}",
            only(put_or_get, deregister),
        )
        .route("/v1/agent/services", only(get, agent_services))
        .route("/v1/agent/service/{id}", only(get, agent_service))
        .route("/v1/agent/check/{verb}/{id}", only(put_or_get, check_verb))
        .route("/v1/agent/check/update/{id}", only(put, check_update))
        .route("/v1/catalog/services", only(get, catalog_services))
        .route("/v1/catalog/service/{name}", only(get, catalog_service))
        .route("/v1/health/service/{name}", only(get, health_service))
        .route("/v1/health/checks/{name}", only(get, health_checks))
        .route("/v1/health/state/{state}", only(get, health_state))
        .route("/v1/status/leader", only(get, status_leader))
        .fallback(not_found)
        .with_state(shared)
}

fn only<H, T>(filter: MethodFilter, handler: H) -> MethodRouter<App>
where
    H: axum::handler::Handler<T, App>,
    T: 'static,
{
    on(filter, handler).fallback(method_not_allowed)
}

async fn method_not_allowed(method: Method) -> Response {
    text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} not allowed"),
    )
}

async fn not_found() -> Response {
    // Go's default answer for a path no handler serves.
    text(StatusCode::NOT_FOUND, "404 page not found".to_owned())
}

fn text(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message + "\n",
    )
        .into_response()
}

fn protocol_error(e: &ProtocolError) -> Response {
    text(StatusCode::BAD_REQUEST, e.to_string())
}

fn registry_error(e: &RegistryError) -> Response {
    let status = match e {
        RegistryError::UnknownService(_) | RegistryError::UnknownCheck(_) => StatusCode::NOT_FOUND,
        RegistryError::CheckTaken(_) => StatusCode::BAD_REQUEST,
        RegistryError::TooManyServices(_) => StatusCode::TOO_MANY_REQUESTS,
    };
    text(status, e.to_string())
}

/// Reads a body of at most `limit` bytes: 413 past it, as the answer to send.
async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, Response> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body too large (limit: {limit} bytes)"),
        )),
        Err(e) => Err(text(
            StatusCode::BAD_REQUEST,
            format!("cannot read the request body: {e}"),
        )),
    }
}

/// Applies a change, on a blocking thread when it waits for the disk, and answers 200 with an
/// empty body, or the change's error.
async fn commit<F>(shared: App, change: F) -> Response
where
    F: FnOnce(&mut Registry, Instant) -> Result<Vec<Record>, RegistryError> + Send + 'static,
{
    let wrapped = move |r: &mut Registry, now| change(r, now).map(|records| ((), records));
    let outcome = if shared.durable() {
        let worker = Arc::clone(&shared);
        match tokio::task::spawn_blocking(move || worker.change(wrapped)).await {
            Ok(outcome) => outcome,
            Err(e) => {
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the change failed: {e}"),
                );
            }
        }
    } else {
        shared.change(wrapped)
    };
    match outcome {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(e)) => registry_error(&e),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot persist the change: {e}"),
        ),
    }
}

async fn register(State(shared): State<App>, body: Body) -> Response {
    let body = match read_body(body, shared.max_body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let registration = match protocol::parse_registration(&body) {
        Ok(registration) => registration,
        Err(e) => return protocol_error(&e),
    };
    commit(shared, move |r, now| {
        r.register(registration, now).map(|rec| vec![rec])
    })
    .await
}

async fn deregister(State(shared): State<App>, Path(id): Path<String>) -> Response {
    commit(shared, move |r, now| {
        r.deregister(&id, now).map(|rec| vec![rec])
    })
    .await
}

async fn set_check(shared: App, id: String, status: Status, output: String) -> Response {
    commit(shared, move |r, now| {
        r.update_check(&id, status, &output, now)
            .map(|rec| rec.into_iter().collect())
    })
    .await
}

/// The `?note=` of a pass, warn or fail: the check's new output.
fn note(query: Option<&str>) -> Result<String, String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|e| format!("Invalid query: {e}"))?;
    Ok(pairs
        .into_iter()
        .find(|(k, _)| k == "note")
        .map(|(_, v)| v)
        .unwrap_or_default())
}

/// `pass`, `warn` or `fail` on a check, with `?note=` as its output.
async fn check_verb(
    State(shared): State<App>,
    Path((verb, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let status = match verb.as_str() {
        "pass" => Status::Passing,
        "warn" => Status::Warning,
        "fail" => Status::Critical,
        _ => return not_found().await,
    };
    match note(query.as_deref()) {
        Ok(note) => set_check(shared, id, status, note).await,
        Err(e) => text(StatusCode::BAD_REQUEST, e),
    }
}

async fn check_update(State(shared): State<App>, Path(id): Path<String>, body: Body) -> Response {
    let body = match read_body(body, shared.max_body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    match protocol::parse_check_update(&body) {
        Ok(update) => set_check(shared, id, update.status, update.output).await,
        Err(e) => protocol_error(&e),
    }
}

/// Which index a read endpoint answers with and waits on.
#[derive(Clone)]
enum ReadScope {
    All,
    Name(String),
}

impl ReadScope {
    fn get(&self) -> Scope<'_> {
        match self {
            ReadScope::All => Scope::All,
            ReadScope::Name(name) => Scope::Name(name),
        }
    }
}

/// Answers a read endpoint, blocking first when `?index=` asks to: the answer comes as soon as
/// the scope's index differs from the one given (moved on, or reset below it), or when the
/// wait (with its jitter) is over. `view` gives the body, or `None` for a 404 with `missing`.
async fn read(
    shared: App,
    query: Option<String>,
    scope: ReadScope,
    missing: String,
    view: impl Fn(&Registry, &QueryOptions) -> Option<Value>,
) -> Response {
    // TODO: the contract's "Blocking queries" as this doc says it, with no change lost between the
    // check and the wait: `index_of` and `subscribe` under one lock of the registry. A waiting
    // query holds a permit of `shared.waiting` (none: 429) and ends at `blocking_wait`'s deadline
    // or shutdown; a bad query is 400. `protocol::parse_query`, `answer`, `tokio::select!`,
    // `watch::Receiver`.
    todo!()
}

fn answer(index: u64, body: Option<Value>, missing: &str) -> Response {
    let mut response = match body {
        Some(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response(),
        None => text(StatusCode::NOT_FOUND, missing.to_owned()),
    };
    let headers = response.headers_mut();
    headers.insert("X-Consul-Index", HeaderValue::from(index));
    headers.insert("X-Consul-KnownLeader", HeaderValue::from_static("true"));
    headers.insert("X-Consul-LastContact", HeaderValue::from_static("0"));
    response
}

async fn agent_services(State(shared): State<App>, RawQuery(query): RawQuery) -> Response {
    read(shared, query, ReadScope::All, String::new(), |r, _| {
        Some(r.agent_services())
    })
    .await
}

async fn agent_service(
    State(shared): State<App>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let missing = format!("unknown service ID: {id}");
    read(shared, query, ReadScope::All, missing, move |r, _| {
        r.agent_service(&id)
    })
    .await
}

async fn catalog_services(State(shared): State<App>, RawQuery(query): RawQuery) -> Response {
    read(shared, query, ReadScope::All, String::new(), |r, _| {
        Some(r.catalog_services())
    })
    .await
}

async fn catalog_service(
    State(shared): State<App>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let scope = ReadScope::Name(name.clone());
    read(shared, query, scope, String::new(), move |r, o| {
        Some(r.catalog_service(&name, &o.tags))
    })
    .await
}

async fn health_service(
    State(shared): State<App>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let scope = ReadScope::Name(name.clone());
    read(shared, query, scope, String::new(), move |r, o| {
        Some(r.health_service(&name, &o.tags, o.passing))
    })
    .await
}

async fn health_checks(
    State(shared): State<App>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let scope = ReadScope::Name(name.clone());
    read(shared, query, scope, String::new(), move |r, _| {
        Some(r.health_checks(&name))
    })
    .await
}

async fn health_state(
    State(shared): State<App>,
    Path(state): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let state = match state.as_str() {
        "any" => None,
        other => match Status::parse(other) {
            Ok(status) => Some(status),
            Err(_) => return protocol_error(&ProtocolError::BadState),
        },
    };
    read(shared, query, ReadScope::All, String::new(), move |r, _| {
        Some(r.health_state(state))
    })
    .await
}

/// `GET /v1/status/leader`: this agent is its own leader; clients probe it to see an agent is up.
async fn status_leader() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        "\"127.0.0.1:8300\"",
    )
        .into_response()
}
