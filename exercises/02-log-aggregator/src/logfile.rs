//! The output file: appends, size-based rotation to FILE.1 ... FILE.N, and reopening (after
//! logrotate moved it). Blocking I/O: it is used from one place at a time, under a lock or on
//! the writer's own thread.
//!
//! Your task (stages 1 and 7): [`LogFile::append`] and [`shift_rotated`].

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// How many rotated files are kept when `--rotate-size` is given.
pub const DEFAULT_KEEP: usize = 5;

/// How big the write buffer is: a batch of small messages becomes one `write`.
const BUFFER: usize = 256 * 1024;

/// When to rotate, and how many old files to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate before an append would take the file past this many bytes.
    pub size: u64,
    /// Keep FILE.1 (newest) to FILE.keep; `0` keeps none.
    pub keep: usize,
}

/// `FILE.n`.
pub fn rotated_name(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Moves FILE.(keep-1) to FILE.keep, ..., FILE to FILE.1 (the oldest falls off the end).
pub fn shift_rotated(path: &Path, keep: usize) -> io::Result<()> {
    // TODO: (stage 7) the shift of the contract's "Rotation and SIGHUP": FILE.1 becomes FILE.2 and
    // so on up to FILE.`keep` (the oldest is lost; a name missing in the chain is no error:
    // `io::ErrorKind::NotFound`), and FILE becomes FILE.1; with `keep` 0, FILE is removed instead.
    // `fs::rename`, `fs::remove_file`.
    todo!()
}

/// Opens `path` for appending, creating it, and returns it with its size.
pub fn open_append(path: &Path) -> io::Result<(File, u64)> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

/// An output file being appended to.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
    rotation: Option<Rotation>,
}

impl LogFile {
    /// Opens (or creates) `path` for appending.
    ///
    /// # Errors
    /// When the file cannot be opened.
    pub fn open(path: &Path, rotation: Option<Rotation>) -> io::Result<LogFile> {
        let (file, size) = open_append(path)?;
        Ok(LogFile {
            path: path.to_owned(),
            out: BufWriter::with_capacity(BUFFER, file),
            size,
            rotation,
        })
    }

    /// Appends whole lines; rotates first if they would take a non-empty file past the
    /// rotation size, so no line is ever split across two files. The bytes may sit in the
    /// buffer until [`flush`](Self::flush).
    ///
    /// # Errors
    /// When writing or rotating fails.
    pub fn append(&mut self, lines: &[u8]) -> io::Result<()> {
        // TODO: (stage 1) `lines` appended and counted in `self.size`. (Stage 7) with a rotation
        // set, lines never straddle files: a batch that would take a non-empty file past the size
        // rotates it first (`self.rotate`).
        todo!()
    }

    /// Writes the buffer to the file (after this, a crash of the process loses nothing).
    ///
    /// # Errors
    /// When the write fails.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Flushes, then `fdatasync`s (after this, a crash of the machine loses nothing).
    ///
    /// # Errors
    /// When the write or the sync fails.
    pub fn sync(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()
    }

    /// Closes the file and opens `path` again: after logrotate moved it away, a new one.
    ///
    /// # Errors
    /// When the flush or the open fails.
    pub fn reopen(&mut self) -> io::Result<()> {
        self.sync()?;
        let (file, size) = open_append(&self.path)?;
        self.out = BufWriter::with_capacity(BUFFER, file);
        self.size = size;
        Ok(())
    }

    fn rotate(&mut self, keep: usize) -> io::Result<()> {
        self.sync()?;
        shift_rotated(&self.path, keep)?;
        self.reopen()
    }
}
