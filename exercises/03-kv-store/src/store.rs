//! The key space: a map from keys to values with optional expiry times.
//!
//! Your task (stages 2 and 4): every method of [`Store`]. A private helper that returns the live
//! item of a key, removing the key (and its deadline) first if it has expired, makes most of
//! them one-liners. `Item` (a key and its value in one buffer) is given.
//!
//! Plain data driven by the caller's clock (`now` is always a parameter), so every rule can be
//! tested without waiting. Expiry is lazy (a read of an expired key removes it) and active
//! (`sweep` removes a bounded number of expired keys per call, so no single sweep stalls the actor).

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::command::{Blob, SetCondition};
use crate::glob;

/// One shard's keys.
///
/// Values and deadlines are kept apart, as Redis keeps them: a key without a deadline (most of
/// them) costs no room for one, and the sweep looks only at keys that have one. A key and its
/// value share one allocation (an [`Item`]): the table holds one `Bytes` a key, 33 bytes a slot
/// where a map of key and value held 65 (a table of a million keys has two million slots).
#[derive(Debug, Default)]
pub struct Store {
    values: HashSet<Item>,
    deadlines: HashMap<Blob, Instant>,
}

/// A key and its value in one buffer: the key's length (4 bytes, little-endian), the key, the
/// value. It hashes and compares as its key, so the set is looked up by key.
#[derive(Debug, Clone)]
struct Item(Bytes);

impl Item {
    fn new(key: &[u8], value: &[u8]) -> Item {
        let len = u32::try_from(key.len()).unwrap_or(u32::MAX);
        let mut buf = Vec::with_capacity(4 + key.len() + value.len());
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(key);
        buf.extend_from_slice(value);
        Item(Bytes::from(buf))
    }

    fn key_len(&self) -> usize {
        let mut len = [0u8; 4];
        len.copy_from_slice(&self.0[..4]);
        u32::from_le_bytes(len) as usize
    }

    fn key(&self) -> &[u8] {
        &self.0[4..4 + self.key_len()]
    }

    fn value_bytes(&self) -> &[u8] {
        &self.0[4 + self.key_len()..]
    }

    /// The value, shared with the store (no copy).
    fn value(&self) -> Blob {
        self.0.slice(4 + self.key_len()..)
    }
}

impl Borrow<[u8]> for Item {
    fn borrow(&self) -> &[u8] {
        self.key()
    }
}

impl Hash for Item {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl PartialEq for Item {
    fn eq(&self, other: &Item) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Item {}

/// Why `INCRBY` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IncrError {
    /// The value is not a decimal 64-bit integer.
    #[error("value is not an integer or out of range")]
    NotAnInteger,
    /// The result would not fit in 64 bits.
    #[error("increment or decrement would overflow")]
    Overflow,
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        // TODO: an empty store (`#[derive(Default)]` is there).
        todo!()
    }

    /// `GET`.
    pub fn get(&mut self, key: &[u8], now: Instant) -> Option<Blob> {
        // TODO: the value, unless the key is missing or expired (remove an expired key as you find it).
        todo!()
    }

    /// `SET`: whether it was applied (`NX`/`XX` may refuse).
    pub fn set(
        &mut self,
        key: Blob,
        value: Blob,
        ttl: Option<Duration>,
        condition: SetCondition,
        now: Instant,
    ) -> bool {
        // TODO: applied by `condition` (NX only if absent, XX only if present; an expired key is
        // absent), the value and its deadline stored (or an old deadline removed), never
        // overflowing the clock (`Instant::checked_add`); returns whether it was applied.
        // `values.replace`, since `insert` keeps an equal old item.
        todo!()
    }

    /// `DEL` of one key: whether it existed.
    pub fn del(&mut self, key: &[u8], now: Instant) -> bool {
        // TODO: remove the key; whether a live one was there.
        todo!()
    }

    /// Whether `key` exists.
    pub fn exists(&mut self, key: &[u8], now: Instant) -> bool {
        // TODO: like `get`: a key that has expired does not exist (and is removed).
        todo!()
    }

    /// `INCRBY`: the new value. A missing key counts as 0; the expiry time is kept.
    pub fn incr_by(&mut self, key: &[u8], delta: i64, now: Instant) -> Result<i64, IncrError> {
        // TODO: parse the current value (missing = 0) as i64, `checked_add` the delta, store the
        // result as decimal text, keep the expiry. Errors: `IncrError::NotAnInteger`, `IncrError::Overflow`.
        todo!()
    }

    /// `EXPIRE`: whether the key existed. A time in the past deletes it, as in Redis.
    pub fn expire(&mut self, key: &[u8], seconds: i64, now: Instant) -> bool {
        // TODO: false for a missing key; a time of zero or less deletes the key (and answers true);
        // otherwise `now.checked_add(...)`: a plain `+` panics on a time that overflows the clock.
        todo!()
    }

    /// `TTL`: seconds left (rounded), -1 without expiry, -2 for a missing key.
    pub fn ttl(&mut self, key: &[u8], now: Instant) -> i64 {
        // TODO: -2 missing, -1 no expiry, else the seconds left, rounded to the nearest.
        todo!()
    }

    /// How many keys, counting those expired but not yet swept (as Redis's `DBSIZE` does).
    pub fn len(&self) -> usize {
        // TODO: every key held, expired or not (this is what makes the active sweep testable).
        todo!()
    }

    /// Whether the store holds no key at all.
    pub fn is_empty(&self) -> bool {
        // TODO: no key held at all, expired ones included (as `len` counts them).
        todo!()
    }

    /// `FLUSHDB`.
    pub fn clear(&mut self) {
        // TODO: remove every key.
        todo!()
    }

    /// `KEYS`: the live keys matching `pattern`.
    pub fn keys(&self, pattern: &[u8], now: Instant) -> Vec<Blob> {
        // TODO: the live keys that match: compile the pattern once (`glob::Pattern::new`), then
        // `pattern.matches(key)`.
        todo!()
    }

    /// Every live key (shared, not copied): what `KEYS` matches against, away from the actor.
    pub fn live_keys(&self, now: Instant) -> Vec<Blob> {
        // TODO: the keys not expired at `now`, cloned (a `Bytes` clone copies nothing).
        todo!()
    }

    /// Removes up to `limit` expired keys and returns how many it removed.
    pub fn sweep(&mut self, now: Instant, limit: usize) -> usize {
        // TODO: collect up to `limit` expired keys from `deadlines` first (you cannot remove from
        // a map while you iterate it), then remove them; return how many.
        todo!()
    }
}
