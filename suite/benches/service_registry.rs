//! Benchmarks of project 6, against the chosen tree's real binary (a release build: run them with
//! `cargo xtask bench service-registry [--solutions]`). Every request opens its own connection
//! (the suite's HTTP client says `Connection: close`), so each figure includes a TCP handshake.
//!
//! - `register/memory`, `register/data`: one registration with a TTL check, without and with
//!   `--data` (an fsync per registration).
//! - `health-passing/10k`: `GET /v1/health/service/NAME?passing` with 10,000 instances of 1,000
//!   services registered (10 per name).
//! - `wake/flip`: from sending a check update that changes a state to the waiting query's answer.
//! - `hold/1000`: opening 1,000 blocking queries at once (one connection each, spread over 100
//!   names); the agent's resident memory per waiting query is printed to stderr beside it.
//! - `ttl-expiry/1s`: from sending the pass of a 1 s TTL check to a blocking query seeing it
//!   critical; the contract promises it within the TTL plus 100 ms (the overshoot is printed).

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
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

    // An iteration here costs far more than it measures (a settling memory, or a TTL to wait
    // out): flat sampling, one iteration a sample, a warm-up of one.
    let mut group = c.benchmark_group("service-registry");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(1));
    group.measurement_time(Duration::from_millis(1));

    let mut per_query = Vec::new();
    group.bench_function("hold/1000", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut requests = Vec::new();
                for k in 0..100 {
                    let path = format!("/v1/health/service/svc-{k}");
                    let at = index(&mut agent, addr, &path);
                    requests.push(format!(
                        "GET {path}?index={at}&wait=10m HTTP/1.1\r\nHost: bench\r\n\r\n"
                    ));
                }
                let before = settled_rss(agent.id());
                let started = Instant::now();
                let mut held = Vec::new();
                for (w, request) in requests.iter().cycle().take(1000).enumerate() {
                    let mut stream = TcpStream::connect(addr)
                        .unwrap_or_else(|e| agent.fail(format_args!("waiting query {w}: {e}")));
                    stream
                        .write_all(request.as_bytes())
                        .unwrap_or_else(|e| agent.fail(format_args!("waiting query {w}: {e}")));
                    held.push(stream);
                }
                total += started.elapsed();
                let after = settled_rss(agent.id());
                per_query.push(after.saturating_sub(before) / 1000);
                drop(held);
            }
            total
        });
    });
    per_query.sort_unstable();
    eprintln!(
        "hold/1000: agent memory per waiting query, median {} bytes, max {} over {} runs (a \
         hold reuses what the one before freed; the max is the first, on a fresh agent)",
        per_query.get(per_query.len() / 2).copied().unwrap_or(0),
        per_query.last().copied().unwrap_or(0),
        per_query.len()
    );

    let mut overshoot = Vec::new();
    let mut k = 0u32;
    group.bench_function("ttl-expiry/1s", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                k += 1;
                let (name, id) = (format!("ttl-{k}"), format!("t-{k}"));
                let body = format!(r#"{{"Name":"{name}","ID":"{id}","Check":{{"TTL":"1s"}}}}"#);
                call(&mut agent, addr, "PUT", "/v1/agent/service/register", &body);
                let sent = Instant::now();
                let pass = format!("/v1/agent/check/pass/service:{id}");
                call(&mut agent, addr, "PUT", &pass, "");
                let checks = format!("/v1/health/checks/{name}");
                let mut at = index(&mut agent, addr, &checks);
                loop {
                    let path = format!("{checks}?index={at}&wait=5s");
                    let answer = call(&mut agent, addr, "GET", &path, "");
                    if answer.text().contains(r#""Status":"critical""#) {
                        break;
                    }
                    at = answer
                        .header("X-Consul-Index")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(at);
                    assert!(
                        sent.elapsed() < PROMPT,
                        "the 1s TTL check never turned critical"
                    );
                }
                let took = sent.elapsed();
                overshoot.push(took.saturating_sub(Duration::from_secs(1)));
                total += took;
                let gone = format!("/v1/agent/service/deregister/{id}");
                call(&mut agent, addr, "PUT", &gone, "");
            }
            total
        });
    });
    overshoot.sort_unstable();
    eprintln!(
        "ttl-expiry/1s: seen critical after the TTL plus {:?} (median), {:?} (max) over {} runs",
        overshoot
            .get(overshoot.len() / 2)
            .copied()
            .unwrap_or_default(),
        overshoot.last().copied().unwrap_or_default(),
        overshoot.len()
    );
    group.finish();
}

/// The resident memory of `pid` once it stops moving (within 64 KiB over 300 ms, or after 10 s).
fn settled_rss(pid: u32) -> u64 {
    let rss = || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:"));
        let kb = kb.and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
        kb.unwrap_or(0) * 1024
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = rss();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = rss();
        if now.abs_diff(last) < 64 * 1024 || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

criterion_group!(service_registry, benches);
criterion_main!(service_registry);
