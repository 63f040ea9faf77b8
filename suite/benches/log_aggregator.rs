//! Benchmarks of project 2, against the chosen tree's real aggregator (a release build: run them
//! with `cargo xtask bench log-aggregator [--solutions]`).
//!
//! - `write/WRITER/FSYNC/C-conns/S-bytes`: messages of S bytes (LF-framed, `--format raw`) over
//!   C connections into one aggregator, for each `--writer` design and `--fsync` policy. The
//!   time runs until the output file holds every byte sent, so it includes reading, framing and
//!   the append with its syncs. Throughput is in messages.
//! - `relp/FSYNC`: one RELP `syslog` command and its `rsp`, one at a time on one session: the
//!   round-trip latency of an acknowledgement, which waits for the sync under `batch` and
//!   `always`.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use workbook_suite::Program;
use workbook_suite::binary::release_binary;
use workbook_suite::relp::RelpConn;

/// Messages per measured run, in all connections; fewer when each append is synced.
const MESSAGES: usize = 20_000;
const MESSAGES_ALWAYS: usize = 2_000;

struct Aggregator {
    program: Program,
    addr: SocketAddr,
    relp: Option<SocketAddr>,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

fn start(writer: &str, fsync: &str, relp: bool) -> Aggregator {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = dir.path().join("bench.log");
    let path = out.to_string_lossy().into_owned();
    let mut args = vec!["--out", path.as_str()];
    args.extend(["--format", "raw", "--writer", writer, "--fsync", fsync]);
    if relp {
        args.extend(["--relp-bind", "127.0.0.1:0"]);
    }
    let (mut program, addr) = Program::start_server(&release_binary("log-aggregator"), &args);
    let relp = relp.then(|| {
        let event = program.expect_json("the RELP listening event", Duration::from_secs(10), |v| {
            v["event"] == "listening" && v["protocol"] == "relp"
        });
        event["addr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("a RELP address")
    });
    Aggregator {
        program,
        addr,
        relp,
        out,
        _dir: dir,
    }
}

/// Each connection's share of `messages` LF-framed messages of `size` bytes (LF included).
fn payloads(conns: usize, messages: usize, size: usize) -> Vec<Vec<u8>> {
    let mut line = vec![b'x'; size - 1];
    line.push(b'\n');
    (0..conns).map(|_| line.repeat(messages / conns)).collect()
}

/// Sends every payload at once and waits until the file has grown by all of it.
fn run_once(a: &mut Aggregator, payloads: &[Vec<u8>]) -> Duration {
    let before = std::fs::metadata(&a.out).map_or(0, |m| m.len());
    let want = before + payloads.iter().map(|p| p.len() as u64).sum::<u64>();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for p in payloads {
            let addr = a.addr;
            scope.spawn(move || {
                if let Ok(mut s) = TcpStream::connect(addr) {
                    let _ = s.write_all(p);
                }
            });
        }
    });
    let deadline = started + Duration::from_secs(60);
    while std::fs::metadata(&a.out).map_or(0, |m| m.len()) < want {
        if Instant::now() > deadline {
            a.program
                .fail("the output file did not grow by every byte sent within 60 s");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    started.elapsed()
}

fn write(crit: &mut Criterion) {
    let mut group = crit.benchmark_group("write");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for fsync in ["never", "batch", "always"] {
        let messages = if fsync == "always" {
            MESSAGES_ALWAYS
        } else {
            MESSAGES
        };
        for writer in ["task", "std-mutex", "tokio-mutex"] {
            let mut a = start(writer, fsync, false);
            for conns in [1, 100] {
                for size in [100, 1024] {
                    let data = payloads(conns, messages, size);
                    let sent = data.iter().map(|p| p.len() / size).sum::<usize>();
                    group.throughput(Throughput::Elements(sent as u64));
                    group.bench_function(
                        format!("{writer}/{fsync}/{conns}-conns/{size}-bytes"),
                        |b| {
                            b.iter_custom(|iters| (0..iters).map(|_| run_once(&mut a, &data)).sum())
                        },
                    );
                }
            }
        }
    }
    group.finish();
}

fn relp(crit: &mut Criterion) {
    let mut group = crit.benchmark_group("relp");
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    for fsync in ["never", "batch", "always"] {
        let mut a = start("task", fsync, true);
        let mut conn = RelpConn::connect(a.relp.expect("started with --relp-bind"))
            .expect("a RELP connection");
        let offers = b"relp_version=0\nrelp_software=bench\ncommands=syslog";
        conn.command(1, "open", offers).expect("send open");
        conn.read(Duration::from_secs(10))
            .expect("the answer to open");
        let mut txnr = 1;
        group.bench_function(fsync, |b| {
            b.iter(|| {
                txnr += 1;
                conn.command(txnr, "syslog", b"<13>bench one message")
                    .expect("send syslog");
                match conn.read(Duration::from_secs(10)) {
                    Ok(rsp) if rsp.txnr == txnr => {}
                    other => a
                        .program
                        .fail(format_args!("expected rsp {txnr}, got {other:?}")),
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, write, relp);
criterion_main!(benches);
