//! The three ways connections share the output file, behind `--writer`. Each keeps every batch
//! of lines whole (one connection's batch is never interleaved with another's) and returns from
//! [`Sink::append`] only once the lines are accepted under the fsync policy.
//!
//! Your task (stages 1, 2, 5 and 7): [`start`], the writer task's loop, [`Sink::append`],
//! [`Sink::reopen`], [`Writer::finish`], and the tokio-mutex design's append.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;

use tokio::io::AsyncWriteExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::logfile::{self, LogFile, Rotation};

/// The byte bound of the writer task's queue.
pub const DEFAULT_QUEUE_BYTES: usize = 8 << 20;

/// How many bytes the writer task takes from its queue before it writes and syncs them.
const GROUP_BYTES: usize = 4 << 20;

/// The design that shares the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WriterKind {
    /// `Arc<std::sync::Mutex<File>>`: each batch written (and synced) under the lock, on the
    /// connection's own runtime thread.
    StdMutex,
    /// `Arc<tokio::sync::Mutex<BufWriter<tokio::fs::File>>>`: the guard held across the
    /// awaited write, flush and sync.
    TokioMutex,
    /// One writer task on a thread of its own, fed by a queue bounded in bytes, writing and
    /// syncing what is queued as one group (group commit).
    Task,
}

/// When the file is synced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fsync {
    /// Never: a batch is accepted once written to the file (it survives the process, not the
    /// machine).
    Never,
    /// Once per group of batches: with `task`, one `fdatasync` covers everything queued; the
    /// mutex designs sync every batch, having no group.
    Batch,
    /// After every batch.
    Always,
}

/// What every design is given.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// The output file.
    pub path: PathBuf,
    /// Rotation, if `--rotate-size` was given.
    pub rotation: Option<Rotation>,
    /// The design.
    pub kind: WriterKind,
    /// The sync policy.
    pub fsync: Fsync,
    /// The writer task's queue bound, in bytes.
    pub queue_bytes: usize,
}

enum Command {
    Append {
        lines: Vec<u8>,
        done: oneshot::Sender<io::Result<()>>,
        _permit: OwnedSemaphorePermit,
    },
    Reopen(oneshot::Sender<io::Result<()>>),
}

/// The file behind a tokio mutex: async writes through a buffer.
struct AsyncLog {
    path: PathBuf,
    out: tokio::io::BufWriter<tokio::fs::File>,
    size: u64,
    rotation: Option<Rotation>,
}

impl AsyncLog {
    async fn open(path: PathBuf, rotation: Option<Rotation>) -> io::Result<AsyncLog> {
        let (file, size) = logfile::open_append(&path)?;
        Ok(AsyncLog {
            path,
            out: tokio::io::BufWriter::new(tokio::fs::File::from_std(file)),
            size,
            rotation,
        })
    }

    async fn append(&mut self, lines: &[u8], fsync: Fsync) -> io::Result<()> {
        // TODO: (stage 2) As `LogFile::append` (rotation in stage 7), with the awaited
        // `tokio::io::AsyncWriteExt::write_all` and `flush`, then `sync_data().await` unless the
        // policy is `Never`.
        todo!()
    }

    async fn sync(&mut self) -> io::Result<()> {
        self.out.flush().await?;
        self.out.get_ref().sync_data().await
    }

    async fn reopen(&mut self) -> io::Result<()> {
        self.sync().await?;
        let (file, size) = logfile::open_append(&self.path)?;
        self.out = tokio::io::BufWriter::new(tokio::fs::File::from_std(file));
        self.size = size;
        Ok(())
    }
}

/// A connection's handle on the output file; cheap to clone.
#[derive(Clone)]
pub struct Sink(Inner);

#[derive(Clone)]
enum Inner {
    /// See [`WriterKind::StdMutex`].
    StdMutex(Arc<std::sync::Mutex<LogFile>>, Fsync),
    /// See [`WriterKind::TokioMutex`].
    TokioMutex(Arc<tokio::sync::Mutex<AsyncLog>>, Fsync),
    /// See [`WriterKind::Task`].
    Task(mpsc::Sender<Command>, Arc<Semaphore>, usize),
}

/// Owns what must be finished at shutdown: the writer task's thread, or the shared file.
pub struct Writer {
    thread: Option<thread::JoinHandle<io::Result<()>>>,
    sink: Inner,
}

/// Opens the output file and starts the chosen design.
///
/// # Errors
/// When the file cannot be opened.
pub async fn start(config: &WriterConfig) -> io::Result<(Writer, Sink)> {
    // TODO: (stage 1: `Task`; stage 2: the mutexes) the design the contract's "Safety" table names
    // for `config.kind`, and a `Writer` that can finish it. `Task` is a `LogFile` on a thread of
    // its own (`std::thread::Builder`) running `write_loop`, fed by a `tokio::sync::mpsc` channel,
    // bounded in bytes by a `Semaphore` of `queue_bytes` permits.
    todo!()
}

/// The writer task: takes what is queued (up to [`GROUP_BYTES`]), writes it, syncs once per
/// the policy, then tells every sender. Ends, synced, when every [`Sink`] is gone.
fn write_loop(mut file: LogFile, mut rx: mpsc::Receiver<Command>, fsync: Fsync) -> io::Result<()> {
    // TODO: (stage 1) group commit: each time, everything queued (up to `GROUP_BYTES`) is written
    // and then flushed or synced once per the policy (`Always`: after each batch), a `Reopen` lands
    // between two batches, and a batch's `done` is answered only after its sync. When the channel
    // ends, sync and return. `blocking_recv`, `try_recv`.
    todo!()
}

fn gone() -> io::Error {
    io::Error::other("the writer has stopped")
}

impl Sink {
    /// Appends whole lines, and returns once they are accepted: written to the file, and
    /// synced if the policy says so. Waiting here is what pushes back on a fast sender.
    ///
    /// # Errors
    /// When the write or sync fails (the lines may or may not be in the file).
    pub async fn append(&self, lines: Vec<u8>) -> io::Result<()> {
        // TODO: (stage 1: `Task`; stage 2: the mutexes) return only once `lines` are accepted, as
        // the contract's "Durability" says for the policy. `Task`: a batch holds as many queue
        // permits as bytes, at least 1 and at most the whole queue
        // (`Semaphore::acquire_many_owned`, a `oneshot` for the answer). A poisoned std lock still
        // holds the file; a std guard never crosses an `.await`.
        todo!()
    }

    /// Closes the file and opens it again (SIGHUP, after logrotate moved it).
    ///
    /// # Errors
    /// When the file cannot be reopened.
    pub async fn reopen(&self) -> io::Result<()> {
        // TODO: (stage 7) The mutexes: lock and `reopen`. `Task`: send `Command::Reopen` and await its
        // answer, so that the reopen lands between two batches.
        todo!()
    }
}

impl Writer {
    /// Writes and syncs everything accepted, then closes the file. Call it once every
    /// connection has ended (their [`Sink`]s dropped): the writer task waits for them.
    ///
    /// # Errors
    /// When the last write or sync fails.
    pub async fn finish(self) -> io::Result<()> {
        // TODO: (stage 5) everything accepted written and synced, and the file closed. `Task`: the
        // thread ends once every `Sink`'s sender is gone, this one's included; join it off the
        // runtime (`tokio::task::spawn_blocking`).
        todo!()
    }
}
