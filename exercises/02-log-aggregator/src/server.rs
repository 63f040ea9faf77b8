//! The aggregator: the accept loops (syslog over TCP, and RELP if asked), the shared writer,
//! SIGHUP, and the shutdown that loses nothing accepted.
//!
//! Your task (stages 1, 4, 5, 6 and 7): [`run`] and the SIGHUP loop.

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
    // TODO: the server of the contract: (stage 1) the writer (`writer::start`), the state shared by
    // the connections (`Shared`), and `plumbing::accept_loop` on the syslog listener (a refusal is
    // a close). (Stage 5) at shutdown, the backlogs served too, every connection drained within
    // `config.grace`, and the writer finished before the `stopped` event. (Stage 6) the RELP
    // listener beside it (`tokio::join!`; refuse with `0 serverclose 0`). (Stage 7)
    // `reopen_on_hangup`.
    todo!()
}

/// SIGHUP reopens the output file, as logrotate expects.
async fn reopen_on_hangup(
    hangups: io::Result<tokio::signal::unix::Signal>,
    sink: writer::Sink,
    shutdown: CancellationToken,
) {
    // TODO: (stage 7) Until shutdown, `tokio::select!` between `shutdown.cancelled()` and
    // `hangups.recv()`; on each SIGHUP `sink.reopen().await`, logging how it went.
    todo!()
}
