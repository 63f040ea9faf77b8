//! The receiver's server: the shared accept loop serving each sender with its own task.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::frame;
use crate::protocol::Kind;
use crate::receiver::{self, ServerConfig, Shared};

/// What a sender past `max_connections` is told, in an ERROR frame, before it is disconnected.
const REFUSAL: &[u8] = b"too many senders at once; try again later";

/// Deletes expired partial files now and then until `shutdown`: at start, then every quarter of
/// `--partial-ttl` (between 100 ms and a minute), so that none outlives it by much.
async fn sweep(shared: Arc<Shared>, shutdown: CancellationToken) {
    let every = (shared.config.partial_ttl / 4).clamp(SWEEP_MIN, SWEEP_MAX);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let shared = Arc::clone(&shared);
        match tokio::task::spawn_blocking(move || shared.sweep()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("cannot look for expired partial files: {e}"),
            Err(e) => warn!("the sweep for expired partial files failed: {e}"),
        }
    }
}

/// The shortest time between two sweeps for expired partial files.
const SWEEP_MIN: Duration = Duration::from_millis(100);

/// The longest time between two sweeps: a day's TTL is kept to within a minute.
const SWEEP_MAX: Duration = Duration::from_secs(60);

/// Receives files on `listener` into `config.dir` until `shutdown` is cancelled, then waits for
/// the connections to stop (a transfer cut short keeps its partial file for a later resume).
/// Events go to `events` as JSON lines (`std::io::stdout()` in the binary).
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    events: impl Write + Send + 'static,
    shutdown: CancellationToken,
) -> io::Result<()> {
    // `TCP_NODELAY` on (the default): control frames are small and must not wait for the
    // sender's delayed ACK.
    let accept = plumbing::AcceptConfig::new(config.max_connections);
    let grace = config.frame_timeout;
    let shared = Arc::new(Shared::new(config, events));
    let tracker = TaskTracker::new();
    tracker.spawn(sweep(Arc::clone(&shared), shutdown.clone()));
    plumbing::accept_loop(
        &listener,
        &accept,
        &shutdown,
        &tracker,
        |mut stream| async move {
            let _ = frame::write_frame(&mut stream, Kind::Error, &[REFUSAL]).await;
        },
        |stream, peer| {
            let (shared, shutdown) = (Arc::clone(&shared), shutdown.clone());
            receiver::serve(stream, peer, shared, shutdown)
        },
    )
    .await;
    // A connection stops at once on shutdown, saying so in an ERROR frame: the grace bounds
    // that last write to a sender that does not read, as `frame_timeout` bounds a frame.
    plumbing::drain(&tracker, grace).await;
    info!("shut down");
    Ok(())
}
