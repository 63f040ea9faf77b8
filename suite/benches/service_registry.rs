//! Benchmarks of project 6, against the chosen tree's real binary (a release build: run them with
//! `cargo xtask bench service-registry [--solutions]`). Every request opens its own connection
//! (the suite's HTTP client says `Connection: close`), so each figure includes a TCP handshake.
//!
//! - `register/memory`, `register/data`: one registration with a TTL check, without and with
//!   `--data` (an fsync per registration).
//! - `health-passing/10k`: `GET /v1/health/service/NAME?passing` with 10,000 instances of 1,000
//!   services registered (10 per name).
//! - `wake/flip`: from sending a check update that changes a state to the waiting query's answer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use workbook_suite::Program;
use workbook_suite::binary::release_binary;
use workbook_suite::json_http::{self as http, Answer};

const PROMPT: Duration = Duration::from_secs(10);

fn start(args: &[&str]) -> (Program, SocketAddr) {
    let mut all = vec!["agent", "--bind", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut program = Program::start(&release_binary("service-registry"), &all);
    let addr = program.listening();
    (program, addr)
}

fn call(program: &mut Program, addr: SocketAddr, method: &str, path: &str, body: &str) -> Answer {
    match http::request(addr, method, path, body.as_bytes(), PROMPT) {
        Ok(answer) if answer.status == 200 => answer,
        Ok(answer) => program.fail(format_args!("{method} {path}: {answer}")),
        Err(e) => program.fail(format_args!("{method} {path}: {e}")),
    }
}

fn register(program: &mut Program, addr: SocketAddr, name: &str, id: &str) {
    let body = format!(r#"{{"Name":"{name}","ID":"{id}","Port":80,"Check":{{"TTL":"10m"}}}}"#);
    call(program, addr, "PUT", "/v1/agent/service/register", &body);
}

fn index(program: &mut Program, addr: SocketAddr, path: &str) -> u64 {
    let answer = call(program, addr, "GET", path, "");
    answer
        .header("X-Consul-Index")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| program.fail(format_args!("GET {path}: no X-Consul-Index")))
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("service-registry");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));

    let (mut memory, memory_addr) = start(&[]);
    let mut n = 0u64;
    group.bench_function("register/memory", |b| {
        b.iter(|| {
            n += 1;
            register(&mut memory, memory_addr, "bench", &format!("m-{n}"));
        });
    });
    drop(memory);

    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().to_str().expect("a UTF-8 path").to_owned();
    let (mut durable, durable_addr) = start(&["--data", &data]);
    group.bench_function("register/data", |b| {
        b.iter(|| {
            n += 1;
            register(&mut durable, durable_addr, "bench", &format!("d-{n}"));
        });
    });
    drop(durable);

    let (mut agent, addr) = start(&[]);
    for i in 0..10_000u32 {
        let name = format!("svc-{}", i % 1000);
        let id = format!("i-{i}");
        register(&mut agent, addr, &name, &id);
        call(
            &mut agent,
            addr,
            "PUT",
            &format!("/v1/agent/check/pass/service:{id}"),
            "",
        );
    }
    let mut q = 0u32;
    group.bench_function("health-passing/10k", |b| {
        b.iter(|| {
            q += 1;
            let path = format!("/v1/health/service/svc-{}?passing", q % 1000);
            call(&mut agent, addr, "GET", &path, "");
        });
    });

    let mut flip = false;
    group.bench_function("wake/flip", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let at = index(&mut agent, addr, "/v1/health/service/svc-0");
                let path = format!("/v1/health/service/svc-0?index={at}&wait=30s");
                let waiter = std::thread::spawn(move || {
                    let answer = http::request(addr, "GET", &path, b"", Duration::from_secs(40));
                    (answer, Instant::now())
                });
                // Give the query time to be held (a benchmark may sleep; a test may not).
                std::thread::sleep(Duration::from_millis(5));
                flip = !flip;
                let verb = if flip { "warn" } else { "pass" };
                let sent = Instant::now();
                call(
                    &mut agent,
                    addr,
                    "PUT",
                    &format!("/v1/agent/check/{verb}/service:i-0"),
                    "",
                );
                let (answer, woke) = waiter.join().expect("the waiting thread");
                if let Err(e) = answer {
                    agent.fail(format_args!("the waiting query: {e}"));
                }
                total += woke.duration_since(sent);
            }
            total
        });
    });
    group.finish();
}

criterion_group!(service_registry, benches);
criterion_main!(service_registry);
