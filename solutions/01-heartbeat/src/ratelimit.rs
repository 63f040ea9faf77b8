//! Two small rate limits: one on work done for others, one on log lines.
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
        Self {
            capacity: f64::from(capacity),
            per_second: f64::from(per_second),
            tokens: f64::from(capacity),
            last: now,
        }
    }

    /// Takes a token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
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
        Self {
            period,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a line may be logged now, `n` being how many were held back since the
    /// last one; `None` when this one must be held back.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.period => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(3, 10, t0);
        assert_eq!((0..5).filter(|_| bucket.try_take(t0)).count(), 3);
        assert!(!bucket.try_take(t0 + Duration::from_millis(50)));
        assert!(bucket.try_take(t0 + Duration::from_millis(110)));
    }

    #[test]
    fn throttle_counts_what_it_holds_back() {
        let t0 = Instant::now();
        let mut throttle = LogThrottle::new(Duration::from_secs(1));
        assert_eq!(throttle.allow(t0), Some(0));
        assert_eq!(throttle.allow(t0), None);
        assert_eq!(throttle.allow(t0 + Duration::from_millis(10)), None);
        assert_eq!(throttle.allow(t0 + Duration::from_secs(1)), Some(2));
    }
}
