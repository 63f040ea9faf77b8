//! The collector: its listeners, the pipeline from readers to workers to the writer, and the
//! shutdown that stops reading, flushes what was read, and only then returns.
//!
//! Your task (stage 1): [`run`]. The config, the listeners, the `/metrics` handler and the accept
//! loop of the line listeners (`accept_lines`) are given.

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
    // TODO: the collector of the contract until `shutdown`: the output file, the workers (`Router`;
    // 0 workers means `available_parallelism`), the readers on a `TaskTracker` (StatsD and Graphite
    // over TCP with `accept_lines`, StatsD over UDP, agents through `plumbing::accept_loop`,
    // refused with `ERR too many connections`), `/metrics` over `axum`, and the writer; at shutdown
    // the readers drained first, then the writer's last flush. `writer::open_output`, `Exposition`.
    todo!()
}
