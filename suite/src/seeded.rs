//! Randomness for tests, seeded: the same bytes and choices on every run, so that a failure can
//! be replayed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A generator seeded with `seed`.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// `len` bytes, the same on every run for the same seed.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    rng(seed).fill_bytes(&mut out);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_same_seed_gives_the_same_bytes() {
        assert_eq!(super::bytes(7, 100), super::bytes(7, 100));
        assert_ne!(super::bytes(7, 100), super::bytes(8, 100));
    }
}
