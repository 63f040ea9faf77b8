//! The server: its configuration, the accept loop, the HTTP/1.1 connections, and what every tus
//! request goes through before and after its handler (`X-HTTP-Method-Override`, the
//! `Tus-Resumable` check, the header-size limit).

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::debug;

use crate::protocol::TUS_VERSION;
use crate::store::Store;
use crate::tus::{self, App};

/// The largest upload accepted unless `--max-size` says otherwise: 64 GiB.
pub const DEFAULT_MAX_SIZE: u64 = 64 << 30;
/// How long an unfinished upload lives after its last activity: 24 hours (`0s`: forever).
pub const DEFAULT_EXPIRE: Duration = Duration::from_secs(24 * 3600);
/// The most connections served at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// The most uploads that may exist at once.
pub const DEFAULT_MAX_UPLOADS: usize = 10_000;
/// The most bytes of request headers (names, values and separators) a request may carry.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 << 10;
/// How long a client may stay silent (headers not finished, or no body byte) before its request
/// is cut and its lock released; the specification suggests 30 seconds.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a PATCH waits for another PATCH of the same upload before 423 Locked.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(3);

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where uploads live. Nothing outside it is touched.
    pub dir: PathBuf,
    /// The largest upload, in bytes (`Tus-Max-Size`; larger is 413).
    pub max_size: u64,
    /// How long an unfinished upload lives; zero for ever.
    pub expire: Duration,
    /// The most connections at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// The most uploads at once; one more POST is answered 503.
    pub max_uploads: usize,
    /// The most bytes of headers in one request (more is 431).
    pub max_header_bytes: usize,
    /// The longest silence of a client within a request.
    pub idle_timeout: Duration,
    /// How long a second PATCH to one upload waits for the first.
    pub lock_wait: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            dir: PathBuf::from("."),
            max_size: DEFAULT_MAX_SIZE,
            expire: DEFAULT_EXPIRE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_uploads: DEFAULT_MAX_UPLOADS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            lock_wait: DEFAULT_LOCK_WAIT,
        }
    }
}

/// Serves tus on `listener` until `shutdown` is cancelled. Reads back the uploads recorded in
/// `config.dir` first, finishing any concatenation a crash interrupted.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let store = Store::open(&config.dir)?;
    let app = Arc::new(App::new(store, config));
    crate::create::recover(&app)?;
    let router = tus::router(Arc::clone(&app));
    let tracker = TaskTracker::new();
    tracker.spawn(tus::expire_loop(Arc::clone(&app), shutdown.clone()));
    let accept = plumbing::AcceptConfig::new(app.config.max_connections);
    plumbing::accept_loop(
        &listener,
        &accept,
        &shutdown,
        &tracker,
        |mut stream| async move {
            let _ = stream
                .write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\
                      Content-Length: 25\r\n\r\ntoo many connections now\n",
                )
                .await;
        },
        |stream, peer| {
            let router = router.clone();
            let app = Arc::clone(&app);
            let shutdown = shutdown.clone();
            async move {
                let idle = app.config.idle_timeout;
                let service = hyper::service::service_fn(move |req| {
                    let router = router.clone();
                    let app = Arc::clone(&app);
                    async move { Ok::<_, Infallible>(handle(&app, router, req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(idle)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            debug!(%peer, "connection ended: {e}");
                        }
                    }
                    () = shutdown.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            }
        },
    )
    .await;
    plumbing::drain(&tracker, Duration::from_secs(3)).await;
    Ok(())
}

/// What every request goes through around its handler.
async fn handle(
    app: &App,
    router: axum::Router,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    // TODO: Stage 1. The contract's "Every request": 431 for headers past `max_header_bytes` (name
    // + value + 4 bytes each), `X-HTTP-Method-Override`, 412 with `Tus-Version` for a request but
    // OPTIONS without `Tus-Resumable: 1.0.0`, and `Tus-Resumable` on every answer; else the router
    // answers (`router.oneshot(req)`).
    todo!()
}
