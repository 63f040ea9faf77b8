//! The three ways connections share the output file, behind `--writer`. Each keeps every batch
//! of lines whole (one connection's batch is never interleaved with another's) and returns from
//! [`Sink::append`] only once the lines are accepted under the fsync policy.

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
        if let Some(r) = self.rotation
            && self.size > 0
            && self.size + lines.len() as u64 > r.size
        {
            self.sync().await?;
            logfile::shift_rotated(&self.path, r.keep)?;
            self.reopen().await?;
        }
        self.out.write_all(lines).await?;
        self.size += lines.len() as u64;
        self.out.flush().await?;
        if fsync != Fsync::Never {
            self.out.get_ref().sync_data().await?;
        }
        Ok(())
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
    let (thread, sink) = match config.kind {
        WriterKind::StdMutex => {
            let file = LogFile::open(&config.path, config.rotation)?;
            (
                None,
                Inner::StdMutex(Arc::new(std::sync::Mutex::new(file)), config.fsync),
            )
        }
        WriterKind::TokioMutex => {
            let file = AsyncLog::open(config.path.clone(), config.rotation).await?;
            (
                None,
                Inner::TokioMutex(Arc::new(tokio::sync::Mutex::new(file)), config.fsync),
            )
        }
        WriterKind::Task => {
            let file = LogFile::open(&config.path, config.rotation)?;
            // The bytes bound is the real one; the count only keeps the channel's own
            // allocation small.
            let (tx, rx) = mpsc::channel(4096);
            let fsync = config.fsync;
            let thread = thread::Builder::new()
                .name("writer".into())
                .spawn(move || write_loop(file, rx, fsync))?;
            let bytes = Arc::new(Semaphore::new(config.queue_bytes));
            (Some(thread), Inner::Task(tx, bytes, config.queue_bytes))
        }
    };
    Ok((
        Writer {
            thread,
            sink: sink.clone(),
        },
        Sink(sink),
    ))
}

/// The writer task: takes what is queued (up to [`GROUP_BYTES`]), writes it, syncs once per
/// the policy, then tells every sender. Ends, synced, when every [`Sink`] is gone.
fn write_loop(mut file: LogFile, mut rx: mpsc::Receiver<Command>, fsync: Fsync) -> io::Result<()> {
    let mut group = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut bytes = 0;
        group.push(first);
        while bytes < GROUP_BYTES
            && let Ok(next) = rx.try_recv()
        {
            if let Command::Append { lines, .. } = &next {
                bytes += lines.len();
            }
            group.push(next);
        }
        let mut result = Ok(());
        let mut waiting = Vec::with_capacity(group.len());
        for command in group.drain(..) {
            match command {
                Command::Append { lines, done, .. } => {
                    if result.is_ok() {
                        result = file.append(&lines);
                        if result.is_ok() && fsync == Fsync::Always {
                            result = file.sync();
                        }
                    }
                    waiting.push(done);
                }
                Command::Reopen(done) => {
                    let _ = done.send(file.reopen());
                }
            }
        }
        if result.is_ok() {
            result = match fsync {
                Fsync::Never => file.flush(),
                Fsync::Batch | Fsync::Always => file.sync(),
            };
        }
        for done in waiting {
            let _ = done.send(clone_result(&result));
        }
    }
    file.sync()
}

fn clone_result(result: &io::Result<()>) -> io::Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
    }
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
        match &self.0 {
            Inner::StdMutex(file, fsync) => {
                // No guard crosses an await: the write blocks this runtime thread instead,
                // which is the price of this design.
                let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
                file.append(&lines)?;
                match fsync {
                    Fsync::Never => file.flush(),
                    Fsync::Batch | Fsync::Always => file.sync(),
                }
            }
            Inner::TokioMutex(file, fsync) => file.lock().await.append(&lines, *fsync).await,
            Inner::Task(tx, bytes, max) => {
                // A batch larger than the whole queue takes all of it.
                let need = u32::try_from(lines.len().clamp(1, *max)).unwrap_or(u32::MAX);
                let permit = Arc::clone(bytes)
                    .acquire_many_owned(need)
                    .await
                    .map_err(|_| gone())?;
                let (done, wait) = oneshot::channel();
                tx.send(Command::Append {
                    lines,
                    done,
                    _permit: permit,
                })
                .await
                .map_err(|_| gone())?;
                wait.await.map_err(|_| gone())?
            }
        }
    }

    /// Closes the file and opens it again (SIGHUP, after logrotate moved it).
    ///
    /// # Errors
    /// When the file cannot be reopened.
    pub async fn reopen(&self) -> io::Result<()> {
        match &self.0 {
            Inner::StdMutex(file, _) => file.lock().unwrap_or_else(|p| p.into_inner()).reopen(),
            Inner::TokioMutex(file, _) => file.lock().await.reopen().await,
            Inner::Task(tx, _, _) => {
                let (done, wait) = oneshot::channel();
                tx.send(Command::Reopen(done)).await.map_err(|_| gone())?;
                wait.await.map_err(|_| gone())?
            }
        }
    }
}

impl Writer {
    /// Writes and syncs everything accepted, then closes the file. Call it once every
    /// connection has ended (their [`Sink`]s dropped): the writer task waits for them.
    ///
    /// # Errors
    /// When the last write or sync fails.
    pub async fn finish(self) -> io::Result<()> {
        let Writer { thread, sink } = self;
        match sink {
            Inner::StdMutex(file, _) => file.lock().unwrap_or_else(|p| p.into_inner()).sync(),
            Inner::TokioMutex(file, _) => file.lock().await.sync().await,
            Inner::Task(tx, _, _) => {
                drop(tx);
                let Some(thread) = thread else {
                    return Ok(());
                };
                tokio::task::spawn_blocking(move || thread.join())
                    .await
                    .map_err(io::Error::other)?
                    .map_err(|_| io::Error::other("the writer thread panicked"))?
            }
        }
    }
}
