//! Failure detectors: deciding, from silence alone, that a node is dead.
//!
//! Your task: [`Detector`]'s methods (stage 2, the fixed timeout; stage 3 tests its timing) and
//! [`ArrivalWindow`] (its history in stage 2; the phi in stage 7, going further: phi accrual). `normal_tail` at the bottom is given: it is arithmetic, not the lesson.
//!
//! No detector can be sure: a silent node may be dead, or slow, or cut off by the network. A
//! detector only chooses where to sit between declaring too early (false alarms) and too late
//! (slow detection). The fixed timeout sits in one place for every node; phi accrual moves with
//! each node's own rhythm.

use std::collections::VecDeque;
use std::time::Duration;

use crate::protocol::Intervals;

/// How many recent inter-arrival intervals phi accrual remembers per node.
pub const PHI_WINDOW: usize = 100;

/// The smallest standard deviation phi accrual assumes, as a fraction of the mean interval.
/// Without a floor, a perfectly regular sender has a deviation near zero and its first slightly
/// late heartbeat would look like a death.
pub const MIN_STD_DEV_FRACTION: f64 = 0.5;

/// The smallest standard deviation phi accrual assumes, in milliseconds.
pub const MIN_STD_DEV_MS: f64 = 10.0;

/// Which rule decides that a silent node is dead.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Detector {
    /// Dead once silent for longer than `timeout`.
    Timeout {
        /// The silence that means death.
        timeout: Duration,
    },
    /// Dead once phi exceeds `threshold`, or once silent for longer than `timeout` (a hard
    /// bound, and the rule used while its arrival window holds fewer than two intervals).
    Phi {
        /// The phi above which a node is dead: 8 means "a one in 10^8 chance that a live node
        /// would have been this late".
        threshold: f64,
        /// The hard upper bound on silence.
        timeout: Duration,
    },
}

impl Detector {
    /// The hard upper bound on silence, whichever the rule.
    pub fn timeout(&self) -> Duration {
        // TODO: both variants carry a `timeout`: one `match` arm can bind it in both (an
        // or-pattern).
        todo!()
    }

    /// The detector's name, as status replies report it.
    pub fn name(&self) -> &'static str {
        // TODO: "timeout" or "phi", as status replies report it.
        todo!()
    }

    /// Whether a node silent for `silence`, with this arrival history, should be declared dead.
    pub fn is_dead(&self, history: &ArrivalWindow, silence: Duration) -> bool {
        // TODO: silence longer than `self.timeout()` is death under either rule. Under
        // `Detector::Timeout` nothing else is. Under `Detector::Phi`, also dead when
        // `history.phi(silence)` is `Some(p)` with `p > threshold` (`Option::is_some_and`).
        // Careful: "longer than", not "at least": the contract says never *before* the timeout.
        todo!()
    }
}

/// The recent inter-arrival intervals of one node, with running sums for mean and variance.
#[derive(Debug, Clone, Default)]
pub struct ArrivalWindow {
    intervals: VecDeque<f64>,
    sum: f64,
    sum_of_squares: f64,
}

impl ArrivalWindow {
    /// An empty history.
    pub fn new() -> Self {
        // TODO: an empty window; `#[derive(Default)]` is on the struct.
        todo!()
    }

    /// Records one interval: for a heartbeat that advances the sequence, the time since the
    /// node's last valid heartbeat of any kind. Forgets the oldest beyond [`PHI_WINDOW`].
    pub fn record(&mut self, interval: Duration) {
        // TODO: the window holds the last PHI_WINDOW intervals, in milliseconds as `f64`, and `sum`
        // and `sum_of_squares` are always their sums, so `stats` costs O(1) however long the window
        // (`VecDeque`, `Duration::as_secs_f64`).
        todo!()
    }

    /// Forgets everything, as after an outage: the rhythm before it says little about after.
    pub fn clear(&mut self) {
        // TODO: back to an empty window.
        todo!()
    }

    /// The mean and standard deviation of the remembered intervals, in milliseconds, as status
    /// replies report them (without phi's floor).
    ///
    /// `None` until two intervals are known, since one sample has no spread.
    pub fn stats(&self) -> Option<Intervals> {
        // TODO: from the running sums alone, in O(1): mean = sum / n, variance = sum_of_squares
        // / n - mean² (the population's; it can come out a hair below zero, so clamp it at 0),
        // and sd its square root (`f64::sqrt`). `None` with fewer than 2 intervals.
        todo!()
    }

    /// Phi for a node silent for `silence`: `-log10` of the probability that a live node's next
    /// heartbeat would come even later, with intervals modelled as a normal distribution.
    ///
    /// `None` until two intervals are known, since one sample has no spread.
    pub fn phi(&self, silence: Duration) -> Option<f64> {
        // TODO: phi as the contract's "Phi accrual" defines it, from `stats` with σ floored at
        // max(mean * MIN_STD_DEV_FRACTION, MIN_STD_DEV_MS); `None` with fewer than 2 intervals,
        // and never infinite or NaN, however long the silence. `normal_tail` (given) is
        // P(X > t); `f64::log10`.
        todo!()
    }
}

/// P(X > t) for X ~ Normal(mean, std_dev), by the logistic approximation of the normal CDF
/// (accurate to about 1e-4, which is plenty to compare against a threshold of 1 to 16).
fn normal_tail(t: f64, mean: f64, std_dev: f64) -> f64 {
    let y = (t - mean) / std_dev;
    let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
    // Two algebraically equal forms; each is the numerically stable one on its side of the mean.
    if t > mean {
        e / (1.0 + e)
    } else {
        1.0 - 1.0 / (1.0 + e)
    }
}
