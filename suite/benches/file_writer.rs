//! Benchmarks of project 5, against the chosen tree's real binary (a release build: run them
//! with `cargo xtask bench file-writer [--solutions]`), beside the physical limits measured in
//! the same run.
//!
//! - `limits/loopback-copy`: plain bytes through one loopback TCP socket in 1 MiB writes: no
//!   upload over loopback can be faster.
//! - `upload/streams-N`: `file-writer upload --parallel N` of one file (N = 1 is one plain
//!   upload; more are partial uploads concatenated into one final), 8 MiB chunks, from the start
//!   of the process to its exit, the upload deleted after each.
//! - `upload/chunk-S`: one stream, chunks of 1 to 64 MiB.
//! - `patch/4KiB-memory` and `patch/4KiB-disk`: PATCH requests per second of 4 KiB on one
//!   keep-alive connection, the server's directory in memory (fsync costs nothing) and on the
//!   disk (each PATCH's `sync_data` and record rename are real): the price of an honest offset.
//! - `fsync/per-chunk` and `fsync/at-end`: 64 MiB written to the disk in 1 MiB positioned
//!   writes, with `sync_data` after each chunk or once at the end, no server at all.
//!
//! The file is 128 MiB; `FW_BENCH_SIZE=1GiB` (any size in MiB or GiB) changes it. Uploads go
//! to `/dev/shm` where it exists; the disk benchmarks use `$TMPDIR`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use workbook_suite::binary::release_binary;
use workbook_suite::{Program, http};

/// The file size from `FW_BENCH_SIZE`, 128 MiB by default.
fn file_size() -> u64 {
    let text = std::env::var("FW_BENCH_SIZE").unwrap_or_else(|_| "128MiB".to_owned());
    let (digits, unit) = text
        .trim()
        .split_at(text.trim().trim_end_matches(char::is_alphabetic).len());
    let n: u64 = digits
        .parse()
        .unwrap_or_else(|_| panic!("FW_BENCH_SIZE={text:?}: expected e.g. 128MiB or 1GiB"));
    match unit {
        "MiB" => n << 20,
        "GiB" => n << 30,
        other => panic!("FW_BENCH_SIZE: unknown unit {other:?} (use MiB or GiB)"),
    }
}

/// A directory in memory where there is one, else on the disk.
fn in_memory() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).expect("a directory in /dev/shm")
    } else {
        tempfile::tempdir().expect("a temporary directory")
    }
}

/// Incompressible bytes (xorshift), the same every run.
fn pattern(len: usize) -> Vec<u8> {
    let mut x = 0x2545_F491_4F6C_DD1D_u64;
    (0..len.div_ceil(8))
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .take(len)
        .collect()
}

fn limits(c: &mut Criterion) {
    let mut group = c.benchmark_group("limits");
    group.sample_size(10);
    let total = 256u64 << 20;
    group.throughput(Throughput::Bytes(total));
    let block = pattern(1 << 20);
    group.bench_function("loopback-copy", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
                    let addr = listener.local_addr().expect("an address");
                    let block = block.clone();
                    let writer = std::thread::spawn(move || {
                        let mut out = TcpStream::connect(addr).expect("connect");
                        for _ in 0..total >> 20 {
                            out.write_all(&block).expect("write to loopback");
                        }
                    });
                    let (mut input, _) = listener.accept().expect("accept");
                    let start = Instant::now();
                    let mut sink = vec![0u8; 1 << 20];
                    let mut got = 0u64;
                    while got < total {
                        match input.read(&mut sink).expect("read from loopback") {
                            0 => break,
                            n => got += n as u64,
                        }
                    }
                    let elapsed = start.elapsed();
                    writer.join().expect("the writing thread");
                    assert_eq!(got, total, "the loopback copy lost bytes");
                    elapsed
                })
                .sum()
        });
    });
    group.finish();
}

/// A release `file-writer server` on a directory of its own.
struct Served {
    program: Program,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

fn serve(dir: tempfile::TempDir) -> Served {
    let dir_arg = dir.path().display().to_string();
    let (program, addr) =
        Program::start_server(&release_binary("file-writer"), &["--dir", &dir_arg]);
    Served {
        program,
        addr,
        _dir: dir,
    }
}

/// Runs one `file-writer upload` of `file` and deletes the upload; returns the upload's time.
fn upload_once(server: &mut Served, file: &Path, parallel: usize, chunk: &str) -> Duration {
    let to = format!("http://{}/files/", server.addr);
    let state = file.with_extension("state");
    let args = [
        "upload",
        "--to",
        &to,
        "--parallel",
        &parallel.to_string(),
        "--chunk-size",
        chunk,
        "--state",
        &state.display().to_string(),
        &file.display().to_string(),
    ];
    let start = Instant::now();
    let mut client = Program::start(&release_binary("file-writer"), &args);
    match client.wait_exit(Duration::from_secs(600)) {
        Some(status) if status.success() => {}
        _ => client.fail("the benchmark's upload did not succeed"),
    }
    let elapsed = start.elapsed();
    let mut url = None;
    while let Some(line) = client.next_line(Duration::from_secs(5)) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            url = v["url"].as_str().map(str::to_owned).or(url);
        }
    }
    let path = url
        .and_then(|u| u.find("/files/").map(|at| u[at..].to_owned()))
        .unwrap_or_else(|| client.fail("the upload printed no URL"));
    let headers = [("Tus-Resumable", "1.0.0")];
    let deleted = http::request(
        server.addr,
        "DELETE",
        &path,
        &headers,
        b"",
        Duration::from_secs(30),
    );
    if !matches!(deleted, Ok(ref reply) if reply.status == 204) {
        server
            .program
            .fail(format_args!("DELETE {path} after the upload: {deleted:?}"));
    }
    elapsed
}

fn upload(c: &mut Criterion) {
    let size = file_size();
    let work = in_memory();
    let file = work.path().join("upload.bin");
    std::fs::write(
        &file,
        pattern(usize::try_from(size).expect("fits in memory")),
    )
    .expect("write the file to upload");
    let mut server = serve(in_memory());
    let mut group = c.benchmark_group("upload");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Bytes(size));
    for parallel in [1, 2, 4, 8] {
        group.bench_with_input(BenchmarkId::new("streams", parallel), &parallel, |b, &n| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| upload_once(&mut server, &file, n, "8MiB"))
                    .sum()
            });
        });
    }
    for chunk in ["1MiB", "4MiB", "16MiB", "64MiB"] {
        group.bench_with_input(BenchmarkId::new("chunk", chunk), chunk, |b, chunk| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| upload_once(&mut server, &file, 1, chunk))
                    .sum()
            });
        });
    }
    group.finish();
}

/// PATCHes of `chunk` bytes, one after another on one keep-alive connection, into one upload
/// long enough for every one of them; returns the time of `count` of them.
fn patches(server: &Served, chunk: &[u8], count: u64) -> Duration {
    let tus = ("Tus-Resumable", "1.0.0");
    let length = (chunk.len() as u64 * count).to_string();
    let created = http::request(
        server.addr,
        "POST",
        "/files/",
        &[tus, ("Upload-Length", &length)],
        b"",
        Duration::from_secs(10),
    )
    .expect("POST an upload");
    let location = created.header("location").expect("a Location").to_owned();
    let path = location[location.find("/files/").expect("a /files/ URL")..].to_owned();
    let mut conn = TcpStream::connect(server.addr).expect("connect");
    // Each request leaves in one write, and at once: no 40 ms wait for an acknowledgement.
    conn.set_nodelay(true).expect("TCP_NODELAY");
    let start = Instant::now();
    for i in 0..count {
        let offset = i * chunk.len() as u64;
        // Kept alive: `http::request_bytes` asks for the connection to be closed.
        let head = format!(
            "PATCH {path} HTTP/1.1\r\nHost: {}\r\nTus-Resumable: 1.0.0\r\nContent-Type: \
             application/offset+octet-stream\r\nUpload-Offset: {offset}\r\nContent-Length: \
             {}\r\n\r\n",
            server.addr,
            chunk.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(chunk);
        conn.write_all(&request).expect("send a PATCH");
        let reply = http::read_reply(&mut conn, false, Duration::from_secs(30)).expect("a reply");
        assert_eq!(
            reply.status,
            204,
            "PATCH {path} at {offset}: {}",
            reply.summary()
        );
    }
    let elapsed = start.elapsed();
    let _ = http::request(
        server.addr,
        "DELETE",
        &path,
        &[tus],
        b"",
        Duration::from_secs(10),
    );
    elapsed
}

fn patch(c: &mut Criterion) {
    let chunk = pattern(4 << 10);
    let mut group = c.benchmark_group("patch");
    group.sample_size(10);
    group.throughput(Throughput::Elements(1));
    let servers = [
        ("4KiB-memory", serve(in_memory())),
        (
            "4KiB-disk",
            serve(tempfile::tempdir().expect("a directory on the disk")),
        ),
    ];
    for (name, server) in &servers {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| patches(server, &chunk, iters))
        });
    }
    group.finish();
}

fn fsync(c: &mut Criterion) {
    let chunk = pattern(1 << 20);
    let total = 64u64 << 20;
    let dir = tempfile::tempdir().expect("a directory on the disk");
    let path = dir.path().join("fsync.bin");
    let mut group = c.benchmark_group("fsync");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(total));
    for (name, every_chunk) in [("per-chunk", true), ("at-end", false)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let _ = std::fs::remove_file(&path);
                        let file = std::fs::File::create(&path).expect("create the file");
                        let start = Instant::now();
                        for at in (0..total).step_by(chunk.len()) {
                            file.write_all_at(&chunk, at).expect("write a chunk");
                            if every_chunk {
                                file.sync_data().expect("sync a chunk");
                            }
                        }
                        file.sync_data().expect("sync the file");
                        start.elapsed()
                    })
                    .sum()
            });
        });
    }
    group.finish();
}

criterion_group!(file_writer, limits, upload, patch, fsync);
criterion_main!(file_writer);
