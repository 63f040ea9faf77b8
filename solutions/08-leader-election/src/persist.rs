//! The state that must survive a restart: the current term and the vote cast in it.
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
        let Some(dir) = &self.dir else {
            return Ok(Durable::default());
        };
        match fs::read(dir.join(STATE_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Durable::default()),
            Err(e) => Err(e),
        }
    }

    /// Writes the state durably: to a temporary file, fsync, rename over the old one, fsync
    /// the directory. A crash at any point leaves either the old state or the new one.
    ///
    /// # Errors
    /// When any step fails; the caller must then not send what depended on it.
    pub fn save(&self, state: &Durable) -> std::io::Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        write_atomically(dir, STATE_FILE, &serde_json::to_vec(state)?)
    }
}

fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    // The rename is only durable once the directory entry is.
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads() {
        let dir = std::env::temp_dir().join(format!("le-persist-{}", std::process::id()));
        let store = Store::new(Some(dir.clone()));
        assert_eq!(store.load().unwrap(), Durable::default());
        let state = Durable {
            term: 7,
            voted_for: Some("b".into()),
        };
        store.save(&state).unwrap();
        assert_eq!(store.load().unwrap(), state);
        fs::write(dir.join(STATE_FILE), b"garbage").unwrap();
        assert!(store.load().is_err());
        fs::remove_dir_all(dir).unwrap();
    }
}
