//! The other backend: one store behind a `std::sync::Mutex`, locked by every connection. It is
//! the lock-based design the chapter measures against the actors (`--backend mutex`).
//!
//! Your task (stage 3, graded with `--backend mutex`): [`Locked::new`] and
//! [`Locked::execute_batch`]. `lock` is given.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::actor::{SWEEP_EVERY, SWEEP_LIMIT};
use crate::command::Command;
use crate::op::{Op, apply};
use crate::resp::Reply;
use crate::store::Store;

/// One store behind a mutex; cloning shares it.
#[derive(Clone, Debug)]
pub struct Locked {
    store: Arc<Mutex<Store>>,
}

impl Locked {
    /// An empty store, and a task that sweeps its expired keys until the last clone is dropped.
    pub fn new() -> Locked {
        // TODO: (stage 3) one `Store` behind an `Arc<Mutex<_>>`, and a sweep every `SWEEP_EVERY`
        // (at most `SWEEP_LIMIT` keys, under the lock) that stops once the store is dropped: the
        // sweep task holds only a `Weak` (`Arc::downgrade`).
        todo!()
    }

    /// Runs a pipeline under one lock, never held across an `.await` (which is why a std mutex,
    /// not tokio's, is right here).
    pub fn execute_batch(&self, commands: Vec<Command>) -> Vec<Reply> {
        // TODO: lock once for the whole pipeline (`lock`), turn each command into its `Op::of`
        // (`None`: `Reply::err("not a key-space command")`) and `apply` it at one `now`.
        todo!()
    }
}

impl Default for Locked {
    fn default() -> Self {
        Locked::new()
    }
}

/// The store behind the mutex. A panic while it was held cannot have left a half-applied
/// command behind (`apply` changes the map in one step), so a poisoned lock is still usable.
fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(PoisonError::into_inner)
}
