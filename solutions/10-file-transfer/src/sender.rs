//! The sending side: hash the file, send its manifest, then every chunk the receiver lacks, and
//! again any chunk it asks for, until it says the file is complete.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tracing::debug;

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
    let Some(requested) = requested else {
        let mut chunk = DEFAULT_CHUNK_SIZE;
        while protocol::chunk_count(size, chunk) > u64::from(MAX_CHUNKS) && chunk < MAX_CHUNK_SIZE {
            chunk *= 2;
        }
        return if protocol::chunk_count(size, chunk) > u64::from(MAX_CHUNKS) {
            Err(SendError::ChunkSize(format!(
                "a file of {size} bytes is too large to send"
            )))
        } else {
            Ok(chunk)
        };
    };
    if !(u64::from(MIN_CHUNK_SIZE)..=u64::from(MAX_CHUNK_SIZE)).contains(&requested) {
        return Err(SendError::ChunkSize(format!(
            "the chunk size must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE} bytes, not {requested}"
        )));
    }
    let chunk = requested as u32;
    if protocol::chunk_count(size, chunk) > u64::from(MAX_CHUNKS) {
        return Err(SendError::ChunkSize(format!(
            "{size} bytes in chunks of {chunk} make more than {MAX_CHUNKS} chunks; choose a larger chunk size"
        )));
    }
    Ok(chunk)
}

/// What the receiver said.
enum Reply {
    Resend(u32),
    Complete,
    Error(String),
}

/// Reads the receiver's frames and forwards them, until COMPLETE, ERROR or a failure.
async fn read_replies(mut read: OwnedReadHalf, tx: mpsc::Sender<Result<Reply, FrameError>>) {
    loop {
        let reply = match frame::read_frame(&mut read, protocol::MAX_ERROR_LEN).await {
            Ok((Kind::Resend, body)) => protocol::decode_index(Kind::Resend, &body)
                .map(Reply::Resend)
                .map_err(FrameError::from),
            Ok((Kind::Complete, _)) => Ok(Reply::Complete),
            Ok((Kind::Error, body)) => {
                Ok(Reply::Error(String::from_utf8_lossy(&body).into_owned()))
            }
            Ok((other, _)) => Err(ProtocolError::Unexpected(other).into()),
            Err(e) => Err(e),
        };
        let last = !matches!(reply, Ok(Reply::Resend(_)));
        if tx.send(reply).await.is_err() || last {
            return;
        }
    }
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
    let started = Instant::now();
    let file = Arc::new(File::open(path).map_err(SendError::Local)?);
    // One stream, one core: started first, it overlaps the chunk hashes and the transfer.
    let plain = sha256.then(|| {
        let file = Arc::clone(&file);
        tokio::task::spawn_blocking(move || {
            let size = file.metadata()?.len();
            hasher::sha256_file(&file, size)
        })
    });
    let manifest = prepare(path, &file, chunk_size, progress).await?;
    debug!(name = manifest.name, elapsed = ?started.elapsed(), "hashed");
    let (mut read, mut write) = connect(addr).await?.into_split();
    let held = handshake(&mut read, &mut write, &manifest).await?;
    let chunks = manifest.chunks();
    let held_count = held.iter().filter(|&&h| h).count() as u32;
    let (sent, resent) = send_chunks(read, write, &file, &manifest, &held, progress).await?;
    let sha256 = match plain {
        Some(job) => Some(
            job.await
                .map_err(|e| SendError::Local(io::Error::other(e)))?
                .map_err(SendError::Local)?,
        ),
        None => None,
    };
    debug!(name = manifest.name, elapsed = ?started.elapsed(), "complete");
    Ok(SendReport {
        name: manifest.name,
        size: manifest.size,
        chunks,
        held: held_count,
        sent,
        resent,
        sha256,
        elapsed: started.elapsed(),
    })
}

/// The file's name checked, its chunk size chosen, and its hashes computed on every core: its
/// manifest.
async fn prepare(
    path: &Path,
    file: &Arc<File>,
    chunk_size: Option<u64>,
    progress: &mut Progress,
) -> Result<Manifest, SendError> {
    // One spelling on the wire: the name in NFC, whichever form the file system gave.
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .map(name::to_nfc)
        .ok_or_else(|| NameError::NotAName(path.display().to_string()))?;
    name::check(&name)?;
    let size = file.metadata().map_err(SendError::Local)?.len();
    let chunk_size = choose_chunk_size(size, chunk_size)?;

    progress.hashing(&name, size, chunk_size);
    let (file_hash, chunk_hashes) = {
        let file = Arc::clone(file);
        tokio::task::spawn_blocking(move || hasher::hash_file(&file, size, chunk_size))
            .await
            .map_err(|e| SendError::Local(io::Error::other(e)))?
            .map_err(SendError::Local)?
    };
    Ok(Manifest {
        name,
        size,
        chunk_size,
        file_hash,
        chunk_hashes,
    })
}

/// A connection to the receiver, with keepalive probes.
async fn connect(addr: SocketAddr) -> Result<TcpStream, SendError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| SendError::Connect(addr, e))?;
    let _ = stream.set_nodelay(true);
    // A receiver that vanishes without a word (power lost, a cable pulled) would leave the sender
    // waiting for a reply forever. Keepalive probes notice within about two minutes, while a
    // receiver that is only slow (hashing a resumed file again, an fsync) still answers them.
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL);
    if let Err(e) = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive) {
        debug!("cannot set TCP keepalive: {e}");
    }
    Ok(stream)
}

/// MANIFEST out; ACCEPT in, with the chunks the receiver already holds (or its refusal).
async fn handshake(
    read: &mut OwnedReadHalf,
    write: &mut OwnedWriteHalf,
    manifest: &Manifest,
) -> Result<Vec<bool>, SendError> {
    let chunks = manifest.chunks();
    frame::write_frame(write, Kind::Manifest, &[&manifest.encode()])
        .await
        .map_err(FrameError::from)?;
    let accept_max = 4 + (chunks as usize).div_ceil(8);
    let held = match frame::read_frame(read, accept_max.max(protocol::MAX_ERROR_LEN)).await? {
        (Kind::Accept, body) => protocol::decode_accept(&body, chunks).map_err(FrameError::from)?,
        (Kind::Error, body) => {
            return Err(SendError::Refused(
                String::from_utf8_lossy(&body).into_owned(),
            ));
        }
        (other, _) => return Err(FrameError::from(ProtocolError::Unexpected(other)).into()),
    };
    Ok(held)
}

/// Every chunk the receiver lacks, and again any it asks for, until COMPLETE. Returns how many
/// chunks were sent and how many of those were re-sends.
async fn send_chunks(
    read: OwnedReadHalf,
    mut write: OwnedWriteHalf,
    file: &File,
    manifest: &Manifest,
    held: &[bool],
    progress: &mut Progress,
) -> Result<(u32, u32), SendError> {
    let (chunks, size) = (manifest.chunks(), manifest.size);
    let chunk_size = manifest.chunk_size;
    let mut queue: VecDeque<u32> = (0..chunks).filter(|&i| !held[i as usize]).collect();
    let to_send: u64 = queue.iter().map(|&i| manifest.chunk_len(i) as u64).sum();
    progress.sending(to_send, size - to_send);

    // Every RESEND of one round fits: the receiver never waits on a full channel.
    let (tx, mut rx) = mpsc::channel(chunks as usize + 16);
    let reader = tokio::spawn(read_replies(read, tx));
    let (mut sent, mut resent, mut round_sent) = (0u32, 0u32, false);
    let mut buf = vec![0u8; chunk_size as usize];
    let outcome = loop {
        let reply = match rx.try_recv() {
            Ok(reply) => Some(reply),
            Err(mpsc::error::TryRecvError::Empty) if !queue.is_empty() => None,
            Err(_) => {
                if round_sent {
                    // Tell the receiver that nothing more is coming unless it asks: it answers
                    // with a RESEND for anything it still lacks (a chunk whose index was damaged
                    // in transit is otherwise lost silently).
                    round_sent = false;
                    let _ = frame::write_frame(&mut write, Kind::SentAll, &[]).await;
                }
                // The reader ends on a reply of its own, an error included: the channel
                // closes only after one.
                Some(rx.recv().await.unwrap_or(Err(FrameError::Closed)))
            }
        };
        match reply {
            None => {}
            Some(Ok(Reply::Resend(index))) if index >= chunks => {
                break Err(SendError::PastTheEnd { index, chunks });
            }
            Some(Ok(Reply::Resend(i))) => {
                resent += 1;
                if !queue.contains(&i) {
                    queue.push_back(i);
                }
                continue;
            }
            Some(Ok(Reply::Complete)) => break Ok(()),
            Some(Ok(Reply::Error(message))) => break Err(SendError::Refused(message)),
            Some(Err(e)) => break Err(e.into()),
        }
        let Some(index) = queue.pop_front() else {
            continue;
        };
        let len = manifest.chunk_len(index);
        // On this task, not `spawn_blocking`: the file was just hashed, so the chunk comes from
        // the page cache in microseconds; the runtime serves this one transfer, whose reply
        // reader runs on another worker; and a hand-off per chunk would cost a copy as well.
        file.read_exact_at(&mut buf[..len], manifest.offset(index))
            .map_err(SendError::Local)?;
        if let Err(e) = frame::write_frame(
            &mut write,
            Kind::Chunk,
            &[&index.to_be_bytes(), &buf[..len]],
        )
        .await
        {
            // The receiver may have closed after saying why: prefer its reason to ours.
            break match rx.recv().await {
                Some(Ok(Reply::Error(message))) => Err(SendError::Refused(message)),
                _ => Err(FrameError::Io(e).into()),
            };
        }
        sent += 1;
        round_sent = true;
        progress.advance(len as u64);
    };
    reader.abort();
    outcome?;
    Ok((sent, resent))
}
