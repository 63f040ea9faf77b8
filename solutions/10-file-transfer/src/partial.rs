//! A file being received: its bytes in `.NAME.ft-partial`, the chunks verified so far in
//! `.NAME.ft-state`, and the final name only once the whole file is right.
//!
//! Blocking file I/O. What reads, hashes, renames or removes whole files ([`Partial::open`],
//! [`Partial::finish`], [`Partial::discard`]) runs on `spawn_blocking`. [`Partial::mark_held`]
//! writes one byte of the state file into the page cache, which takes less than the hand-off to
//! the blocking pool would: the receiver calls it on its own task.
//!
//! The state file is the manifest's identity (the SHA-256 of its encoding) followed by one bit per
//! chunk. It is written after each chunk lands but never fsynced: on a resume every chunk it
//! claims is read back and hashed again, so a state file that got ahead of the data after a crash
//! costs a re-send, never a corrupt file.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
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
    let mut found: HashMap<String, Kept> = HashMap::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let Some(rest) = file_name.strip_prefix('.') else {
            continue;
        };
        let (name, is_partial) = match (
            rest.strip_suffix(PARTIAL_SUFFIX),
            rest.strip_suffix(STATE_SUFFIX),
        ) {
            (Some(name), _) => (name, true),
            (None, Some(name)) => (name, false),
            (None, None) => continue,
        };
        // Removed by another connection since the listing: nothing to count.
        let Ok(meta) = fs::symlink_metadata(entry.path()) else {
            continue;
        };
        let bytes = if is_partial && meta.is_file() {
            meta.len()
        } else {
            0
        };
        let modified = meta.modified()?;
        let k = found.entry(name.to_owned()).or_insert_with(|| Kept {
            name: name.to_owned(),
            bytes: 0,
            modified,
        });
        k.bytes += bytes;
        k.modified = k.modified.max(modified);
    }
    let mut found: Vec<Kept> = found.into_values().collect();
    found.sort_by_key(|k| k.modified);
    Ok(found)
}

/// Removes the partial file of `name` in `dir` and its state (links included, never what they
/// point to).
pub fn remove(dir: &Path, name: &str) {
    let (partial, state) = temp_paths(dir, name);
    let _ = fs::remove_file(partial);
    let _ = fs::remove_file(state);
}

/// Opens the temporary file at `path` to pick up where an earlier transfer left it, if it is a
/// regular file that belongs to the directory alone: not a symbolic link (it could point anywhere)
/// and not one of several hard links (another could be outside the directory). `None` when there
/// is no such file.
fn open_existing(path: &Path) -> io::Result<Option<File>> {
    let linked = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !linked.is_file() || linked.nlink() != 1 {
        return Ok(None);
    }
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    // Between the look and the open, a link could have been put in the file's place: the file
    // opened must be the one looked at.
    let opened = file.metadata()?;
    let same = opened.dev() == linked.dev() && opened.ino() == linked.ino();
    Ok((same && opened.nlink() == 1).then_some(file))
}

/// Creates the temporary file at `path` afresh. Whatever is there (a stale file, a symbolic or a
/// hard link) is removed, not written through, and the new file is created exclusively, so that
/// nothing can be slipped in its place between the two.
fn create_fresh(path: &Path) -> io::Result<File> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
}

impl Partial {
    /// Opens the partial file for `manifest` in `dir`. If a state file records the same manifest,
    /// the chunks it claims are read back and verified, and those that pass count as held (a
    /// resume); otherwise the partial file starts empty.
    pub fn open(dir: &Path, manifest: &Manifest) -> io::Result<Partial> {
        let final_path = dir.join(&manifest.name);
        let (partial_path, state_path) = temp_paths(dir, &manifest.name);
        let identity: Hash = Sha256::digest(manifest.encode()).into();
        let chunks = manifest.chunks() as usize;
        let bitmap_len = chunks.div_ceil(8);

        // The record is read only up to one byte past its expected length: a larger state file
        // (damaged, or not ours) is not read whole into memory, only refused.
        let mut recorded = Vec::new();
        if let Some(state) = open_existing(&state_path)? {
            state
                .take(32 + bitmap_len as u64 + 1)
                .read_to_end(&mut recorded)?;
        }
        let existing = open_existing(&partial_path)?;
        let resumable = recorded.len() == 32 + bitmap_len
            && recorded[..32] == identity
            && match &existing {
                Some(file) => file.metadata()?.len() == manifest.size,
                None => false,
            };
        let mut held = vec![false; chunks];
        let file = match existing {
            Some(file) if resumable => file,
            _ => {
                let file = create_fresh(&partial_path)?;
                file.set_len(manifest.size)?;
                file
            }
        };
        if resumable {
            let mut buf = Vec::new();
            for (i, h) in held.iter_mut().enumerate() {
                if recorded[32 + i / 8] & (1 << (i % 8)) == 0 {
                    continue;
                }
                let index = i as u32;
                buf.resize(manifest.chunk_len(index), 0);
                file.read_exact_at(&mut buf, manifest.offset(index))?;
                *h = Sha256::digest(&buf).as_slice() == manifest.chunk_hashes[i];
            }
        }
        let mut bitmap = vec![0u8; bitmap_len];
        for (i, _) in held.iter().enumerate().filter(|(_, h)| **h) {
            bitmap[i / 8] |= 1 << (i % 8);
        }
        let state = create_fresh(&state_path)?;
        state.write_all_at(&identity, 0)?;
        state.write_all_at(&bitmap, 32)?;
        let held_count = held.iter().filter(|h| **h).count() as u32;
        Ok(Partial {
            final_path,
            partial_path,
            state_path,
            file: Arc::new(file),
            state,
            bitmap,
            held,
            held_count,
        })
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
        let i = index as usize;
        if self.held[i] {
            return Ok(());
        }
        self.held[i] = true;
        self.held_count += 1;
        self.bitmap[i / 8] |= 1 << (i % 8);
        self.state
            .write_all_at(&self.bitmap[i / 8..=i / 8], 32 + (i / 8) as u64)
    }

    /// Makes the file durable under its final name: fsync the data, rename over the final name
    /// (atomic: a reader sees the old file or the new one, never a mix), fsync the directory so
    /// the rename itself survives a crash, then drop the state file.
    pub fn finish(self) -> io::Result<()> {
        self.file.sync_all()?;
        fs::rename(&self.partial_path, &self.final_path)?;
        if let Some(dir) = self.final_path.parent() {
            File::open(dir)?.sync_all()?;
        }
        let _ = fs::remove_file(&self.state_path);
        Ok(())
    }

    /// Removes the partial file and its state (after a manifest that lied). A `Partial` dropped
    /// without `finish` or `discard` (the sender went away) keeps both for a later resume.
    pub fn discard(self) {
        let _ = fs::remove_file(&self.partial_path);
        let _ = fs::remove_file(&self.state_path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hasher::sha256;

    fn manifest_for(name: &str, data: &[u8], chunk_size: u32) -> Manifest {
        Manifest {
            name: name.into(),
            size: data.len() as u64,
            chunk_size,
            file_hash: sha256(data),
            chunk_hashes: data.chunks(chunk_size as usize).map(sha256).collect(),
        }
    }

    fn land(partial: &mut Partial, manifest: &Manifest, data: &[u8], index: u32) {
        let start = manifest.offset(index) as usize;
        let chunk = &data[start..start + manifest.chunk_len(index)];
        partial.file().write_all_at(chunk, start as u64).unwrap();
        partial.mark_held(index).unwrap();
    }

    #[test]
    fn a_resume_counts_only_the_chunks_that_still_verify() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let manifest = manifest_for("f.bin", &data, 2048);
        let mut partial = Partial::open(dir.path(), &manifest).unwrap();
        assert_eq!(partial.held_count(), 0);
        land(&mut partial, &manifest, &data, 0);
        land(&mut partial, &manifest, &data, 2);
        drop(partial);
        // Damage chunk 2 behind the state file's back.
        let (partial_path, _) = temp_paths(dir.path(), "f.bin");
        let file = OpenOptions::new().write(true).open(&partial_path).unwrap();
        file.write_all_at(b"x", 4100).unwrap();
        let partial = Partial::open(dir.path(), &manifest).unwrap();
        assert_eq!(partial.held(), [true, false, false]);
    }

    #[test]
    fn another_manifest_for_the_name_starts_over_and_finish_renames() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![1u8; 3000];
        let manifest = manifest_for("g.bin", &data, 1024);
        let mut partial = Partial::open(dir.path(), &manifest).unwrap();
        land(&mut partial, &manifest, &data, 1);
        drop(partial);
        let other = manifest_for("g.bin", &[2u8; 3000], 1024);
        let mut partial = Partial::open(dir.path(), &other).unwrap();
        assert_eq!(partial.held_count(), 0);
        for i in 0..3 {
            land(&mut partial, &other, &[2u8; 3000], i);
        }
        partial.finish().unwrap();
        assert_eq!(fs::read(dir.path().join("g.bin")).unwrap(), [2u8; 3000]);
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "the temporary files are gone");
    }
}
