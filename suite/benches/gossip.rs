//! Benchmarks of project 4, against the chosen tree's real binary (a release build: run them with
//! `cargo xtask bench gossip [--solutions]`).
//!
//! - `node/gossip-batches`: how many `gossip` messages of 10 fresh values a node takes in per
//!   second, each answered with a `gossip_ok` (the time per element is per message handled).
//! - `simulate/push-10^k`: one whole push run over 10^4, 10^5 and 10^6 nodes on the complete
//!   graph, process start included; the rounds per second are printed on stderr from the
//!   simulator's own `ms_per_round`, which excludes start-up.

use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use workbook_suite::Program;
use workbook_suite::binary::release_binary;
use workbook_suite::maelstrom::Node;

fn node_throughput(c: &mut Criterion) {
    let mut node = Node::start(&release_binary("gossip"), &["--interval", "1s"]);
    node.init("n1", &["n1", "n2"], Duration::from_secs(5));
    let mut next: i64 = 0;
    let mut group = c.benchmark_group("node");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.bench_function("gossip-batches", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            let mut last = 0;
            for _ in 0..iters {
                let values: Vec<i64> = (next..next + 10).collect();
                next += 10;
                last = node.send_from("n2", json!({ "type": "gossip", "values": values }));
            }
            node.program.expect_json(
                "the gossip_ok of the last gossip",
                Duration::from_secs(30),
                |v| v["body"]["in_reply_to"] == last,
            );
            started.elapsed()
        });
    });
    group.finish();
}

fn simulate(c: &mut Criterion) {
    let bin = release_binary("gossip");
    let mut group = c.benchmark_group("simulate");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    for k in [4u32, 5, 6] {
        let n = 10u64.pow(k).to_string();
        let mut per_round = Vec::new();
        group.bench_function(format!("push-10^{k}"), |b| {
            b.iter(|| {
                let mut p = Program::start(&bin, &["simulate", "--nodes", &n, "--no-curves"]);
                p.wait_exit(Duration::from_secs(60));
                let line = p.next_line(Duration::from_secs(1)).unwrap_or_default();
                let doc: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                if let Some(ms) = doc["summary"]["ms_per_round"].as_f64() {
                    per_round.push(ms);
                }
            });
        });
        if !per_round.is_empty() {
            let mean = per_round.iter().sum::<f64>() / per_round.len() as f64;
            eprintln!(
                "simulate push over 10^{k} nodes: {mean:.2} ms per round, {:.0} rounds/s",
                1000.0 / mean
            );
        }
    }
    group.finish();
}

criterion_group!(benches, node_throughput, simulate);
criterion_main!(benches);
