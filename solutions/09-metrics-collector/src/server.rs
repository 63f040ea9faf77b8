//! The collector: its listeners, the pipeline from readers to workers to the writer, and the
//! shutdown that stops reading, flushes what was read, and only then returns.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router as HttpRouter;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::aggregate::Limits;
use crate::connection::{self, Agents, Ingest, Parser};
use crate::exposition::{self, Exposition};
use crate::pipeline::{Counters, Router};
use crate::protocol;
use crate::writer::{self, Writer};

/// The flush interval.
pub const DEFAULT_FLUSH: Duration = Duration::from_secs(10);
/// The most series live at once (all kinds, all shards).
pub const DEFAULT_MAX_SERIES: usize = 100_000;
/// The longest line, in bytes.
pub const DEFAULT_MAX_LINE: usize = 8 * 1024;
/// The most connections at once, per TCP listener.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The largest agent batch, in bytes.
pub const DEFAULT_MAX_FRAME: usize = 1024 * 1024;
/// The most members a set counts in one interval.
pub const DEFAULT_MAX_SET_SIZE: usize = 65_536;
/// The most distinct agents remembered for deduplication.
pub const DEFAULT_MAX_AGENTS: usize = 10_000;
/// Batches queued to each worker before readers wait.
pub const DEFAULT_WORKER_QUEUE: usize = 256;
/// How long shutdown waits for connections to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The collector's settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The JSON-lines file each batch is appended to.
    pub out: PathBuf,
    /// The flush interval.
    pub flush: Duration,
    /// Aggregation workers (shards); 0 means one per core.
    pub workers: usize,
    /// See [`DEFAULT_MAX_SERIES`].
    pub max_series: usize,
    /// See [`DEFAULT_MAX_LINE`].
    pub max_line: usize,
    /// See [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`DEFAULT_MAX_FRAME`].
    pub max_frame: usize,
    /// See [`DEFAULT_MAX_SET_SIZE`].
    pub max_set_size: usize,
    /// See [`DEFAULT_MAX_AGENTS`].
    pub max_agents: usize,
    /// See [`DEFAULT_WORKER_QUEUE`].
    pub worker_queue: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            out: PathBuf::from("metrics.jsonl"),
            flush: DEFAULT_FLUSH,
            workers: 0,
            max_series: DEFAULT_MAX_SERIES,
            max_line: DEFAULT_MAX_LINE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_frame: DEFAULT_MAX_FRAME,
            max_set_size: DEFAULT_MAX_SET_SIZE,
            max_agents: DEFAULT_MAX_AGENTS,
            worker_queue: DEFAULT_WORKER_QUEUE,
        }
    }
}

/// Where the collector listens: StatsD over TCP always, the rest when bound.
#[derive(Debug)]
pub struct Listeners {
    /// StatsD lines over TCP.
    pub statsd: TcpListener,
    /// StatsD datagrams.
    pub udp: Option<UdpSocket>,
    /// Graphite plaintext over TCP.
    pub graphite: Option<TcpListener>,
    /// Agents' framed batches.
    pub agent: Option<TcpListener>,
    /// `GET /metrics`.
    pub http: Option<TcpListener>,
}

#[derive(Clone)]
struct HttpState {
    exposition: Arc<Mutex<Exposition>>,
    counters: Arc<Counters>,
    limits: Arc<Limits>,
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    let overflow = state
        .limits
        .overflow
        .load(std::sync::atomic::Ordering::Relaxed);
    let page = state
        .exposition
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .render(&state.counters, overflow);
    ([(CONTENT_TYPE, exposition::CONTENT_TYPE)], page)
}

fn accept_lines(
    listener: TcpListener,
    config: &ServerConfig,
    ingest: &Ingest,
    parse: Parser,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) {
    let accept = plumbing::AcceptConfig::new(config.max_connections);
    let (ingest, shutdown, conns) = (ingest.clone(), shutdown.clone(), tracker.clone());
    tracker.spawn(async move {
        plumbing::accept_loop(
            &listener,
            &accept,
            &shutdown,
            &conns,
            |_refused| async {},
            |stream, _peer| {
                connection::serve_lines(stream, ingest.clone(), parse, shutdown.clone())
            },
        )
        .await;
    });
}

/// Runs the collector until `shutdown`, then stops reading, writes the last batch, and returns.
///
/// # Errors
/// When the output file cannot be opened.
pub async fn run(
    listeners: Listeners,
    config: ServerConfig,
    shutdown: CancellationToken,
) -> Result<()> {
    let file = writer::open_output(&config.out)
        .with_context(|| format!("cannot open {} for appending", config.out.display()))?;
    let workers = match config.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let limits = Arc::new(Limits {
        max_series: config.max_series,
        max_set_size: config.max_set_size,
        ..Limits::default()
    });
    let counters = Arc::new(Counters::default());
    let (router, worker_handles) = Router::start(workers, config.worker_queue, Arc::clone(&limits));
    let exposition = Arc::new(Mutex::new(Exposition::new(config.max_series)));
    let ingest = Ingest::new(router.clone(), Arc::clone(&counters), config.max_line);
    let tracker = TaskTracker::new();

    accept_lines(
        listeners.statsd,
        &config,
        &ingest,
        protocol::parse_statsd,
        &shutdown,
        &tracker,
    );
    if let Some(graphite) = listeners.graphite {
        accept_lines(
            graphite,
            &config,
            &ingest,
            protocol::parse_graphite,
            &shutdown,
            &tracker,
        );
    }
    if let Some(udp) = listeners.udp {
        tracker.spawn(connection::serve_udp(udp, ingest.clone(), shutdown.clone()));
    }
    if let Some(agent) = listeners.agent {
        let agents = Arc::new(Agents::new(config.max_agents));
        let accept = plumbing::AcceptConfig::new(config.max_connections);
        let (ingest, shutdown, conns, max_frame) = (
            ingest.clone(),
            shutdown.clone(),
            tracker.clone(),
            config.max_frame,
        );
        tracker.spawn(async move {
            plumbing::accept_loop(
                &agent,
                &accept,
                &shutdown,
                &conns,
                |mut refused| async move {
                    let _ = refused.write_all(b"ERR too many connections\n").await;
                },
                |stream, _peer| {
                    connection::serve_agent(
                        stream,
                        ingest.clone(),
                        Arc::clone(&agents),
                        max_frame,
                        shutdown.clone(),
                    )
                },
            )
            .await;
        });
    }
    let http = listeners.http.map(|listener| {
        let state = HttpState {
            exposition: Arc::clone(&exposition),
            counters: Arc::clone(&counters),
            limits: Arc::clone(&limits),
        };
        let app = HttpRouter::new()
            .route("/metrics", get(metrics))
            .with_state(state);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::warn!("http server failed: {e}");
            }
        })
    });

    let stop_writer = CancellationToken::new();
    let writer = tokio::spawn(
        Writer {
            router,
            counters,
            limits,
            exposition,
            file,
            interval: config.flush,
        }
        .run(stop_writer.clone()),
    );
    shutdown.cancelled().await;
    // Readers first: what they read before the signal is in the last batch.
    plumbing::drain(&tracker, SHUTDOWN_GRACE).await;
    drop(ingest);
    stop_writer.cancel();
    let _ = writer.await;
    for handle in worker_handles {
        handle.abort();
    }
    if let Some(http) = http {
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, http).await;
    }
    Ok(())
}
