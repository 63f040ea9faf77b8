//! A file being received: its bytes in `.NAME.ft-partial`, the chunks verified so far in
//! `.NAME.ft-state`, and the final name only once the whole file is right.
//!
//! Blocking file I/O. What reads, hashes, renames or removes whole files ([`Partial::open`],
//! [`Partial::finish`], [`Partial::discard`]) runs on `spawn_blocking`. [`Partial::mark_held`]
//! writes one byte of the state file into the page cache, which takes less than the hand-off to
//! the blocking pool would: the receiver calls it on its own task.
//!
//! Your task: [`Partial::open`] for a fresh file, [`Partial::mark_held`] and [`Partial::finish`]
//! in stage 1; reading the state file back in `open` (resume) in stage 4; [`Partial::discard`]
//! in stage 6 (a manifest that lies); [`kept`] and [`remove`] in stage 4 (the expiry and the
//! byte budget of kept partial files). The paths and the getters are given.
//!
//! The state file is the manifest's identity (the SHA-256 of its encoding) followed by one bit per
//! chunk. It is written after each chunk lands but never fsynced: on a resume every chunk it
//! claims is read back and hashed again, so a state file that got ahead of the data after a crash
//! costs a re-send, never a corrupt file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::name::{PARTIAL_SUFFIX, STATE_SUFFIX};
use crate::protocol::{Hash, Manifest};

/// A file being received into a directory.
#[derive(Debug)]
pub struct Partial {
    final_path: PathBuf,
    partial_path: PathBuf,
    state_path: PathBuf,
    file: Arc<File>,
    state: File,
    /// The state file's copy of the bitmap.
    bitmap: Vec<u8>,
    held: Vec<bool>,
    held_count: u32,
}

/// The two temporary paths for `name` in `dir`: the partial file and its state.
pub fn temp_paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!(".{name}{PARTIAL_SUFFIX}")),
        dir.join(format!(".{name}{STATE_SUFFIX}")),
    )
}

/// A partial file kept in a directory: what the expiry and the byte budget look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// The name the file would get (`NAME` of `.NAME.ft-partial`).
    pub name: String,
    /// The partial file's length: the size its manifest declared (0 for a state file alone).
    pub bytes: u64,
    /// When the partial file or its state was last written, whichever is later.
    pub modified: SystemTime,
}

/// Every partial file in `dir` (and every state file left without one), oldest first. Links
/// are looked at, never followed: a link planted at a temporary name counts for no bytes.
pub fn kept(dir: &Path) -> io::Result<Vec<Kept>> {
    // TODO: (stage 1, tested in stage 4) what this doc says, each `Kept` grouping `.NAME` +
    // PARTIAL_SUFFIX and STATE_SUFFIX: `bytes` the partial file's length when it is a regular file,
    // `modified` the later of the two. Links never followed: `fs::symlink_metadata`, never
    // `fs::metadata`. `fs::read_dir`, `str::strip_prefix`, `strip_suffix`.
    todo!()
}

/// Removes the partial file of `name` in `dir` and its state (links included, never what they
/// point to).
pub fn remove(dir: &Path, name: &str) {
    // TODO: `fs::remove_file` both `temp_paths`, ignoring errors (one may be gone already).
    todo!()
}

impl Partial {
    /// Opens the partial file for `manifest` in `dir`. If a state file records the same manifest,
    /// the chunks it claims are read back and verified, and those that pass count as held (a
    /// resume); otherwise the partial file starts empty.
    pub fn open(dir: &Path, manifest: &Manifest) -> io::Result<Partial> {
        // TODO: the contract's "The receiver" (temporary files, links, resume): nothing outside
        // `dir` written through a link (a temporary file reused only if a regular file with one
        // link, and the one then opened is that same file, `dev()` and `ino()`; else created
        // afresh, `create_new`); a resume only for a state file that starts with the manifest's
        // identity (`Sha256::digest` of its encoding), a bitmap of its size and a partial file of
        // `manifest.size` bytes, each chunk it claims hashed again (stage 4); the state file
        // written again with what is held now.
        todo!()
    }

    /// The partial file, for positioned reads and writes.
    pub fn file(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    /// Which chunks are held, verified.
    pub fn held(&self) -> &[bool] {
        &self.held
    }

    /// How many chunks are held.
    pub fn held_count(&self) -> u32 {
        self.held_count
    }

    /// Records that chunk `index` has been written and verified.
    pub fn mark_held(&mut self, index: u32) -> io::Result<()> {
        // TODO: the chunk recorded in memory (`held` and `held_count`) and in the state file's
        // bitmap (the contract's layout), writing only the byte that changed; a chunk held
        // already changes nothing.
        // `FileExt::write_all_at`.
        todo!()
    }

    /// Makes the file durable under its final name: fsync the data, rename over the final name
    /// (atomic: a reader sees the old file or the new one, never a mix), fsync the directory so
    /// the rename itself survives a crash, then drop the state file.
    pub fn finish(self) -> io::Result<()> {
        // TODO: the four steps of this doc, in its order (`File::sync_all`, `fs::rename`,
        // `fs::remove_file`): a directory is synced through a `File` opened on it.
        todo!()
    }

    /// Removes the partial file and its state (after a manifest that lied). A `Partial` dropped
    /// without `finish` or `discard` (the sender went away) keeps both for a later resume.
    pub fn discard(self) {
        // TODO: `fs::remove_file` both temporary files, ignoring errors.
        todo!()
    }
}
