//! One sender's connection on the receiving side: manifest, resume, verified chunks, re-requests,
//! and the final rename.
//!
//! Your task (stages 1 to 6): [`serve`], with whatever private helpers you like. The types,
//! [`Shared`] (with its `emit`) is given; `Shared::busy` is the set of names being received.

use std::collections::HashSet;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::frame::{self, FrameError};
use crate::hasher::{WholeHasher, sha256};
use crate::name::{self, NameError};
use crate::partial::Partial;
use crate::protocol::{self, Kind, MAX_MANIFEST_LEN, Manifest, ProtocolError};

/// How a receiver behaves.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where files land. Nothing outside it is ever written.
    pub dir: PathBuf,
    /// The largest file accepted, in bytes.
    pub max_size: u64,
    /// The most senders connected at once; others are refused with an ERROR.
    pub max_connections: usize,
    /// How long one frame may take to arrive before the sender is dropped.
    pub frame_timeout: Duration,
    /// How many times one chunk may fail its check before the transfer is abandoned.
    pub max_retries: u32,
    /// How long a partial file left by a failed transfer is kept for a resume, counted from its
    /// last write; then it is deleted.
    pub partial_ttl: Duration,
    /// How many bytes the partial files in `dir` may take together (each counted at its declared
    /// size), those being received included: the oldest kept ones are deleted to make room for a
    /// new transfer, and a transfer that still does not fit is refused.
    pub partial_budget: u64,
    /// Whether to compute the plain SHA-256 of every file as well (`sha256sum`'s), given in the
    /// `complete` event: one more pass, on one core, beside the transfer.
    pub sha256: bool,
}

/// Why a transfer was refused or failed. The message is sent to the sender in an ERROR frame.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The stream broke the protocol, or the connection failed.
    #[error("{0}")]
    Frame(#[from] FrameError),
    /// The file name is not a plain name.
    #[error("{0}")]
    Name(#[from] NameError),
    /// The declared size is over the limit.
    #[error("the file is {size} bytes, more than the limit of {max} bytes")]
    TooLarge {
        /// The declared size.
        size: u64,
        /// `--max-size`.
        max: u64,
    },
    /// Another sender is sending a file of the same name right now.
    #[error("{0:?} is being received from another sender; try again when it is done")]
    Busy(String),
    /// The partial files would take more than `--partial-budget`, even with every kept one
    /// deleted.
    #[error(
        "no room for a file of {size} bytes: partial files may take {budget} bytes, and \
         transfers in progress hold {held}"
    )]
    NoRoom {
        /// The declared size.
        size: u64,
        /// `--partial-budget`.
        budget: u64,
        /// The bytes held by the other transfers in progress.
        held: u64,
    },
    /// A chunk index past the end of the file.
    #[error("chunk {index} is beyond the declared size ({chunks} chunks)")]
    ChunkBeyond {
        /// The index sent.
        index: u32,
        /// How many chunks the manifest declared.
        chunks: u32,
    },
    /// A chunk of the wrong length.
    #[error("chunk {index} should be {expected} bytes, got {got}")]
    ChunkLength {
        /// The index sent.
        index: u32,
        /// Its length by the manifest.
        expected: usize,
        /// The length received.
        got: usize,
    },
    /// A chunk that kept failing its check.
    #[error("chunk {0} failed its SHA-256 check {1} times; giving up")]
    TooManyRetries(u32, u32),
    /// The whole file's content hash does not follow from its chunks (the manifest lies).
    #[error("the whole file's content hash does not match the manifest (the manifest lies)")]
    FileHashMismatch,
    /// No frame within the timeout.
    #[error("no complete frame within {0:?}")]
    Timeout(Duration),
    /// The receiver's disk failed.
    #[error("the receiver cannot write the file: {0}")]
    Disk(io::Error),
    /// The receiver is stopping.
    #[error("the receiver is shutting down; send again later to resume")]
    ShuttingDown,
}

impl TransferError {
    /// Whether the sender is still there to be told.
    fn peer_gone(&self) -> bool {
        matches!(
            self,
            TransferError::Frame(FrameError::Closed | FrameError::Io(_))
        )
    }
}

/// How long a finished connection waits for the sender to close its side.
const LINGER: Duration = Duration::from_secs(2);

/// How many bytes of chunks may be verified at once on one connection: one chunk per core, but no
/// more than this (64 MiB), so that a connection's memory stays bounded whatever the machine.
const VERIFYING_BYTES: usize = 67_108_864;

/// What every connection shares: the configuration, where events go, and the names being
/// received.
pub struct Shared {
    /// The configuration.
    pub config: ServerConfig,
    /// Where events go, one JSON line each: stdout in the binary, a buffer in a test.
    events: Mutex<Box<dyn Write + Send>>,
    /// Names with a transfer in progress: two senders must never write one partial file.
    busy: Mutex<HashSet<String>>,
    /// Held while the partial files are counted and a new one is made, so that two transfers
    /// starting at once cannot both fit into the last of the budget.
    room: Mutex<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Wraps a configuration, with events written to `events`.
    pub fn new(config: ServerConfig, events: impl Write + Send + 'static) -> Shared {
        Shared {
            config,
            events: Mutex::new(Box::new(events)),
            busy: Mutex::new(HashSet::new()),
            room: Mutex::new(()),
        }
    }

    /// Deletes the kept partial files (not those being received) last written longer ago than
    /// `--partial-ttl`, emitting `discarded` for each. Blocking file I/O: the accept loop's sweep
    /// runs it on `spawn_blocking`.
    pub fn sweep(&self) -> io::Result<()> {
        // TODO: (stage 1, tested in stage 4) the contract's expiry of kept partial files: under
        // `room`, every kept one older than `partial_ttl` whose name is not `busy` removed, each
        // with a `discarded` event (`"reason": "expired"`). `partial::kept`, `partial::remove`,
        // `SystemTime::duration_since`, `emit`.
        todo!()
    }

    /// Writes one event as a JSON line, where tests and scripts watch for it. A failed write
    /// (stdout closed) loses the event, never the transfer.
    pub fn emit(&self, event: serde_json::Value) {
        let mut out = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = writeln!(out, "{event}").and_then(|()| out.flush()) {
            debug!("cannot write an event: {e}");
        }
    }
}

/// A name held busy until dropped. The struct and its `Drop` are given: to claim a name, insert
/// it into `Shared::busy` (if it is already there, refuse with `TransferError::Busy`) and build
/// one; every way out of the connection then frees the name.
struct Claim<'a> {
    shared: &'a Shared,
    name: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut busy = self.shared.busy.lock().unwrap_or_else(|p| p.into_inner());
        busy.remove(&self.name);
    }
}

/// Serves one sender: receives one file, then tells the sender how it went (COMPLETE or ERROR)
/// and emits a `complete` or `failed` event.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    // TODO: one sender served as the contract's "The protocol" and "The receiver" say, growing
    // stage by stage (stages.md says which part is which stage's): (1) MANIFEST, ACCEPT, CHUNKs
    // written, the content hash checked, COMPLETE, an ERROR and a `failed` event on any failure,
    // racing `shutdown`, with a graceful close; (2) chunks checked in parallel within
    // VERIFYING_BYTES while frames are read, `--sha256`; (3) RESEND; (4) resume, one sender a
    // name (a `Claim`: the budget never deletes a busy name's files), and the partial budget;
    // (5) the same under many senders; (6) every bound of "Limits". `cargo xtask hint
    // file-transfer N` has the steps.
    todo!()
}
