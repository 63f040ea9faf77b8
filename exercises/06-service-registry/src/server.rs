//! The agent: its configuration, the shared registry with its journal, the TTL and reaper
//! tasks, and the HTTP accept loop with its connection limit.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::dns::DnsSockets;
use crate::journal::Journal;
use crate::state::{Node, Record, Registry};

/// Default `--node`.
pub const DEFAULT_NODE: &str = "registry";
/// Default `--advertise`: the address of instances registered without one.
pub const DEFAULT_ADVERTISE: &str = "127.0.0.1";
/// Default `--datacenter`.
pub const DEFAULT_DATACENTER: &str = "dc1";
/// Default `--max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;
/// Default `--max-body`.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;
/// Default `--max-header`: the request line and headers together.
pub const DEFAULT_MAX_HEADER: usize = 16 * 1024;
/// Default `--max-waiting`: blocking queries held at once.
pub const DEFAULT_MAX_WAITING: usize = 16_384;
/// Default `--max-services`.
pub const DEFAULT_MAX_SERVICES: usize = 100_000;
/// Default `--reap-interval`: how often services critical for too long are looked for
/// (Consul's reaper runs every 30 s).
pub const DEFAULT_REAP_INTERVAL: Duration = Duration::from_secs(30);
/// Default `--min-deregister-after`: the shortest DeregisterCriticalServiceAfter honoured
/// (Consul's minimum is one minute).
pub const DEFAULT_MIN_DEREGISTER_AFTER: Duration = Duration::from_secs(60);
/// How long a client may take to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connections get to finish after shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The agent's settings.
#[derive(Debug)]
pub struct ServerConfig {
    /// The node name answers show.
    pub node: String,
    /// The address of instances registered without one.
    pub advertise: String,
    /// The datacenter answers show.
    pub datacenter: String,
    /// Where the journal lives; `None` keeps everything in memory.
    pub data: Option<PathBuf>,
    /// HTTP connections served at once; one more is answered 429 and closed.
    pub max_connections: usize,
    /// The largest request body, in bytes (413 past it).
    pub max_body: usize,
    /// The largest request head (request line and headers), in bytes (431 past it).
    pub max_header: usize,
    /// Blocking queries held at once (429 past it).
    pub max_waiting: usize,
    /// Service instances registered at once (429 past it).
    pub max_services: usize,
    /// How often the reaper looks for services critical for too long.
    pub reap_interval: Duration,
    /// The shortest DeregisterCriticalServiceAfter honoured; shorter ones count as this.
    pub min_deregister_after: Duration,
    /// The DNS interface's sockets, if it has one.
    pub dns: Option<DnsSockets>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            node: DEFAULT_NODE.to_owned(),
            advertise: DEFAULT_ADVERTISE.to_owned(),
            datacenter: DEFAULT_DATACENTER.to_owned(),
            data: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_body: DEFAULT_MAX_BODY,
            max_header: DEFAULT_MAX_HEADER,
            max_waiting: DEFAULT_MAX_WAITING,
            max_services: DEFAULT_MAX_SERVICES,
            reap_interval: DEFAULT_REAP_INTERVAL,
            min_deregister_after: DEFAULT_MIN_DEREGISTER_AFTER,
            dns: None,
        }
    }
}

/// What every request handler shares.
pub struct Shared {
    registry: Mutex<Registry>,
    /// Taken while the registry is still locked, so that records reach the journal in the
    /// order they were applied; held (without the registry) across the fsync.
    journal: Option<Mutex<Journal>>,
    /// Woken when a TTL deadline may have moved earlier.
    deadlines: Notify,
    /// Permits for blocking queries.
    pub waiting: Semaphore,
    /// The limits handlers enforce.
    pub max_body: usize,
    /// `max_waiting`, for messages.
    pub max_waiting: usize,
    /// Cancelled when the agent shuts down: waiting queries answer at once.
    pub shutdown: CancellationToken,
}

impl Shared {
    /// The registry, locked. Never held across an `.await`.
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `change` on the registry and makes its records durable before returning; with a
    /// journal, call it off the async threads (it waits for the disk).
    ///
    /// # Errors
    /// The change's own error, or an I/O error from the journal (the change is then applied
    /// in memory but not acknowledged).
    pub fn change<T, E>(
        &self,
        change: impl FnOnce(&mut Registry, Instant) -> Result<(T, Vec<Record>), E>,
    ) -> Result<Result<T, E>, std::io::Error> {
        let mut registry = self.registry();
        let (value, records) = match change(&mut registry, Instant::now()) {
            Ok(done) => done,
            Err(e) => return Ok(Err(e)),
        };
        self.deadlines.notify_one();
        for record in &records {
            emit_event(record);
        }
        let Some(journal) = &self.journal else {
            return Ok(Ok(value));
        };
        if records.is_empty() {
            return Ok(Ok(value));
        }
        let mut journal = journal.lock().unwrap_or_else(|p| p.into_inner());
        let live = registry.len();
        let snapshot = journal.should_compact(live).then(|| registry.snapshot());
        drop(registry);
        journal.append(&records)?;
        if let Some(snapshot) = snapshot {
            journal.compact(&snapshot)?;
        }
        Ok(Ok(value))
    }

    /// Whether changes wait for the disk (and so belong on a blocking thread).
    pub fn durable(&self) -> bool {
        self.journal.is_some()
    }
}

/// Prints the agent's own decisions (a TTL expiry, a reaped service) as JSON lines on stdout.
fn emit_event(record: &Record) {
    match record {
        Record::Check { id, output, .. } if output == crate::state::TTL_EXPIRED => {
            println!("{}", serde_json::json!({"event": "expired", "check": id}));
        }
        _ => {}
    }
}

/// Serves the agent on `listener` until `shutdown` is cancelled.
///
/// # Errors
/// When the data directory cannot be opened or replayed.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: CancellationToken,
) -> Result<()> {
    let node = Node {
        name: config.node.clone(),
        address: config.advertise.clone(),
        datacenter: config.datacenter.clone(),
    };
    let mut registry = Registry::new(node, config.max_services);
    let journal = match &config.data {
        Some(dir) => {
            let (mut journal, records) = Journal::open(dir)
                .with_context(|| format!("cannot open the journal in {}", dir.display()))?;
            let now = Instant::now();
            for record in &records {
                registry.apply(record, now);
            }
            info!(
                records = records.len(),
                services = registry.len(),
                "journal replayed"
            );
            journal
                .compact(&registry.snapshot())
                .with_context(|| format!("cannot compact the journal in {}", dir.display()))?;
            Some(Mutex::new(journal))
        }
        None => None,
    };
    let shared = Arc::new(Shared {
        registry: Mutex::new(registry),
        journal,
        deadlines: Notify::new(),
        waiting: Semaphore::new(config.max_waiting),
        max_body: config.max_body,
        max_waiting: config.max_waiting,
        shutdown: shutdown.clone(),
    });
    let tasks = TaskTracker::new();
    tasks.spawn(expire_loop(Arc::clone(&shared)));
    tasks.spawn(reap_loop(
        Arc::clone(&shared),
        config.reap_interval,
        config.min_deregister_after,
    ));
    if let Some(sockets) = config.dns {
        tasks.spawn(crate::dns::serve(sockets, Arc::clone(&shared)));
    }
    let router = crate::http::router(Arc::clone(&shared));
    let connections = TaskTracker::new();
    let max_header = config.max_header;
    plumbing::accept_loop(
        &listener,
        &plumbing::AcceptConfig::new(config.max_connections),
        &shutdown,
        &connections,
        |mut stream| async move {
            let _ = stream.write_all(TOO_MANY_CONNECTIONS.as_bytes()).await;
        },
        |stream, _peer| {
            let service = TowerToHyperService::new(router.clone());
            let shutdown = shutdown.clone();
            async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .max_buf_size(max_header.max(8192))
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                let mut conn = std::pin::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    () = shutdown.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
                    }
                }
            }
        },
    )
    .await;
    shutdown.cancel();
    plumbing::drain(&connections, SHUTDOWN_GRACE).await;
    tasks.close();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait()).await;
    Ok(())
}

/// What a connection past `--max-connections` is told before it is closed (Consul's words for
/// its per-client limit).
const TOO_MANY_CONNECTIONS: &str = "HTTP/1.1 429 Too Many Requests\r\n\
    Content-Type: text/plain; charset=utf-8\r\nContent-Length: 81\r\nConnection: close\r\n\r\n\
    Your IP is issuing too many concurrent connections, please rate limit your calls\n";

/// Turns checks critical as their TTLs run out, sleeping until the earliest deadline.
async fn expire_loop(shared: Arc<Shared>) {
    loop {
        let next = shared.registry().next_deadline();
        let sleep = match next {
            Some(at) => tokio::time::sleep_until(at.into()),
            None => tokio::time::sleep(Duration::from_secs(3600)),
        };
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            () = shared.deadlines.notified() => continue,
            () = sleep => {}
        }
        run_change(&shared, |r, now| Ok::<_, ()>(((), r.expire(now)))).await;
    }
}

/// Deregisters services critical for longer than they allow, every `interval`.
async fn reap_loop(shared: Arc<Shared>, interval: Duration, minimum: Duration) {
    let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; nothing can have been critical for long at start.
    ticks.tick().await;
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let reaped = run_change(&shared, move |r, now| {
            let records = r.reap(now, minimum);
            let ids: Vec<String> = records
                .iter()
                .filter_map(|rec| match rec {
                    Record::Deregister { id, .. } => Some(id.clone()),
                    _ => None,
                })
                .collect();
            Ok::<_, ()>((ids, records))
        })
        .await;
        for id in reaped.unwrap_or_default() {
            println!("{}", serde_json::json!({"event": "reaped", "service": id}));
        }
    }
}

/// [`Shared::change`] from async code: on a blocking thread when it waits for the disk.
/// Journal failures are logged and yield `None`.
async fn run_change<T: Send + 'static>(
    shared: &Arc<Shared>,
    change: impl FnOnce(&mut Registry, Instant) -> Result<(T, Vec<Record>), ()> + Send + 'static,
) -> Option<T> {
    let outcome = if shared.durable() {
        let shared = Arc::clone(shared);
        match tokio::task::spawn_blocking(move || shared.change(change)).await {
            Ok(outcome) => outcome,
            Err(e) => {
                warn!("a change panicked: {e}");
                return None;
            }
        }
    } else {
        shared.change(change)
    };
    match outcome {
        Ok(Ok(value)) => Some(value),
        Ok(Err(())) => None,
        Err(e) => {
            warn!("cannot write the journal: {e}");
            None
        }
    }
}
