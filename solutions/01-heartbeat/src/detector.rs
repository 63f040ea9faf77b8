//! Failure detectors: deciding, from silence alone, that a node is dead.
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
        match *self {
            Detector::Timeout { timeout } | Detector::Phi { timeout, .. } => timeout,
        }
    }

    /// The detector's name, as status replies report it.
    pub fn name(&self) -> &'static str {
        match self {
            Detector::Timeout { .. } => "timeout",
            Detector::Phi { .. } => "phi",
        }
    }

    /// Whether a node silent for `silence`, with this arrival history, should be declared dead.
    pub fn is_dead(&self, history: &ArrivalWindow, silence: Duration) -> bool {
        if silence > self.timeout() {
            return true;
        }
        match *self {
            Detector::Timeout { .. } => false,
            Detector::Phi { threshold, .. } => history.phi(silence).is_some_and(|p| p > threshold),
        }
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
        Self::default()
    }

    /// Records one interval: for a heartbeat that advances the sequence, the time since the
    /// node's last valid heartbeat of any kind. Forgets the oldest beyond [`PHI_WINDOW`].
    pub fn record(&mut self, interval: Duration) {
        let ms = interval.as_secs_f64() * 1000.0;
        if self.intervals.len() == PHI_WINDOW
            && let Some(old) = self.intervals.pop_front()
        {
            self.sum -= old;
            self.sum_of_squares -= old * old;
        }
        self.intervals.push_back(ms);
        self.sum += ms;
        self.sum_of_squares += ms * ms;
    }

    /// Forgets everything, as after an outage: the rhythm before it says little about after.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// The mean and standard deviation of the remembered intervals, in milliseconds, as status
    /// replies report them (without phi's floor).
    ///
    /// `None` until two intervals are known, since one sample has no spread.
    pub fn stats(&self) -> Option<Intervals> {
        let n = self.intervals.len();
        if n < 2 {
            return None;
        }
        let mean = self.sum / n as f64;
        // Running sums can drift a hair below zero; a variance never can.
        let variance = (self.sum_of_squares / n as f64 - mean * mean).max(0.0);
        Some(Intervals {
            mean,
            sd: variance.sqrt(),
        })
    }

    /// Phi for a node silent for `silence`: `-log10` of the probability that a live node's next
    /// heartbeat would come even later, with intervals modelled as a normal distribution.
    ///
    /// `None` until two intervals are known, since one sample has no spread.
    pub fn phi(&self, silence: Duration) -> Option<f64> {
        let Intervals { mean, sd } = self.stats()?;
        let floor = (mean * MIN_STD_DEV_FRACTION).max(MIN_STD_DEV_MS);
        let std_dev = sd.max(floor);
        let t = silence.as_secs_f64() * 1000.0;
        let p_later = normal_tail(t, mean, std_dev);
        Some(-p_later.max(f64::MIN_POSITIVE).log10())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn steady(ms: u64, beats: usize) -> ArrivalWindow {
        let mut w = ArrivalWindow::new();
        for _ in 0..beats {
            w.record(Duration::from_millis(ms));
        }
        w
    }

    #[test]
    fn phi_grows_with_silence() {
        let w = steady(100, 50);
        let early = w.phi(Duration::from_millis(100)).unwrap();
        let late = w.phi(Duration::from_millis(300)).unwrap();
        let very_late = w.phi(Duration::from_millis(600)).unwrap();
        assert!(early < 1.0, "{early}");
        assert!(
            early < late && late < very_late,
            "{early} {late} {very_late}"
        );
        assert!(very_late > 8.0, "{very_late}");
    }

    #[test]
    fn phi_needs_two_intervals_and_the_timeout_still_bounds() {
        let d = Detector::Phi {
            threshold: 8.0,
            timeout: Duration::from_secs(1),
        };
        let w = steady(100, 1);
        assert_eq!(w.phi(Duration::from_secs(5)), None);
        assert!(!d.is_dead(&w, Duration::from_millis(900)));
        assert!(d.is_dead(&w, Duration::from_millis(1001)));
    }

    #[test]
    fn the_window_forgets_old_intervals() {
        let mut w = steady(1000, PHI_WINDOW);
        for _ in 0..PHI_WINDOW {
            w.record(Duration::from_millis(100));
        }
        assert!(w.phi(Duration::from_millis(600)).unwrap() > 8.0);
    }
}
