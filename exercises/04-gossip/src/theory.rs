//! The closed forms the simulator is checked against, each with its source.

use crate::simulate::Mode;

/// Pittel (1987): push on the complete graph informs all N nodes in log2 N + ln N + O(1)
/// rounds, with probability tending to 1.
pub fn pittel_rounds(n: f64) -> f64 {
    n.log2() + n.ln()
}

/// Doerr and Kuennemann (2014), the expected rounds E[S_N] of push on the complete graph:
/// floor(log2 N) + ln N - 1.116 <= E[S_N] <= ceil(log2 N) + ln N + 2.765 + o(1).
pub fn doerr_kuennemann_bounds(n: f64) -> (f64, f64) {
    (
        n.log2().floor() + n.ln() - 1.116,
        n.log2().ceil() + n.ln() + 2.765,
    )
}

/// Demers et al. (1987), anti-entropy: the uninformed fraction `p` after one more round of
/// `mode` with `fanout` calls per node among `n` nodes. Push: p (1 - 1/N)^(k N (1 - p)),
/// about p e^-(k(1-p)); pull: p^(k+1) (a node stays uninformed only if all its k calls reach
/// uninformed nodes); push-pull: both at once.
pub fn next_uninformed(mode: Mode, p: f64, n: f64, fanout: usize) -> f64 {
    let k = fanout.max(1) as f64;
    let missed_by_pushes = (1.0 - 1.0 / n).powf(k * n * (1.0 - p));
    let missed_by_pulls = p.powf(k);
    match mode {
        Mode::Push => p * missed_by_pushes,
        Mode::Pull => p * missed_by_pulls,
        Mode::PushPull => p * missed_by_pushes * missed_by_pulls,
    }
}

/// The expected informed fraction after each round, by iterating [`next_uninformed`] from one
/// informed node, for `rounds` rounds (round 0 first).
pub fn curve(mode: Mode, n: f64, fanout: usize, rounds: usize) -> Vec<f64> {
    let mut p = 1.0 - 1.0 / n;
    let mut out = vec![1.0 - p];
    for _ in 0..rounds {
        p = next_uninformed(mode, p, n, fanout);
        out.push(1.0 - p);
    }
    out
}

/// Demers et al. (1987), rumor mongering with feedback and a coin of 1/k: the fraction `s`
/// never informed solves s = e^(-(k+1)(1-s)), about 20% at k = 1 and 6% at k = 2. Found by
/// iterating from 0, which converges to the root below 1.
pub fn rumor_residue(k: u32) -> f64 {
    let k = f64::from(k);
    let mut s = 0.0f64;
    for _ in 0..10_000 {
        let next = (-(k + 1.0) * (1.0 - s)).exp();
        if (next - s).abs() < 1e-15 {
            return next;
        }
        s = next;
    }
    s
}
