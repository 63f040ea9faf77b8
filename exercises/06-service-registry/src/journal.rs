//! Persistence under `--data DIR`: an append-only journal of [`Record`]s, one JSON line each,
//! made durable (`fdatasync`) before the change is acknowledged, and compacted into a snapshot
//! of the live registry when it has grown well past it.
//!
//! A SIGKILL can cut the last line short; that line was never acknowledged, so opening the
//! journal drops it. A bad line anywhere else is corruption, and the agent refuses to start
//! rather than serve a registry that silently lost part of what it acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::state::Record;

/// The journal's file name inside the data directory.
pub const FILE_NAME: &str = "registry.jsonl";

/// Journals shorter than this many records are never compacted.
pub const COMPACT_AFTER: usize = 4096;

/// An open journal.
pub struct Journal {
    dir: PathBuf,
    file: File,
    /// Records in the file.
    records: usize,
}

impl Journal {
    /// Opens (or creates) the journal in `dir` and returns it with the records it holds, a
    /// torn last line dropped.
    ///
    /// # Errors
    /// When the directory or file cannot be used, or a line before the last is not a record.
    pub fn open(dir: &Path) -> io::Result<(Journal, Vec<Record>)> {
        // TODO: the records of `dir/FILE_NAME` (the directory and file created if missing), as the
        // contract's "Persistence" says: a last line without its `\n` is a torn write, dropped and
        // cut off the file (`set_len`); any other line that is not a `Record` is
        // `io::ErrorKind::InvalidData`. The journal returned appends after the good bytes.
        // `BufReader::read_line`.
        todo!()
    }

    /// Appends records and waits until they are on disk.
    ///
    /// # Errors
    /// When the write or the sync fails; the change must then not be acknowledged.
    pub fn append(&mut self, records: &[Record]) -> io::Result<()> {
        // TODO: serialise every record as one JSON line into one buffer, `write_all`, then `sync_data`:
        // only then may the change be acknowledged.
        todo!()
    }

    /// Whether the journal has grown enough past `live` records to be worth compacting.
    pub fn should_compact(&self, live: usize) -> bool {
        self.records > COMPACT_AFTER.max(live.saturating_mul(4))
    }

    /// Replaces the journal by `snapshot` atomically: written to a temporary file, synced,
    /// renamed over the journal, and the directory synced so that the rename survives a crash.
    ///
    /// # Errors
    /// When a step fails; the old journal is then still whole.
    pub fn compact(&mut self, snapshot: &[Record]) -> io::Result<()> {
        // TODO: the atomic replacement this doc describes, the journal open for append afterwards
        // (`File::sync_all`, `fs::rename`, `File::open(dir)` to sync the directory).
        todo!()
    }
}
