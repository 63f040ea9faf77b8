//! Project 10, file transfer over TCP with SHA-256 checksums, graded from the outside.
//!
//! Every test starts the real `file-transfer recv` (as `server`, its alias) on a temporary
//! directory and sends files to it with the real `file-transfer send`; some put the suite's fault
//! proxy in between (a flipped byte, a cut connection, a slow link), and the hostile stage talks
//! the protocol by hand. The outcome must always be a correct file or a clear error with no final
//! file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use rand::{Rng, RngExt};
use serde_json::Value;
use tempfile::TempDir;
use workbook_suite::framed::describe;
use workbook_suite::shown::{first_difference, hex_bytes, outcome};
use workbook_suite::transfer::{
    ACCEPT, CHUNK, COMPLETE, ERROR, Frame, MANIFEST, RESEND, SENT_ALL, TransferConn, chunk,
    content_hash, frame, hex, manifest, manifest_with, parse_manifest, sha256,
};
use workbook_suite::{Fault, FaultProxy, Program, binary, bounded, poll_until};

/// Every test's overall bound.
const LIMIT: Duration = Duration::from_secs(60);

/// How long an event or an answer that should come at once may take.
const PROMPT: Duration = Duration::from_secs(10);

/// How long one `send` may take (the slowest sends a few hundred KiB through a throttled proxy).
const SEND_LIMIT: Duration = Duration::from_secs(30);

fn bin() -> PathBuf {
    binary("file-transfer")
}

/// Deterministic bytes: the same on every run for the same seed.
fn seeded_bytes(seed: u64, len: usize) -> Vec<u8> {
    workbook_suite::seeded::bytes(seed, len)
}

/// A receiver under test, on its own temporary directory.
struct Receiver {
    program: Program,
    addr: SocketAddr,
    dir: TempDir,
}

impl Receiver {
    fn start(args: &[&str]) -> Receiver {
        Receiver::start_in(tempfile::tempdir().expect("a temporary directory"), args)
    }

    fn start_in(dir: TempDir, args: &[&str]) -> Receiver {
        let dir_arg = dir.path().display().to_string();
        let mut all = vec!["--dir", dir_arg.as_str()];
        all.extend_from_slice(args);
        let (program, addr) = Program::start_server(&bin(), &all);
        Receiver { program, addr, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Waits for the event `{"event": event, "name": name}` and returns it.
    #[track_caller]
    fn event(&mut self, event: &str, name: &str) -> Value {
        self.program.expect_json(
            format_args!("a JSON line with \"event\": {event:?} and \"name\": {name:?}"),
            PROMPT,
            |v| v["event"] == event && v["name"] == name,
        )
    }

    /// The visible (not dot-) files in the directory.
    fn final_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Fails unless `name` holds exactly `expected`.
    #[track_caller]
    fn assert_file(&mut self, name: &str, expected: &[u8]) {
        match std::fs::read(self.path(name)) {
            Ok(got) if got == expected => {}
            Ok(got) => {
                self.program.fail(format_args!(
                    "{name} arrived with {} bytes, expected {} bytes; {}",
                    got.len(),
                    expected.len(),
                    first_difference(&got, expected)
                ))
            }
            Err(e) => self.program.fail(format_args!(
                "expected {name} in the receiver's directory, it is not there ({e}); files there: {:?}",
                self.final_files()
            )),
        }
    }

    /// Fails if a file named `name` exists.
    #[track_caller]
    fn assert_absent(&mut self, name: &str, after: &str) {
        if self.path(name).exists() {
            self.program.fail(format_args!(
                "after {after}, expected no file {name} in the receiver's directory, but it is there"
            ));
        }
    }
}

/// A finished `send`.
struct Sent {
    status: ExitStatus,
    stdout: Vec<String>,
    program: Program,
}

/// Writes `data` as `name` in `dir` and returns its path.
fn file(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).expect("write a file to send");
    path
}

fn start_send(to: SocketAddr, files: &[&Path], extra: &[&str]) -> Program {
    let to = to.to_string();
    let mut args = vec!["send", "--to", to.as_str()];
    let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    args.extend(paths.iter().map(String::as_str));
    args.extend_from_slice(extra);
    Program::start(&bin(), &args)
}

/// Waits for a started `send` to end.
fn finish(mut program: Program, recv: &mut Receiver) -> Sent {
    let Some(status) = program.wait_exit(SEND_LIMIT) else {
        let sender = program.diagnosis();
        recv.program.fail(format_args!(
            "`send` did not finish within {SEND_LIMIT:?}\nthe sender: {sender}the receiver:"
        ));
    };
    let mut stdout = Vec::new();
    while let Some(line) = program.next_line(Duration::from_millis(200)) {
        stdout.push(line);
    }
    Sent {
        status,
        stdout,
        program,
    }
}

/// Runs `send --to ADDR FILES... EXTRA...` to its end.
fn send(recv: &mut Receiver, to: SocketAddr, files: &[&Path], extra: &[&str]) -> Sent {
    let program = start_send(to, files, extra);
    finish(program, recv)
}

/// Like `send`, and fails unless it succeeded.
#[track_caller]
fn send_ok(recv: &mut Receiver, files: &[&Path], extra: &[&str]) -> Sent {
    let addr = recv.addr;
    let mut sent = send(recv, addr, files, extra);
    if !sent.status.success() {
        let sender = sent.program.diagnosis();
        recv.program.fail(format_args!(
            "sent {} with {}: expected `send` to succeed, it exited ({})\nthe sender: {sender}the receiver:",
            files
                .iter()
                .map(|f| f.file_name().map_or(f.display().to_string(), |n| n.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(", "),
            if extra.is_empty() {
                "no options".to_owned()
            } else {
                format!("`{}`", extra.join(" "))
            },
            sent.status
        ));
    }
    sent
}

/// Fails unless a `send` failed with an `error:` line on stderr that contains `says`.
#[track_caller]
fn assert_send_failed(recv: &mut Receiver, sent: &mut Sent, doing: &str, says: &str) {
    let stderr = sent.program.final_stderr();
    if sent.status.success() || !stderr.contains("error:") || !stderr.contains(says) {
        let sender = sent.program.diagnosis();
        recv.program.fail(format_args!(
            "{doing}: expected `send` to fail with an `error:` line saying {says:?}; it exited ({}) with stdout {:?}\nthe sender: {sender}the receiver:",
            sent.status, sent.stdout
        ));
    }
}

/// Fails unless a running `send` fails within PROMPT, before it has read or sent any more, with
/// `says` on stderr.
#[track_caller]
fn assert_fails_at_once(sender: &mut Program, doing: &str, says: &str) {
    let status = sender.wait_exit(PROMPT);
    let stderr = sender.final_stderr();
    if status.is_none_or(|s| s.success()) || !stderr.contains(says) {
        sender.fail(format_args!(
            "{doing}; expected `send` to fail at once with an `error:` line saying {says:?}, it \
             {}",
            status.map_or("was still running".to_owned(), |s| format!("exited ({s})"))
        ));
    }
}

/// A hand-driven peer, for the tests that count bytes or lie.
struct Raw {
    conn: TransferConn,
}

impl Raw {
    fn connect(recv: &mut Receiver) -> Raw {
        match TransferConn::connect(recv.addr) {
            Ok(conn) => Raw { conn },
            Err(e) => recv
                .program
                .fail(format_args!("cannot connect to {}: {e}", recv.addr)),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        // The receiver may already have refused and closed: what it said is what matters.
        let _ = self.conn.send_raw(bytes);
    }

    /// The next frame, or what came instead.
    fn read_frame(&mut self, timeout: Duration) -> Result<Frame, String> {
        self.conn.read(timeout).map_err(|no| no.after(timeout))
    }

    /// Reads frames until one of kind `end` (COMPLETE, or an ERROR with a message), PROMPT in
    /// all, and returns the chunks asked for again on the way (ACCEPT and RESEND may come
    /// first) and the last frame's body.
    #[track_caller]
    fn until(&mut self, recv: &mut Receiver, sent: &str, end: u8) -> (Vec<u32>, Vec<u8>) {
        let deadline = Instant::now() + PROMPT;
        let mut resends = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // Read directly, not through `read_frame`: a timeout here is after PROMPT in all.
            let got = self.conn.read(left.max(Duration::from_millis(1)));
            match got {
                Ok(Frame { kind, body }) if kind == end && (kind != ERROR || !body.is_empty()) => {
                    return (resends, body);
                }
                Ok(Frame { kind: ACCEPT, .. }) => {}
                Ok(Frame { kind: RESEND, body }) if body.len() == 4 => {
                    resends.push(u32::from_be_bytes([body[0], body[1], body[2], body[3]]));
                }
                other => recv.program.fail(format_args!(
                    "sent {sent}; expected {}, got {}",
                    if end == ERROR {
                        "an ERROR frame (type 0x84) with a message"
                    } else {
                        "COMPLETE (type 0x83)"
                    },
                    describe(&other, PROMPT)
                )),
            }
        }
    }

    /// Reads frames until an ERROR, and returns its message (ACCEPT and RESEND may come first).
    #[track_caller]
    fn expect_error(&mut self, recv: &mut Receiver, sent: &str) -> String {
        let (_, body) = self.until(recv, sent, ERROR);
        String::from_utf8_lossy(&body).into_owned()
    }
}

/// The suite playing the receiver, to hold a real sender to the contract: it reads the sender's
/// frames with its own parser and answers with its own encoding.
struct FakeReceiver {
    listener: std::net::TcpListener,
    stream: Option<std::net::TcpStream>,
    wire: Vec<u8>,
}

impl FakeReceiver {
    fn bind() -> FakeReceiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
        FakeReceiver {
            listener,
            stream: None,
            wire: Vec::new(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("the listener's address")
    }

    /// Waits for the sender to connect; fails with what `sender` said if it never does, as soon
    /// as it has exited without connecting.
    fn accept(&mut self, r: &mut Receiver, sender: &mut Program, doing: &str) {
        let Some(stream) = sender.accept_while_running(&self.listener, PROMPT) else {
            let said = sender.diagnosis();
            r.program.fail(format_args!(
                "{doing}: the sender never connected to the suite's listener\nthe sender: {said}"
            ));
        };
        stream.set_read_timeout(Some(PROMPT)).unwrap();
        self.stream = Some(stream);
    }

    /// The sender's next frame, read with the suite's own parser.
    fn read_frame(&mut self) -> Result<Frame, String> {
        let stream = self.stream.as_mut().expect("accepted");
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            if let Some((frame, used)) = workbook_suite::transfer::parse_any(&self.wire)? {
                self.wire.drain(..used);
                return Ok(frame);
            }
            match std::io::Read::read(stream, &mut buf) {
                Ok(0) => {
                    return Err(format!(
                        "the sender closed after {} more bytes",
                        self.wire.len()
                    ));
                }
                Ok(n) => self.wire.extend_from_slice(&buf[..n]),
                Err(e) => return Err(format!("{e} after {} more bytes", self.wire.len())),
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        let stream = self.stream.as_mut().expect("accepted");
        let _ = std::io::Write::write_all(stream, bytes);
    }

    /// The sender's first frame, which must be a MANIFEST.
    fn expect_manifest(&mut self, r: &mut Receiver) {
        match self.read_frame() {
            Ok(Frame { kind: MANIFEST, .. }) => {}
            other => r.program.fail(format_args!(
                "expected the sender's first frame to be MANIFEST (type 0x01), got {}",
                outcome(&other)
            )),
        }
    }

    /// CHUNK frames up to SENT_ALL, each checked against `data` in chunks of `chunk` bytes:
    /// their indices, sorted.
    fn round(&mut self, r: &mut Receiver, data: &[u8], chunk: usize) -> Vec<u32> {
        let mut got = Vec::new();
        loop {
            match self.read_frame() {
                Ok(Frame { kind: CHUNK, body }) if body.len() >= 4 => {
                    let index = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                    let start = index as usize * chunk;
                    if data.get(start..(start + chunk).min(data.len())) != Some(&body[4..]) {
                        r.program.fail(format_args!(
                            "the sender's CHUNK {index} holds {} bytes that are not the file's \
                             bytes {start}..",
                            body.len() - 4
                        ));
                    }
                    got.push(index);
                }
                Ok(Frame { kind: SENT_ALL, .. }) => break,
                other => r.program.fail(format_args!(
                    "after ACCEPT, expected CHUNK frames then SENT_ALL from the sender, got {}",
                    outcome(&other)
                )),
            }
        }
        got.sort_unstable();
        got
    }
}

mod stage1_small_file {
    use super::*;

    #[test]
    fn a_small_file_arrives_byte_for_byte() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let src = tempfile::tempdir().unwrap();
            let data = b"Hello, receiver.\nThis is a small file.\n".to_vec();
            let path = file(src.path(), "hello.txt", &data);
            let sent = send_ok(&mut r, &[&path], &[]);
            r.event("complete", "hello.txt");
            r.assert_file("hello.txt", &data);
            let files = r.final_files();
            if files != ["hello.txt"] {
                r.program.fail(format_args!(
                    "after one transfer, expected only hello.txt in the directory, found {files:?}"
                ));
            }
            let last = sent.stdout.last().cloned().unwrap_or_default();
            if !last.contains("/s") {
                r.program.fail(format_args!(
                    "expected the sender's last stdout line to give the rate (like `hello.txt: sent 39 B in 0.01s, 3.8 KiB/s`), got {:?}",
                    sent.stdout
                ));
            }
        });
    }

    #[test]
    fn an_empty_file_arrives_empty() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let src = tempfile::tempdir().unwrap();
            let path = file(src.path(), "empty", b"");
            send_ok(&mut r, &[&path], &[]);
            r.event("complete", "empty");
            r.assert_file("empty", b"");
        });
    }

    #[test]
    fn several_files_in_one_send() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let src = tempfile::tempdir().unwrap();
            let files: Vec<(String, Vec<u8>)> = (0..3)
                .map(|i| {
                    (
                        format!("part-{i}.dat"),
                        seeded_bytes(i, 3000 + i as usize * 1000),
                    )
                })
                .collect();
            let paths: Vec<PathBuf> = files.iter().map(|(n, d)| file(src.path(), n, d)).collect();
            let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
            send_ok(&mut r, &refs, &[]);
            for (name, data) in &files {
                r.event("complete", name);
                r.assert_file(name, data);
            }
        });
    }

    #[test]
    fn a_file_that_exists_is_replaced_whole() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            std::fs::write(
                r.path("notes.txt"),
                b"an old version, longer than the new one",
            )
            .unwrap();
            let src = tempfile::tempdir().unwrap();
            let path = file(src.path(), "notes.txt", b"new");
            send_ok(&mut r, &[&path], &[]);
            r.event("complete", "notes.txt");
            r.assert_file("notes.txt", b"new");
        });
    }

    #[test]
    fn no_receiver_is_a_clear_error() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let src = tempfile::tempdir().unwrap();
            let path = file(src.path(), "lonely.txt", b"nobody listens");
            // A port that was free a moment ago: nothing listens there.
            let closed = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap();
            let mut sent = send(&mut r, closed, &[&path], &[]);
            assert_send_failed(
                &mut r,
                &mut sent,
                "sending to a port where nothing listens",
                "lonely.txt",
            );
        });
    }

    #[test]
    fn sigterm_stops_the_receiver_cleanly() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let src = tempfile::tempdir().unwrap();
            let path = file(src.path(), "before.txt", b"sent before the signal");
            send_ok(&mut r, &[&path], &[]);
            r.event("complete", "before.txt");
            let _idle = Raw::connect(&mut r);
            r.program.terminate();
            match r.program.wait_exit(PROMPT) {
                Some(status) if status.success() => {}
                Some(status) => r.program.fail(format_args!(
                    "after SIGTERM with a sender connected, expected a clean exit (status 0), got {status}"
                )),
                None => r.program.fail(format_args!(
                    "after SIGTERM with a sender connected, expected the receiver to exit within {PROMPT:?}"
                )),
            }
        });
    }
}

mod stage2_many_chunks {
    use super::*;

    #[test]
    fn eight_mebibytes_in_64_kib_chunks() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let src = tempfile::tempdir().unwrap();
            let data = seeded_bytes(2, 8 << 20);
            let path = file(src.path(), "big.bin", &data);
            let sent = send_ok(&mut r, &[&path], &["--chunk-size", "64KiB"]);
            // Not a terminal: plain progress lines, each whole tenth once and in order (128
            // chunks reach every one of them), never 100% (the last line says "sent").
            let tenths: Vec<String> = sent
                .stdout
                .iter()
                .filter_map(|l| l.strip_prefix("big.bin: "))
                .filter_map(|l| l.split_once("% (").map(|(pct, _)| pct.to_owned()))
                .collect();
            let expected: Vec<String> = (1..=9).map(|t| (t * 10).to_string()).collect();
            if tenths != expected {
                r.program.fail(format_args!(
                    "sent 8 MiB in 128 chunks with stdout not a terminal; expected the progress \
                     lines `big.bin: 10% (...)` to `big.bin: 90% (...)`, each once and in order, \
                     got the percentages {} in the lines {}",
                    workbook_suite::shown::listed(&tenths, "none"),
                    workbook_suite::shown::listed(&sent.stdout, "none")
                ));
            }
            for line in [
                "big.bin: hashing 8.0 MiB in 128 chunks of 64.0 KiB",
                "big.bin: sending 8.0 MiB",
            ] {
                if !sent.stdout.iter().any(|l| l == line) {
                    r.program.fail(format_args!(
                        "sent 8 MiB with stdout not a terminal; expected the line `{line}`, got \
                         the lines {}",
                        workbook_suite::shown::listed(&sent.stdout, "none")
                    ));
                }
            }
            let started = r.event("started", "big.bin");
            if started["chunks"] != 128
                || started["chunk_size"] != 65536
                || started["size"] != 8 << 20
            {
                r.program.fail(format_args!(
                    "sent 8 MiB with --chunk-size 64KiB; expected a started event with \"size\": 8388608, \"chunk_size\": 65536, \"chunks\": 128, got {started}"
                ));
            }
            r.event("complete", "big.bin");
            r.assert_file("big.bin", &data);
        });
    }

    #[test]
    fn a_last_chunk_shorter_than_the_others() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let src = tempfile::tempdir().unwrap();
            let data = seeded_bytes(3, 100_000);
            let path = file(src.path(), "odd.bin", &data);
            send_ok(&mut r, &[&path], &["--chunk-size", "4KiB"]);
            let started = r.event("started", "odd.bin");
            if started["chunks"] != 25 {
                r.program.fail(format_args!(
                    "sent 100000 bytes in 4096-byte chunks; expected \"chunks\": 25 (the last one 1696 bytes), got {started}"
                ));
            }
            r.event("complete", "odd.bin");
            r.assert_file("odd.bin", &data);
        });
    }

    #[test]
    fn the_default_chunk_size_is_one_block_of_4_mib() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let src = tempfile::tempdir().unwrap();
            let data = seeded_bytes(4, (4 << 20) + 5);
            let path = file(src.path(), "default.bin", &data);
            send_ok(&mut r, &[&path], &[]);
            let started = r.event("started", "default.bin");
            if started["chunk_size"] != 4 << 20 || started["chunks"] != 2 {
                r.program.fail(format_args!(
                    "sent 4 MiB + 5 bytes with no --chunk-size; expected \"chunk_size\": 4194304 and \"chunks\": 2, got {started}"
                ));
            }
            r.event("complete", "default.bin");
            r.assert_file("default.bin", &data);
        });
    }

    /// Chunk sizes at the edge of 262,144 chunks, on sparse files of up to 4 TiB: the sender's
    /// `hashing` line names the chunk size it chose before it reads a byte, and the test stops
    /// it there (hashing 1 TiB would take minutes). The default doubles; a size asked for does
    /// not, and one that makes too many chunks is refused.
    #[test]
    fn chunk_sizes_at_the_edge_of_262144_chunks() {
        const TIB: u64 = 1 << 40;
        bounded(LIMIT, || {
            let src = tempfile::tempdir().unwrap();
            let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free loopback address");
            let path = src.path().join("sparse.bin");
            let one_kib: &[&str] = &["--chunk-size", "1KiB"];
            let cases = [
                (TIB, &[][..], Ok("262144 chunks of 4.0 MiB")),
                (TIB + 1, &[], Ok("131073 chunks of 8.0 MiB")),
                (4 * TIB, &[], Ok("262144 chunks of 16.0 MiB")),
                (4 * TIB + 1, &[], Err("too large")),
                (256 << 20, one_kib, Ok("262144 chunks of 1.0 KiB")),
                ((256 << 20) + 1, one_kib, Err("more than 262144 chunks")),
            ];
            for (size, args, chunks) in cases {
                let with = match args {
                    [] => "no --chunk-size".to_owned(),
                    args => format!("`{}`", args.join(" ")),
                };
                let sparse = std::fs::File::create(&path).and_then(|f| f.set_len(size));
                if let Err(e) = sparse {
                    eprintln!(
                        "skipped: this file system cannot hold a sparse file of {size} bytes ({e})"
                    );
                    return;
                }
                let mut sender = start_send(nowhere, &[&path], args);
                match chunks {
                    Ok(chunks) => {
                        let line = sender.next_line(PROMPT);
                        let said = line.as_deref().and_then(|l| {
                            l.strip_prefix("sparse.bin: hashing ")?.split_once(" in ")
                        });
                        if said.map(|(_, c)| c) != Some(chunks) {
                            sender.fail(format_args!(
                                "sent a sparse file of {size} bytes with {with}; expected its \
                                 first line to end `in {chunks}`, got {line:?}"
                            ));
                        }
                    }
                    Err(says) => assert_fails_at_once(
                        &mut sender,
                        &format!("sent a sparse file of {size} bytes with {with}"),
                        says,
                    ),
                }
            }
        });
    }

    /// 4 MiB and 3 bytes: two blocks of the content hash, the last of 3 bytes.
    fn two_blocks() -> Vec<u8> {
        seeded_bytes(40, (4 << 20) + 3)
    }

    #[test]
    fn the_whole_file_hash_is_the_content_hash_of_4_mib_blocks() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let data = two_blocks();
            let chunks: Vec<&[u8]> = data.chunks(1 << 20).collect();
            // Chunks of 1 MiB, so that the receiver must hash the blocks on their own; first with
            // the plain SHA-256 of the file where the content hash belongs: a lie.
            for (name, file_hash, honest) in [
                ("plain.bin", sha256(&data), false),
                ("content.bin", content_hash(&data), true),
            ] {
                let hashes: Vec<[u8; 32]> = chunks.iter().map(|c| sha256(c)).collect();
                let body = manifest_with(
                    name.as_bytes(),
                    data.len() as u64,
                    1 << 20,
                    file_hash,
                    &hashes,
                );
                let mut peer = Raw::connect(&mut r);
                let mut wire = frame(MANIFEST, &body);
                for (i, c) in chunks.iter().enumerate() {
                    wire.extend(chunk(i as u32, c));
                }
                wire.extend(frame(SENT_ALL, &[]));
                peer.send(&wire);
                let sent = format!(
                    "{name}: 4 MiB + 3 bytes in 1 MiB chunks, its manifest's whole-file hash {}",
                    if honest {
                        "the content hash (SHA-256 of the SHA-256 of each 4 MiB block)"
                    } else {
                        "the plain SHA-256 of the file"
                    }
                );
                if honest {
                    let (resends, _) = peer.until(&mut r, &sent, COMPLETE);
                    if !resends.is_empty() {
                        r.program.fail(format_args!(
                            "sent {sent}; expected ACCEPT then COMPLETE, got RESENDs of the \
                             chunks {resends:?}"
                        ));
                    }
                    r.assert_file(name, &data);
                } else {
                    peer.expect_error(&mut r, &sent);
                    r.assert_absent(name, "a whole-file hash that was not the content hash");
                }
            }
        });
    }

    #[test]
    fn the_sender_declares_the_content_hash() {
        bounded(LIMIT, || {
            // The suite plays the receiver: it reads the real sender's manifest and checks it
            // against its own hashing of the file, then refuses it.
            let mut r = Receiver::start(&[]);
            let mut fake = FakeReceiver::bind();
            let src = tempfile::tempdir().unwrap();
            let data = two_blocks();
            let path = file(src.path(), "declared.bin", &data);
            let mut sender = start_send(fake.addr(), &[&path], &["--chunk-size", "1MiB"]);
            fake.accept(&mut r, &mut sender, "sending declared.bin");
            let fields = match fake.read_frame() {
                Ok(Frame {
                    kind: MANIFEST,
                    body,
                }) => parse_manifest(&body),
                Ok(other) => Err(format!("the frame {other}")),
                Err(e) => Err(e),
            };
            let expected: Vec<[u8; 32]> = data.chunks(1 << 20).map(sha256).collect();
            match fields {
                Ok(f) if f.file_hash == content_hash(&data) && f.chunk_hashes == expected => {}
                Ok(f) => r.program.fail(format_args!(
                    "sent 4 MiB + 3 bytes with --chunk-size 1MiB; expected a manifest with the content hash {} and 5 chunk hashes, got the whole-file hash {} (the plain SHA-256 is {}) and {} chunk hashes, {} of them right",
                    hex(&content_hash(&data)),
                    hex(&f.file_hash),
                    hex(&sha256(&data)),
                    f.chunk_hashes.len(),
                    f.chunk_hashes.iter().zip(&expected).filter(|(a, b)| a == b).count()
                )),
                Err(e) => r.program.fail(format_args!(
                    "expected the sender's first frame to be a MANIFEST (type 0x01) the contract can read, got {e}"
                )),
            }
            fake.send(&frame(ERROR, b"checked; enough"));
            drop(fake);
            let _ = finish(sender, &mut r);
        });
    }

    #[test]
    fn sha256_on_both_sides_gives_sha256sums_digest() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&["--sha256"]);
            let src = tempfile::tempdir().unwrap();
            let data = seeded_bytes(41, (5 << 20) + 17);
            let path = file(src.path(), "summed.bin", &data);
            let sent = send_ok(&mut r, &[&path], &["--sha256"]);
            let line = format!("{}  summed.bin", hex(&sha256(&data)));
            if !sent.stdout.contains(&line) {
                r.program.fail(format_args!(
                    "sent summed.bin with `send --sha256`; expected the stdout line {line:?} (as sha256sum prints it), got {:?}",
                    sent.stdout
                ));
            }
            let complete = r.event("complete", "summed.bin");
            if complete["sha256"] != hex(&sha256(&data)) {
                r.program.fail(format_args!(
                    "received summed.bin with `recv --sha256`; expected \"sha256\": {:?} in the complete event, got {complete}",
                    hex(&sha256(&data))
                ));
            }
            r.assert_file("summed.bin", &data);
        });
    }

    #[test]
    fn a_chunk_size_out_of_range_is_refused_by_the_sender() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let src = tempfile::tempdir().unwrap();
            let path = file(src.path(), "tiny-chunks.bin", &seeded_bytes(5, 10_000));
            // Nothing listens there: only the sender's own check can say "chunk size" (the
            // receiver would refuse the manifest too, and that must not count).
            let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free loopback address");
            let mut sent = send(&mut r, nowhere, &[&path], &["--chunk-size", "100"]);
            assert_send_failed(
                &mut r,
                &mut sent,
                "sending with --chunk-size 100",
                "chunk size",
            );
            r.assert_absent("tiny-chunks.bin", "a refused chunk size");
        });
    }
}

mod stage3_corruption {
    use super::*;

    /// Bytes on the wire before chunk `index`'s data, for a file of `len` bytes in `chunk`-sized
    /// chunks, all sent in order.
    fn data_offset(name: &str, len: usize, chunk: usize, index: usize) -> u64 {
        let manifest = 5 + 1 + 2 + name.len() + 8 + 4 + 32 + 4 + 32 * len.div_ceil(chunk) + 32;
        (manifest + index * (5 + 4 + chunk) + 5 + 4) as u64
    }

    /// The suite plays the receiver of `name` (`data` in 4 KiB chunks): it reads the real
    /// sender's MANIFEST, answers ACCEPT with nothing held and reads the first round. The file
    /// lives in `src`.
    fn fake_first_round(
        r: &mut Receiver,
        src: &Path,
        name: &str,
        data: &[u8],
    ) -> (FakeReceiver, Program) {
        let path = file(src, name, data);
        let mut fake = FakeReceiver::bind();
        let mut sender = start_send(fake.addr(), &[&path], &["--chunk-size", "4KiB"]);
        fake.accept(r, &mut sender, &format!("sending {name}"));
        fake.expect_manifest(r);
        let chunks = data.len().div_ceil(4096) as u32;
        let mut accept = chunks.to_be_bytes().to_vec();
        accept.resize(4 + chunks.div_ceil(8) as usize, 0);
        fake.send(&frame(ACCEPT, &accept));
        let first = fake.round(r, data, 4096);
        if first != (0..chunks).collect::<Vec<_>>() {
            r.program.fail(format_args!(
                "answered ACCEPT with none of {chunks} chunks held; expected each chunk once \
                 then SENT_ALL, got the chunks {first:?}"
            ));
        }
        (fake, sender)
    }

    #[test]
    fn the_sender_sends_again_what_the_receiver_asks_for() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let data = seeded_bytes(45, 4 * 4096 - 100);
            let src = tempfile::tempdir().unwrap();
            let (mut fake, sender) = fake_first_round(&mut r, src.path(), "again.bin", &data);
            let mut wire = frame(RESEND, &2u32.to_be_bytes());
            wire.extend(frame(RESEND, &0u32.to_be_bytes()));
            fake.send(&wire);
            // One round or two: RESEND 0 may reach the sender after it has sent chunk 2 and
            // said SENT_ALL.
            let mut second = fake.round(&mut r, &data, 4096);
            if second.len() < 2 {
                second.extend(fake.round(&mut r, &data, 4096));
                second.sort_unstable();
            }
            if second != [0, 2] {
                r.program.fail(format_args!(
                    "after the first round of again.bin, answered RESEND 2 and RESEND 0; \
                     expected chunks 0 and 2 once each (in one round or two, each ending in \
                     SENT_ALL), got the chunks {second:?}"
                ));
            }
            fake.send(&frame(COMPLETE, &[]));
            let sent = finish(sender, &mut r);
            let last = sent.stdout.last().cloned().unwrap_or_default();
            let says = "6 of 4 chunks sent, 0 already received, 2 re-sent";
            if !sent.status.success() || !last.contains(says) {
                r.program.fail(format_args!(
                    "after two RESENDs and COMPLETE, expected `send` to succeed and say {says:?}; \
                     it exited ({}) with stdout {:?}",
                    sent.status, sent.stdout
                ));
            }
        });
    }

    #[test]
    fn a_receiver_that_asks_past_the_last_chunk_or_gives_up_fails_the_file() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let data = seeded_bytes(46, 4 * 4096 - 100);
            let src = tempfile::tempdir().unwrap();
            // `send` names a file that fails as it was given, here its whole path.
            let error = format!("error: {}: ", src.path().join("nonsense.bin").display());
            for (answer, what, says) in [
                (
                    frame(RESEND, &4u32.to_be_bytes()),
                    "RESEND 4 (of chunks 0 to 3)",
                    "chunk 4",
                ),
                (
                    frame(ERROR, b"the disk is full"),
                    "an ERROR",
                    "the disk is full",
                ),
            ] {
                let (mut fake, sender) =
                    fake_first_round(&mut r, src.path(), "nonsense.bin", &data);
                fake.send(&answer);
                let mut sent = finish(sender, &mut r);
                let stderr = sent.program.final_stderr();
                let line = stderr.lines().find(|l| l.starts_with(&error));
                if sent.status.success()
                    || stderr.contains("panicked")
                    || !line.is_some_and(|l| l.contains(says))
                {
                    r.program.fail(format_args!(
                        "after the first round of nonsense.bin (4 chunks), answered {what}; \
                         expected `send` to fail with a line `{error}...` saying {says:?}, it \
                         exited ({}) with stderr {stderr:?}",
                        sent.status
                    ));
                }
            }
        });
    }

    #[test]
    fn a_flipped_byte_is_detected_and_the_chunk_sent_again() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let src = tempfile::tempdir().unwrap();
            let data = seeded_bytes(6, 64 * 1024);
            let path = file(src.path(), "flip.bin", &data);
            let at = data_offset("flip.bin", data.len(), 4096, 3) + 100;
            let proxy = FaultProxy::start(r.addr, Fault::FlipByte(at)).unwrap();
            let mut sent = send(&mut r, proxy.addr(), &[&path], &["--chunk-size", "4KiB"]);
            if !sent.status.success() {
                let sender = sent.program.diagnosis();
                r.program.fail(format_args!(
                    "with one byte of chunk 3 flipped in transit (stream offset {at}), expected the receiver to ask for chunk 3 again and the transfer to succeed; `send` exited ({})\nthe sender: {sender}the receiver:",
                    sent.status
                ));
            }
            let resent = r.event("resent", "flip.bin");
            if resent["chunk"] != 3 {
                r.program.fail(format_args!(
                    "flipped a byte of chunk 3; expected a `resent` event for \"chunk\": 3, got {resent}"
                ));
            }
            let complete = r.event("complete", "flip.bin");
            if complete["resent"].as_u64().unwrap_or(0) < 1 {
                r.program.fail(format_args!(
                    "flipped a byte of chunk 3; expected the complete event to count \"resent\" >= 1, got {complete}"
                ));
            }
            r.assert_file("flip.bin", &data);
        });
    }

    #[test]
    fn a_chunk_sent_again_still_gives_the_plain_sha256() {
        bounded(LIMIT, || {
            // Chunk 3 is flipped in transit and lands last, after the chunks behind it: the
            // plain hash must still take the chunks in the file's order.
            let mut r = Receiver::start(&["--sha256"]);
            let src = tempfile::tempdir().unwrap();
            let data = seeded_bytes(16, 64 * 1024);
            let path = file(src.path(), "flip-summed.bin", &data);
            let at = data_offset("flip-summed.bin", data.len(), 4096, 3) + 100;
            let proxy = FaultProxy::start(r.addr, Fault::FlipByte(at)).unwrap();
            let mut sent = send(&mut r, proxy.addr(), &[&path], &["--chunk-size", "4KiB"]);
            if !sent.status.success() {
                let sender = sent.program.diagnosis();
                r.program.fail(format_args!(
                    "with `recv --sha256` and one byte of chunk 3 flipped in transit, expected the \
                     transfer to succeed; `send` exited ({})\nthe sender: {sender}the receiver:",
                    sent.status
                ));
            }
            let complete = r.event("complete", "flip-summed.bin");
            let want = hex(&sha256(&data));
            if complete["sha256"] != want.as_str() {
                r.program.fail(format_args!(
                    "with `recv --sha256`, chunk 3 of 16 flipped in transit and sent again after \
                     the others: expected \"sha256\": \"{want}\" in the complete event, got \
                     {complete}"
                ));
            }
            r.assert_file("flip-summed.bin", &data);
        });
    }

    #[test]
    fn a_chunk_sent_twice_changes_nothing() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let data = seeded_bytes(22, 10_000);
            let chunks: Vec<&[u8]> = data.chunks(4096).collect();
            let mut peer = Raw::connect(&mut r);
            let mut wire = frame(MANIFEST, &manifest("twice.bin", &data, 4096));
            // Chunk 1 twice in a row, chunk 0 again after it has landed, then the rest.
            for i in [1usize, 1, 0, 0, 2] {
                wire.extend(chunk(i as u32, chunks[i]));
            }
            wire.extend(frame(SENT_ALL, &[]));
            peer.send(&wire);
            let sent = "chunks 1, 1, 0, 0, 2 of twice.bin (all correct) and SENT_ALL";
            let (resends, _) = peer.until(&mut r, sent, COMPLETE);
            if !resends.is_empty() {
                r.program.fail(format_args!(
                    "sent {sent}; expected ACCEPT then COMPLETE, got RESENDs of the chunks \
                     {resends:?}"
                ));
            }
            r.assert_file("twice.bin", &data);
        });
    }

    #[test]
    fn a_flip_anywhere_yields_the_right_file_or_a_clear_error() {
        bounded(LIMIT, || {
            // A short frame timeout: a flip in a length field can leave the receiver waiting for
            // bytes that will never come.
            let mut r = Receiver::start(&["--frame-timeout", "2s"]);
            let src = tempfile::tempdir().unwrap();
            let data = seeded_bytes(7, 48 * 1024);
            let mut rng = workbook_suite::seeded::rng(0xF11B);
            // Up to the end of the last chunk: manifest, headers and data alike.
            let stream_len = data_offset("trial-00.bin", data.len(), 4096, 12) - 9;
            for trial in 0..10 {
                let name = format!("trial-{trial:02}.bin");
                let path = file(src.path(), &name, &data);
                let at = rng.random_range(0..stream_len);
                let proxy = FaultProxy::start(r.addr, Fault::FlipByte(at)).unwrap();
                let mut sent = send(&mut r, proxy.addr(), &[&path], &["--chunk-size", "4KiB"]);
                if sent.status.success() {
                    r.assert_file(&name, &data);
                } else {
                    let stderr = sent.program.final_stderr();
                    if !stderr.contains("error:") {
                        let sender = sent.program.diagnosis();
                        r.program.fail(format_args!(
                            "trial {trial}: flipped the byte at stream offset {at}; `send` failed ({}) without an `error:` line\nthe sender: {sender}the receiver:",
                            sent.status
                        ));
                    }
                    r.assert_absent(&name, &format!("a failed transfer (byte {at} flipped)"));
                }
                r.program
                    .assert_running(format_args!("trial {trial} (byte {at} flipped)"));
            }
            // A panicking task closes its connection, which this stage counts as an error: say
            // so anyway, since stage 6 will not forgive it.
            if let Some(panic) = workbook_suite::program::panic_summary(&r.program.stderr()) {
                workbook_suite::shown::notice(format_args!(
                    "the receiver panicked in a trial (the transfer ended as an error, so this \
                     stage passes; stage 6 fails a receiver that panics on bad input): {panic}"
                ));
            }
        });
    }
}

mod stage4_resume {
    use super::*;

    /// Sends 4 MiB in 64 KiB chunks through a proxy that cuts after 2 MiB; checks the failure and
    /// returns the file's bytes.
    fn cut_halfway(r: &mut Receiver, src: &Path, name: &str) -> (PathBuf, Vec<u8>) {
        let data = seeded_bytes(8, 4 << 20);
        let path = file(src, name, &data);
        let proxy = FaultProxy::start(r.addr, Fault::CutAfter(2 << 20)).unwrap();
        let mut sent = send(r, proxy.addr(), &[&path], &["--chunk-size", "64KiB"]);
        assert_send_failed(
            r,
            &mut sent,
            "sending through a connection cut after 2 MiB",
            name,
        );
        r.event("failed", name);
        r.assert_absent(name, "a connection cut halfway");
        (path, data)
    }

    #[test]
    fn a_resumed_transfer_still_gives_the_plain_sha256() {
        bounded(LIMIT, || {
            // The plain hash reads the chunks held before the cut back from the disk.
            let mut r = Receiver::start(&["--sha256"]);
            let src = tempfile::tempdir().unwrap();
            let (path, data) = cut_halfway(&mut r, src.path(), "summed-resume.bin");
            send_ok(&mut r, &[&path], &["--chunk-size", "64KiB"]);
            let complete = r.event("complete", "summed-resume.bin");
            let want = hex(&sha256(&data));
            if complete["sha256"] != want.as_str() {
                r.program.fail(format_args!(
                    "with `recv --sha256`, a transfer cut after 2 of 4 MiB and resumed: expected \
                     \"sha256\": \"{want}\" (the whole file's, the chunks held before the cut \
                     included) in the complete event, got {complete}"
                ));
            }
            r.assert_file("summed-resume.bin", &data);
        });
    }

    #[test]
    fn a_cut_connection_resumes_with_only_the_missing_chunks() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let src = tempfile::tempdir().unwrap();
            let (path, data) = cut_halfway(&mut r, src.path(), "resume.bin");
            let sent = send_ok(&mut r, &[&path], &["--chunk-size", "64KiB"]);
            let started = r.event("started", "resume.bin");
            let held = started["held"].as_u64().unwrap_or(0);
            if !(1..64).contains(&held) {
                r.program.fail(format_args!(
                    "after 2 MiB of 4 MiB (64 chunks of 64 KiB) got through, expected the next send's started event to report \"held\" between 1 and 63, got {started}"
                ));
            }
            let complete = r.event("complete", "resume.bin");
            if complete["received"].as_u64() != Some(64 - held) {
                r.program.fail(format_args!(
                    "the receiver held {held} chunks; expected it to receive only the other {}, got {complete}",
                    64 - held
                ));
            }
            r.assert_file("resume.bin", &data);
            if !sent
                .stdout
                .iter()
                .any(|l| l.starts_with("resume.bin: sending ") && l.ends_with(" already received)"))
            {
                r.program.fail(format_args!(
                    "resumed with {held} of 64 chunks held; expected the line `resume.bin: \
                     sending SIZE (SIZE already received)`, got the lines {:?}",
                    sent.stdout
                ));
            }
            if !sent.stdout.iter().any(|l| l.contains("already received")) {
                r.program.fail(format_args!(
                    "expected the sender to say how much was already received, it printed {:?}",
                    sent.stdout
                ));
            }
        });
    }

    #[test]
    fn a_partial_file_with_a_second_link_is_not_resumed_into() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let src = tempfile::tempdir().unwrap();
            let (path, data) = cut_halfway(&mut r, src.path(), "linked.bin");
            // Between the runs, someone links the kept partial file from outside DIR: writing
            // into it now would write into their file.
            let outside = tempfile::tempdir_in(r.dir.path().parent().unwrap()).unwrap();
            let theirs = outside.path().join("theirs.bin");
            let partial = r.path(".linked.bin.ft-partial");
            if let Err(e) = std::fs::hard_link(&partial, &theirs) {
                r.program.fail(format_args!(
                    "after a cut transfer, expected a partial file {partial:?} to link to: {e}"
                ));
            }
            let before = std::fs::read(&theirs).unwrap_or_default();
            send_ok(&mut r, &[&path], &["--chunk-size", "64KiB"]);
            let started = r.event("started", "linked.bin");
            let after = std::fs::read(&theirs).unwrap_or_default();
            if after != before || started["held"] != 0 {
                r.program.fail(format_args!(
                    "the kept partial file of linked.bin had a second link, outside DIR; \
                     expected the next send to start afresh in a new file (\"held\": 0) and \
                     leave the linked file as it was; got {started}, and the linked file {}",
                    if after == before {
                        "unchanged"
                    } else {
                        "written into"
                    }
                ));
            }
            r.assert_file("linked.bin", &data);
        });
    }

    #[test]
    fn a_partial_file_damaged_between_runs_is_checked_again() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let src = tempfile::tempdir().unwrap();
            let (path, data) = cut_halfway(&mut r, src.path(), "damaged.bin");
            // Chunk 0 arrived and was verified; damage it on disk behind the state file's back.
            let partial = r.path(".damaged.bin.ft-partial");
            let mut bytes = std::fs::read(&partial).unwrap_or_else(|e| {
                panic!("expected the partial file {partial:?} after a cut transfer: {e}")
            });
            bytes[100] ^= 0xFF;
            std::fs::write(&partial, &bytes).unwrap();
            let addr = r.addr;
            let mut sent = send(&mut r, addr, &[&path], &["--chunk-size", "64KiB"]);
            if !sent.status.success() {
                let sender = sent.program.diagnosis();
                r.program.fail(format_args!(
                    "after a cut, byte 100 of the partial file was damaged on disk; expected the resume to hash the chunks it held again, send chunk 0 again and succeed; `send` exited ({})\nthe sender: {sender}the receiver:",
                    sent.status
                ));
            }
            let complete = r.event("complete", "damaged.bin");
            let held = 64 - complete["received"].as_u64().unwrap_or(64);
            if held == 0 || held >= 64 {
                r.program.fail(format_args!(
                    "expected the resume to keep the undamaged chunks (1 to 63 of 64), got {complete}"
                ));
            }
            r.assert_file("damaged.bin", &data);
        });
    }

    #[test]
    fn a_changed_file_of_the_same_name_starts_over() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let src = tempfile::tempdir().unwrap();
            let (path, _) = cut_halfway(&mut r, src.path(), "changed.bin");
            let newer = seeded_bytes(9, 4 << 20);
            std::fs::write(&path, &newer).unwrap();
            send_ok(&mut r, &[&path], &["--chunk-size", "64KiB"]);
            let started = r.event("started", "changed.bin");
            if started["held"] != 0 {
                r.program.fail(format_args!(
                    "the file changed (same name and size, other bytes) after a cut; expected \"held\": 0, got {started}"
                ));
            }
            r.event("complete", "changed.bin");
            r.assert_file("changed.bin", &newer);
        });
    }

    #[test]
    fn a_smaller_file_of_the_same_name_leaves_nothing_of_the_larger() {
        bounded(LIMIT, || {
            // 2 MiB of a 4 MiB file were kept; the file is then replaced by a 1 MiB one. The
            // transfer starts over, and the file that lands is the new one, to its length.
            let mut r = Receiver::start(&[]);
            let src = tempfile::tempdir().unwrap();
            let (path, _) = cut_halfway(&mut r, src.path(), "shrunk.bin");
            let smaller = seeded_bytes(10, 1 << 20);
            std::fs::write(&path, &smaller).unwrap();
            send_ok(&mut r, &[&path], &["--chunk-size", "64KiB"]);
            let started = r.event("started", "shrunk.bin");
            if started["held"] != 0 {
                r.program.fail(format_args!(
                    "the 4 MiB file cut halfway was replaced by a 1 MiB one of the same name; \
                     expected \"held\": 0, got {started}"
                ));
            }
            r.event("complete", "shrunk.bin");
            r.assert_file("shrunk.bin", &smaller);
        });
    }

    #[test]
    fn only_the_chunks_the_state_records_count() {
        bounded(LIMIT, || {
            // Behind the receiver's back, the whole file is written into the kept partial file:
            // the chunks its state does not record are still asked for, since only a record
            // says that a chunk was written whole.
            let mut r = Receiver::start(&[]);
            let src = tempfile::tempdir().unwrap();
            let (path, data) = cut_halfway(&mut r, src.path(), "unrecorded.bin");
            let partial = r.path(".unrecorded.bin.ft-partial");
            if let Err(e) = std::fs::write(&partial, &data) {
                r.program.fail(format_args!(
                    "expected the partial file {partial:?} after a cut transfer: {e}"
                ));
            }
            send_ok(&mut r, &[&path], &["--chunk-size", "64KiB"]);
            let started = r.event("started", "unrecorded.bin");
            let held = started["held"].as_u64().unwrap_or(0);
            if !(1..64).contains(&held) {
                r.program.fail(format_args!(
                    "after a cut halfway through 64 chunks, the whole file was written into the \
                     partial file behind the state's back: expected \"held\" to count only the \
                     chunks recorded (1 to 63), got {started}"
                ));
            }
            r.event("complete", "unrecorded.bin");
            r.assert_file("unrecorded.bin", &data);
        });
    }

    #[test]
    fn a_second_cut_keeps_what_the_first_kept() {
        bounded(LIMIT, || {
            // Cut after 3 of 4 MiB, resumed and cut again 512 KiB later, resumed: the last run
            // holds what both earlier runs received, so more than the second run held.
            let mut r = Receiver::start(&[]);
            let src = tempfile::tempdir().unwrap();
            let data = seeded_bytes(11, 4 << 20);
            let path = file(src.path(), "twice-cut.bin", &data);
            let mut second = Value::Null;
            for (cut, what) in [
                (3u64 << 20, "after 3 MiB"),
                (512 << 10, "512 KiB into a resume"),
            ] {
                let proxy = FaultProxy::start(r.addr, Fault::CutAfter(cut)).unwrap();
                let mut sent = send(&mut r, proxy.addr(), &[&path], &["--chunk-size", "64KiB"]);
                let doing = format!("sending twice-cut.bin through a connection cut {what}");
                assert_send_failed(&mut r, &mut sent, &doing, "twice-cut.bin");
                second = r.event("started", "twice-cut.bin");
                r.event("failed", "twice-cut.bin");
            }
            send_ok(&mut r, &[&path], &["--chunk-size", "64KiB"]);
            let last = r.event("started", "twice-cut.bin");
            let (before, after) = (second["held"].as_u64(), last["held"].as_u64());
            if after.unwrap_or(0) <= before.unwrap_or(0) {
                r.program.fail(format_args!(
                    "a transfer cut twice: the second run started with {second} and received \
                     chunks before its cut; expected the third to hold more, got {last}"
                ));
            }
            r.event("complete", "twice-cut.bin");
            r.assert_file("twice-cut.bin", &data);
        });
    }

    #[test]
    fn a_partial_file_without_its_state_starts_over() {
        bounded(LIMIT, || {
            // The state file is lost between the runs (the partial file, of the right size,
            // stays): nothing records which chunks are whole, so the transfer starts over.
            let mut r = Receiver::start(&[]);
            let src = tempfile::tempdir().unwrap();
            let (path, data) = cut_halfway(&mut r, src.path(), "stateless.bin");
            let state = r.path(".stateless.bin.ft-state");
            if let Err(e) = std::fs::remove_file(&state) {
                r.program.fail(format_args!(
                    "expected the state file {state:?} after a cut transfer: {e}"
                ));
            }
            send_ok(&mut r, &[&path], &["--chunk-size", "64KiB"]);
            let started = r.event("started", "stateless.bin");
            if started["held"] != 0 {
                r.program.fail(format_args!(
                    "after a cut, the state file was deleted and the partial file kept; expected \
                     the next send to start over (\"held\": 0), got {started}"
                ));
            }
            r.event("complete", "stateless.bin");
            r.assert_file("stateless.bin", &data);
        });
    }

    #[test]
    fn a_restarted_receiver_still_resumes() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let src = tempfile::tempdir().unwrap();
            let (path, data) = cut_halfway(&mut r, src.path(), "restart.bin");
            r.program.terminate();
            if r.program.wait_exit(PROMPT).is_none() {
                r.program
                    .fail("expected the receiver to exit after SIGTERM");
            }
            let Receiver { dir, .. } = r;
            let mut r = Receiver::start_in(dir, &[]);
            send_ok(&mut r, &[&path], &["--chunk-size", "64KiB"]);
            let started = r.event("started", "restart.bin");
            if started["held"].as_u64().unwrap_or(0) == 0 {
                r.program.fail(format_args!(
                    "a new receiver on the same directory should find the chunks the old one verified; expected \"held\" > 0, got {started}"
                ));
            }
            r.event("complete", "restart.bin");
            r.assert_file("restart.bin", &data);
        });
    }

    #[test]
    fn a_sender_that_disappears_leaves_no_final_file() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let data = seeded_bytes(10, 64 * 16 * 1024);
            // By hand: the manifest, 10 whole chunks of 64 and half of the 11th, then gone, the
            // way a crash or a pulled cable ends a sender.
            let mut peer = Raw::connect(&mut r);
            peer.send(&frame(MANIFEST, &manifest("vanish.bin", &data, 16 * 1024)));
            for (i, c) in data.chunks(16 * 1024).take(10).enumerate() {
                peer.send(&chunk(i as u32, c));
            }
            peer.send(&chunk(10, &data[10 * 16 * 1024..11 * 16 * 1024])[..8 * 1024]);
            // Read the ACCEPT first: closing a socket with unread bytes sends a reset, and a
            // reset makes the receiver's kernel drop what it had not yet handed over.
            match peer.read_frame(PROMPT) {
                Ok(Frame { kind: ACCEPT, .. }) => {}
                other => r.program.fail(format_args!(
                    "sent an honest manifest for vanish.bin; expected an ACCEPT frame (type 0x81), got {}",
                    outcome(&other)
                )),
            }
            drop(peer);
            r.event("failed", "vanish.bin");
            r.assert_absent("vanish.bin", "the sender vanished mid-transfer");
            let src = tempfile::tempdir().unwrap();
            let path = file(src.path(), "vanish.bin", &data);
            send_ok(&mut r, &[&path], &["--chunk-size", "16KiB"]);
            let started = r.event("started", "vanish.bin");
            if started["held"] != 10 {
                r.program.fail(format_args!(
                    "a sender delivered chunks 0 to 9 of 64 whole, then vanished; expected the next send's started event to report \"held\": 10, got {started}"
                ));
            }
            r.event("complete", "vanish.bin");
            r.assert_file("vanish.bin", &data);
        });
    }

    /// Chunks 0, 2, 3 and 9 of 12: two bytes of bitmap, `0b0000_1101` and `0b0000_0010`.
    const HELD: [u32; 4] = [0, 2, 3, 9];

    #[test]
    fn the_receivers_accept_bitmap_is_the_contracts() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let data = seeded_bytes(42, 12 * 4096 - 100);
            let body = manifest("bitmap.bin", &data, 4096);
            let chunks: Vec<&[u8]> = data.chunks(4096).collect();
            let mut peer = Raw::connect(&mut r);
            peer.send(&frame(MANIFEST, &body));
            match peer.read_frame(PROMPT) {
                Ok(Frame { kind: ACCEPT, .. }) => {}
                other => r.program.fail(format_args!(
                    "sent an honest manifest for bitmap.bin; expected ACCEPT (type 0x81), got {}",
                    outcome(&other)
                )),
            }
            for &i in &HELD {
                peer.send(&chunk(i, chunks[i as usize]));
            }
            drop(peer);
            r.event("failed", "bitmap.bin");
            let mut peer = Raw::connect(&mut r);
            peer.send(&frame(MANIFEST, &body));
            let expected = [0, 0, 0, 12, 0b0000_1101, 0b0000_0010];
            match peer.read_frame(PROMPT) {
                Ok(Frame { kind: ACCEPT, body }) if body == expected => {}
                other => r.program.fail(format_args!(
                    "sent chunks {HELD:?} of bitmap.bin's 12, then the same manifest again; expected ACCEPT (0x81) body {} (the count 12, then bit i % 8 of byte i / 8 for each chunk held), got {}",
                    hex_bytes(&expected),
                    outcome(&other)
                )),
            }
        });
    }

    #[test]
    fn an_accept_longer_than_its_bitmap_fails_the_sender_from_its_header() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let mut fake = FakeReceiver::bind();
            let src = tempfile::tempdir().unwrap();
            // 40,000 chunks of 1 KiB: a bitmap of 5,000 bytes, so that the longest ACCEPT
            // (5,004 bytes) is longer than the longest ERROR (4,096).
            let path = file(src.path(), "wide.bin", &vec![0u8; 40_000 * 1024]);
            let mut sender = start_send(fake.addr(), &[&path], &["--chunk-size", "1KiB"]);
            fake.accept(&mut r, &mut sender, "sending wide.bin");
            fake.expect_manifest(&mut r);
            let mut header = 5005u32.to_be_bytes().to_vec();
            header.push(ACCEPT);
            fake.send(&header);
            // No body follows: a sender that waits for it never ends.
            assert_fails_at_once(
                &mut sender,
                "answered the sender of wide.bin (40,000 chunks: an ACCEPT body of 5,004 bytes) \
                 with an ACCEPT header declaring 5,005 bytes and no body",
                &format!("error: {}: ", path.display()),
            );
        });
    }

    #[test]
    fn the_sender_sends_exactly_what_the_accept_bitmap_lacks() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let mut fake = FakeReceiver::bind();
            let src = tempfile::tempdir().unwrap();
            let data = seeded_bytes(43, 12 * 4096 - 100);
            let path = file(src.path(), "lacks.bin", &data);
            let mut sender = start_send(fake.addr(), &[&path], &["--chunk-size", "4KiB"]);
            fake.accept(&mut r, &mut sender, "sending lacks.bin");
            fake.expect_manifest(&mut r);
            fake.send(&frame(ACCEPT, &[0, 0, 0, 12, 0b0000_1101, 0b0000_0010]));
            let got = fake.round(&mut r, &data, 4096);
            let lacking: Vec<u32> = (0..12).filter(|i| !HELD.contains(i)).collect();
            if got != lacking {
                r.program.fail(format_args!(
                    "answered the sender of lacks.bin (12 chunks) with ACCEPT holding chunks {HELD:?} (bitmap bytes 0x0d 0x02); expected exactly chunks {lacking:?}, got {got:?}"
                ));
            }
            fake.send(&frame(COMPLETE, &[]));
            let sent = finish(sender, &mut r);
            let last = sent.stdout.last().cloned().unwrap_or_default();
            if !sent.status.success() || !last.contains("8 of 12 chunks sent, 4 already received") {
                r.program.fail(format_args!(
                    "after COMPLETE, expected `send` to succeed and say \"8 of 12 chunks sent, 4 already received\"; it exited ({}) with stdout {:?}",
                    sent.status, sent.stdout
                ));
            }
        });
    }

    /// Sends `len` bytes as `name` in 64 KiB chunks through a proxy that cuts after half of
    /// them, and checks that it failed: the partial file is left behind.
    fn cut_at_half(r: &mut Receiver, src: &Path, name: &str, seed: u64, len: usize) {
        let data = seeded_bytes(seed, len);
        let path = file(src, name, &data);
        let proxy = FaultProxy::start(r.addr, Fault::CutAfter(len as u64 / 2)).unwrap();
        let mut sent = send(r, proxy.addr(), &[&path], &["--chunk-size", "64KiB"]);
        let doing = format!(
            "sending {name} through a connection cut after {} bytes",
            len / 2
        );
        assert_send_failed(r, &mut sent, &doing, name);
        r.event("failed", name);
    }

    /// Fails unless both temporary files of `name` are gone.
    #[track_caller]
    fn assert_no_partial(r: &mut Receiver, name: &str, after: &str) {
        r.assert_absent(&format!(".{name}.ft-partial"), after);
        r.assert_absent(&format!(".{name}.ft-state"), after);
    }

    #[test]
    fn a_partial_file_expires_after_the_partial_ttl() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&["--partial-ttl", "1s"]);
            let src = tempfile::tempdir().unwrap();
            cut_at_half(&mut r, src.path(), "stale.bin", 30, 1 << 20);
            let cut = Instant::now();
            let discarded = r.event("discarded", "stale.bin");
            // Swept every quarter of the TTL, it goes between 1 s and 1.25 s after its last
            // write, which came before `cut`.
            if cut.elapsed() > Duration::from_secs(3) {
                r.program.fail(format_args!(
                    "cut a 1 MiB transfer with --partial-ttl 1s; expected it discarded within \
                     1.25 s (a sweep every quarter of the TTL), it took {:.1} s",
                    cut.elapsed().as_secs_f64()
                ));
            }
            if discarded["reason"] != "expired" || discarded["bytes"] != 1 << 20 {
                r.program.fail(format_args!(
                    "cut a 1 MiB transfer with --partial-ttl 1s; expected a discarded event with \"reason\": \"expired\" and \"bytes\": 1048576, got {discarded}"
                ));
            }
            assert_no_partial(&mut r, "stale.bin", "its partial-ttl ran out");
            // The next transfer of that name starts over, and arrives.
            let data = seeded_bytes(30, 1 << 20);
            let path = file(src.path(), "stale.bin", &data);
            send_ok(&mut r, &[&path], &["--chunk-size", "64KiB"]);
            let started = r.event("started", "stale.bin");
            if started["held"] != 0 {
                r.program.fail(format_args!(
                    "after its partial file expired, expected stale.bin to start over (\"held\": 0), got {started}"
                ));
            }
            r.assert_file("stale.bin", &data);
        });
    }

    #[test]
    fn the_budget_deletes_only_what_it_must_and_fits_to_the_byte() {
        bounded(LIMIT, || {
            // --partial-budget 3MiB. Kept: a.bin (1 MiB, older) and b.bin (1 MiB). A new 2 MiB
            // file needs the oldest deleted and no more: 1 + 2 MiB fit exactly.
            let mut r = Receiver::start(&["--partial-budget", "3MiB"]);
            let src = tempfile::tempdir().unwrap();
            cut_at_half(&mut r, src.path(), "a.bin", 41, 1 << 20);
            cut_at_half(&mut r, src.path(), "b.bin", 42, 1 << 20);
            let data = seeded_bytes(43, 2 << 20);
            let path = file(src.path(), "c.bin", &data);
            send_ok(&mut r, &[&path], &[]);
            r.event("discarded", "a.bin");
            assert_no_partial(&mut r, "a.bin", "c.bin needed 1 MiB of room");
            if !r.path(".b.bin.ft-partial").exists() {
                r.program.fail(
                    "with --partial-budget 3MiB, kept a.bin (1 MiB, the older) and b.bin (1 MiB), \
                     then 2 MiB of c.bin sent: expected only a.bin deleted (b.bin and c.bin fit \
                     exactly), but b.bin's partial file is gone too",
                );
            }
            r.assert_file("c.bin", &data);
            // 1 MiB being received and 2 MiB new fit the 3 MiB exactly: b.bin makes way.
            let busy = seeded_bytes(44, 1 << 20);
            let mut peer = Raw::connect(&mut r);
            peer.send(&frame(MANIFEST, &manifest("busy.bin", &busy, 65536)));
            match peer.read_frame(PROMPT) {
                Ok(Frame { kind: ACCEPT, .. }) => {}
                other => r.program.fail(format_args!(
                    "sent the manifest of busy.bin (1 MiB, within --partial-budget 3MiB); \
                     expected ACCEPT, got {}",
                    outcome(&other)
                )),
            }
            let data = seeded_bytes(45, 2 << 20);
            let path = file(src.path(), "d.bin", &data);
            let addr = r.addr;
            let mut sent = send(&mut r, addr, &[&path], &[]);
            if !sent.status.success() {
                let sender = sent.program.diagnosis();
                r.program.fail(format_args!(
                    "with --partial-budget 3MiB and 1 MiB being received, sent 2 MiB of d.bin: \
                     expected it to fit exactly and arrive; `send` exited ({})\nthe sender: \
                     {sender}the receiver:",
                    sent.status
                ));
            }
            r.assert_file("d.bin", &data);
            // Kept: e.bin and f.bin, 1 MiB each, beside the 1 MiB being received. A new 2 MiB
            // file needs both deleted.
            cut_at_half(&mut r, src.path(), "e.bin", 46, 1 << 20);
            cut_at_half(&mut r, src.path(), "f.bin", 47, 1 << 20);
            let data = seeded_bytes(48, 2 << 20);
            let path = file(src.path(), "g.bin", &data);
            send_ok(&mut r, &[&path], &[]);
            assert_no_partial(&mut r, "e.bin", "g.bin needed 2 MiB of room");
            assert_no_partial(&mut r, "f.bin", "g.bin needed 2 MiB of room");
            r.assert_file("g.bin", &data);
            drop(peer);
        });
    }

    #[test]
    fn partial_files_are_held_to_the_budget() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&["--partial-budget", "3MiB"]);
            let src = tempfile::tempdir().unwrap();
            cut_at_half(&mut r, src.path(), "old.bin", 31, 2 << 20);
            // 2 MiB kept + 2 MiB new is over 3 MiB: the kept one makes room.
            let data = seeded_bytes(32, 2 << 20);
            let path = file(src.path(), "new.bin", &data);
            send_ok(&mut r, &[&path], &[]);
            let discarded = r.event("discarded", "old.bin");
            if discarded["reason"] != "budget" {
                r.program.fail(format_args!(
                    "with --partial-budget 3MiB, 2 MiB kept from old.bin and 2 MiB of new.bin sent; expected a discarded event for old.bin with \"reason\": \"budget\", got {discarded}"
                ));
            }
            assert_no_partial(&mut r, "old.bin", "new.bin needed its room");
            r.assert_file("new.bin", &data);
            // A transfer in progress is never deleted to make room: the next is refused.
            let held = seeded_bytes(33, 2 << 20);
            let mut peer = Raw::connect(&mut r);
            peer.send(&frame(MANIFEST, &manifest("busy.bin", &held, 65536)));
            match peer.read_frame(PROMPT) {
                Ok(Frame { kind: ACCEPT, .. }) => {}
                other => r.program.fail(format_args!(
                    "sent the manifest of busy.bin (2 MiB, within --partial-budget 3MiB); expected ACCEPT, got {}",
                    outcome(&other)
                )),
            }
            let path = file(src.path(), "late.bin", &data);
            let addr = r.addr;
            let mut sent = send(&mut r, addr, &[&path], &[]);
            assert_send_failed(
                &mut r,
                &mut sent,
                "sending 2 MiB while 2 MiB of a 3 MiB partial budget are being received",
                "no room",
            );
            r.assert_absent(
                ".late.bin.ft-partial",
                "a transfer refused for want of room",
            );
            if !r.path(".busy.bin.ft-partial").exists() {
                r.program.fail(
                    "busy.bin was being received when late.bin was refused; expected its partial file kept",
                );
            }
        });
    }
}

mod stage5_many_senders {
    use super::*;

    #[test]
    fn eight_senders_at_once() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let src = tempfile::tempdir().unwrap();
            let files: Vec<(String, Vec<u8>)> = (0..8)
                .map(|i| (format!("sender-{i}.bin"), seeded_bytes(100 + i, 512 * 1024)))
                .collect();
            // Every other sender on a slow link (512 KiB at 1 MiB/s): slow and fast transfers
            // interleave, and a slow one must not hold up the others.
            let slow = FaultProxy::start(r.addr, Fault::Throttle(1 << 20)).unwrap();
            let senders: Vec<Program> = files
                .iter()
                .enumerate()
                .map(|(i, (name, data))| {
                    let path = file(src.path(), name, data);
                    let to = if i % 2 == 0 { r.addr } else { slow.addr() };
                    start_send(to, &[&path], &["--chunk-size", "16KiB"])
                })
                .collect();
            for (i, sender) in senders.into_iter().enumerate() {
                let mut sent = finish(sender, &mut r);
                if !sent.status.success() {
                    let sender = sent.program.diagnosis();
                    r.program.fail(format_args!(
                        "8 senders at once: sender {i} exited ({})\nthe sender: {sender}the receiver:",
                        sent.status
                    ));
                }
            }
            for (name, data) in &files {
                r.assert_file(name, data);
            }
        });
    }

    #[test]
    fn two_senders_of_one_name_never_mix() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let first = seeded_bytes(11, 64 * 1024);
            let second = seeded_bytes(12, 64 * 1024);
            // The first sender, by hand: its manifest is accepted, then it holds the name (no
            // chunk yet) for as long as the second sender takes: no race on timing.
            let mut peer = Raw::connect(&mut r);
            peer.send(&frame(MANIFEST, &manifest("same.bin", &first, 16 * 1024)));
            match peer.read_frame(PROMPT) {
                Ok(Frame { kind: ACCEPT, .. }) => {}
                other => r.program.fail(format_args!(
                    "sent an honest manifest for same.bin; expected an ACCEPT frame (type 0x81), got {}",
                    outcome(&other)
                )),
            }
            let src = tempfile::tempdir().unwrap();
            let second_path = file(src.path(), "same.bin", &second);
            let addr = r.addr;
            let mut sent = send(&mut r, addr, &[&second_path], &["--chunk-size", "16KiB"]);
            assert_send_failed(
                &mut r,
                &mut sent,
                "sending same.bin while another sender is sending a file of that name",
                "another sender",
            );
            for (i, c) in first.chunks(16 * 1024).enumerate() {
                peer.send(&chunk(i as u32, c));
            }
            peer.send(&frame(SENT_ALL, &[]));
            match peer.read_frame(PROMPT) {
                Ok(Frame { kind: COMPLETE, .. }) => {}
                other => r.program.fail(format_args!(
                    "the first sender of same.bin then sent its 4 chunks and SENT_ALL; expected COMPLETE (type 0x83), got {}",
                    outcome(&other)
                )),
            }
            r.assert_file("same.bin", &first);
        });
    }
}

mod stage6_hostile {
    use super::*;

    /// Sends `wire` on a fresh connection and expects an ERROR frame; returns its message.
    fn refused(r: &mut Receiver, what: &str, wire: &[u8]) -> String {
        let mut peer = Raw::connect(r);
        peer.send(wire);
        let message = peer.expect_error(r, what);
        r.program.assert_running(format_args!("refusing {what}"));
        message
    }

    #[test]
    fn names_that_are_not_plain_are_refused() {
        bounded(LIMIT, || {
            let outside = tempfile::tempdir().unwrap();
            let escape = outside.path().join("escaped.txt");
            let mut r = Receiver::start(&[]);
            let long = vec![b'n'; 201];
            let names: [&[u8]; 18] = [
                b"../escaped.txt",
                escape.to_str().unwrap().as_bytes(),
                b"a/b.txt",
                b"a\\b.txt",
                b"",
                b"..",
                b"CON",
                b"nul.txt",
                // Windows devices too: ports numbered in superscript, and the console.
                "COM\u{b9}".as_bytes(),
                "lpt\u{b2}.txt".as_bytes(),
                b"CONIN$",
                b"conout$.log",
                // Not in NFC: "cafe" and a combining acute accent.
                "cafe\u{301}.txt".as_bytes(),
                // The receiver's own temporary names, whichever suffix.
                b"x.ft-partial",
                b"y.ft-state",
                b"bad\0name",
                b"\xff\xfe",
                &long,
            ];
            for name in names {
                let data = b"should never land";
                let body = manifest_with(
                    name,
                    data.len() as u64,
                    4096,
                    content_hash(data),
                    &[sha256(data)],
                );
                let mut wire = frame(MANIFEST, &body);
                wire.extend(chunk(0, data));
                let shown = String::from_utf8_lossy(name).into_owned();
                refused(&mut r, &format!("a manifest for the name {shown:?}"), &wire);
            }
            let left: Vec<_> = std::fs::read_dir(r.dir.path())
                .unwrap()
                .filter_map(Result::ok)
                .collect();
            if !left.is_empty()
                || escape.exists()
                || r.dir.path().parent().unwrap().join("escaped.txt").exists()
            {
                r.program.fail(format_args!(
                    "after refusing every bad name, expected nothing written anywhere; the directory holds {:?}",
                    left.iter().map(|e| e.file_name()).collect::<Vec<_>>()
                ));
            }
        });
    }

    #[test]
    fn a_name_and_its_nfd_twin_are_one_file() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let (nfc, nfd) = ("caf\u{e9}.txt", "cafe\u{301}.txt");
            let src = tempfile::tempdir().unwrap();
            let decomposed = tempfile::tempdir().unwrap();
            // A file whose name the file system gave in NFD (as macOS's HFS+ does) is sent as NFC.
            let first = file(decomposed.path(), nfd, b"first, named in NFD");
            send_ok(&mut r, &[&first], &[]);
            r.event("complete", nfc);
            let second = file(src.path(), nfc, b"second, named in NFC");
            send_ok(&mut r, &[&second], &[]);
            r.event("complete", nfc);
            let files = r.final_files();
            if files != [nfc] {
                r.program.fail(format_args!(
                    "sent {nfd:?} (NFD) then {nfc:?} (NFC); expected one file, {nfc:?}, replaced by the second, found {files:?}"
                ));
            }
            r.assert_file(nfc, b"second, named in NFC");
        });
    }

    #[test]
    fn links_planted_in_the_directory_are_never_written_through() {
        bounded(LIMIT, || {
            let outside = tempfile::tempdir().unwrap();
            let src = tempfile::tempdir().unwrap();
            let mut r = Receiver::start(&[]);
            let before = b"outside the directory: must stay as it is".to_vec();
            let mut targets = Vec::new();
            // Every name the receiver writes, as a symbolic link (sym.bin) or as a hard link
            // (hard.bin) to a file of its own outside the directory.
            for (name, kind) in [("sym.bin", "symbolic"), ("hard.bin", "hard")] {
                for planted in [
                    name.to_owned(),
                    format!(".{name}.ft-partial"),
                    format!(".{name}.ft-state"),
                ] {
                    let target = outside.path().join(&planted);
                    std::fs::write(&target, &before).unwrap();
                    let link = r.path(&planted);
                    let made = if kind == "symbolic" {
                        std::os::unix::fs::symlink(&target, &link)
                    } else {
                        std::fs::hard_link(&target, &link)
                    };
                    made.unwrap_or_else(|e| panic!("cannot plant a {kind} link {link:?}: {e}"));
                    targets.push((target, format!("a {kind} link at {planted}")));
                }
                let data = seeded_bytes(21, 40 * 1024);
                let path = file(src.path(), name, &data);
                send_ok(&mut r, &[&path], &["--chunk-size", "4KiB"]);
                r.event("complete", name);
                r.assert_file(name, &data);
                let is_link = std::fs::symlink_metadata(r.path(name))
                    .map(|m| !m.is_file())
                    .unwrap_or(true);
                if is_link {
                    r.program.fail(format_args!(
                        "{name} was a {kind} link before the transfer; expected a regular file in its place after it"
                    ));
                }
            }
            for (target, planted) in targets {
                let after = std::fs::read(&target).unwrap_or_default();
                if after != before {
                    r.program.fail(format_args!(
                        "planted {planted} pointing outside the directory; expected the file it points to untouched, it now holds {} bytes (was {})",
                        after.len(),
                        before.len()
                    ));
                }
            }
        });
    }

    #[test]
    fn a_file_over_the_max_size_is_refused() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&["--max-size", "1MiB"]);
            let src = tempfile::tempdir().unwrap();
            let path = file(src.path(), "huge.bin", &seeded_bytes(13, (1 << 20) + 1));
            let addr = r.addr;
            let mut sent = send(&mut r, addr, &[&path], &[]);
            assert_send_failed(
                &mut r,
                &mut sent,
                "sending 1 MiB + 1 byte to --max-size 1MiB",
                "refused",
            );
            r.assert_absent("huge.bin", "a file over --max-size");
            let fits = file(src.path(), "fits.bin", &seeded_bytes(14, 1 << 20));
            send_ok(&mut r, &[&fits], &[]);
            r.event("complete", "fits.bin");
        });
    }

    #[test]
    fn a_chunk_of_the_wrong_length_is_refused() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let data = seeded_bytes(15, 10_000);
            let mut wire = frame(MANIFEST, &manifest("short.bin", &data, 4096));
            wire.extend(chunk(0, &data[..4000]));
            refused(
                &mut r,
                "chunk 0 with 4000 bytes where the manifest says 4096",
                &wire,
            );
            r.assert_absent("short.bin", "a chunk of the wrong length");
        });
    }

    #[test]
    fn a_chunk_beyond_the_declared_size_is_refused() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let data = seeded_bytes(16, 10_000);
            let mut wire = frame(MANIFEST, &manifest("beyond.bin", &data, 4096));
            wire.extend(chunk(3, &data[..4096]));
            let message = refused(&mut r, "chunk 3 of a 3-chunk file", &wire);
            if !message.contains('3') {
                r.program.fail(format_args!(
                    "sent chunk 3 of a 3-chunk file; expected the ERROR to name the chunk, got {message:?}"
                ));
            }
            r.assert_absent("beyond.bin", "a chunk beyond the declared size");
        });
    }

    #[test]
    fn a_manifest_that_lies_about_the_whole_file_leaves_nothing() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let data = seeded_bytes(17, 10_000);
            let hashes: Vec<[u8; 32]> = data.chunks(4096).map(sha256).collect();
            let body = manifest_with(
                b"liar.bin",
                data.len() as u64,
                4096,
                sha256(b"something else"),
                &hashes,
            );
            let mut wire = frame(MANIFEST, &body);
            for (i, c) in data.chunks(4096).enumerate() {
                wire.extend(chunk(i as u32, c));
            }
            wire.extend(frame(SENT_ALL, &[]));
            refused(
                &mut r,
                "a manifest whose whole-file SHA-256 matches no chunk data",
                &wire,
            );
            r.assert_absent("liar.bin", "a manifest that lied");
            let left = std::fs::read_dir(r.dir.path())
                .map(|d| d.count())
                .unwrap_or(0);
            if left != 0 {
                r.program.fail(format_args!(
                    "after a manifest that lied, expected its partial file discarded; the directory holds {left} entries"
                ));
            }
        });
    }

    #[test]
    fn the_largest_manifest_the_contract_allows_is_accepted() {
        bounded(LIMIT, || {
            // A 200-byte name and 262,144 chunks of 1 KiB (256 MiB): the longest manifest there
            // can be, 8,388,899 bytes. Its chunk hashes need not be right to be accepted.
            let mut r = Receiver::start(&[]);
            let name = "m".repeat(200);
            let chunks = 262_144usize;
            let hashes = vec![[0u8; 32]; chunks];
            let body = manifest_with(
                name.as_bytes(),
                chunks as u64 * 1024,
                1024,
                [0; 32],
                &hashes,
            );
            let mut peer = Raw::connect(&mut r);
            peer.send(&frame(MANIFEST, &body));
            match peer.read_frame(PROMPT) {
                Ok(Frame { kind: ACCEPT, .. }) => {}
                other => r.program.fail(format_args!(
                    "sent a manifest of {} bytes (a 200-byte name, 262,144 chunks of 1 KiB, the \
                     contract's most); expected ACCEPT, got {}",
                    body.len(),
                    outcome(&other)
                )),
            }
            // One byte more is refused from its header alone, long before --frame-timeout
            // (60 s): the receiver never waits for, or makes room for, a body that long.
            let mut over = Raw::connect(&mut r);
            let len = u32::try_from(body.len() + 1).expect("under 4 GiB");
            let mut header = len.to_be_bytes().to_vec();
            header.push(MANIFEST);
            over.send(&header);
            match over.read_frame(PROMPT) {
                Ok(Frame { kind: ERROR, .. }) => {}
                other => r.program.fail(format_args!(
                    "sent a MANIFEST header declaring {len} bytes, one more than the largest \
                     manifest; expected an ERROR frame at once, got {}",
                    outcome(&other)
                )),
            }
        });
    }

    #[test]
    fn a_manifest_whose_counts_disagree_is_refused() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let data = seeded_bytes(18, 10_000);
            // 10000 bytes in 4096-byte chunks make 3 chunks; this manifest declares 2.
            let hashes: Vec<[u8; 32]> = data.chunks(4096).take(2).map(sha256).collect();
            let body = manifest_with(
                b"count.bin",
                data.len() as u64,
                4096,
                content_hash(&data),
                &hashes,
            );
            refused(
                &mut r,
                "a manifest declaring 2 chunks for 10000 bytes of 4096",
                &frame(MANIFEST, &body),
            );
        });
    }

    #[test]
    fn an_oversized_frame_is_refused_before_it_is_read() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&[]);
            let mut header = (1u32 << 30).to_be_bytes().to_vec();
            header.push(MANIFEST);
            refused(
                &mut r,
                "a frame header declaring a 1 GiB manifest (and no body)",
                &header,
            );
            // A CHUNK may hold its index and one chunk, not a byte more: 4 + 4096 + 1 is too
            // long, and the receiver must not wait for a body it will refuse.
            let data = seeded_bytes(16, 8192);
            let mut wire = frame(MANIFEST, &manifest("long.bin", &data, 4096));
            wire.extend_from_slice(&(4u32 + 4096 + 1).to_be_bytes());
            wire.push(CHUNK);
            refused(
                &mut r,
                "after a manifest of 4 KiB chunks, a CHUNK header declaring 4101 bytes (and no \
                 body)",
                &wire,
            );
        });
    }

    #[test]
    fn a_chunk_that_keeps_failing_ends_the_transfer() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&["--max-retries", "2"]);
            let data = seeded_bytes(20, 8192);
            let mut peer = Raw::connect(&mut r);
            peer.send(&frame(MANIFEST, &manifest("stubborn.bin", &data, 4096)));
            let mut bad = data[..4096].to_vec();
            bad[0] ^= 1;
            // The same damaged chunk, again and again: the receiver asks for it twice more, and
            // gives up on the third failure.
            for _ in 0..3 {
                peer.send(&chunk(0, &bad));
            }
            let sent = "chunk 0 with a wrong byte, three times, to a receiver with --max-retries 2";
            let (resends, message) = peer.until(&mut r, sent, ERROR);
            let message = String::from_utf8_lossy(&message);
            if resends != [0, 0] || !message.contains('0') {
                r.program.fail(format_args!(
                    "sent {sent}; expected exactly two RESENDs of chunk 0 before an ERROR that \
                     names chunk 0, got RESENDs of the chunks {resends:?} and the ERROR \
                     {message:?}"
                ));
            }
            r.assert_absent("stubborn.bin", "a chunk that never matched");
        });
    }

    #[test]
    fn a_chunk_may_fail_as_often_as_max_retries_allows() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&["--max-retries", "2"]);
            let data = seeded_bytes(21, 8192);
            let mut peer = Raw::connect(&mut r);
            peer.send(&frame(MANIFEST, &manifest("patient.bin", &data, 4096)));
            let mut bad = data[..4096].to_vec();
            bad[4095] ^= 0x80;
            for wire in [chunk(0, &bad), chunk(0, &bad), chunk(0, &data[..4096])] {
                peer.send(&wire);
            }
            peer.send(&chunk(1, &data[4096..]));
            peer.send(&frame(SENT_ALL, &[]));
            // A chunk may fail its check as many times as --max-retries.
            let sent = "chunk 0 twice with a wrong byte and then right, to a receiver with \
                        --max-retries 2";
            peer.until(&mut r, sent, COMPLETE);
            r.assert_file("patient.bin", &data);
        });
    }

    #[test]
    fn a_silent_sender_is_dropped_after_the_frame_timeout() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&["--frame-timeout", "1s"]);
            let mut peer = Raw::connect(&mut r);
            // Half a header, then nothing: a slow-loris peer holding a connection open.
            peer.send(&[0, 0]);
            peer.expect_error(
                &mut r,
                "two bytes of a header, then silence, with --frame-timeout 1s",
            );
        });
    }

    #[test]
    fn seeded_garbage_never_kills_the_receiver() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&["--frame-timeout", "1s"]);
            let mut rng = workbook_suite::seeded::rng(0x6A7B);
            for round in 0..20 {
                let len = rng.random_range(1..=600);
                let mut junk = vec![0u8; len];
                rng.fill_bytes(&mut junk);
                // Half the rounds start with a plausible header, so the body checks run too.
                if round % 2 == 0 && junk.len() >= 5 {
                    junk[..4].copy_from_slice(&((len - 5) as u32).to_be_bytes());
                    junk[4] = [MANIFEST, CHUNK, SENT_ALL][round % 3];
                }
                let mut peer = Raw::connect(&mut r);
                peer.send(&junk);
                let _ = peer.read_frame(Duration::from_millis(300));
                r.program
                    .assert_running(format_args!("receiving garbage (round {round})"));
            }
            // A task that panics leaves the process up but ends its transfer without an ERROR:
            // bad input must be refused, never crash anything.
            if let Some(panic) = workbook_suite::program::panic_summary(&r.program.stderr()) {
                r.program.fail(format_args!(
                    "sent 20 rounds of seeded garbage; a task of the receiver panicked: {panic}"
                ));
            }
            let src = tempfile::tempdir().unwrap();
            let data = seeded_bytes(19, 20_000);
            let path = file(src.path(), "after.bin", &data);
            send_ok(&mut r, &[&path], &[]);
            r.event("complete", "after.bin");
            r.assert_file("after.bin", &data);
        });
    }

    #[test]
    fn the_connection_limit_is_enforced() {
        bounded(LIMIT, || {
            let mut r = Receiver::start(&["--max-connections", "2"]);
            let mut held = vec![Raw::connect(&mut r), Raw::connect(&mut r)];
            // The receiver must have taken both before the third arrives: poll until a third
            // is refused (the accept loop may lag a moment behind the kernel).
            let refusal = poll_until(PROMPT, Duration::from_millis(20), || {
                let mut extra = Raw::connect(&mut r);
                match extra.read_frame(Duration::from_millis(500)) {
                    Ok(Frame { kind: ERROR, body }) => {
                        Some(String::from_utf8_lossy(&body).into_owned())
                    }
                    _ => None,
                }
            });
            if refusal.is_none() {
                r.program.fail(
                    "with --max-connections 2 and 2 senders connected, expected a third to get an ERROR frame",
                );
            }
            held.clear();
            let src = tempfile::tempdir().unwrap();
            let path = file(src.path(), "room.bin", b"there is room again");
            let ok = poll_until(PROMPT, Duration::from_millis(50), || {
                let addr = r.addr;
                let sent = send(&mut r, addr, &[&path], &[]);
                sent.status.success().then_some(())
            });
            if ok.is_none() {
                r.program
                    .fail("after the 2 idle senders left, expected a new sender to be served");
            }
        });
    }
}
