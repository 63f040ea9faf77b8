//! A tiny random source for election jitter: xorshift64*, seeded from the node id and the
//! clock, so that two nodes started together still draw different timeouts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A xorshift64* generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from `seed` (hashed with FNV-1a) and the wall clock.
    pub fn from_str_seed(seed: &str) -> Rng {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in seed.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let clock = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Rng((h ^ clock) | 1)
    }

    /// Seeded from `seed` alone: the same faults on every run.
    pub fn seeded(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// True with probability `p` (0.0 to 1.0).
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.next_u64() % 1_000_000) < (p.clamp(0.0, 1.0) * 1_000_000.0) as u64
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A duration in `[0, max)`; zero when `max` is zero.
    pub fn below(&mut self, max: Duration) -> Duration {
        let nanos = max.as_nanos() as u64;
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.next_u64() % nanos)
    }
}
