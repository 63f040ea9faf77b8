//! `GET /metrics`: what the collector has aggregated, in the Prometheus text exposition format
//! 0.0.4, for a Prometheus server to scrape (pull) what StatsD clients pushed.
//!
//! Your task (stage 6): [`Exposition::update`] and [`Exposition::render`]. The name and label
//! helpers (`metric_name`, `label_name`, `escape`, `labels`, `number`) are given.
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
        // TODO: the contract's "`GET /metrics`" families folded in from one flush: each report
        // under its family name and type, counters and timer sums and counts added up, gauges
        // replaced. Left off and counted in `dropped`: names starting `metrics_collector_`, a
        // family already of another type, a new series past `max_points`. The flush and the live
        // series counted too.
        todo!()
    }

    /// The page: the collector's own metrics, then every family.
    pub fn render(&self, counters: &Counters, overflow: u64) -> String {
        // TODO: the page of the contract's "`GET /metrics`": the collector's own metrics first
        // (every malformed reason, zeros included), then every family, each with `# HELP` and `#
        // TYPE`, valid for `promtool check metrics`.
        todo!()
    }
}
