//! Benchmarks of project 7, against the chosen tree's real broker (a release build: run them with
//! `cargo xtask bench pubsub [--solutions]`).
//!
//! - `publish/{16B,1KiB}`: one publisher and no subscriber; time per message, PONG included.
//! - `fan-out/{1,10,100}-subs/{16B,1KiB}`: one publisher, N subscribers each on its own
//!   connection; time per message delivered to all N (the throughput is in deliveries).
//!
//! The publisher keeps at most two windows of 256 KiB of messages ahead of the slowest
//! subscriber, so the figures measure delivery, not buffering. For a side-by-side with a real
//! `nats-server`, see `cargo xtask compare pubsub`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use workbook_suite::Program;
use workbook_suite::binary::release_binary;
use workbook_suite::nats::encode_pub;

const SUBJECT: &str = "bench.fanout";
const WINDOW_BYTES: usize = 256 * 1024;
const STALL: Duration = Duration::from_secs(10);

/// Connects, sends a quiet CONNECT and `lines` and PING, and reads up to the PONG.
fn open(program: &mut Program, addr: SocketAddr, lines: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr)
        .unwrap_or_else(|e| program.fail(format_args!("cannot connect: {e}")));
    let _ = stream.set_nodelay(true);
    let hello = format!("CONNECT {{\"verbose\":false}}\r\n{lines}PING\r\n");
    if let Err(e) = stream.write_all(hello.as_bytes()) {
        program.fail(format_args!("sending CONNECT: {e}"));
    }
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    while !seen.ends_with(b"PONG\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => seen.push(byte[0]),
            _ => program.fail(format_args!(
                "expected PONG after CONNECT, got {:?}",
                String::from_utf8_lossy(&seen)
            )),
        }
    }
    let _ = stream.set_read_timeout(None);
    stream
}

/// Counts the MSG frames arriving on `stream` into `count` until the connection closes.
fn count_messages(mut stream: TcpStream, count: Arc<AtomicU64>) {
    let mut buf = vec![0u8; 512 * 1024];
    let (mut start, mut end) = (0, 0);
    let mut n = 0;
    loop {
        // Whole frames from the front: `MSG subject sid size\r\n` + payload + `\r\n`.
        while let Some(eol) = buf[start..end].windows(2).position(|w| w == b"\r\n") {
            let line = &buf[start..start + eol];
            let mut used = eol + 2;
            if line.starts_with(b"MSG ") {
                let size: usize = line
                    .rsplit(|b| *b == b' ')
                    .next()
                    .and_then(|s| std::str::from_utf8(s).ok()?.parse().ok())
                    .unwrap_or(0);
                if end - start < used + size + 2 {
                    break;
                }
                used += size + 2;
                n += 1;
            }
            start += used;
        }
        count.store(n, Ordering::Release);
        buf.copy_within(start..end, 0);
        end -= start;
        start = 0;
        match stream.read(&mut buf[end..]) {
            Ok(0) | Err(_) => return,
            Ok(read) => end += read,
        }
    }
}

/// A broker with `subs` subscribers counting what they receive.
struct Fixture {
    program: Program,
    publisher: TcpStream,
    counts: Vec<Arc<AtomicU64>>,
    readers: Vec<JoinHandle<()>>,
    sent: u64,
}

impl Fixture {
    fn new(subs: usize) -> Fixture {
        let mut program = Program::start(
            &release_binary("pubsub"),
            &["broker", "--bind", "127.0.0.1:0"],
        );
        let addr = program.listening();
        let mut counts = Vec::new();
        let mut readers = Vec::new();
        for _ in 0..subs {
            let stream = open(&mut program, addr, &format!("SUB {SUBJECT} 1\r\n"));
            let count = Arc::new(AtomicU64::new(0));
            counts.push(Arc::clone(&count));
            readers.push(std::thread::spawn(move || count_messages(stream, count)));
        }
        let publisher = open(&mut program, addr, "");
        Fixture {
            program,
            publisher,
            counts,
            readers,
            sent: 0,
        }
    }

    fn slowest(&self) -> u64 {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Acquire))
            .min()
            .unwrap_or(self.sent)
    }

    /// Waits until every subscriber has at least `target` messages.
    fn wait_for(&mut self, target: u64) {
        let deadline = Instant::now() + STALL;
        while self.slowest() < target {
            if Instant::now() > deadline {
                let slowest = self.slowest();
                self.program.fail(format_args!(
                    "a subscriber has {slowest} of {target} messages after {STALL:?}"
                ));
            }
            std::thread::yield_now();
        }
    }

    /// Publishes `iters` messages of `size` bytes and waits for every subscriber to have them
    /// all (or, with no subscriber, for the PONG that follows them).
    fn run(&mut self, size: usize, iters: u64) -> Duration {
        let payload = vec![b'x'; size];
        let one = encode_pub(SUBJECT, &payload);
        let window = (WINDOW_BYTES / one.len()).max(1) as u64;
        let mut batch = Vec::with_capacity(WINDOW_BYTES + one.len());
        let start = Instant::now();
        let target = self.sent + iters;
        while self.sent < target {
            let n = window.min(target - self.sent);
            batch.clear();
            for _ in 0..n {
                batch.extend_from_slice(&one);
            }
            if let Err(e) = self.publisher.write_all(&batch) {
                self.program.fail(format_args!("publishing: {e}"));
            }
            self.sent += n;
            if !self.counts.is_empty() {
                self.wait_for(self.sent.saturating_sub(2 * window));
            }
        }
        if self.counts.is_empty() {
            self.pong();
        } else {
            self.wait_for(target);
        }
        start.elapsed()
    }

    fn pong(&mut self) {
        if let Err(e) = self.publisher.write_all(b"PING\r\n") {
            self.program.fail(format_args!("sending PING: {e}"));
        }
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while !seen.ends_with(b"PONG\r\n") {
            match self.publisher.read(&mut byte) {
                Ok(1) => seen.push(byte[0]),
                _ => self.program.fail("expected PONG after publishing"),
            }
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Ending the broker closes every subscriber's connection, which ends its reader.
        self.program.terminate();
        let _ = self.program.wait_exit(Duration::from_secs(5));
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

fn benches(c: &mut Criterion) {
    let sizes = [("16B", 16), ("1KiB", 1024)];
    let mut group = c.benchmark_group("publish");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    let mut fixture = Fixture::new(0);
    for (label, size) in sizes {
        group.bench_function(label, |b| b.iter_custom(|iters| fixture.run(size, iters)));
    }
    drop(fixture);
    group.finish();

    let mut group = c.benchmark_group("fan-out");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    for subs in [1usize, 10, 100] {
        let mut fixture = Fixture::new(subs);
        group.throughput(Throughput::Elements(subs as u64));
        for (label, size) in sizes {
            group.bench_function(format!("{subs}-subs/{label}"), |b| {
                b.iter_custom(|iters| fixture.run(size, iters));
            });
        }
    }
    group.finish();
}

criterion_group!(pubsub, benches);
criterion_main!(pubsub);
