//! The aggregator: the accept loops (syslog over TCP, and RELP if asked), the shared writer,
//! SIGHUP, and the shutdown that loses nothing accepted.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::connection::{self, Shared};
use crate::logfile::{DEFAULT_KEEP, Rotation};
use crate::protocol::{DEFAULT_MAX_FRAME, DEFAULT_MAX_MESSAGE};
use crate::record::OutputFormat;
use crate::relp::{self, HINT_TXNR};
use crate::session;
use crate::writer::{self, DEFAULT_QUEUE_BYTES, Fsync, WriterConfig, WriterKind};

/// The most connections served at once, on each listener.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// How long connections get to finish after shutdown.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// How long a connection may go without completing a message: an idle or dripping connection
/// (slowloris) is closed after it, so that it cannot hold a slot of the limit for ever. Honest
/// senders reconnect when they next have something to send.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// The default design: measured fastest (see the chapter), and the only one that groups syncs.
pub const DEFAULT_WRITER: WriterKind = WriterKind::Task;

/// The default sync policy: RELP acks then mean "on disk", at the cost of one sync per group.
pub const DEFAULT_FSYNC: Fsync = Fsync::Batch;

/// The default output format.
pub const DEFAULT_FORMAT: OutputFormat = OutputFormat::Json;

/// Where the server listens.
pub struct Listeners {
    /// Syslog over TCP (RFC 6587).
    pub syslog: TcpListener,
    /// RELP, if enabled.
    pub relp: Option<TcpListener>,
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The output file.
    pub out: PathBuf,
    /// How messages are written.
    pub format: OutputFormat,
    /// How connections share the file.
    pub writer: WriterKind,
    /// When the file is synced.
    pub fsync: Fsync,
    /// The longest message kept; longer ones are truncated.
    pub max_message: usize,
    /// The largest octet count or RELP DATALEN accepted.
    pub max_frame: usize,
    /// The most connections at once, per listener.
    pub max_connections: usize,
    /// The writer task's queue bound, in bytes.
    pub queue_bytes: usize,
    /// Rotate past this many bytes, if set.
    pub rotate_size: Option<u64>,
    /// How many rotated files to keep.
    pub keep: usize,
    /// How long connections get to finish after shutdown.
    pub grace: Duration,
    /// See [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            out: PathBuf::from("aggregated.log"),
            format: DEFAULT_FORMAT,
            writer: DEFAULT_WRITER,
            fsync: DEFAULT_FSYNC,
            max_message: DEFAULT_MAX_MESSAGE,
            max_frame: DEFAULT_MAX_FRAME,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            rotate_size: None,
            keep: DEFAULT_KEEP,
            grace: DEFAULT_GRACE,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Serves until `shutdown` is cancelled; then stops accepting, lets every connection append
/// what its sender had sent, syncs the file and returns the number of messages written.
///
/// # Errors
/// When the output file cannot be opened, or the last sync fails.
pub async fn run(
    listeners: Listeners,
    config: ServerConfig,
    shutdown: CancellationToken,
) -> io::Result<u64> {
    let (writer, sink) = writer::start(&WriterConfig {
        path: config.out.clone(),
        rotation: config.rotate_size.map(|size| Rotation {
            size,
            keep: config.keep,
        }),
        kind: config.writer,
        fsync: config.fsync,
        queue_bytes: config.queue_bytes,
    })
    .await?;
    let mut shared = Shared::new(sink.clone(), config.format);
    shared.max_message = config.max_message;
    shared.max_frame = config.max_frame;
    shared.idle_timeout = config.idle_timeout;
    let shared = Arc::new(shared);
    let tracker = TaskTracker::new();
    let hangups = tokio::spawn(reopen_on_hangup(
        plumbing::shutdown::hangups(),
        sink,
        shutdown.clone(),
    ));
    let accept = plumbing::AcceptConfig::new(config.max_connections);
    let syslog = plumbing::accept_loop(
        &listeners.syslog,
        &accept,
        &shutdown,
        &tracker,
        // Syslog over TCP has no way to say no: the sender sees the connection close.
        |stream| async move { drop(stream) },
        |stream, peer| connection::serve(stream, peer, Arc::clone(&shared), shutdown.clone()),
    );
    let relp = async {
        if let Some(relp) = &listeners.relp {
            plumbing::accept_loop(
                relp,
                &accept,
                &shutdown,
                &tracker,
                |mut stream| async move {
                    let mut hint = Vec::new();
                    relp::encode(&mut hint, HINT_TXNR, "serverclose", b"");
                    let _ = stream.write_all(&hint).await;
                },
                |stream, peer| session::serve(stream, peer, Arc::clone(&shared), shutdown.clone()),
            )
            .await;
        }
    };
    tokio::join!(syslog, relp);
    // A sender whose connection the kernel completed but nobody accepted yet has written into
    // it, believing it delivered: take those too, before the listeners close.
    for (stream, peer) in backlog(&listeners.syslog).await {
        tracker.spawn(connection::serve(
            stream,
            peer,
            Arc::clone(&shared),
            shutdown.clone(),
        ));
    }
    if let Some(relp) = &listeners.relp {
        for (stream, peer) in backlog(relp).await {
            tracker.spawn(session::serve(
                stream,
                peer,
                Arc::clone(&shared),
                shutdown.clone(),
            ));
        }
    }
    plumbing::drain(&tracker, config.grace).await;
    let _ = hangups.await;
    let written = shared.messages.load(Ordering::Relaxed);
    drop(shared);
    writer.finish().await?;
    info!("shut down after writing {written} messages");
    Ok(written)
}

/// The connections waiting in `listener`'s backlog now, without waiting for more.
async fn backlog(listener: &TcpListener) -> Vec<(tokio::net::TcpStream, std::net::SocketAddr)> {
    let mut waiting = Vec::new();
    // A zero timeout still polls the accept once: it yields what is ready, and nothing else.
    while let Ok(Ok(accepted)) = tokio::time::timeout(Duration::ZERO, listener.accept()).await {
        waiting.push(accepted);
    }
    waiting
}

/// SIGHUP reopens the output file, as logrotate expects.
async fn reopen_on_hangup(
    hangups: io::Result<tokio::signal::unix::Signal>,
    sink: writer::Sink,
    shutdown: CancellationToken,
) {
    let mut hangups = match hangups {
        Ok(hangups) => hangups,
        Err(e) => {
            warn!("cannot listen for SIGHUP: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            hup = hangups.recv() => {
                if hup.is_none() {
                    return;
                }
                match sink.reopen().await {
                    Ok(()) => info!("SIGHUP: reopened the output file"),
                    Err(e) => warn!("SIGHUP: cannot reopen the output file: {e}"),
                }
            }
        }
    }
}
