//! Fan-in: one task flushes every worker at each interval and appends the batch to the output
//! file as JSON lines, one a stat under the StatsD daemon's names, then one line that closes the
//! batch with its counts. One writer means batches never interleave, and a reader of the file
//! knows a batch is whole when its closing line is there.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::aggregate::{Limits, Report, ReportData};
use crate::connection::now_ms;
use crate::exposition::Exposition;
use crate::pipeline::{Counters, Router};
use crate::protocol::Reason;

/// The stat lines of one report, named as the StatsD daemon names them: `stats.NAME` (per
/// second) and `stats_counts.NAME` for a counter, `stats.gauges.NAME`, `stats.timers.NAME.*`,
/// `stats.sets.NAME.count`; a Graphite path keeps its own name and the sender's timestamp.
pub fn stat_lines(report: &Report, interval: Duration) -> Vec<(String, Value)> {
    let name = &report.key.name;
    let secs = interval.as_secs_f64().max(0.001);
    let num = |v: f64| if v.is_finite() { json!(v) } else { Value::Null };
    match &report.data {
        ReportData::Counter { count } => vec![
            (format!("stats.{name}"), num(count / secs)),
            (format!("stats_counts.{name}"), num(*count)),
        ],
        ReportData::Gauge { value } => vec![(format!("stats.gauges.{name}"), num(*value))],
        ReportData::Set { count } => vec![(format!("stats.sets.{name}.count"), json!(count))],
        ReportData::Timer(t) => {
            let timer = |field: &str, v: f64| (format!("stats.timers.{name}.{field}"), num(v));
            vec![
                timer("count", t.count),
                timer("count_ps", t.count / secs),
                timer("lower", t.lower),
                timer("upper", t.upper),
                timer("mean", t.mean),
                timer("sum", t.sum),
                timer("median", t.p50),
                timer("upper_90", t.p90),
                timer("upper_99", t.p99),
            ]
        }
        ReportData::Graphite { value, .. } => vec![(name.clone(), num(*value))],
    }
}

/// What the writer needs.
#[derive(Debug)]
pub struct Writer {
    /// The workers.
    pub router: Router,
    /// The shared counts.
    pub counters: Arc<Counters>,
    /// The shared limits (live series, overflow).
    pub limits: Arc<Limits>,
    /// What `/metrics` shows.
    pub exposition: Arc<Mutex<Exposition>>,
    /// The output file, opened for appending.
    pub file: File,
    /// The flush interval.
    pub interval: Duration,
}

/// One stat line, serialised straight from borrowed fields: a batch of 100,000 series is
/// 200,000 or more of them, and building a `serde_json::Value` map for each costs more than the
/// aggregation did.
#[derive(Serialize)]
struct StatLine<'a> {
    kind: &'static str,
    batch: u64,
    flush_ms: u64,
    name: &'a str,
    value: &'a Value,
    tags: &'a [String],
    first_ms: u64,
    last_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sent_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    points: Option<u64>,
}

struct Totals {
    samples: u64,
    overflow: u64,
    duplicates: u64,
    malformed: [u64; Reason::ALL.len()],
}

impl Writer {
    fn totals(&self) -> Totals {
        Totals {
            samples: self.counters.samples.load(Ordering::Relaxed),
            overflow: self.limits.overflow.load(Ordering::Relaxed),
            duplicates: self.counters.duplicates.load(Ordering::Relaxed),
            malformed: std::array::from_fn(|i| self.counters.malformed[i].load(Ordering::Relaxed)),
        }
    }

    /// Flushes every `interval` until `stop`, then once more, and returns. `stop` is cancelled
    /// by the server once every reader has finished, so the last batch holds all they read.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        let mut batch = 0;
        let mut last = Instant::now();
        // From zero, not from a first reading: readers may have counted before this task ran.
        let mut before = Totals {
            samples: 0,
            overflow: 0,
            duplicates: 0,
            malformed: [0; Reason::ALL.len()],
        };
        loop {
            let last_one = tokio::select! {
                () = stop.cancelled() => true,
                _ = ticks.tick() => false,
            };
            let Ok(reports) = self.router.flush().await else {
                break;
            };
            batch += 1;
            let elapsed = last.elapsed();
            last = Instant::now();
            let now = self.totals();
            if let Err(e) = self.write_batch(batch, &reports, elapsed, &before, &now) {
                error!("cannot write the batch to the output file: {e}");
            }
            before = now;
            if last_one {
                break;
            }
        }
    }

    fn write_batch(
        &mut self,
        batch: u64,
        reports: &[Report],
        interval: Duration,
        before: &Totals,
        now: &Totals,
    ) -> std::io::Result<()> {
        let flush_ms = now_ms();
        let mut out = Vec::with_capacity(reports.len() * 120);
        let mut stats = 0;
        for report in reports {
            for (name, value) in stat_lines(report, interval) {
                let (sent_ms, points) = match &report.data {
                    ReportData::Graphite {
                        sent_ms, points, ..
                    } => (Some(*sent_ms), Some(*points)),
                    _ => (None, None),
                };
                let line = StatLine {
                    kind: "stat",
                    batch,
                    flush_ms,
                    name: &name,
                    value: &value,
                    tags: &report.key.tags,
                    first_ms: report.first_ms,
                    last_ms: report.last_ms,
                    sent_ms,
                    points,
                };
                serde_json::to_writer(&mut out, &line)?;
                out.push(b'\n');
                stats += 1;
            }
        }
        let malformed: serde_json::Map<String, Value> = Reason::ALL
            .iter()
            .map(|r| {
                let i = r.index();
                (
                    r.as_str().to_owned(),
                    json!(now.malformed[i] - before.malformed[i]),
                )
            })
            .collect();
        let live = self.limits.live.load(Ordering::Relaxed);
        let summary = json!({
            "kind": "batch",
            "batch": batch,
            "flush_ms": flush_ms,
            "interval_ms": interval.as_millis() as u64,
            "series": reports.len(),
            "stats": stats,
            "samples": now.samples - before.samples,
            "overflow": now.overflow - before.overflow,
            "duplicates": now.duplicates - before.duplicates,
            "malformed": malformed,
        });
        serde_json::to_writer(&mut out, &summary)?;
        out.push(b'\n');
        // One write per batch, to a file opened for appending: a batch is never split by
        // another writer's bytes.
        self.file.write_all(&out)?;
        self.exposition
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .update(reports, live);
        let mut event = summary;
        event["event"] = json!("flush");
        if let Some(obj) = event.as_object_mut() {
            obj.remove("kind");
            obj.remove("malformed");
        }
        println!("{event}");
        Ok(())
    }
}

/// Opens (creating if need be) `path` for appending.
///
/// # Errors
/// When it cannot be opened.
pub fn open_output(path: &Path) -> std::io::Result<File> {
    File::options().create(true).append(true).open(path)
}
