//! `GET /metrics`: what the collector has aggregated, in the Prometheus text exposition format
//! 0.0.4, for a Prometheus server to scrape (pull) what StatsD clients pushed.
//!
//! Counters are exposed as running totals (`NAME_total`, as Prometheus counters must be), timers
//! as summaries in seconds (`NAME_seconds`, the last interval's quantiles, running `_sum` and
//! `_count`), gauges, set sizes (`NAME_unique`) and Graphite paths as gauges. Names are made
//! valid (`[a-zA-Z_:][a-zA-Z0-9_:]*`), DogStatsD tags `key:value` become labels, and tags
//! without a value are listed in one label, `tags`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::aggregate::{Report, ReportData};
use crate::pipeline::Counters;
use crate::protocol::{Kind, Reason};

/// The content type of the format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Counter,
    Gauge,
    Summary,
}

impl Type {
    fn as_str(self) -> &'static str {
        match self {
            Type::Counter => "counter",
            Type::Gauge => "gauge",
            Type::Summary => "summary",
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Point {
    value: f64,
    quantiles: [f64; 3],
    count: f64,
}

#[derive(Debug)]
struct Family {
    kind: Type,
    help: String,
    /// By rendered label set (`{a="1"}` or empty).
    series: BTreeMap<String, Point>,
}

/// The exposed state, updated at every flush.
#[derive(Debug, Default)]
pub struct Exposition {
    families: BTreeMap<String, Family>,
    points: usize,
    max_points: usize,
    /// Series not exposed: past the limit, or whose name was taken by a family of another type.
    pub dropped: u64,
    /// Flushes done.
    pub flushes: u64,
    /// Series live at the last flush.
    pub series: usize,
}

/// `name` as a valid metric name: every other byte becomes `_`, and a leading digit gets one.
pub fn metric_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) || out.is_empty() {
        out.insert(0, '_');
    }
    out
}

fn label_name(key: &str) -> String {
    let mut out = metric_name(key).replace(':', "_");
    // `__` is reserved, and a summary's own `quantile` label must not be shadowed.
    if out.starts_with("__") || out == "quantile" || out == "le" || out == "tags" {
        out.insert_str(0, "tag");
    }
    out
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `{k="v",...}` for DogStatsD `tags`, sorted by label name, first one of a name wins.
fn labels(tags: &[String]) -> String {
    let mut pairs: BTreeMap<String, String> = BTreeMap::new();
    let mut bare = Vec::new();
    for tag in tags {
        match tag.split_once(':') {
            Some((k, v)) => {
                pairs.entry(label_name(k)).or_insert_with(|| escape(v));
            }
            None => bare.push(escape(tag)),
        }
    }
    if !bare.is_empty() {
        pairs.insert("tags".into(), bare.join(","));
    }
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{{{}}}", inner.join(","))
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

impl Exposition {
    /// An empty exposition holding at most `max_points` series.
    pub fn new(max_points: usize) -> Self {
        Exposition {
            max_points,
            ..Exposition::default()
        }
    }

    /// Folds one flush's reports in.
    pub fn update(&mut self, reports: &[Report], live_series: usize) {
        self.flushes += 1;
        self.series = live_series;
        for report in reports {
            let base = metric_name(&report.key.name);
            let (name, kind, what) = match report.key.kind {
                Kind::Counter => (format!("{base}_total"), Type::Counter, "StatsD counter"),
                Kind::Gauge => (base, Type::Gauge, "StatsD gauge"),
                Kind::Timer => (format!("{base}_seconds"), Type::Summary, "StatsD timer"),
                Kind::Set => (format!("{base}_unique"), Type::Gauge, "StatsD set size"),
                Kind::Graphite => (base, Type::Gauge, "Graphite path"),
            };
            // A new family only with room for its first series: an empty family would still be
            // memory and a HELP line, past the limit.
            let full = self.points >= self.max_points && !self.families.contains_key(&name);
            if name.starts_with("metrics_collector_") || full {
                self.dropped += 1;
                continue;
            }
            let family = self.families.entry(name).or_insert_with(|| Family {
                kind,
                help: format!("{what} {}", escape(&report.key.name)),
                series: BTreeMap::new(),
            });
            if family.kind != kind {
                self.dropped += 1;
                continue;
            }
            let label_set = labels(&report.key.tags);
            if !family.series.contains_key(&label_set) {
                if self.points >= self.max_points {
                    self.dropped += 1;
                    continue;
                }
                self.points += 1;
            }
            let point = family.series.entry(label_set).or_default();
            match &report.data {
                ReportData::Counter { count } => point.value += count,
                ReportData::Gauge { value } | ReportData::Graphite { value, .. } => {
                    point.value = *value;
                }
                ReportData::Set { count } => point.value = *count as f64,
                ReportData::Timer(t) => {
                    point.value += t.sum / 1000.0;
                    point.count += t.count;
                    point.quantiles = [t.p50 / 1000.0, t.p90 / 1000.0, t.p99 / 1000.0];
                }
            }
        }
    }

    /// The page: the collector's own metrics, then every family.
    pub fn render(&self, counters: &Counters, overflow: u64) -> String {
        let mut out = String::new();
        let own = |out: &mut String, name: &str, kind: &str, help: &str, value: String| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        };
        own(
            &mut out,
            "metrics_collector_samples_total",
            "counter",
            "Samples accepted, from every protocol.",
            counters.samples.load(Ordering::Relaxed).to_string(),
        );
        let _ = write!(
            out,
            "# HELP metrics_collector_malformed_lines_total Lines refused, by reason.\n\
             # TYPE metrics_collector_malformed_lines_total counter\n"
        );
        for reason in Reason::ALL {
            let n = counters.malformed[reason.index()].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "metrics_collector_malformed_lines_total{{reason=\"{}\"}} {n}",
                reason.as_str()
            );
        }
        own(
            &mut out,
            "metrics_collector_overflow_samples_total",
            "counter",
            "Samples dropped because their series would pass --max-series.",
            overflow.to_string(),
        );
        own(
            &mut out,
            "metrics_collector_duplicate_batches_total",
            "counter",
            "Agent batches received again after a reconnect, and not counted twice.",
            counters.duplicates.load(Ordering::Relaxed).to_string(),
        );
        own(
            &mut out,
            "metrics_collector_flushes_total",
            "counter",
            "Batches written to the output file.",
            self.flushes.to_string(),
        );
        own(
            &mut out,
            "metrics_collector_series",
            "gauge",
            "Series live at the last flush.",
            self.series.to_string(),
        );
        own(
            &mut out,
            "metrics_collector_unexposed_series_total",
            "counter",
            "Series left off this page: past the limit, or a name taken by another type.",
            self.dropped.to_string(),
        );
        for (name, family) in &self.families {
            let _ = write!(
                out,
                "# HELP {name} {}\n# TYPE {name} {}\n",
                family.help,
                family.kind.as_str()
            );
            for (label_set, point) in &family.series {
                if family.kind != Type::Summary {
                    let _ = writeln!(out, "{name}{label_set} {}", number(point.value));
                    continue;
                }
                for (q, v) in ["0.5", "0.9", "0.99"].iter().zip(point.quantiles) {
                    let quantile = format!("quantile=\"{q}\"");
                    let with_q = match label_set.strip_suffix('}') {
                        Some(open) => format!("{open},{quantile}}}"),
                        None => format!("{{{quantile}}}"),
                    };
                    let _ = writeln!(out, "{name}{with_q} {}", number(v));
                }
                let _ = writeln!(out, "{name}_sum{label_set} {}", number(point.value));
                let _ = writeln!(out, "{name}_count{label_set} {}", number(point.count));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels() {
        assert_eq!(metric_name("api.req-time"), "api_req_time");
        assert_eq!(metric_name("5xx"), "_5xx");
        assert_eq!(
            labels(&["env:prod".into(), "canary".into(), "a.b:x\"y".into()]),
            "{a_b=\"x\\\"y\",env=\"prod\",tags=\"canary\"}"
        );
        assert_eq!(labels(&[]), "");
    }

    #[test]
    fn past_the_limit_no_family_is_made() {
        use crate::aggregate::{Report, ReportData, SeriesKey};
        let report = |name: &str| Report {
            key: SeriesKey {
                kind: Kind::Gauge,
                name: name.into(),
                tags: Vec::new(),
            },
            first_ms: 0,
            last_ms: 0,
            data: ReportData::Gauge { value: 1.0 },
        };
        let mut e = Exposition::new(1);
        e.update(&[report("a"), report("b"), report("c")], 3);
        assert_eq!((e.families.len(), e.dropped), (1, 2));
    }
}
