//! One shard's series and what a flush reports of them. A shard is owned by one worker task, so
//! nothing here locks: the only shared state is the count of live series, an atomic, which
//! enforces `--max-series` across all shards.

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
    match value {
        Value::Counter { .. } => State::Counter(0.0),
        Value::Gauge(_) | Value::GaugeDelta(_) => State::Gauge {
            value: 0.0,
            idle: 0,
        },
        Value::Timer { .. } => State::Timer(Box::new(Timer {
            // Auto-resizing from a small range: most timers never need the whole hour.
            histogram: Histogram::new(HISTOGRAM_DIGITS).expect("2 digits is a valid precision"),
            count: 0.0,
            lower: f64::INFINITY,
            upper: f64::NEG_INFINITY,
            sum: 0.0,
        })),
        Value::Set(_) => State::Set(HashSet::new()),
        Value::Graphite { .. } => State::Graphite {
            value: f64::NAN,
            sent_ms: 0,
            points: 0,
        },
    }
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
        let Stamped {
            sample,
            received_ms,
        } = stamped;
        let kind = sample.value.kind();
        let same = |s: &Series| {
            s.key.kind == kind && s.key.name == sample.name && s.key.tags == sample.tags
        };
        let series = match self.series.find_mut(hash, same) {
            Some(series) => series,
            None => {
                let live = self.limits.live.fetch_add(1, Ordering::Relaxed);
                if live >= self.limits.max_series {
                    self.limits.live.fetch_sub(1, Ordering::Relaxed);
                    self.limits.overflow.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let series = Series {
                    hash,
                    key: SeriesKey {
                        kind,
                        name: sample.name,
                        tags: sample.tags,
                    },
                    state: new_state(&sample.value),
                    seen: None,
                };
                self.series
                    .insert_unique(hash, series, |s| s.hash)
                    .into_mut()
            }
        };
        series.seen = Some(match series.seen {
            Some((first, last)) => (first.min(received_ms), last.max(received_ms)),
            None => (received_ms, received_ms),
        });
        match (&mut series.state, sample.value) {
            (State::Counter(sum), Value::Counter { value, rate }) => *sum += value / rate,
            (State::Gauge { value, idle }, Value::Gauge(v)) => (*value, *idle) = (v, 0),
            (State::Gauge { value, idle }, Value::GaugeDelta(d)) => {
                (*value, *idle) = (*value + d, 0)
            }
            (State::Timer(t), Value::Timer { ms, rate }) => {
                // Microseconds: the histogram counts integers. MAX_TIMER_MS bounds the value.
                let us = (ms * 1000.0).round() as u64;
                if t.histogram.record(us).is_err() {
                    t.histogram.saturating_record(us);
                }
                t.count += 1.0 / rate;
                t.lower = t.lower.min(ms);
                t.upper = t.upper.max(ms);
                t.sum += ms;
            }
            (State::Set(members), Value::Set(member))
                if members.len() < self.limits.max_set_size =>
            {
                members.insert(member);
            }
            (
                State::Graphite {
                    value,
                    sent_ms,
                    points,
                },
                Value::Graphite {
                    value: v,
                    sent_ms: at,
                },
            ) => {
                // The sender's clock orders its points: a late resend does not win.
                if *points == 0 || at >= *sent_ms {
                    (*value, *sent_ms) = (v, at);
                }
                *points += 1;
            }
            // The key includes the kind, so a series only ever meets samples of its own kind.
            _ => {}
        }
    }

    /// Reports every series that had samples in the interval and starts the next: gauges keep
    /// their value (for deltas) until idle for [`GAUGE_IDLE_FLUSHES`]; the rest are forgotten.
    pub fn flush(&mut self) -> Vec<Report> {
        let mut reports = Vec::new();
        let mut removed = 0;
        self.series.retain(|series| {
            if let Some((first_ms, last_ms)) = series.seen.take() {
                reports.push(Report {
                    key: series.key.clone(),
                    first_ms,
                    last_ms,
                    data: report(&series.state),
                });
            }
            let keep = match &mut series.state {
                State::Gauge { idle, .. } => {
                    *idle += 1;
                    *idle <= GAUGE_IDLE_FLUSHES
                }
                _ => false,
            };
            if !keep {
                removed += 1;
            }
            keep
        });
        self.limits.live.fetch_sub(removed, Ordering::Relaxed);
        reports
    }
}

fn report(state: &State) -> ReportData {
    match state {
        State::Counter(count) => ReportData::Counter { count: *count },
        State::Gauge { value, .. } => ReportData::Gauge { value: *value },
        State::Timer(t) => {
            let ms = |q: f64| t.histogram.value_at_quantile(q) as f64 / 1000.0;
            let samples = t.histogram.len();
            ReportData::Timer(TimerReport {
                count: t.count,
                samples,
                lower: t.lower,
                upper: t.upper,
                sum: t.sum,
                mean: t.sum / samples.max(1) as f64,
                p50: ms(0.5),
                p90: ms(0.9),
                p99: ms(0.99),
            })
        }
        State::Set(members) => ReportData::Set {
            count: members.len(),
        },
        State::Graphite {
            value,
            sent_ms,
            points,
        } => ReportData::Graphite {
            value: *value,
            sent_ms: *sent_ms,
            points: *points,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_statsd;

    fn shard(max_series: usize) -> Shard {
        Shard::new(Arc::new(Limits {
            max_series,
            max_set_size: 100,
            ..Limits::default()
        }))
    }

    fn add(shard: &mut Shard, line: &str) {
        let sample = parse_statsd(line).unwrap();
        // Any hash will do, so long as one key always gets the same one.
        let hash = std::hash::BuildHasher::hash_one(
            &std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default(),
            (sample.value.kind(), &sample.name, &sample.tags),
        );
        shard.add(
            hash,
            Stamped {
                sample,
                received_ms: 7,
            },
        );
    }

    #[test]
    fn counters_reset_and_gauges_keep_their_value() {
        let mut s = shard(10);
        add(&mut s, "c:1|c|@0.5");
        add(&mut s, "c:3|c");
        add(&mut s, "g:10|g");
        add(&mut s, "g:-3|g");
        let mut r = s.flush();
        r.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(r[0].data, ReportData::Counter { count: 5.0 });
        assert_eq!(r[1].data, ReportData::Gauge { value: 7.0 });
        assert!(s.flush().is_empty());
        add(&mut s, "g:+1|g");
        assert_eq!(s.flush()[0].data, ReportData::Gauge { value: 8.0 });
    }

    #[test]
    fn percentiles_within_one_percent() {
        let mut s = shard(10);
        for ms in 1..=1000 {
            add(&mut s, &format!("t:{ms}|ms"));
        }
        let ReportData::Timer(t) = &s.flush()[0].data else {
            panic!("not a timer")
        };
        assert_eq!((t.samples, t.lower, t.upper), (1000, 1.0, 1000.0));
        for (got, want) in [(t.p50, 500.0), (t.p90, 900.0), (t.p99, 990.0)] {
            assert!((got - want).abs() <= want * 0.01 + 1.0, "{got} vs {want}");
        }
    }

    #[test]
    fn series_past_the_limit_are_counted_not_kept() {
        let mut s = shard(2);
        for i in 0..5 {
            add(&mut s, &format!("c{i}:1|c"));
        }
        assert_eq!(s.limits.overflow.load(Ordering::Relaxed), 3);
        assert_eq!(s.flush().len(), 2);
        assert_eq!(s.limits.live.load(Ordering::Relaxed), 0);
    }
}
