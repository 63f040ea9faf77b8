//! The state that must survive a restart: the current term and the vote cast in it.
//!
//! Your task (stage 1, then stage 4 checks restarts): [`Store::load`] and [`Store::save`].
//!
//! A node that forgot its term could stand again in a term it already lost, and one that forgot
//! its vote could vote twice in one term: both would let two leaders share a term. So both are
//! on disk before any message that depends on them leaves the node.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file name inside `--data DIR`.
pub const STATE_FILE: &str = "state.json";

/// The durable part of a node's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Durable {
    /// The highest term this node has seen.
    pub term: u64,
    /// The candidate it voted for in `term`, if any.
    pub voted_for: Option<String>,
}

/// Where the durable state lives; `None` keeps it in memory only.
#[derive(Debug, Clone)]
pub struct Store {
    dir: Option<PathBuf>,
}

impl Store {
    /// A store in `dir`, or none.
    pub fn new(dir: Option<PathBuf>) -> Store {
        Store { dir }
    }

    /// Reads the state, or the default (term 0, no vote) when there is no file yet.
    ///
    /// # Errors
    /// When the file exists but cannot be read or parsed: starting from term 0 then could reuse
    /// a term, so the node refuses to start.
    pub fn load(&self) -> std::io::Result<Durable> {
        // TODO: no directory: the default. Else read `dir.join(STATE_FILE)`: `NotFound` is a fresh
        // node (the default); bytes that do not parse are an `InvalidData` error, never term 0.
        todo!()
    }

    /// Writes the state durably: to a temporary file, fsync, rename over the old one, fsync
    /// the directory. A crash at any point leaves either the old state or the new one.
    ///
    /// # Errors
    /// When any step fails; the caller must then not send what depended on it.
    pub fn save(&self, state: &Durable) -> std::io::Result<()> {
        // TODO: nothing to do without a directory; else `write_atomically` the JSON of `state`.
        todo!()
    }
}

fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    // TODO: `bytes` at `dir/name` durably and atomically, as the contract's "The rules of the safe
    // algorithm" says (temporary file, fsync, rename, fsync of the directory); the directory is
    // created if missing. `fs::create_dir_all`, `File::sync_all`, `fs::rename`.
    todo!()
}
