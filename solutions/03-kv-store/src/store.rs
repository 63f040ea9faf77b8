//! The key space: a map from keys to values with optional expiry times.
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
        Self::default()
    }

    /// Whether `key` has a deadline that has passed at `now`.
    fn expired(&self, key: &[u8], now: Instant) -> bool {
        self.deadlines.get(key).is_some_and(|&at| at <= now)
    }

    /// The live item of `key`, removing the key first if it has expired.
    fn live(&mut self, key: &[u8], now: Instant) -> Option<&Item> {
        if self.expired(key, now) {
            self.remove(key);
            return None;
        }
        self.values.get(key)
    }

    /// Removes `key` and its deadline; whether it was there.
    fn remove(&mut self, key: &[u8]) -> bool {
        if !self.deadlines.is_empty() {
            self.deadlines.remove(key);
        }
        self.values.remove(key)
    }

    /// `GET`.
    pub fn get(&mut self, key: &[u8], now: Instant) -> Option<Blob> {
        self.live(key, now).map(Item::value)
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
        let allowed = match condition {
            // The common case needs no lookup before the insert.
            SetCondition::Always => true,
            SetCondition::IfAbsent => self.live(&key, now).is_none(),
            SetCondition::IfPresent => self.live(&key, now).is_some(),
        };
        if allowed {
            // Unchecked, `now + ttl` panics for a huge TTL; `command::parse` refuses those, and
            // one that still does not fit (a clock near its end) never expires.
            match ttl.and_then(|ttl| now.checked_add(ttl)) {
                Some(at) => {
                    self.deadlines.insert(key.clone(), at);
                }
                None if !self.deadlines.is_empty() => {
                    self.deadlines.remove(&key);
                }
                None => {}
            }
            // `replace`, not `insert`: an equal item (the same key) must give way.
            self.values.replace(Item::new(&key, &value));
        }
        allowed
    }

    /// `DEL` of one key: whether it existed.
    pub fn del(&mut self, key: &[u8], now: Instant) -> bool {
        self.live(key, now).is_some() && self.remove(key)
    }

    /// Whether `key` exists.
    pub fn exists(&mut self, key: &[u8], now: Instant) -> bool {
        self.live(key, now).is_some()
    }

    /// `INCRBY`: the new value. A missing key counts as 0; the expiry time is kept.
    pub fn incr_by(&mut self, key: &[u8], delta: i64, now: Instant) -> Result<i64, IncrError> {
        let current = match self.live(key, now) {
            Some(item) => std::str::from_utf8(item.value_bytes())
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or(IncrError::NotAnInteger)?,
            None => 0,
        };
        let next = current.checked_add(delta).ok_or(IncrError::Overflow)?;
        self.values
            .replace(Item::new(key, next.to_string().as_bytes()));
        Ok(next)
    }

    /// `EXPIRE`: whether the key existed. A time in the past deletes it, as in Redis.
    pub fn expire(&mut self, key: &[u8], seconds: i64, now: Instant) -> bool {
        if self.live(key, now).is_none() {
            return false;
        }
        if seconds <= 0 {
            self.remove(key);
            return true;
        }
        // Checked, as in `set`: an unchecked add would panic the shard for a huge time.
        match now.checked_add(Duration::from_secs(seconds.unsigned_abs())) {
            Some(at) => {
                self.deadlines.insert(Bytes::copy_from_slice(key), at);
            }
            None => {
                self.deadlines.remove(key);
            }
        }
        true
    }

    /// `TTL`: seconds left (rounded), -1 without expiry, -2 for a missing key.
    pub fn ttl(&mut self, key: &[u8], now: Instant) -> i64 {
        if self.live(key, now).is_none() {
            return -2;
        }
        match self.deadlines.get(key) {
            None => -1,
            Some(at) => {
                let left = at.saturating_duration_since(now).as_millis();
                i64::try_from((left + 500) / 1000).unwrap_or(i64::MAX)
            }
        }
    }

    /// How many keys, counting those expired but not yet swept (as Redis's `DBSIZE` does).
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the store holds no key at all.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `FLUSHDB`.
    pub fn clear(&mut self) {
        self.values.clear();
        self.deadlines.clear();
    }

    /// `KEYS`: the live keys matching `pattern`.
    pub fn keys(&self, pattern: &[u8], now: Instant) -> Vec<Blob> {
        let pattern = glob::Pattern::new(pattern);
        self.values
            .iter()
            .map(Item::key)
            .filter(|k| !self.expired(k, now) && pattern.matches(k))
            .map(Bytes::copy_from_slice)
            .collect()
    }

    /// Every live key (copied: a key is short, and a shared one would cost each stored item a
    /// header for good): what `KEYS` matches against, away from the actor.
    pub fn live_keys(&self, now: Instant) -> Vec<Blob> {
        self.values
            .iter()
            .map(Item::key)
            .filter(|k| !self.expired(k, now))
            .map(Bytes::copy_from_slice)
            .collect()
    }

    /// Removes up to `limit` expired keys and returns how many it removed.
    pub fn sweep(&mut self, now: Instant, limit: usize) -> usize {
        let expired: Vec<Blob> = self
            .deadlines
            .iter()
            .filter(|&(_, &at)| at <= now)
            .take(limit)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &expired {
            self.remove(key);
        }
        expired.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_lazy_and_active() {
        let t0 = Instant::now();
        let mut s = Store::new();
        s.set(
            Bytes::from_static(b"a"),
            Bytes::from_static(b"1"),
            Some(Duration::from_secs(2)),
            SetCondition::Always,
            t0,
        );
        s.set(
            Bytes::from_static(b"b"),
            Bytes::from_static(b"2"),
            Some(Duration::from_secs(2)),
            SetCondition::Always,
            t0,
        );
        assert_eq!(s.ttl(b"a", t0), 2);
        let later = t0 + Duration::from_secs(3);
        assert_eq!(s.get(b"a", later), None);
        assert_eq!(s.len(), 1, "a was removed on access, b is still there");
        assert_eq!(s.sweep(later, 10), 1);
        assert!(s.is_empty());
    }

    #[test]
    fn set_conditions_and_incr() {
        let now = Instant::now();
        let mut s = Store::new();
        assert!(!s.set(
            Bytes::from_static(b"k"),
            Bytes::from_static(b"1"),
            None,
            SetCondition::IfPresent,
            now
        ));
        assert!(s.set(
            Bytes::from_static(b"k"),
            Bytes::from_static(b"41"),
            None,
            SetCondition::IfAbsent,
            now
        ));
        assert!(!s.set(
            Bytes::from_static(b"k"),
            Bytes::from_static(b"x"),
            None,
            SetCondition::IfAbsent,
            now
        ));
        assert_eq!(s.incr_by(b"k", 1, now), Ok(42));
        assert_eq!(s.incr_by(b"k", i64::MAX, now), Err(IncrError::Overflow));
        s.set(
            Bytes::from_static(b"t"),
            Bytes::from_static(b"text"),
            None,
            SetCondition::Always,
            now,
        );
        assert_eq!(s.incr_by(b"t", 1, now), Err(IncrError::NotAnInteger));
        assert_eq!(s.ttl(b"k", now), -1);
        assert_eq!(s.ttl(b"missing", now), -2);
        assert!(
            s.expire(b"k", i64::MAX, now),
            "a huge expiry must not panic"
        );
    }
}
