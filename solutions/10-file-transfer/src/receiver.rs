//! One sender's connection on the receiving side: manifest, resume, verified chunks, re-requests,
//! and the final rename.

use std::collections::HashSet;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::frame::{self, FrameError};
use crate::hasher::{self, WholeHasher, sha256};
use crate::name::{self, NameError};
use crate::partial::{self, Kept, Partial};
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
        let _room = self.room.lock().unwrap_or_else(|p| p.into_inner());
        let now = SystemTime::now();
        for kept in partial::kept(&self.config.dir)? {
            let age = now.duration_since(kept.modified).unwrap_or_default();
            if age > self.config.partial_ttl && !self.is_busy(&kept.name) {
                self.discard(&kept, "expired");
            }
        }
        Ok(())
    }

    /// Makes room in the budget for a partial file of `size` bytes for `name`, deleting kept
    /// partial files oldest first; `name`'s own does not count, since it is reused or replaced.
    /// Call with `room` held.
    fn make_room(&self, name: &str, size: u64) -> Result<(), TransferError> {
        let budget = self.config.partial_budget;
        let kept = partial::kept(&self.config.dir).map_err(TransferError::Disk)?;
        let (busy, idle): (Vec<Kept>, Vec<Kept>) = kept
            .into_iter()
            .filter(|k| k.name != name)
            .partition(|k| self.is_busy(&k.name));
        let held: u64 = busy.iter().map(|k| k.bytes).sum();
        if held.saturating_add(size) > budget {
            return Err(TransferError::NoRoom { size, budget, held });
        }
        let mut taken = held + idle.iter().map(|k| k.bytes).sum::<u64>();
        // Oldest first: the least likely to be resumed.
        for k in &idle {
            if taken.saturating_add(size) <= budget {
                break;
            }
            self.discard(k, "budget");
            taken -= k.bytes;
        }
        Ok(())
    }

    fn is_busy(&self, name: &str) -> bool {
        let busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        busy.contains(name)
    }

    fn discard(&self, kept: &Kept, reason: &str) {
        partial::remove(&self.config.dir, &kept.name);
        info!(
            name = kept.name,
            bytes = kept.bytes,
            "partial file deleted ({reason})"
        );
        self.emit(json!({
            "event": "discarded", "name": kept.name, "bytes": kept.bytes, "reason": reason,
        }));
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

/// A name held busy until dropped.
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

fn claim<'a>(shared: &'a Shared, name: &str) -> Result<Claim<'a>, TransferError> {
    let mut busy = shared.busy.lock().unwrap_or_else(|p| p.into_inner());
    if !busy.insert(name.to_owned()) {
        return Err(TransferError::Busy(name.to_owned()));
    }
    Ok(Claim {
        shared,
        name: name.to_owned(),
    })
}

/// Serves one sender: receives one file, then tells the sender how it went (COMPLETE or ERROR)
/// and emits a `complete` or `failed` event.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let (read, mut write) = stream.into_split();
    // A small buffer: headers and small frames take one system call, while the body of a large
    // chunk bypasses it and is read straight into place rather than copied through it.
    let mut read = BufReader::with_capacity(16 * 1024, read);
    let mut name = None;
    let result = tokio::select! {
        () = shutdown.cancelled() => Err(TransferError::ShuttingDown),
        result = receive(&mut read, &mut write, &shared, &mut name) => result,
    };
    match result {
        Ok(()) => {}
        Err(e) => {
            // A name is the peer's: quoted and escaped, so that a hostile one cannot forge a line.
            match &name {
                Some(name) => info!(%peer, "transfer of {name:?} failed: {e}"),
                None => info!(%peer, "transfer failed before a manifest was read: {e}"),
            }
            shared.emit(
                json!({"event": "failed", "peer": peer.to_string(), "name": name, "error": e.to_string()}),
            );
            if !e.peer_gone() {
                let message = e.to_string();
                let message = &message.as_bytes()[..message.len().min(protocol::MAX_ERROR_LEN)];
                let _ = frame::write_frame(&mut write, Kind::Error, &[message]).await;
            }
        }
    }
    if shutdown.is_cancelled() {
        return;
    }
    // Close gracefully: send our FIN, then read until the sender's. Closing with unread bytes
    // (a SENT_ALL, chunks still in flight) would send a reset instead, and a reset can destroy
    // the COMPLETE or ERROR the sender has not read yet.
    let _ = write.shutdown().await;
    let drain = async {
        let mut sink = [0u8; 16_384];
        while matches!(read.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Reads one frame within the configured time.
async fn next_frame<R: AsyncRead + Unpin>(
    read: &mut R,
    config: &ServerConfig,
    max: impl Fn(Kind) -> usize,
) -> Result<(Kind, Vec<u8>), TransferError> {
    let read_one = async {
        let (kind, len) = frame::read_header(read).await?;
        Ok::<_, FrameError>((kind, frame::read_body(read, kind, len, max(kind)).await?))
    };
    match tokio::time::timeout(config.frame_timeout, read_one).await {
        Ok(frame) => Ok(frame?),
        Err(_) => Err(TransferError::Timeout(config.frame_timeout)),
    }
}

/// A chunk verified and written on the blocking pool: its index, whether it passed, its bytes.
type Verdict = (u32, io::Result<(bool, Bytes)>);

/// How many bytes of chunks may be verified at once on one connection: one chunk per core, but no
/// more than this (64 MiB), so that a connection's memory stays bounded whatever the machine.
const VERIFYING_BYTES: usize = 67_108_864;

/// Bytes written (64 MiB) after which the receiver starts an `fdatasync` of the partial file on the
/// blocking pool while the transfer goes on. Without it the kernel may hold a whole file of dirty
/// pages until the fsync before COMPLETE, which then writes all of it at once while the sender
/// waits; with it the disk works during the transfer, and that last fsync waits only for what came
/// after the last one.
const WRITE_BACK_EVERY: u64 = 67_108_864;

async fn receive<R: AsyncRead + Unpin>(
    read: &mut R,
    write: &mut OwnedWriteHalf,
    shared: &Arc<Shared>,
    name_out: &mut Option<String>,
) -> Result<(), TransferError> {
    let (manifest, mut partial, _claim) = handshake(read, write, shared, name_out).await?;
    let resumed = partial.held_count();
    let plain = shared
        .config
        .sha256
        .then(|| WholeHasher::spawn(&manifest, partial.file(), partial.held().to_vec()));
    let resent =
        receive_chunks(read, write, shared, &manifest, &mut partial, plain.as_ref()).await?;
    finish(write, shared, manifest, partial, plain, resumed, resent).await
}

/// MANIFEST in, checked; the name claimed; the partial file opened (a resume reads its state);
/// `started`; ACCEPT out, with the chunks already held.
async fn handshake<'a, R: AsyncRead + Unpin>(
    read: &mut R,
    write: &mut OwnedWriteHalf,
    shared: &'a Arc<Shared>,
    name_out: &mut Option<String>,
) -> Result<(Arc<Manifest>, Partial, Claim<'a>), TransferError> {
    let config = &shared.config;
    let (kind, body) = next_frame(read, config, |kind| match kind {
        Kind::Manifest => MAX_MANIFEST_LEN,
        _ => 0,
    })
    .await?;
    if kind != Kind::Manifest {
        return Err(ProtocolError::Unexpected(kind).into_transfer());
    }
    let manifest = Manifest::decode(&body).map_err(ProtocolError::into_transfer)?;
    *name_out = Some(manifest.name.clone());
    name::check(&manifest.name)?;
    if manifest.size > config.max_size {
        return Err(TransferError::TooLarge {
            size: manifest.size,
            max: config.max_size,
        });
    }
    // With chunks of one block, the chunk hashes are the block hashes: a whole-file hash that
    // does not follow from them is a lie seen before a byte is written.
    if manifest.chunks_are_blocks()
        && protocol::content_hash(&manifest.chunk_hashes) != manifest.file_hash
    {
        return Err(TransferError::FileHashMismatch);
    }
    let claim = claim(shared, &manifest.name)?;
    let manifest = Arc::new(manifest);
    let partial = {
        let (dir, manifest) = (config.dir.clone(), Arc::clone(&manifest));
        let shared = Arc::clone(shared);
        tokio::task::spawn_blocking(move || {
            let _room = shared.room.lock().unwrap_or_else(|p| p.into_inner());
            shared.make_room(&manifest.name, manifest.size)?;
            Partial::open(&dir, &manifest).map_err(TransferError::Disk)
        })
        .await
        .map_err(|e| TransferError::Disk(io::Error::other(e)))??
    };
    shared.emit(json!({
        "event": "started", "name": manifest.name, "size": manifest.size,
        "chunk_size": manifest.chunk_size, "chunks": manifest.chunks(),
        "held": partial.held_count(),
    }));
    let accept = protocol::encode_accept(partial.held());
    frame::write_frame(write, Kind::Accept, &[&accept])
        .await
        .map_err(FrameError::from)?;
    Ok((manifest, partial, claim))
}

/// CHUNKs until every chunk is held, verified and written on the blocking pool (one per core at
/// once) while the next are read; RESEND for a chunk that failed its check, and for every one
/// missing at SENT_ALL. Returns how many were asked for again.
async fn receive_chunks<R: AsyncRead + Unpin>(
    read: &mut R,
    write: &mut OwnedWriteHalf,
    shared: &Shared,
    manifest: &Arc<Manifest>,
    partial: &mut Partial,
    plain: Option<&WholeHasher>,
) -> Result<u32, TransferError> {
    let config = &shared.config;
    let max_body = 4 + manifest.chunk_size as usize;
    // Frames are read on their own and handed over whole: `select!` below may stop waiting for
    // the next frame when a verdict comes first, and a frame read halfway must not be lost.
    let (tx, mut rx) = mpsc::channel(1);
    let reader = async {
        loop {
            let frame = next_frame(
                read,
                config,
                |kind| {
                    if kind == Kind::Chunk { max_body } else { 0 }
                },
            )
            .await;
            let failed = frame.is_err();
            if tx.send(frame).await.is_err() || failed {
                break;
            }
        }
        std::future::pending().await
    };
    let verify = async {
        let chunks = manifest.chunks();
        let at_once = hasher::cores()
            .min(VERIFYING_BYTES / manifest.chunk_size as usize)
            .max(1);
        let mut jobs: JoinSet<Verdict> = JoinSet::new();
        let mut state = Verifying {
            shared,
            manifest,
            verifying: vec![false; chunks as usize],
            retries: vec![0u32; chunks as usize],
            resent: 0,
            unsynced: 0,
            syncing: None,
        };
        while partial.held_count() < chunks {
            // A verdict is acted on at once: a RESEND must not wait for a frame that may only
            // come after it.
            tokio::select! {
                biased;
                Some(done) = jobs.join_next(), if !jobs.is_empty() => {
                    settle(done, &mut state, partial, plain, write).await?;
                }
                frame = rx.recv(), if jobs.len() < at_once => {
                    let frame = frame.unwrap_or(Err(TransferError::Frame(FrameError::Closed)));
                    let (kind, body) = match frame {
                        Ok(frame) => frame,
                        Err(e) => {
                            // A chunk that arrived whole before the connection broke still
                            // counts.
                            while let Some(Ok((index, Ok((true, _))))) = jobs.join_next().await {
                                partial.mark_held(index).map_err(TransferError::Disk)?;
                            }
                            return Err(e);
                        }
                    };
                    match kind {
                        Kind::Chunk => {
                            let index = protocol::decode_index(Kind::Chunk, &body[..body.len().min(4)])
                                .map_err(ProtocolError::into_transfer)?;
                            if index >= chunks {
                                return Err(TransferError::ChunkBeyond { index, chunks });
                            }
                            let expected = manifest.chunk_len(index);
                            if body.len() - 4 != expected {
                                return Err(TransferError::ChunkLength {
                                    index,
                                    expected,
                                    got: body.len() - 4,
                                });
                            }
                            // The same chunk again while its first copy is checked: wait for that
                            // verdict, so that each copy that fails counts against the retries.
                            while state.verifying[index as usize] {
                                match jobs.join_next().await {
                                    Some(done) => settle(done, &mut state, partial, plain, write).await?,
                                    None => break,
                                }
                            }
                            if partial.held()[index as usize] {
                                continue;
                            }
                            state.verifying[index as usize] = true;
                            let (file, manifest) = (partial.file(), Arc::clone(manifest));
                            let data = Bytes::from(body).slice(4..);
                            jobs.spawn_blocking(move || (index, check_and_write(&file, &manifest, index, data)));
                        }
                        Kind::SentAll => {
                            for index in 0..chunks {
                                let i = index as usize;
                                if !partial.held()[i] && !state.verifying[i] {
                                    ask_again(write, &mut state.retries, index, config.max_retries).await?;
                                }
                            }
                        }
                        other => return Err(ProtocolError::Unexpected(other).into_transfer()),
                    }
                }
            }
        }
        Ok(state.resent)
    };
    tokio::select! {
        never = reader => never,
        result = verify => result,
    }
}

/// What the chunk loop knows besides the partial file: which chunks are being checked, and how
/// often each was asked for again.
struct Verifying<'a> {
    shared: &'a Shared,
    manifest: &'a Manifest,
    verifying: Vec<bool>,
    retries: Vec<u32>,
    resent: u32,
    /// Bytes held since the last background `fdatasync` began.
    unsynced: u64,
    /// That `fdatasync`, while it runs.
    syncing: Option<tokio::task::JoinHandle<()>>,
}

/// Acts on one chunk's verdict: held (and handed to the plain hasher), or asked for again.
async fn settle(
    done: Result<Verdict, tokio::task::JoinError>,
    state: &mut Verifying<'_>,
    partial: &mut Partial,
    plain: Option<&WholeHasher>,
    write: &mut OwnedWriteHalf,
) -> Result<(), TransferError> {
    let (index, verdict) = done.map_err(|e| TransferError::Disk(io::Error::other(e)))?;
    state.verifying[index as usize] = false;
    let (ok, data) = verdict.map_err(TransferError::Disk)?;
    if ok {
        partial.mark_held(index).map_err(TransferError::Disk)?;
        state.unsynced += data.len() as u64;
        if state.unsynced >= WRITE_BACK_EVERY
            && state.syncing.as_ref().is_none_or(|sync| sync.is_finished())
        {
            state.unsynced = 0;
            let file = partial.file();
            // An error here is not the transfer's verdict: the fsync before COMPLETE is, and it
            // reports the same failure.
            state.syncing = Some(tokio::task::spawn_blocking(move || {
                if let Err(error) = file.sync_data() {
                    debug!(%error, "background fdatasync failed");
                }
            }));
        }
        if let Some(plain) = plain {
            plain.landed(index, data).await;
        }
        return Ok(());
    }
    debug!(index, "chunk failed its check; asking again");
    let name = &state.manifest.name;
    state
        .shared
        .emit(json!({"event": "resent", "name": name, "chunk": index}));
    let max_retries = state.shared.config.max_retries;
    ask_again(write, &mut state.retries, index, max_retries).await?;
    state.resent += 1;
    Ok(())
}

/// Checks chunk `index` against its hash and, if it passes, writes it into place: on the blocking
/// pool, never on the runtime's threads.
fn check_and_write(
    file: &std::fs::File,
    manifest: &Manifest,
    index: u32,
    data: Bytes,
) -> io::Result<(bool, Bytes)> {
    use std::os::unix::fs::FileExt;
    if sha256(&data) != manifest.chunk_hashes[index as usize] {
        return Ok((false, data));
    }
    file.write_all_at(&data, manifest.offset(index))?;
    Ok((true, data))
}

/// The whole file's content hash checked against the manifest (from the chunk hashes when the
/// chunks are its blocks, else the blocks read back and hashed on every core); the partial file
/// renamed into place (or discarded when the manifest lied); `complete`, with the plain SHA-256
/// when `--sha256` asked for it; COMPLETE out.
async fn finish(
    write: &mut OwnedWriteHalf,
    shared: &Shared,
    manifest: Arc<Manifest>,
    partial: Partial,
    plain: Option<WholeHasher>,
    resumed: u32,
    resent: u32,
) -> Result<(), TransferError> {
    let chunks = manifest.chunks();
    let whole = {
        let (file, manifest) = (partial.file(), Arc::clone(&manifest));
        tokio::task::spawn_blocking(move || {
            hasher::content_hash_of(
                &file,
                manifest.size,
                manifest.chunk_size,
                &manifest.chunk_hashes,
            )
        })
        .await
        .map_err(|e| TransferError::Disk(io::Error::other(e)))?
        .map_err(TransferError::Disk)?
    };
    let sha256 = match plain {
        Some(plain) => Some(plain.finish().await.map_err(TransferError::Disk)?),
        None => None,
    };
    if whole != manifest.file_hash {
        tokio::task::spawn_blocking(move || partial.discard())
            .await
            .map_err(|e| TransferError::Disk(io::Error::other(e)))?;
        return Err(TransferError::FileHashMismatch);
    }
    tokio::task::spawn_blocking(move || partial.finish())
        .await
        .map_err(|e| TransferError::Disk(io::Error::other(e)))?
        .map_err(TransferError::Disk)?;
    info!(name = %manifest.name, size = manifest.size, "received");
    let mut event = json!({
        "event": "complete", "name": manifest.name, "size": manifest.size, "chunks": chunks,
        "received": chunks - resumed, "resent": resent,
    });
    if let Some(hash) = sha256 {
        event["sha256"] = hasher::hex(&hash).into();
    }
    shared.emit(event);
    frame::write_frame(write, Kind::Complete, &[])
        .await
        .map_err(FrameError::from)?;
    Ok(())
}

/// Sends RESEND for chunk `index`, unless it has been asked for too often.
async fn ask_again(
    write: &mut OwnedWriteHalf,
    retries: &mut [u32],
    index: u32,
    max_retries: u32,
) -> Result<(), TransferError> {
    let tries = &mut retries[index as usize];
    *tries += 1;
    if *tries > max_retries {
        return Err(TransferError::TooManyRetries(index, *tries));
    }
    frame::write_frame(write, Kind::Resend, &[&index.to_be_bytes()])
        .await
        .map_err(FrameError::from)?;
    Ok(())
}

impl ProtocolError {
    fn into_transfer(self) -> TransferError {
        TransferError::Frame(FrameError::Protocol(self))
    }
}
