//! Benchmarks of project 8, against the chosen tree's real binary (a release build: run them with
//! `cargo xtask bench leader-election [--solutions]`).
//!
//! Every node runs with a 20 ms heartbeat and a 200 ms election timeout, behind the suite's UDP
//! relay, which counts the election messages (printed to stderr per size).
//!
//! - `first-leader/N`: from the moment the last of N nodes printed its address to the first
//!   `leader` event; the contract's target is under 2.5 timeouts (500 ms).
//! - `failover/N`: from the leader's SIGKILL to the next `leader` event; about one timeout plus
//!   a fraction of a heartbeat.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::Value;
use workbook_suite::binary::release_binary;
use workbook_suite::{Program, UdpRelay};

const SIZES: [usize; 3] = [3, 5, 9];
const ELECTION_TYPES: [&str; 4] = ["prevote", "prevote_reply", "vote", "vote_reply"];

struct Nodes {
    relay: UdpRelay,
    programs: Vec<Option<Program>>,
    _data: tempfile::TempDir,
}

fn start(n: usize) -> Nodes {
    let relay = UdpRelay::new(n, 8);
    let data = tempfile::TempDir::new().expect("a temporary directory");
    let binary = release_binary("leader-election");
    let mut programs = Vec::new();
    for i in 0..n {
        let mut args = vec![
            "node".to_owned(),
            "--id".into(),
            format!("n{i}"),
            "--priority".into(),
            (i + 1).to_string(),
            "--bind".into(),
            "127.0.0.1:0".into(),
            "--heartbeat".into(),
            "20ms".into(),
            "--timeout".into(),
            "200ms".into(),
            "--data".into(),
            data.path().join(format!("n{i}")).display().to_string(),
        ];
        for j in (0..n).filter(|&j| j != i) {
            args.push("--peer".into());
            args.push(format!("n{j}={}", relay.link(i, j)));
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut program = Program::start(&binary, &refs);
        relay.set_member(i, program.listening());
        programs.push(Some(program));
    }
    Nodes {
        relay,
        programs,
        _data: data,
    }
}

impl Nodes {
    /// Waits for a `leader` event from any node other than `not`; returns the node.
    fn next_leader(&mut self, not: Option<usize>) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            for (i, slot) in self.programs.iter_mut().enumerate() {
                let Some(program) = slot else { continue };
                while let Some(line) = program.next_line(Duration::ZERO) {
                    let leads =
                        serde_json::from_str::<Value>(&line).is_ok_and(|v| v["event"] == "leader");
                    if leads && Some(i) != not {
                        return i;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("no leader within 10s: the benchmark needs stages 1 and 2 to pass")
    }

    fn election_messages(&self) -> u64 {
        let counts = self.relay.counts();
        ELECTION_TYPES
            .iter()
            .map(|t| counts.get(*t).copied().unwrap_or(0))
            .sum()
    }
}

fn elections(c: &mut Criterion) {
    let mut group = c.benchmark_group("first-leader");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    for n in SIZES {
        let mut messages = Vec::new();
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut nodes = start(n);
                    let started = Instant::now();
                    nodes.next_leader(None);
                    total += started.elapsed();
                    messages.push(nodes.election_messages());
                }
                total
            });
        });
        messages.sort_unstable();
        eprintln!(
            "first-leader/{n}: election messages median {}",
            messages.get(messages.len() / 2).copied().unwrap_or(0)
        );
    }
    group.finish();

    let mut group = c.benchmark_group("failover");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    for n in SIZES {
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut nodes = start(n);
                    let leader = nodes.next_leader(None);
                    // Let every follower hear the leader, so that the kill is a real failover.
                    std::thread::sleep(Duration::from_millis(300));
                    let killed = Instant::now();
                    nodes.programs[leader] = None;
                    nodes.next_leader(Some(leader));
                    total += killed.elapsed();
                }
                total
            });
        });
    }
    group.finish();
}

criterion_group!(benches, elections);
criterion_main!(benches);
