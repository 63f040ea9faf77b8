//! Benchmarks of project 3, against the chosen tree's real binary (a release build: run them with
//! `cargo xtask bench kv-store [--solutions]`). Each figure is time per command.
//!
//! - `1-shard`, `4-shards-2-threads`, `mutex`, `mutex-2-threads`: the actor design and the
//!   lock-based one, each with one thread and with two.
//! - `.../{set,get}/1-conn`: one client, one command at a time: the round trip.
//! - `.../1-conn-pipeline-16`: one client sending 16 commands before reading 16 replies.
//! - `.../50-conn-pipeline-16`: 50 connections, each with 16 commands in flight.
//!
//! For a side-by-side with a real Redis, see `cargo xtask compare kv-store`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime,
};
use workbook_suite::Program;
use workbook_suite::binary::release_binary;
use workbook_suite::resp::{self, Resp, RespConn};

const KEYS: u64 = 1000;
const DEPTH: u64 = 16;

fn request(command: &str, i: u64) -> Vec<u8> {
    let key = format!("key:{}", i % KEYS);
    match command {
        "set" => resp::encode(&[b"SET", key.as_bytes(), b"value-of-some-length"]),
        _ => resp::encode(&[b"GET", key.as_bytes()]),
    }
}

fn connect(program: &mut Program, addr: SocketAddr) -> RespConn {
    RespConn::connect(addr).unwrap_or_else(|e| program.fail(format_args!("cannot connect: {e}")))
}

fn read(program: &mut Program, conn: &mut RespConn) {
    match conn.read(Duration::from_secs(5)) {
        Ok(Resp::Error(e)) => program.fail(format_args!("the server answered an error: {e}")),
        Ok(_) => {}
        Err(e) => program.fail(format_args!("no reply: {e}")),
    }
}

/// `conns` connections with `depth` commands in flight each, for `iters` commands in all.
fn run(
    program: &mut Program,
    conns: &mut [RespConn],
    command: &str,
    depth: u64,
    iters: u64,
) -> Duration {
    let per_round = depth * conns.len() as u64;
    let rounds = iters.div_ceil(per_round);
    let start = Instant::now();
    for round in 0..rounds {
        for (c, conn) in conns.iter_mut().enumerate() {
            let mut batch = Vec::new();
            for d in 0..depth {
                batch.extend(request(command, round * per_round + c as u64 * depth + d));
            }
            if let Err(e) = conn.send_raw(&batch) {
                program.fail(format_args!("sending: {e}"));
            }
        }
        for conn in conns.iter_mut() {
            for _ in 0..depth {
                read(program, conn);
            }
        }
    }
    // Scaled to the `iters` criterion asked for (the last round may have done a few more).
    start
        .elapsed()
        .mul_f64(iters as f64 / (rounds * per_round) as f64)
}

fn group(c: &mut Criterion, name: &str, server_args: &[&str]) {
    let (mut program, addr) = Program::start_server(&release_binary("kv-store"), server_args);
    let mut conns: Vec<RespConn> = (0..50).map(|_| connect(&mut program, addr)).collect();
    // Fill the key space, so that GETs find values.
    run(&mut program, &mut conns[..1], "set", DEPTH, KEYS);
    let mut group: BenchmarkGroup<'_, WallTime> = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    for command in ["set", "get"] {
        let cases: [(&str, usize, u64); 3] = [
            ("1-conn", 1, 1),
            ("1-conn-pipeline-16", 1, DEPTH),
            ("50-conn-pipeline-16", 50, DEPTH),
        ];
        for (case, width, depth) in cases {
            group.bench_function(format!("{command}/{case}"), |b| {
                b.iter_custom(|iters| {
                    run(&mut program, &mut conns[..width], command, depth, iters)
                });
            });
        }
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    group(c, "1-shard", &[]);
    group(
        c,
        "4-shards-2-threads",
        &["--shards", "4", "--threads", "2"],
    );
    group(c, "mutex", &["--backend", "mutex"]);
    group(
        c,
        "mutex-2-threads",
        &["--backend", "mutex", "--threads", "2"],
    );
}

criterion_group!(kv_store, benches);
criterion_main!(kv_store);
