//! Benchmarks of project 10, against the chosen tree's real binary (a release build: run them
//! with `cargo xtask bench file-transfer [--solutions]`), beside the two physical limits measured
//! in the same run. Each figure is a throughput in bytes per second.
//!
//! - `limits/sha256`: the `sha2` crate hashing one buffer on one core (it uses the CPU's SHA
//!   extensions when it has them): the receiver must hash every byte at least this fast.
//! - `limits/loopback-copy`: plain bytes through a loopback TCP socket, 1 MiB writes, no
//!   protocol: no transfer over that socket can be faster.
//! - `transfer/fresh`: `file-transfer send` of a whole file to a running receiver, from the start
//!   of the process to its exit (hashing, manifest, chunks, verification, fsync and rename).
//!
//! The file is 256 MiB; `FT_BENCH_SIZE=1GiB` (or any size in MiB/GiB) makes it the issue's
//! 1 GiB. Files live on `/dev/shm` where it exists, so that the disk is not what is measured
//! (neither limit involves one). For a side-by-side with rsync, see
//! `cargo xtask compare file-transfer`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sha2::{Digest, Sha256};
use workbook_suite::Program;
use workbook_suite::binary::release_binary;

/// The file size from `FT_BENCH_SIZE` (`256MiB`, `1GiB`), 256 MiB by default.
fn file_size() -> usize {
    let text = std::env::var("FT_BENCH_SIZE").unwrap_or_else(|_| "256MiB".to_owned());
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: usize = number
        .parse()
        .unwrap_or_else(|_| panic!("FT_BENCH_SIZE={text:?}: expected e.g. 256MiB or 1GiB"));
    match unit {
        "" | "B" => n,
        "KiB" => n << 10,
        "MiB" => n << 20,
        "GiB" => n << 30,
        other => panic!("FT_BENCH_SIZE: unknown unit {other:?} (use KiB, MiB or GiB)"),
    }
}

/// A scratch directory in memory where there is one.
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).expect("a directory in /dev/shm")
    } else {
        tempfile::tempdir().expect("a temporary directory")
    }
}

/// Deterministic, incompressible bytes.
fn data(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn limits(c: &mut Criterion) {
    let mut group = c.benchmark_group("limits");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    let buf = data(64 << 20);
    group.throughput(Throughput::Bytes(buf.len() as u64));
    group.bench_function("sha256", |b| b.iter(|| Sha256::digest(&buf)));

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    let total = 256u64 << 20;
    group.throughput(Throughput::Bytes(total));
    group.bench_function("loopback-copy", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                let mut sender = TcpStream::connect(addr).expect("connect");
                let (mut receiver, _) = listener.accept().expect("accept");
                let reader = std::thread::spawn(move || {
                    let mut sink = vec![0u8; 1 << 20];
                    let mut got = 0u64;
                    while got < total {
                        match receiver.read(&mut sink) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => got += n as u64,
                        }
                    }
                    got
                });
                let chunk = &buf[..1 << 20];
                let start = Instant::now();
                for _ in 0..total >> 20 {
                    sender.write_all(chunk).expect("write to loopback");
                }
                drop(sender);
                let got = reader.join().expect("the reading thread");
                elapsed += start.elapsed();
                assert_eq!(got, total, "loopback copy lost bytes");
            }
            elapsed
        });
    });
    group.finish();
}

fn transfer(c: &mut Criterion) {
    let size = file_size();
    let work = scratch();
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    std::fs::create_dir_all(&src).expect("source directory");
    let file: PathBuf = src.join("bench.bin");
    std::fs::write(&file, data(size)).expect("write the file to send");
    let binary = release_binary("file-transfer");
    let dst_arg = dst.display().to_string();
    let (mut receiver, addr) = Program::start_server(&binary, &["--dir", &dst_arg]);
    let to = addr.to_string();
    let file_arg = file.display().to_string();

    let mut group = c.benchmark_group("transfer");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Bytes(size as u64));
    group.bench_function("fresh", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let mut sender = Program::start(&binary, &["send", "--to", &to, &file_arg]);
                match sender.wait_exit(Duration::from_secs(600)) {
                    Some(status) if status.success() => {}
                    _ => sender.fail("the benchmark's send did not succeed"),
                }
                elapsed += start.elapsed();
                receiver.assert_running("benchmarking");
            }
            elapsed
        });
    });
    group.finish();
}

criterion_group!(file_transfer, limits, transfer);
criterion_main!(file_transfer);
