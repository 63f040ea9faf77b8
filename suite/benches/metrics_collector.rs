//! Benchmarks of project 9, against the chosen tree's real collector (a release build: run them
//! with `cargo xtask bench metrics-collector [--solutions]`).
//!
//! - `ingest/W-workers/C-conns/S-series`: 400,000 StatsD counter lines over C TCP connections
//!   into S series, with W aggregation workers; the time runs until the collector's `flush`
//!   events have reported every sample, so it includes parsing, routing, aggregation and the
//!   batch write (with a 50 ms flush interval). Throughput is in samples.
//! - `types/KIND`: the same with one connection, 1,000 series and two workers, for each metric
//!   type: counters (`c`), gauges (`g`), timers (`ms`, which keep every value for the
//!   percentiles) and sets (`s`).
//! - `agent/WINDOW`: 400,000 counter lines in agent `BATCH`es of 1,000 on one connection
//!   to `--agent-bind`, either waiting for each `ACK` before the next batch (`stop-and-wait`)
//!   or sending them all and reading the `ACK`s after (`pipelined`): the cost of
//!   acknowledgements.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use workbook_suite::Program;
use workbook_suite::binary::release_binary;
use workbook_suite::metrics::AgentConn;

const SAMPLES: usize = 400_000;

struct Collector {
    program: Program,
    addr: SocketAddr,
    agent: Option<SocketAddr>,
    _dir: tempfile::TempDir,
}

fn start(workers: usize) -> Collector {
    start_with(workers, &[])
}

fn start_with(workers: usize, extra: &[&str]) -> Collector {
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
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .collect::<Vec<_>>(),
    );
    let addr = program.listening();
    let agent = extra.contains(&"--agent-bind").then(|| {
        let event = program.expect_json("the listening event", Duration::from_secs(10), |v| {
            v["agent"].is_string()
        });
        event["agent"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("an agent address")
    });
    Collector {
        program,
        addr,
        agent,
        _dir: dir,
    }
}

/// The lines each connection sends: `SAMPLES / conns` counters over `series` names.
fn payloads(conns: usize, series: usize) -> Vec<Vec<u8>> {
    typed_payloads(conns, series, "c")
}

/// Like `payloads`, with samples of `kind` (`c`, `g`, `ms` or `s`).
fn typed_payloads(conns: usize, series: usize, kind: &str) -> Vec<Vec<u8>> {
    (0..conns)
        .map(|c| {
            let mut text = String::new();
            for i in 0..SAMPLES / conns {
                let s = (c * 7919 + i) % series;
                let value = match kind {
                    "c" => 1,
                    _ => i % 1000,
                };
                text.push_str(&format!("bench.s{s}:{value}|{kind}\n"));
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
    wait_reported(c, want);
    started.elapsed()
}

/// Reads the collector's `flush` events until their samples add up to `want`.
fn wait_reported(c: &mut Collector, want: u64) {
    let mut seen = 0;
    while seen < want {
        let event = c.program.expect_json(
            "flush events adding up to every sample sent",
            Duration::from_secs(60),
            |v| v["event"] == "flush",
        );
        seen += event["samples"].as_u64().unwrap_or(0);
    }
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

fn types(crit: &mut Criterion) {
    let mut group = crit.benchmark_group("types");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(SAMPLES as u64));
    let mut c = start(2);
    for kind in ["c", "g", "ms", "s"] {
        let data = typed_payloads(1, 1_000, kind);
        group.bench_function(kind, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| run_once(&mut c, &data)).sum())
        });
    }
    group.finish();
}

/// Lines per agent batch.
const BATCH: usize = 1_000;

/// One agent session sending `SAMPLES` lines in batches, then waiting for the flushes to report
/// them all. `seq` goes on from run to run, so that no batch is taken for a resent one.
fn agent_once(c: &mut Collector, seq: &mut u64, pipelined: bool) -> Duration {
    let addr = c.agent.expect("started with --agent-bind");
    let payload: String = (0..BATCH).map(|i| format!("bench.s{i}:1|c\n")).collect();
    let started = Instant::now();
    let mut conn = AgentConn::connect(addr).expect("an agent connection");
    conn.send(b"HELLO bench\n").expect("send HELLO");
    let ok = conn.reply(Duration::from_secs(10));
    assert!(ok.is_some_and(|r| r.starts_with("OK")), "HELLO got no OK");
    let batches = SAMPLES / BATCH;
    let ack = |conn: &mut AgentConn| {
        let reply = conn.reply(Duration::from_secs(30));
        assert!(
            reply.is_some_and(|r| r.starts_with("ACK")),
            "a batch got no ACK"
        );
    };
    for _ in 0..batches {
        *seq += 1;
        conn.batch(*seq, 1_700_000_000_000, &payload)
            .expect("send a batch");
        if !pipelined {
            ack(&mut conn);
        }
    }
    if pipelined {
        for _ in 0..batches {
            ack(&mut conn);
        }
    }
    wait_reported(c, SAMPLES as u64);
    started.elapsed()
}

fn agent(crit: &mut Criterion) {
    let mut group = crit.benchmark_group("agent");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(SAMPLES as u64));
    let mut c = start_with(2, &["--agent-bind", "127.0.0.1:0"]);
    let mut seq = 0;
    for (name, pipelined) in [("stop-and-wait", false), ("pipelined", true)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| agent_once(&mut c, &mut seq, pipelined))
                    .sum()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, ingest, types, agent);
criterion_main!(benches);
