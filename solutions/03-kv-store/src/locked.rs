//! The other backend: one store behind a `std::sync::Mutex`, locked by every connection. It is
//! the lock-based design the chapter measures against the actors (`--backend mutex`).

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
        let store = Arc::new(Mutex::new(Store::new()));
        // The sweeper holds only a `Weak`: it must not keep the store alive by itself.
        let weak = Arc::downgrade(&store);
        tokio::spawn(async move {
            let mut sweep = tokio::time::interval(SWEEP_EVERY);
            sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                sweep.tick().await;
                let Some(store) = weak.upgrade() else { break };
                lock(&store).sweep(Instant::now(), SWEEP_LIMIT);
            }
        });
        Locked { store }
    }

    /// Runs a pipeline under one lock, never held across an `.await` (which is why a std mutex,
    /// not tokio's, is right here).
    pub fn execute_batch(&self, commands: Vec<Command>) -> Vec<Reply> {
        let now = Instant::now();
        let mut store = lock(&self.store);
        commands
            .into_iter()
            .map(|command| match Op::of(command) {
                Some(op) => apply(&mut store, op, now),
                None => Reply::err("not a key-space command"),
            })
            .collect()
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
