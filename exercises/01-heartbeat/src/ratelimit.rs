//! Two small rate limits: one on work done for others, one on log lines.
//!
//! Your task (stage 2, since the server uses them from its first datagram; stage 5 tests the
//! limits they keep): [`TokenBucket`] and [`LogThrottle`].
//!
//! A UDP server answers whoever writes to it, and a source address is trivially forged, so any
//! reply bigger than its request can be turned against a third party (an amplification attack).
//! A status reply is up to 60 KB for a 15-byte request: the server answers only so many a second.

use std::time::{Duration, Instant};

/// A token bucket: holds up to `capacity` tokens, refilled at `per_second`; each answer takes one.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(capacity: u32, per_second: u32, now: Instant) -> Self {
        // TODO: start full (`tokens` = `capacity`), remembering `now` as the last refill.
        todo!()
    }

    /// Takes a token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        // TODO: a token bucket: it refills at `per_second` tokens a second since the last call,
        // never past `capacity`, and a call takes one token if a whole one is there. Never trust
        // two instants to be in order (`Instant::saturating_duration_since`, `f64::min`).
        todo!()
    }
}

/// Lets one log line through per period and counts the ones it holds back, so a flood of bad
/// datagrams cannot turn into a flood of log output.
#[derive(Debug, Clone)]
pub struct LogThrottle {
    period: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    /// At most one line per `period`.
    pub fn new(period: Duration) -> Self {
        // TODO: nothing let through yet (`last: None`) and nothing held back.
        todo!()
    }

    /// `Some(n)` when a line may be logged now, `n` being how many were held back since the
    /// last one; `None` when this one must be held back.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        // TODO: let a line through when none was let through yet or the last one is at least
        // `period` old: remember `now`, and return how many were held back since
        // (`std::mem::take` returns the count and resets it). Otherwise count one more held back.
        todo!()
    }
}
