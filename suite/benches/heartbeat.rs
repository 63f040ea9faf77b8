//! Benchmarks of project 1, against the chosen tree's real binary (a release build: run them with
//! `cargo xtask bench heartbeat [--solutions]`).
//!
//! - `ingest/10k-nodes`: how fast a server takes in heartbeats from 10,000 distinct nodes. UDP has
//!   no flow control, so the bench sends as fast as it can and counts what the server says it
//!   received (`server.received` in a status reply); the time reported per element is the time per
//!   datagram the server actually ingested. Offered and ingested rates go to stderr, so you can see
//!   whether the sender or the server was the limit.
//! - `detection/timeout-200ms`: the time from a node's last heartbeat to its `dead` event, with
//!   `--timeout 200ms --check-interval 10ms`: the contract bounds it to 200 to 210 ms plus
//!   scheduling.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use workbook_suite::binary::release_binary;
use workbook_suite::{Program, UdpPeer};

const NODES: u64 = 10_000;

fn start(args: &[&str]) -> (Program, SocketAddr) {
    Program::start_server(&release_binary("heartbeat"), args)
}

/// The server's `received` counter, asked over UDP; fails the bench clearly if no answer comes.
fn received(program: &mut Program, peer: &UdpPeer, addr: SocketAddr) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        peer.send_json(addr, &json!({ "op": "status", "after": "~" }));
        while let Some((bytes, from)) = peer.recv(Duration::from_millis(100)) {
            let reply: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if from == addr
                && let Some(n) = reply["server"]["received"].as_u64()
            {
                return n;
            }
        }
        program.assert_running("answering a status request");
    }
    program.fail("no status reply within 5s: the benchmark needs stages 2 and 6 to pass")
}

fn ingest(c: &mut Criterion) {
    let (mut program, addr) = start(&["--timeout", "1h", "--check-interval", "1s"]);
    let sender = UdpPeer::bind();
    let asker = UdpPeer::bind();
    let mut datagram = String::with_capacity(128);
    let mut next: u64 = 0;
    let (mut offered_total, mut ingested_total) = (0u64, 0u64);
    let (mut send_time, mut ingest_time) = (Duration::ZERO, Duration::ZERO);

    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("10k-nodes", |b| {
        b.iter_custom(|iters| {
            let before = received(&mut program, &asker, addr);
            let start = Instant::now();
            for _ in 0..iters {
                let (node, seq) = (next % NODES, next / NODES + 1);
                next += 1;
                datagram.clear();
                let _ = write!(
                    datagram,
                    r#"{{"node":"node-{node:05}","seq":{seq},"sent_ms":1732400000000}}"#
                );
                sender.send(addr, datagram.as_bytes());
            }
            let sent = start.elapsed();
            // Wait for the count to reach what was sent, or to stop moving (the rest was dropped).
            let (mut count, mut last_change) = (before, Instant::now());
            loop {
                let now = received(&mut program, &asker, addr);
                if now != count {
                    (count, last_change) = (now, Instant::now());
                }
                if count - before >= iters || last_change.elapsed() > Duration::from_millis(50) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let ingested = (count - before).max(1);
            let took = last_change.saturating_duration_since(start).max(sent);
            offered_total += iters;
            ingested_total += ingested;
            send_time += sent;
            ingest_time += took;
            // Time per ingested datagram, scaled to the `iters` criterion asked for.
            took.mul_f64(iters as f64 / ingested as f64)
        });
    });
    group.finish();
    eprintln!(
        "ingest: offered {offered_total} datagrams at {:.0}/s; the server ingested {ingested_total} ({:.1}%) at {:.0}/s",
        offered_total as f64 / send_time.as_secs_f64(),
        100.0 * ingested_total as f64 / offered_total.max(1) as f64,
        ingested_total as f64 / ingest_time.as_secs_f64(),
    );
}

fn detection(c: &mut Criterion) {
    let (mut program, addr) = start(&["--timeout", "200ms", "--check-interval", "10ms"]);
    let peer = UdpPeer::bind();
    let mut node_number = 0u64;
    let mut group = c.benchmark_group("detection");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("timeout-200ms", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                node_number += 1;
                let node = format!("bench-{node_number}");
                peer.send_json(addr, &json!({ "node": node, "seq": 1, "sent_ms": 0 }));
                let last = Instant::now();
                program.expect_json(
                    format_args!("{{\"event\":\"dead\",\"node\":\"{node}\",...}}"),
                    Duration::from_secs(5),
                    |v| v["event"] == "dead" && v["node"] == node.as_str(),
                );
                total += last.elapsed();
            }
            total
        });
    });
    group.finish();
}

criterion_group!(benches, ingest, detection);
criterion_main!(benches);
