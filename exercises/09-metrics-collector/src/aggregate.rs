//! One shard's series and what a flush reports of them. A shard is owned by one worker task, so
//! nothing here locks: the only shared state is the count of live series, an atomic, which
//! enforces `--max-series` across all shards.
//!
//! Your task: [`Shard::add`] and [`Shard::flush`] (stage 1 for counters, stage 2 for the other
//! kinds, stage 4 for the percentiles, stage 7 for the series limit), with the private `new_state`
//! and `report`. The key, the report types and the private state types are given.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use hashbrown::HashTable;
use hdrhistogram::Histogram;

use crate::protocol::{Kind, Sample, Value};

/// The significant decimal digits every timer histogram keeps: any quantile it reports is within
/// 1% (relative) of a timing that was at that rank, at a resolution of one microsecond.
pub const HISTOGRAM_DIGITS: u8 = 2;

/// How many flushes a gauge is kept, for its `+`/`-` deltas, after its last sample.
pub const GAUGE_IDLE_FLUSHES: u32 = 360;

/// What identifies a series: its kind, its name and its sorted tags.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// Counter, gauge, timer, set or Graphite path.
    pub kind: Kind,
    /// The name as sent.
    pub name: String,
    /// The DogStatsD tags, sorted.
    pub tags: Vec<String>,
}

/// A sample with the time the collector (or the agent that forwarded it) received it.
#[derive(Debug, Clone)]
pub struct Stamped {
    /// The sample.
    pub sample: Sample,
    /// When it was received, in milliseconds since the Unix epoch, by the receiver's clock.
    pub received_ms: u64,
}

/// The counts every shard shares with the rest of the collector.
#[derive(Debug, Default)]
pub struct Limits {
    /// Live series in all shards.
    pub live: AtomicUsize,
    /// The most live series allowed.
    pub max_series: usize,
    /// The most members one set counts in one interval.
    pub max_set_size: usize,
    /// Samples dropped because they would have made a series past `max_series`.
    pub overflow: AtomicU64,
}

/// What a flush reports of one series for one interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Which series.
    pub key: SeriesKey,
    /// When its first sample of the interval was received.
    pub first_ms: u64,
    /// When its last sample of the interval was received.
    pub last_ms: u64,
    /// The aggregate.
    pub data: ReportData,
}

/// The aggregate of one interval, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum ReportData {
    /// The interval's count, each sample weighted by `1 / rate`.
    Counter {
        /// The weighted sum.
        count: f64,
    },
    /// The gauge's value at the end of the interval.
    Gauge {
        /// The value.
        value: f64,
    },
    /// The interval's timings.
    Timer(TimerReport),
    /// The number of distinct members seen in the interval (at most `max_set_size`).
    Set {
        /// The cardinality.
        count: usize,
    },
    /// The latest Graphite point by the sender's timestamp.
    Graphite {
        /// Its value (`NaN` for `nan`).
        value: f64,
        /// The sender's timestamp, in milliseconds.
        sent_ms: u64,
        /// How many points came in the interval.
        points: u64,
    },
}

/// A timer's aggregate over one interval, in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct TimerReport {
    /// Timings received, each weighted by `1 / rate`.
    pub count: f64,
    /// Timings received, unweighted: the sample the percentiles come from.
    pub samples: u64,
    /// The least.
    pub lower: f64,
    /// The greatest.
    pub upper: f64,
    /// The sum of the received timings.
    pub sum: f64,
    /// `sum / samples`.
    pub mean: f64,
    /// The 50th percentile, from the histogram.
    pub p50: f64,
    /// The 90th percentile, from the histogram.
    pub p90: f64,
    /// The 99th percentile, from the histogram.
    pub p99: f64,
}

#[derive(Debug)]
enum State {
    Counter(f64),
    Gauge {
        value: f64,
        idle: u32,
    },
    Timer(Box<Timer>),
    Set(HashSet<String>),
    Graphite {
        value: f64,
        sent_ms: u64,
        points: u64,
    },
}

#[derive(Debug)]
struct Timer {
    histogram: Histogram<u64>,
    count: f64,
    lower: f64,
    upper: f64,
    sum: f64,
}

#[derive(Debug)]
struct Series {
    /// The router's hash of `key`, kept so that the table can grow without hashing again.
    hash: u64,
    key: SeriesKey,
    state: State,
    /// `(first, last)` receive times in this interval; `None` when nothing came in it.
    seen: Option<(u64, u64)>,
}

/// One shard: the series whose keys hash to it, found by the router's hash of their key.
#[derive(Debug)]
pub struct Shard {
    series: HashTable<Series>,
    limits: Arc<Limits>,
}

fn new_state(value: &Value) -> State {
    // TODO: the empty `State` for the kind of `value`: a counter at 0, a gauge at 0, a timer
    //   with `Histogram::new(HISTOGRAM_DIGITS)` (it resizes itself), lower/upper at +/- infinity, an
    //   empty set, a Graphite point with no points yet.
    todo!()
}

impl Shard {
    /// An empty shard under the shared `limits`.
    pub fn new(limits: Arc<Limits>) -> Self {
        Shard {
            series: HashTable::new(),
            limits,
        }
    }

    /// Adds one sample to its series, creating the series if the limit allows. `hash` is the
    /// router's hash of the sample's series key ([`crate::pipeline::Router::hash`]): the same
    /// key must always come with the same hash.
    pub fn add(&mut self, hash: u64, stamped: Stamped) {
        // TODO: the sample folded into its series (kind, name, tags) as the contract's "StatsD" and
        // "Graphite plaintext" define each kind, with `seen` its first and last `received_ms`. The
        // series is found by `hash` (`HashTable::find_mut(hash, same key)`), a new one added with
        // `insert_unique(hash, series, |s| s.hash)`: nothing is hashed here. A new series takes a
        // slot of `limits.live`; with `max_series` taken it is dropped and counted in
        // `limits.overflow`. A set counts at most `max_set_size` members.
        // `Histogram::record` (microseconds).
        todo!()
    }

    /// Reports every series that had samples in the interval and starts the next: gauges keep
    /// their value (for deltas) until idle for [`GAUGE_IDLE_FLUSHES`]; the rest are forgotten.
    pub fn flush(&mut self) -> Vec<Report> {
        // TODO: the reports of every series that had samples since the last flush (`report`);
        // gauges kept through GAUGE_IDLE_FLUSHES idle flushes, every other series forgotten, and
        // their slots of `limits.live` given back. `HashTable::retain`.
        todo!()
    }
}

fn report(state: &State) -> ReportData {
    // TODO: the `ReportData` of a state; for a timer, percentiles from
    //   `histogram.value_at_quantile(q)` (microseconds: divide by 1000) and mean = sum / samples.
    todo!()
}
