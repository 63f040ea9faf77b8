//! Fan-in: one task flushes every worker at each interval and appends the batch to the output
//! file as JSON lines, one a stat under the StatsD daemon's names, then one line that closes the
//! batch with its counts. One writer means batches never interleave, and a reader of the file
//! knows a batch is whole when its closing line is there.
//!
//! Your task: [`stat_lines`] (stages 1 and 2), [`Writer::run`] and the private `write_batch`
//! (stage 1). [`open_output`] and the totals are given.

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
    // TODO: one `(name, value)` per output line, by kind: `stats.NAME` (count per second of
    //   `interval`) and `stats_counts.NAME`; `stats.gauges.NAME`; `stats.sets.NAME.count`;
    //   `stats.timers.NAME.{count,count_ps,lower,upper,mean,sum,median,upper_90,upper_99}`; a Graphite
    //   path under its own name. A value that is not finite is `Value::Null`.
    todo!()
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
        // TODO: a batch every `self.interval` (`tokio::time::interval`, whose first tick is
        // immediate) until `stop`, then one last; each batch from `router.flush()`, numbered from
        // 1, with the real elapsed interval and the counters' differences since the previous batch.
        // `write_batch`.
        todo!()
    }

    fn write_batch(
        &mut self,
        batch: u64,
        reports: &[Report],
        interval: Duration,
        before: &Totals,
        now: &Totals,
    ) -> std::io::Result<()> {
        // TODO: the batch of the contract's "The output file" in one `write_all`: a `"kind":"stat"`
        // line per `stat_lines` entry, then the `"kind":"batch"` closing line; then the exposition
        // updated (`Exposition::update`) and the `flush` event printed.
        todo!()
    }
}

/// Opens (creating if need be) `path` for appending.
///
/// # Errors
/// When it cannot be opened.
pub fn open_output(path: &Path) -> std::io::Result<File> {
    File::options().create(true).append(true).open(path)
}
