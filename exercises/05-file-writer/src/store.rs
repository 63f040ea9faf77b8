//! Uploads on disk and in memory.
//!
//! Each upload is two files in the server's directory, both named by its random id, never by
//! anything a client sent: `ID` holds the bytes and `ID.info` the record (JSON) whose `offset`
//! is the honest one. A partial upload that belongs to a final upload has no bytes file of its
//! own: its bytes live in the final's file, at its `base`.
//!
//! Durability, in the order the server does it: bytes are written with `write_all_at`, then
//! `sync_data` makes them durable, and only then is the record replaced (written to `ID.tmp`,
//! `sync_all`, renamed over `ID.info`). A crash between the two leaves the old record, whose
//! offset is lower and so still honest: the offset only grows, and any record of it ever written
//! counts only synced bytes. The directory itself is synced when an upload is created or removed,
//! so that a created upload survives a crash.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// What kind of upload a record is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Kind {
    /// A plain upload: a file of its own.
    Single,
    /// A partial upload (`Upload-Concat: partial`); `placed` once a final has claimed it.
    Partial {
        /// Where its bytes live, once a final upload holds them.
        placed: Option<Placement>,
    },
    /// A final upload, the concatenation of `parts`.
    Final {
        /// The partial uploads' ids, in order.
        parts: Vec<String>,
        /// `Upload-Concat` as the client sent it, echoed on HEAD.
        concat: String,
    },
}

/// Where a partial upload's bytes live inside a final upload's file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The final upload.
    pub final_id: String,
    /// The byte of the final file where this part's byte 0 goes.
    pub base: u64,
}

/// The persisted record of one upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// The random id, also its file name.
    pub id: String,
    /// `Upload-Length`, unless deferred.
    pub length: Option<u64>,
    /// The bytes received, synced and counted: the offset HEAD reports. (For a final upload,
    /// unused: its offset is its parts'.)
    pub offset: u64,
    /// `Upload-Metadata` as the client sent it (validated).
    pub metadata: Option<String>,
    /// Single, partial or final.
    pub kind: Kind,
    /// When it expires unless finished, in seconds since the Unix epoch.
    pub expires: Option<u64>,
}

impl Info {
    /// The file that holds this upload's bytes and where in it byte 0 goes.
    pub fn target(&self) -> (&str, u64) {
        match &self.kind {
            Kind::Partial {
                placed: Some(place),
            } => (&place.final_id, place.base),
            _ => (&self.id, 0),
        }
    }

    /// Whether every byte has arrived (never true of a final: ask its parts).
    pub fn is_complete(&self) -> bool {
        !matches!(self.kind, Kind::Final { .. }) && self.length == Some(self.offset)
    }
}

/// One upload in memory: its record, and the lock that one PATCH at a time holds.
#[derive(Debug)]
pub struct Slot {
    /// Held by the request that writes (PATCH, DELETE, a final claiming this part) for as long
    /// as it writes; a second one waits a bounded time for it.
    pub write: Arc<tokio::sync::Mutex<()>>,
    /// The record; held only for moments, never across an await.
    pub info: Mutex<Info>,
}

/// How many removed ids are remembered, to answer 410 Gone rather than 404.
const GONE_CAPACITY: usize = 65_536;

/// Every upload of the directory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    uploads: Mutex<HashMap<String, Arc<Slot>>>,
    gone: Mutex<HashSet<String>>,
}

impl Store {
    /// The uploads recorded in `dir`, read back after a restart. Records that do not parse are
    /// skipped with a warning, never deleted.
    pub fn open(dir: &Path) -> io::Result<Store> {
        // TODO: Stage 1. The store of every `ID.info` record in `dir` whose ID passes
        // `is_upload_id` (a record that does not parse is skipped with a warning, never deleted),
        // and nothing `gone`. `fs::read_dir`, `serde_json::from_slice::<Info>`, `new_slot`.
        todo!()
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The upload `id`, if it exists.
    pub fn get(&self, id: &str) -> Option<Arc<Slot>> {
        lock(&self.uploads).get(id).cloned()
    }

    /// How many uploads exist.
    pub fn len(&self) -> usize {
        lock(&self.uploads).len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of every record.
    pub fn snapshot(&self) -> Vec<Info> {
        lock(&self.uploads)
            .values()
            .map(|slot| lock(&slot.info).clone())
            .collect()
    }

    /// Adds an upload (already on disk).
    pub fn insert(&self, info: Info) -> Arc<Slot> {
        let id = info.id.clone();
        let slot = Arc::new(new_slot(info));
        lock(&self.uploads).insert(id, Arc::clone(&slot));
        slot
    }

    /// Forgets `id`, remembering that it existed.
    pub fn forget(&self, id: &str) {
        lock(&self.uploads).remove(id);
        let mut gone = lock(&self.gone);
        if gone.len() >= GONE_CAPACITY {
            gone.clear();
        }
        gone.insert(id.to_owned());
    }

    /// Whether `id` existed in this run and was terminated or expired.
    pub fn is_gone(&self, id: &str) -> bool {
        lock(&self.gone).contains(id)
    }

    /// Path of the bytes of `id`.
    pub fn data_path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Path of the record of `id`.
    pub fn info_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.info"))
    }
}

fn new_slot(info: Info) -> Slot {
    Slot {
        write: Arc::new(tokio::sync::Mutex::new(())),
        info: Mutex::new(info),
    }
}

/// A poisoned lock still holds consistent data here: every critical section is a plain read or
/// assignment.
pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Replaces the record durably: a temporary file, synced, renamed over the old one.
pub fn persist(dir: &Path, info: &Info) -> io::Result<()> {
    // TODO: Stage 1. `dir/ID.info` replaced whole or not at all, and durable before this returns:
    // written to `dir/ID.tmp`, synced, then renamed over it (`File::sync_all`, `fs::rename`).
    todo!()
}

/// Creates the bytes file of a new upload (`size` bytes long, a sparse preallocation, for a
/// final upload) and its record, then syncs the directory so that both survive a crash.
pub fn create(dir: &Path, info: &Info, size: u64) -> io::Result<()> {
    // TODO: Stage 1. A new `dir/ID` of `size` bytes (never one that exists: `create_new`), synced,
    // its record persisted, and the directory synced so that both names survive a crash
    // (`File::set_len`, `persist`, `sync_dir`).
    todo!()
}

/// Removes an upload's files (either may be missing already).
pub fn remove(dir: &Path, id: &str) -> io::Result<()> {
    for name in [id.to_owned(), format!("{id}.info")] {
        match fs::remove_file(dir.join(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    sync_dir(dir)
}

/// Writes `bytes` at `offset` of `file`: a positioned write, so any number of writers of
/// distinct ranges share one file without a cursor to race on.
pub fn write_at(file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    // TODO: Stage 2. `FileExt::write_all_at`: the offset is an argument, there is no cursor to race on.
    todo!()
}

/// Copies `len` bytes from `src` at `src_offset` to `dst` at `dst_offset`. Each side is opened
/// on its own here, so the cursors moved are private to this copy; `io::copy` between two files
/// uses `copy_file_range` on Linux, so the bytes need not pass through user space.
pub fn copy_range(
    src: &Path,
    src_offset: u64,
    dst: &Path,
    dst_offset: u64,
    len: u64,
) -> io::Result<()> {
    // TODO: Stage 5. The bytes copied and synced (`to.sync_data()`), each file opened on its own
    // here; fewer than `len` bytes at `src` is an `UnexpectedEof` error. `Seek`, `Read::take`,
    // `io::copy`.
    todo!()
}

/// Syncs a directory, making the names created or removed in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
