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
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        let mut records = Vec::new();
        let mut good_len: u64 = 0;
        if path.exists() {
            let mut reader = BufReader::new(File::open(&path)?);
            let mut line = String::new();
            let mut number = 0;
            loop {
                line.clear();
                let n = reader.read_line(&mut line)?;
                if n == 0 {
                    break;
                }
                number += 1;
                // A last line cut short by a crash was never acknowledged: drop it.
                if !line.ends_with('\n') {
                    break;
                }
                match serde_json::from_str::<Record>(line.trim_end()) {
                    Ok(record) => {
                        records.push(record);
                        good_len += n as u64;
                    }
                    Err(e) => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("{} line {number} is not a record: {e}", path.display()),
                        ));
                    }
                }
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        file.set_len(good_len)?;
        let journal = Journal {
            dir: dir.to_owned(),
            file,
            records: records.len(),
        };
        Ok((journal, records))
    }

    /// Appends records and waits until they are on disk.
    ///
    /// # Errors
    /// When the write or the sync fails; the change must then not be acknowledged.
    pub fn append(&mut self, records: &[Record]) -> io::Result<()> {
        let mut buf = Vec::new();
        for record in records {
            serde_json::to_writer(&mut buf, record)?;
            buf.push(b'\n');
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        self.records += records.len();
        Ok(())
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
        let tmp = self.dir.join(format!("{FILE_NAME}.tmp"));
        let mut file = File::create(&tmp)?;
        let mut buf = Vec::new();
        for record in snapshot {
            serde_json::to_writer(&mut buf, record)?;
            buf.push(b'\n');
        }
        file.write_all(&buf)?;
        file.sync_all()?;
        let path = self.dir.join(FILE_NAME);
        std::fs::rename(&tmp, &path)?;
        File::open(&self.dir)?.sync_all()?;
        self.file = OpenOptions::new().append(true).open(&path)?;
        self.records = snapshot.len();
        Ok(())
    }
}
