//! The sending side: hash the file, send its manifest, then every chunk the receiver lacks, and
//! again any chunk it asks for, until it says the file is complete.
//!
//! Your task (stages 1 to 4): [`choose_chunk_size`] (stage 1: the size asked for, or the
//! default; stage 2: the range check and the doubling) and [`send_file`]. The error and report
//! types are given.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc;

use crate::frame::{self, FrameError};
use crate::hasher;
use crate::name::{self, NameError};
use crate::progress::{Progress, SendReport};
use crate::protocol::{
    self, DEFAULT_CHUNK_SIZE, Kind, MAX_CHUNK_SIZE, MAX_CHUNKS, MIN_CHUNK_SIZE, Manifest,
    ProtocolError,
};

/// How long a silent connection waits before the first keepalive probe.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);

/// The time between keepalive probes (the kernel gives up after `tcp_keepalive_probes`, 9 by
/// default).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// Why a file could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The local file cannot be read.
    #[error("cannot read the file: {0}")]
    Local(io::Error),
    /// The file's name cannot be sent as it is.
    #[error("{0}")]
    Name(#[from] NameError),
    /// The chunk size is out of range, or makes too many chunks.
    #[error("{0}")]
    ChunkSize(String),
    /// The receiver cannot be reached.
    #[error("cannot connect to {0}: {1}")]
    Connect(SocketAddr, io::Error),
    /// The receiver refused the file or gave up on it, saying why.
    #[error("the receiver refused it: {0}")]
    Refused(String),
    /// The receiver asked for a chunk the file does not have.
    #[error("the receiver asked for chunk {index}, past the last of {chunks}")]
    PastTheEnd {
        /// The chunk asked for.
        index: u32,
        /// How many the file has.
        chunks: u32,
    },
    /// The connection broke or the receiver broke the protocol.
    #[error("{0}")]
    Frame(#[from] FrameError),
}

/// The chunk size to use for a file of `size` bytes: `requested`, checked, or the default doubled
/// until the file fits in [`MAX_CHUNKS`] chunks.
pub fn choose_chunk_size(size: u64, requested: Option<u64>) -> Result<u32, SendError> {
    // TODO: with no request, start at DEFAULT_CHUNK_SIZE and double while
    // `protocol::chunk_count` exceeds MAX_CHUNKS (up to MAX_CHUNK_SIZE). A request outside
    // MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE, or one that makes too many chunks, is
    // `SendError::ChunkSize` with a message that says "chunk size" and what is allowed.
    todo!()
}

/// Sends the file at `path` to the receiver at `addr`, in chunks of `chunk_size` bytes (or a
/// size chosen for it), reporting progress as it goes. With `sha256`, the plain SHA-256 of the
/// file is computed too, on a thread of its own from the start, and given in the report.
pub async fn send_file(
    addr: SocketAddr,
    path: &Path,
    chunk_size: Option<u64>,
    sha256: bool,
    progress: &mut Progress,
) -> Result<SendReport, SendError> {
    // TODO: the sender of the contract: the name in NFC and checked, the manifest built from the
    // file's chunk hashes (`hasher::hash_file`, off the runtime), then MANIFEST, ACCEPT (or ERROR:
    // `Refused`), every chunk not held, SENT_ALL, each RESEND answered, until COMPLETE; replies
    // read on a task of their own while chunks are sent; TCP keepalive (KEEPALIVE_IDLE,
    // KEEPALIVE_INTERVAL) so a vanished receiver is noticed; a failed write prefers the receiver's
    // ERROR to its own. `--sha256` beside it (`hasher::sha256_file`). `progress` as it goes.
    todo!()
}
