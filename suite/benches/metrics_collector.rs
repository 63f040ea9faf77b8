//! Benchmarks of project 9, against the chosen tree's real collector (a release build: run them
//! with `cargo xtask bench metrics-collector [--solutions]`).
//!
//! - `ingest/W-workers/C-conns/S-series`: 400,000 StatsD counter lines over C TCP connections
//!   into S series, with W aggregation workers; the time runs until the collector's `flush`
//!   events have reported every sample, so it includes parsing, routing, aggregation and the
//!   batch write (with a 50 ms flush interval). Throughput is in samples.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use workbook_suite::Program;
use workbook_suite::binary::release_binary;

const SAMPLES: usize = 400_000;

struct Collector {
    program: Program,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

fn start(workers: usize) -> Collector {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = dir
        .path()
        .join("bench.jsonl")
        .to_string_lossy()
        .into_owned();
    let workers = workers.to_string();
    let mut program = Program::start(
        &release_binary("metrics-collector"),
        &[
            "collector",
            "--bind",
            "127.0.0.1:0",
            "--out",
            &out,
            "--flush",
            "50ms",
            "--workers",
            &workers,
        ],
    );
    let addr = program.listening();
    Collector {
        program,
        addr,
        _dir: dir,
    }
}

/// The lines each connection sends: `SAMPLES / conns` counters over `series` names.
fn payloads(conns: usize, series: usize) -> Vec<Vec<u8>> {
    (0..conns)
        .map(|c| {
            let mut text = String::new();
            for i in 0..SAMPLES / conns {
                let s = (c * 7919 + i) % series;
                text.push_str(&format!("bench.s{s}:1|c\n"));
            }
            text.into_bytes()
        })
        .collect()
}

/// Sends every payload on its own connection at once and waits until the flushes have
/// reported all the samples.
fn run_once(c: &mut Collector, payloads: &[Vec<u8>]) -> Duration {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for p in payloads {
            let addr = c.addr;
            scope.spawn(move || {
                if let Ok(mut s) = TcpStream::connect(addr) {
                    let _ = s.write_all(p);
                }
            });
        }
    });
    let want: u64 = payloads
        .iter()
        .map(|p| p.iter().filter(|&&b| b == b'\n').count() as u64)
        .sum();
    let mut seen = 0;
    while seen < want {
        let event = c.program.expect_json(
            "flush events adding up to every sample sent",
            Duration::from_secs(60),
            |v| v["event"] == "flush",
        );
        seen += event["samples"].as_u64().unwrap_or(0);
    }
    started.elapsed()
}

fn ingest(crit: &mut Criterion) {
    let mut group = crit.benchmark_group("ingest");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(SAMPLES as u64));
    for (workers, conns, series) in [
        (1, 1, 1_000),
        (2, 1, 1_000),
        (1, 100, 1_000),
        (2, 100, 1_000),
        (2, 1, 100_000),
    ] {
        let mut c = start(workers);
        let data = payloads(conns, series);
        group.bench_function(
            format!("{workers}-workers/{conns}-conns/{series}-series"),
            |b| b.iter_custom(|iters| (0..iters).map(|_| run_once(&mut c, &data)).sum()),
        );
    }
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
