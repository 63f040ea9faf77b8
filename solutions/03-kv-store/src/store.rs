//! The key space: a map from keys to values with optional expiry times.
//!
//! Plain data driven by the caller's clock (`now` is always a parameter), so every rule can be
//! tested without waiting. Expiry is lazy (a read of an expired key removes it) and active
//! (`sweep` removes a bounded number of expired keys per call, so no single sweep stalls the actor).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::command::{Blob, SetCondition};
use crate::glob;

/// One shard's keys.
///
/// Values and deadlines are kept apart, as Redis keeps them: a key without a deadline (most of
/// them) costs no room for one, and the sweep looks only at keys that have one.
#[derive(Debug, Default)]
pub struct Store {
    values: HashMap<Blob, Blob>,
    deadlines: HashMap<Blob, Instant>,
}

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

    /// The live value of `key`, removing the key first if it has expired.
    fn live(&mut self, key: &[u8], now: Instant) -> Option<&mut Blob> {
        if self.expired(key, now) {
            self.remove(key);
            return None;
        }
        self.values.get_mut(key)
    }

    /// Removes `key` and its deadline; whether it was there.
    fn remove(&mut self, key: &[u8]) -> bool {
        if !self.deadlines.is_empty() {
            self.deadlines.remove(key);
        }
        self.values.remove(key).is_some()
    }

    /// `GET`.
    pub fn get(&mut self, key: &[u8], now: Instant) -> Option<Blob> {
        self.live(key, now).map(|value| value.clone())
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
            self.values.insert(key, value);
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
            Some(value) => std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or(IncrError::NotAnInteger)?,
            None => 0,
        };
        let next = current.checked_add(delta).ok_or(IncrError::Overflow)?;
        let value = Bytes::from(next.to_string());
        match self.live(key, now) {
            Some(old) => *old = value,
            None => {
                self.values.insert(Bytes::copy_from_slice(key), value);
            }
        }
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
        let at = now.checked_add(Duration::from_secs(seconds.unsigned_abs()));
        match (at, self.values.get_key_value(key)) {
            (Some(at), Some((stored, _))) => {
                let stored = stored.clone();
                self.deadlines.insert(stored, at);
            }
            _ => {
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
            .keys()
            .filter(|k| !self.expired(k, now) && pattern.matches(k))
            .cloned()
            .collect()
    }

    /// Every live key (shared, not copied): what `KEYS` matches against, away from the actor.
    pub fn live_keys(&self, now: Instant) -> Vec<Blob> {
        self.values
            .keys()
            .filter(|k| !self.expired(k, now))
            .cloned()
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
