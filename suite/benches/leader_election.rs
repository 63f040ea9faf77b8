//! Benchmarks of project 8, against the chosen tree's real binary (a release build: run them with
//! `cargo xtask bench leader-election [--solutions]`).
//!
//! Unless a name says otherwise, every node runs with a 20 ms heartbeat and a 200 ms election
//! timeout, behind the suite's UDP relay, which counts the messages by type (election messages
//! are printed to stderr per size).
//!
//! - `first-leader/N` (N = 3, 5, 9, 25): from the moment the last of N nodes printed its address
//!   to the first `leader` event; the contract's target is under 2.5 timeouts (500 ms).
//! - `failover/N`: from the leader's SIGKILL to the next `leader` event; about one timeout plus
//!   a fraction of a heartbeat.
//! - `failover-timeout/T` (5 nodes, heartbeat T/10): the same for election timeouts of 100, 200
//!   and 400 ms: failover grows with the timeout, not with the cluster.
//! - `heartbeat-cpu/N`: the CPU time the leader spends in one second of steady leadership
//!   (from `/proc/PID/schedstat`); the followers' CPU and the messages per node and second are
//!   printed to stderr beside it.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use serde_json::Value;
use workbook_suite::binary::release_binary;
use workbook_suite::{Program, UdpRelay};

const SIZES: [usize; 4] = [3, 5, 9, 25];
const TIMEOUTS_MS: [u64; 3] = [100, 200, 400];
const ELECTION_TYPES: [&str; 4] = ["prevote", "prevote_reply", "vote", "vote_reply"];

struct Nodes {
    relay: UdpRelay,
    programs: Vec<Option<Program>>,
    _data: tempfile::TempDir,
}

fn start(n: usize) -> Nodes {
    start_with(n, 200)
}

/// N nodes with an election timeout of `timeout_ms` and a heartbeat of a tenth of it.
fn start_with(n: usize, timeout_ms: u64) -> Nodes {
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
            format!("{}ms", timeout_ms / 10),
            "--timeout".into(),
            format!("{timeout_ms}ms"),
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

    /// Every message the relay has passed on so far.
    fn all_messages(&self) -> u64 {
        self.relay.counts().values().sum()
    }

    /// Each running node's CPU time so far.
    fn cpu(&self) -> Vec<Duration> {
        let pids = self.programs.iter().flatten().map(Program::id);
        pids.map(cpu_time).collect()
    }
}

/// A process's time on a CPU so far, all its threads: the first field of each
/// `/proc/PID/task/TID/schedstat`, in nanoseconds.
fn cpu_time(pid: u32) -> Duration {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    let ns: u64 = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(ns)
}

/// Kills the leader of a fresh cluster once; returns the time to the next leader.
fn one_failover(n: usize, timeout_ms: u64) -> Duration {
    let mut nodes = start_with(n, timeout_ms);
    let leader = nodes.next_leader(None);
    // Let every follower hear the leader, so that the kill is a real failover.
    std::thread::sleep(Duration::from_millis(timeout_ms * 3 / 2));
    let killed = Instant::now();
    nodes.programs[leader] = None;
    nodes.next_leader(Some(leader));
    killed.elapsed()
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
                    total += one_failover(n, 200);
                }
                total
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("failover-timeout");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    for t in TIMEOUTS_MS {
        group.bench_with_input(BenchmarkId::from_parameter(t), &t, |b, &t| {
            b.iter_custom(|iters| (0..iters).map(|_| one_failover(5, t)).sum());
        });
    }
    group.finish();

    // Each iteration is a second of wall time but returns far less (the CPU used in it), so
    // criterion must not plan iterations from what it measures: flat sampling, one iteration
    // per sample and a warm-up of one.
    let mut group = c.benchmark_group("heartbeat-cpu");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(1));
    group.measurement_time(Duration::from_millis(1));
    for n in SIZES {
        let mut nodes = start(n);
        let leader = nodes.next_leader(None);
        std::thread::sleep(Duration::from_millis(500));
        let mut followers = Vec::new();
        let mut rates = Vec::new();
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (before, sent) = (nodes.cpu(), nodes.all_messages());
                    std::thread::sleep(Duration::from_secs(1));
                    let (after, now_sent) = (nodes.cpu(), nodes.all_messages());
                    let used: Vec<Duration> = after
                        .iter()
                        .zip(&before)
                        .map(|(a, b)| a.saturating_sub(*b))
                        .collect();
                    total += used[leader];
                    let others: Duration = (0..n).filter(|&i| i != leader).map(|i| used[i]).sum();
                    followers.push(others / (n as u32 - 1));
                    rates.push((now_sent - sent) / n as u64);
                }
                total
            });
        });
        followers.sort_unstable();
        rates.sort_unstable();
        eprintln!(
            "heartbeat-cpu/{n}: a follower's CPU per second median {:?}; messages per node \
             and second median {}",
            followers
                .get(followers.len() / 2)
                .copied()
                .unwrap_or_default(),
            rates.get(rates.len() / 2).copied().unwrap_or(0)
        );
    }
    group.finish();
}

criterion_group!(benches, elections);
criterion_main!(benches);
