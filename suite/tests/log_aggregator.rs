//! Project 2, the concurrent TCP log aggregator speaking syslog and RELP, graded from the outside.
//!
//! Every test starts the real `log-aggregator server` (the binary `WORKBOOK_BIN_LOG_AGGREGATOR`
//! names, or the reference solution) with its output file in a temporary directory, sends it
//! messages over TCP (raw bytes, the suite's own RELP client, or the binary's `send` and
//! `bench`), and reads the file. Where they are installed, the real `logger` (util-linux) and an
//! unprivileged `rsyslogd` forwarding with `omfwd` and `omrelp` drive it too.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use tempfile::TempDir;
use workbook_suite::relp::{RelpConn, RelpFrame};
use workbook_suite::{Program, binary, bounded, poll_until};

/// A line of the output file, quoted, or `none` when there is no such line.
fn quoted_line(line: Option<&String>, none: &str) -> String {
    line.map_or_else(|| none.to_owned(), |l| format!("{l:?}"))
}

/// Every test's overall bound.
const LIMIT: Duration = Duration::from_secs(60);

/// How long a test waits for something that should happen at once.
const PROMPT: Duration = Duration::from_secs(10);

/// How often a test looks at the output file.
const EVERY: Duration = Duration::from_millis(10);

fn bin() -> PathBuf {
    binary("log-aggregator")
}

/// A number sequence that is the same on every run for the same seed (splitmix64).
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The aggregator under test, writing to `out.log` in its own temporary directory.
struct Agg {
    program: Program,
    addr: SocketAddr,
    relp: Option<SocketAddr>,
    dir: TempDir,
}

impl Agg {
    fn start(args: &[&str]) -> Agg {
        let dir = tempfile::tempdir().expect("a temporary directory");
        Agg::start_in(dir, args)
    }

    /// Starts the server on `dir`'s `out.log`; with `--relp-bind`, waits for its RELP
    /// `listening` event.
    fn start_in(dir: TempDir, args: &[&str]) -> Agg {
        let out = dir.path().join("out.log");
        let mut all = vec!["--out", out.to_str().expect("a UTF-8 temporary path")];
        all.extend_from_slice(args);
        let (mut program, addr) = Program::start_server(&bin(), &all);
        let relp = args.contains(&"--relp-bind").then(|| {
            let event = program.expect_json(
                r#"{"event":"listening","protocol":"relp","addr":"ADDR"}"#,
                PROMPT,
                |v| v["event"] == "listening" && v["protocol"] == "relp",
            );
            match event["addr"].as_str().map(str::parse) {
                Some(Ok(addr)) => addr,
                _ => program.fail(format_args!(
                    "the RELP listening event has no addr: {event}"
                )),
            }
        });
        Agg {
            program,
            addr,
            relp,
            dir,
        }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out.log")
    }

    fn relp_addr(&mut self) -> SocketAddr {
        match self.relp {
            Some(addr) => addr,
            None => self.program.fail("started without --relp-bind"),
        }
    }

    /// The lines of `path` so far (lossy), without their LFs.
    fn lines_of(path: &Path) -> Vec<String> {
        let bytes = std::fs::read(path).unwrap_or_default();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn lines(&self) -> Vec<String> {
        Agg::lines_of(&self.out())
    }

    /// Waits until the output file holds at least `n` lines, failing with what it holds (and
    /// the program's state) if it does not within `PROMPT`.
    #[track_caller]
    fn wait_lines(&mut self, n: usize, after: &str) -> Vec<String> {
        let out = self.out();
        let deadline = Instant::now() + PROMPT;
        loop {
            let lines = Agg::lines_of(&out);
            if lines.len() >= n {
                return lines;
            }
            if self.program.exited().is_some() || Instant::now() >= deadline {
                let tail = &lines[lines.len().saturating_sub(5)..];
                self.program.fail(format_args!(
                    "after {after}, expected {n} lines in the output file, found {}; its last \
                     lines:\n    {}",
                    lines.len(),
                    tail.join("\n    ")
                ));
            }
            std::thread::sleep(EVERY);
        }
    }

    /// Like `wait_lines`, and parses each line as JSON.
    #[track_caller]
    fn wait_json(&mut self, n: usize, after: &str) -> Vec<Value> {
        let lines = self.wait_lines(n, after);
        lines
            .iter()
            .map(|line| match serde_json::from_str(line) {
                Ok(value) => value,
                Err(e) => self.program.fail(format_args!(
                    "after {after}, a line is not JSON ({e}): {line}"
                )),
            })
            .collect()
    }

    #[track_caller]
    fn connect(&mut self) -> TcpStream {
        match TcpStream::connect_timeout(&self.addr, PROMPT) {
            Ok(stream) => stream,
            Err(e) => self
                .program
                .fail(format_args!("cannot connect to {}: {e}", self.addr)),
        }
    }

    /// Sends `bytes` on a new connection, half-closes it, and waits for the server to close
    /// its side (which it does once it has appended everything).
    #[track_caller]
    fn send(&mut self, bytes: &[u8]) {
        let mut stream = self.connect();
        if let Err(e) = stream.write_all(bytes) {
            self.program
                .fail(format_args!("sending {} bytes: {e}", bytes.len()));
        }
        let _ = stream.shutdown(Shutdown::Write);
        if !closed_within(&mut stream, PROMPT) {
            self.program.fail(format_args!(
                "sent {} bytes and half-closed; expected the server to close the connection \
                 within {PROMPT:?}, once it had appended them",
                bytes.len()
            ));
        }
    }

    #[track_caller]
    fn relp(&mut self) -> RelpConn {
        let addr = self.relp_addr();
        match RelpConn::connect(addr) {
            Ok(conn) => conn,
            Err(e) => self
                .program
                .fail(format_args!("cannot connect to RELP at {addr}: {e}")),
        }
    }

    /// Reads the next RELP frame, failing with what was sent otherwise.
    #[track_caller]
    fn relp_read(&mut self, conn: &mut RelpConn, sent: &str) -> RelpFrame {
        match conn.read(PROMPT) {
            Ok(frame) => frame,
            Err(no) => self.program.fail(format_args!(
                "sent {sent}, expected a RELP frame, got {}",
                no.after(PROMPT)
            )),
        }
    }

    /// Expects the answer `TXNR rsp ...` whose data starts with `prefix`.
    #[track_caller]
    fn expect_rsp(
        &mut self,
        conn: &mut RelpConn,
        sent: &str,
        txnr: u64,
        prefix: &str,
    ) -> RelpFrame {
        let frame = self.relp_read(conn, sent);
        if frame.txnr != txnr || frame.command != "rsp" || !frame.text().starts_with(prefix) {
            self.program.fail(format_args!(
                "sent {sent}, expected `{txnr} rsp` with data starting {prefix:?}, got {frame}"
            ));
        }
        frame
    }

    /// Opens a RELP session as rsyslog 8.2302 does.
    #[track_caller]
    fn relp_open(&mut self) -> RelpConn {
        let mut conn = self.relp();
        let offers = b"relp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog";
        let _ = conn.command(1, "open", offers);
        let rsp = self.expect_rsp(&mut conn, "1 open relp_version=0 ...", 1, "200 OK");
        let text = rsp.text();
        if !text.contains("\nrelp_version=") || !text.contains("commands=syslog") {
            self.program.fail(format_args!(
                "sent open; expected the answer to offer relp_version and commands=syslog, got {rsp}"
            ));
        }
        conn
    }

    /// Runs the binary's client side (`send`, `bench`) to the end and returns its stdout.
    #[track_caller]
    fn client(&mut self, args: &[&str], stdin: Option<&[u8]>) -> String {
        let mut command = Command::new(bin());
        command.args(args).env("RUST_BACKTRACE", "0");
        if stdin.is_some() {
            command.stdin(std::process::Stdio::piped());
        }
        command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin().display()));
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            let _ = pipe.write_all(input);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                self.program.fail(format_args!(
                    "`{}` did not finish within 30s",
                    args.join(" ")
                ));
            }
            std::thread::sleep(EVERY);
        };
        let mut stdout = String::new();
        let mut stderr = String::new();
        if let Some(mut out) = child.stdout.take() {
            let _ = out.read_to_string(&mut stdout);
        }
        if let Some(mut err) = child.stderr.take() {
            let _ = err.read_to_string(&mut stderr);
        }
        if !status.success() {
            let panic = workbook_suite::program::panic_summary(&stderr)
                .map(|p| format!("it panicked: {p}\n"))
                .unwrap_or_default();
            self.program.fail(format_args!(
                "`{}` failed ({status}); {panic}its stdout: {stdout}\nits stderr: {stderr}",
                args.join(" ")
            ));
        }
        stdout
    }

    /// Sends SIGTERM and expects a clean exit.
    #[track_caller]
    fn stop(&mut self) {
        self.program.terminate();
        match self.program.wait_exit(PROMPT) {
            Some(status) if status.success() => {}
            Some(status) => self.program.fail(format_args!(
                "after SIGTERM, expected exit status 0, got {status}"
            )),
            None => self.program.fail(format_args!(
                "after SIGTERM, the server did not exit within {PROMPT:?}"
            )),
        }
    }

    fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{name}"), &self.program.id().to_string()])
            .status();
    }
}

/// Whether a RELP server closes `conn` within `timeout`, with or without a `serverclose`
/// hint first (any other frame is not a close).
fn relp_closed(conn: &mut RelpConn, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match conn.read(deadline.saturating_duration_since(Instant::now())) {
            Ok(frame) if frame.txnr == 0 && frame.command == "serverclose" => {}
            Ok(_) => return false,
            Err(workbook_suite::framed::NoFrame::Timeout) => return false,
            Err(_) => return true,
        }
    }
}

/// Whether the peer closes `stream` within `timeout` (whatever it sends first is read and
/// dropped).
fn closed_within(stream: &mut TcpStream, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let _ = stream.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

/// `n` distinct lines, `tag-0` to `tag-(n-1)`, each padded to a seeded length.
fn numbered(tag: &str, n: usize, seed: u64) -> Vec<String> {
    let mut rng = Seeded(seed);
    (0..n)
        .map(|i| {
            let pad = "p".repeat(rng.below(200) as usize);
            format!("{tag}-{i} {pad}")
        })
        .collect()
}

fn lf_framed(lines: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out
}

fn octet_counted(message: &[u8]) -> Vec<u8> {
    let mut out = format!("{} ", message.len()).into_bytes();
    out.extend_from_slice(message);
    out
}

/// Where a program is installed: on PATH, or in the sbin directories a user's PATH may lack.
fn installed(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .map(PathBuf::from)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

mod stage1_one_sender {
    use super::*;

    #[test]
    fn lines_land_whole_and_in_order() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&["--format", "raw"]);
            let lines = numbered("line", 300, 1);
            a.send(&lf_framed(&lines));
            let got = a.wait_lines(300, "sending 300 LF-terminated lines");
            if got != lines {
                let at = got
                    .iter()
                    .zip(&lines)
                    .position(|(g, l)| g != l)
                    .unwrap_or(0);
                a.program.fail(format_args!(
                    "sent 300 lines with --format raw; expected the file to hold them as sent, \
                     in order; line {at} is {}, expected {:?}",
                    quoted_line(got.get(at), "missing (the file ends before it)"),
                    lines[at]
                ));
            }
        });
    }

    #[test]
    fn json_is_the_default_with_time_peer_and_message() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&[]);
            let mut stream = a.connect();
            let local = stream.local_addr().expect("a local address").to_string();
            let _ = stream.write_all(b"hello, aggregator\n");
            let got = a.wait_json(1, "sending `hello, aggregator\\n`");
            let v = &got[0];
            if v["msg"] != "hello, aggregator"
                || v["format"] != "plain"
                || v["peer"] != local.as_str()
            {
                a.program.fail(format_args!(
                    "sent `hello, aggregator\\n` from {local}; expected a JSON line with \
                     \"msg\":\"hello, aggregator\", \"format\":\"plain\", \"peer\":\"{local}\"; got {v}"
                ));
            }
            let received = v["received"].as_str().unwrap_or_default();
            let micros = received
                .strip_suffix('Z')
                .and_then(|r| r.rsplit_once('.'))
                .is_some_and(|(_, frac)| {
                    frac.len() == 6 && frac.bytes().all(|b| b.is_ascii_digit())
                });
            if !micros || !received.contains('T') {
                a.program.fail(format_args!(
                    "expected \"received\" in RFC 3339 UTC with microseconds \
                     (2026-01-02T03:04:05.123456Z), got {received:?}"
                ));
            }
        });
    }

    #[test]
    fn crlf_and_blank_lines() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&["--format", "raw"]);
            a.send(b"one\r\n\n\ntwo\nthree");
            let got = a.wait_lines(3, "sending `one\\r\\n\\n\\ntwo\\nthree` then closing");
            if got != ["one", "two", "three"] {
                a.program.fail(format_args!(
                    "sent `one\\r\\n\\n\\ntwo\\nthree` and closed; expected the lines one, two, \
                     three (no CR, blank lines skipped, the last line kept at the close); got {got:?}"
                ));
            }
        });
    }

    #[test]
    fn send_sends_a_file_and_stdin() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&["--format", "raw"]);
            let file = a.dir.path().join("input.txt");
            let lines = numbered("file", 50, 2);
            std::fs::write(&file, lf_framed(&lines)).expect("write the input file");
            let to = a.addr.to_string();
            let file_arg = file.to_str().expect("UTF-8").to_owned();
            let out = a.client(&["send", "--to", &to, &file_arg], None);
            if !out.contains(r#""sent":50"#) {
                a.program.fail(format_args!(
                    "ran `send --to {to} FILE` with 50 lines; expected {{\"sent\":50}} on stdout, got {out:?}"
                ));
            }
            a.wait_lines(50, "`send FILE` with 50 lines");
            a.client(
                &["send", "--to", &to, "--octet-count"],
                Some(b"<13>from stdin\n"),
            );
            let got = a.wait_lines(51, "`send --octet-count` with one line on stdin");
            if got[..50] != lines[..] || got[50] != "<13>from stdin" {
                a.program.fail(format_args!(
                    "expected the file's 50 lines then `<13>from stdin`, got {} lines ending {}",
                    got.len(),
                    quoted_line(got.last(), "nothing")
                ));
            }
        });
    }
}

mod stage2_many_senders {
    use super::*;

    /// Sixteen senders at once, each with its own lines: every line lands whole, exactly once,
    /// in its sender's order.
    fn many_senders(writer: &str) {
        let mut a = Agg::start(&["--format", "raw", "--writer", writer]);
        let senders = 16;
        let per = 400;
        let addr = a.addr;
        let threads: Vec<_> = (0..senders)
            .map(|s| {
                let lines = numbered(&format!("s{s}"), per, 100 + s as u64);
                std::thread::spawn(move || -> Result<(), String> {
                    let mut stream =
                        TcpStream::connect_timeout(&addr, PROMPT).map_err(|e| e.to_string())?;
                    // In small pieces, so that writes from different senders meet.
                    for chunk in lf_framed(&lines).chunks(997) {
                        stream.write_all(chunk).map_err(|e| e.to_string())?;
                    }
                    let _ = stream.shutdown(Shutdown::Write);
                    closed_within(&mut stream, PROMPT)
                        .then_some(())
                        .ok_or_else(|| "the server did not close after the half-close".into())
                })
            })
            .collect();
        for (s, t) in threads.into_iter().enumerate() {
            if let Ok(Err(e)) = t.join() {
                a.program.fail(format_args!("sender {s}: {e}"));
            }
        }
        let got = a.wait_lines(senders * per, "16 senders at once sent 400 lines each");
        let mut next = vec![0usize; senders];
        let expected: Vec<Vec<String>> = (0..senders)
            .map(|s| numbered(&format!("s{s}"), per, 100 + s as u64))
            .collect();
        for (at, line) in got.iter().enumerate() {
            let sender = line
                .strip_prefix('s')
                .and_then(|r| r.split('-').next())
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|&s| s < senders);
            let ok = sender.is_some_and(|s| expected[s].get(next[s]) == Some(line));
            if !ok {
                a.program.fail(format_args!(
                    "with --writer {writer}, line {at} of the file is {line:?}: not the next line \
                     of any sender (torn, interleaved, repeated or out of order)"
                ));
            }
            if let Some(s) = sender {
                next[s] += 1;
            }
        }
        if got.len() != senders * per {
            a.program.fail(format_args!(
                "with --writer {writer}, expected exactly {} lines, found {}",
                senders * per,
                got.len()
            ));
        }
    }

    #[test]
    fn sixteen_senders_with_the_writer_task() {
        bounded(LIMIT, || many_senders("task"));
    }

    #[test]
    fn sixteen_senders_with_a_std_mutex() {
        bounded(LIMIT, || many_senders("std-mutex"));
    }

    #[test]
    fn sixteen_senders_with_a_tokio_mutex() {
        bounded(LIMIT, || many_senders("tokio-mutex"));
    }

    #[test]
    fn bench_checks_the_file_holds_exactly_what_was_sent() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&[]);
            let to = a.addr.to_string();
            let out = a.out().to_str().expect("UTF-8").to_owned();
            let report = a.client(
                &[
                    "bench",
                    "--to",
                    &to,
                    "--connections",
                    "4",
                    "--messages",
                    "2000",
                    "--size",
                    "120",
                    "--check",
                    &out,
                ],
                None,
            );
            let parsed: Option<Value> = report.lines().find_map(|l| serde_json::from_str(l).ok());
            let ok = parsed.as_ref().is_some_and(|v| {
                v["check"] == "ok" && v["messages"] == 8000 && v["messages_per_sec"].is_number()
            });
            if !ok {
                a.program.fail(format_args!(
                    "ran bench with 4 x 2000 messages and --check; expected a JSON report with \
                     \"messages\":8000, \"messages_per_sec\" and \"check\":\"ok\", got {report:?}"
                ));
            }
        });
    }
}

mod stage3_syslog {
    use super::*;

    #[test]
    fn octet_counting_and_lf_mix_on_one_connection() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&["--format", "raw"]);
            let mut wire = octet_counted(b"<13>1 - - - - - - first\nwith an LF inside");
            wire.extend_from_slice(b"<13>second\n");
            wire.extend_from_slice(&octet_counted(b"<14>third"));
            wire.extend_from_slice(b"42 is not an octet count\n");
            wire.extend_from_slice(&octet_counted(b"<15>fifth"));
            a.send(&wire);
            let got = a.wait_lines(5, "mixing octet-counted and LF-terminated messages");
            let expected = [
                "<13>1 - - - - - - first#012with an LF inside",
                "<13>second",
                "<14>third",
                "42 is not an octet count",
                "<15>fifth",
            ];
            if got != expected {
                a.program.fail(format_args!(
                    "sent {:?}; expected these lines (an octet-counted message may hold an LF, \
                     written as #012 in raw output): \
                     {expected:?}; got {got:?}",
                    String::from_utf8_lossy(&wire)
                ));
            }
        });
    }

    #[test]
    fn rfc5424_header_fields() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&[]);
            let msg = b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 4242 ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"App\\]\"] \xEF\xBB\xBFAn application event";
            a.send(&octet_counted(msg));
            let v = a.wait_json(1, "sending an RFC 5424 message").remove(0);
            let want = [
                ("format", Value::from("rfc5424")),
                ("facility", 20.into()),
                ("severity", 5.into()),
                ("timestamp", "2003-10-11T22:14:15.003Z".into()),
                ("hostname", "mymachine.example.com".into()),
                ("app_name", "evntslog".into()),
                ("procid", "4242".into()),
                ("msgid", "ID47".into()),
                (
                    "structured_data",
                    "[exampleSDID@32473 iut=\"3\" eventSource=\"App\\]\"]".into(),
                ),
                ("msg", "An application event".into()),
            ];
            for (field, value) in want {
                if v[field] != value {
                    a.program.fail(format_args!(
                        "sent {:?}; expected \"{field}\": {value} (the BOM dropped from msg), got {v}",
                        String::from_utf8_lossy(msg)
                    ));
                }
            }
            a.send(b"<13>1 - - - - - -\n");
            let v = a.wait_json(2, "sending `<13>1 - - - - - -`").remove(1);
            if v.get("hostname").is_some() || v["msg"] != "" || v["format"] != "rfc5424" {
                a.program.fail(format_args!(
                    "sent `<13>1 - - - - - -`; expected an rfc5424 record with no hostname (the \
                     NILVALUE leaves a field out) and an empty msg, got {v}"
                ));
            }
        });
    }

    #[test]
    fn rfc3164_and_plain() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&[]);
            a.send(
                b"<34>Oct 11 22:14:15 mymachine su[230]: 'su root' failed\n<13>just text\nno pri\n",
            );
            let got = a.wait_json(
                3,
                "sending an RFC 3164 message, a PRI with text, plain text",
            );
            let v = &got[0];
            let ok = v["format"] == "rfc3164"
                && v["facility"] == 4
                && v["severity"] == 2
                && v["timestamp"] == "Oct 11 22:14:15"
                && v["hostname"] == "mymachine"
                && v["app_name"] == "su"
                && v["procid"] == "230"
                && v["msg"] == "'su root' failed";
            if !ok {
                a.program.fail(format_args!(
                    "sent `<34>Oct 11 22:14:15 mymachine su[230]: 'su root' failed`; expected \
                     rfc3164, facility 4, severity 2, timestamp, hostname mymachine, app_name su, \
                     procid 230, msg 'su root' failed; got {v}"
                ));
            }
            if got[1]["format"] != "rfc3164"
                || got[1]["msg"] != "just text"
                || got[1]["severity"] != 5
            {
                a.program.fail(format_args!(
                    "sent `<13>just text`; expected rfc3164 with severity 5 and msg `just text`, got {}",
                    got[1]
                ));
            }
            if got[2]["format"] != "plain"
                || got[2]["msg"] != "no pri"
                || got[2].get("facility").is_some()
            {
                a.program.fail(format_args!(
                    "sent `no pri`; expected format plain, no facility, msg `no pri`, got {}",
                    got[2]
                ));
            }
        });
    }

    #[test]
    fn the_real_logger_in_both_framings_and_formats() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&[]);
            a.send(b"<13>1 - host suite - - - warm-up\n");
            a.wait_json(1, "a warm-up message");
            let Some(logger) = installed("logger") else {
                eprintln!("skipping: logger is not installed (apt-get install bsdutils)");
                return;
            };
            let port = a.addr.port().to_string();
            let runs: [(&[&str], &str, &str); 3] = [
                (&["--rfc5424"], "rfc5424", "logger rfc5424 lf"),
                (
                    &["--rfc5424", "--octet-count"],
                    "rfc5424",
                    "logger rfc5424 octet",
                ),
                (&["--rfc3164"], "rfc3164", "logger rfc3164 lf"),
            ];
            for (n, (flags, format, text)) in runs.iter().enumerate() {
                let mut args = vec![
                    "--tcp",
                    "-n",
                    "127.0.0.1",
                    "-P",
                    &port,
                    "-t",
                    "suitetag",
                    "-p",
                    "local3.warning",
                ];
                args.extend_from_slice(flags);
                args.push(text);
                let status = Command::new(&logger).args(&args).status();
                if !status.as_ref().is_ok_and(|s| s.success()) {
                    a.program.fail(format_args!(
                        "`logger {}` failed: {}",
                        args.join(" "),
                        match &status {
                            Ok(s) => format!("it exited ({s})"),
                            Err(e) => format!("it could not run: {e}"),
                        }
                    ));
                }
                let v = a
                    .wait_json(n + 2, &format!("`logger {}`", args.join(" ")))
                    .remove(n + 1);
                if v["format"] != *format
                    || v["msg"] != *text
                    || v["app_name"] != "suitetag"
                    || v["facility"] != 19
                    || v["severity"] != 4
                {
                    a.program.fail(format_args!(
                        "ran `logger {}`; expected format {format}, app_name suitetag, facility 19, \
                         severity 4, msg {text:?}; got {v}",
                        args.join(" ")
                    ));
                }
            }
        });
    }

    #[test]
    fn rsyslog_omfwd_forwards_in_both_framings() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&["--format", "raw"]);
            a.send(b"warm-up\n");
            a.wait_lines(1, "a warm-up line");
            let port = a.addr.port();
            let actions = format!(
                "action(type=\"omfwd\" target=\"127.0.0.1\" port=\"{port}\" protocol=\"tcp\" \
                 TCP_Framing=\"octet-counted\" template=\"RSYSLOG_SyslogProtocol23Format\")\n\
                 action(type=\"omfwd\" target=\"127.0.0.1\" port=\"{port}\" protocol=\"tcp\" \
                 template=\"RSYSLOG_SyslogProtocol23Format\")"
            );
            let Some(mut rs) = Rsyslog::start(&mut a, &actions) else {
                return;
            };
            let lines = numbered("fwd", 20, 3);
            rs.feed(&mut a, &lines);
            let got = a.wait_lines(
                41,
                "rsyslog forwarded 20 messages twice (two omfwd actions)",
            );
            for line in &lines {
                let seen = got.iter().filter(|g| g.ends_with(line.as_str())).count();
                if seen != 2 {
                    a.program.fail(format_args!(
                        "rsyslog forwarded {line:?} once octet-counted and once LF-framed; \
                         expected it twice in the file, found it {seen} times"
                    ));
                }
            }
        });
    }
}

/// An unprivileged `rsyslogd -n` of the test's own: `imtcp` on a port it picks, forwarding
/// with the given actions.
struct Rsyslog {
    program: Program,
    port: u16,
    _dir: TempDir,
}

impl Rsyslog {
    /// `None` (and a note on stderr) when rsyslogd or a module it needs is not installed.
    fn start(a: &mut Agg, actions: &str) -> Option<Rsyslog> {
        let Some(rsyslogd) = installed("rsyslogd") else {
            eprintln!("skipping: rsyslogd is not installed (apt-get install rsyslog rsyslog-relp)");
            return None;
        };
        let relp = actions.contains("omrelp");
        let has_omrelp = std::fs::read_dir("/usr/lib")
            .into_iter()
            .flatten()
            .flatten()
            .any(|d| d.path().join("rsyslog/omrelp.so").is_file());
        if relp && !has_omrelp {
            eprintln!("skipping: rsyslog's omrelp is not installed (apt-get install rsyslog-relp)");
            return None;
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        let work = dir.path().display().to_string();
        let module = if relp {
            "module(load=\"omrelp\")\n"
        } else {
            ""
        };
        let conf = format!(
            "global(workDirectory=\"{work}\")\nmodule(load=\"imtcp\")\n{module}\
             input(type=\"imtcp\" address=\"127.0.0.1\" port=\"0\" listenPortFileName=\"{work}/port\" ruleset=\"fwd\")\n\
             ruleset(name=\"fwd\") {{\n{actions}\n}}\n"
        );
        let conf_path = dir.path().join("rsyslog.conf");
        std::fs::write(&conf_path, conf).expect("write rsyslog.conf");
        let pid = dir.path().join("rsyslogd.pid");
        let mut program = Program::start(
            &rsyslogd,
            &[
                "-n",
                "-f",
                conf_path.to_str().expect("UTF-8"),
                "-i",
                pid.to_str().expect("UTF-8"),
            ],
        );
        let port_file = dir.path().join("port");
        let port = poll_until(PROMPT, EVERY, || {
            std::fs::read_to_string(&port_file)
                .ok()?
                .trim()
                .parse::<u16>()
                .ok()
        });
        let Some(port) = port else {
            let why = program.diagnosis();
            a.program.fail(format_args!(
                "rsyslogd did not start listening within {PROMPT:?}:\n{why}"
            ));
        };
        Some(Rsyslog {
            program,
            port,
            _dir: dir,
        })
    }

    /// Sends `lines` to rsyslog's imtcp as RFC 3164 messages.
    fn feed(&mut self, a: &mut Agg, lines: &[String]) {
        let mut wire = Vec::new();
        for line in lines {
            wire.extend_from_slice(
                format!("<13>Dec  1 10:00:00 suitehost suite: {line}\n").as_bytes(),
            );
        }
        let sent = TcpStream::connect(("127.0.0.1", self.port)).and_then(|mut s| {
            s.write_all(&wire)?;
            s.shutdown(Shutdown::Write)
        });
        if let Err(e) = sent {
            let why = self.program.diagnosis();
            a.program.fail(format_args!(
                "cannot send to rsyslogd's imtcp on {}: {e}\n{why}",
                self.port
            ));
        }
    }
}

mod stage4_bounds {
    use super::*;

    #[test]
    fn long_messages_are_truncated_with_a_marker() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&["--format", "raw", "--max-message", "100"]);
            let long = "L".repeat(500);
            let mut wire = format!("{long}\n").into_bytes();
            wire.extend_from_slice(&octet_counted(format!("<13>{long}").as_bytes()));
            wire.extend_from_slice(b"after\n");
            a.send(&wire);
            let got = a.wait_lines(
                3,
                "a 500-byte line and a 504-byte octet-counted message with --max-message 100",
            );
            let first = format!("{}[truncated]", &long[..100]);
            let second = format!("<13>{}[truncated]", &long[..96]);
            if got != [first.as_str(), second.as_str(), "after"] {
                a.program.fail(format_args!(
                    "with --max-message 100, expected each long message cut to 100 bytes then \
                     `[truncated]`, the rest dropped, and `after` intact; got {got:?}"
                ));
            }
        });
    }

    #[test]
    fn a_message_of_exactly_the_limit_is_kept_whole() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&["--format", "raw", "--max-message", "100"]);
            let line = "E".repeat(100);
            let counted = format!("<13>{}", "C".repeat(96));
            let mut wire = format!("{line}\n").into_bytes();
            wire.extend_from_slice(&octet_counted(counted.as_bytes()));
            wire.extend_from_slice(b"after\n");
            a.send(&wire);
            let got = a.wait_lines(
                3,
                "a 100-byte line and a 100-byte octet-counted message with --max-message 100",
            );
            if got != [line.as_str(), counted.as_str(), "after"] {
                a.program.fail(format_args!(
                    "with --max-message 100, sent a line and an octet-counted message of exactly \
                     100 bytes; expected both kept whole, without `[truncated]`, then `after`; \
                     got {got:?}"
                ));
            }
        });
    }

    #[test]
    fn truncation_is_marked_in_json() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&["--max-message", "10"]);
            a.send(b"0123456789abcdef\n");
            let v = a
                .wait_json(1, "a 16-byte line with --max-message 10")
                .remove(0);
            if v["msg"] != "0123456789" || v["truncated"] != true {
                a.program.fail(format_args!(
                    "with --max-message 10, sent `0123456789abcdef`; expected msg `0123456789` \
                     and \"truncated\":true, got {v}"
                ));
            }
        });
    }

    #[test]
    fn absurd_or_bad_octet_counts_close_that_connection_only() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&["--format", "raw"]);
            let mut bystander = a.connect();
            let _ = bystander.write_all(b"before\n");
            a.wait_lines(1, "a bystander's first line");
            for bad in [&b"99999999999999 <13>x"[..], b"0012 <13>x"] {
                let mut stream = a.connect();
                let _ = stream.write_all(bad);
                if !closed_within(&mut stream, PROMPT) {
                    a.program.fail(format_args!(
                        "sent {:?}; expected the server to close the connection",
                        String::from_utf8_lossy(bad)
                    ));
                }
            }
            let logged = poll_until(PROMPT, EVERY, || {
                a.program.stderr().contains("octet count").then_some(())
            });
            if logged.is_none() {
                a.program.fail(
                    "expected a log line on stderr naming the bad `octet count` as the reason",
                );
            }
            let _ = bystander.write_all(b"after\n");
            let got = a.wait_lines(2, "the bystander's second line");
            if got != ["before", "after"] {
                a.program.fail(format_args!(
                    "expected only the bystander's lines in the file, got {got:?}"
                ));
            }
        });
    }

    #[test]
    fn one_connection_past_the_limit_is_closed() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&["--format", "raw", "--max-connections", "2"]);
            let mut first = a.connect();
            let mut second = a.connect();
            let _ = first.write_all(b"one\n");
            let _ = second.write_all(b"two\n");
            a.wait_lines(2, "two connections sent a line each");
            let mut third = a.connect();
            if !closed_within(&mut third, PROMPT) {
                a.program.fail(
                    "with --max-connections 2 and two connected, expected a third connection closed",
                );
            }
            drop(first);
            let accepted = poll_until(PROMPT, Duration::from_millis(50), || {
                let mut s = TcpStream::connect(a.addr).ok()?;
                s.write_all(b"three\n").ok()?;
                s.shutdown(Shutdown::Write).ok()?;
                closed_within(&mut s, PROMPT).then_some(())?;
                Agg::lines_of(&a.out())
                    .contains(&"three".to_owned())
                    .then_some(())
            });
            if accepted.is_none() {
                a.program
                    .fail("after one of two connections closed, expected a new one served again");
            }
        });
    }

    #[test]
    fn idle_and_dripping_connections_are_closed_and_free_their_slots() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&[
                "--format",
                "raw",
                "--max-connections",
                "2",
                "--idle-timeout",
                "1s",
            ]);
            let mut silent = a.connect();
            let mut dripping = a.connect();
            let _ = dripping.write_all(b"abc");
            for (what, stream) in [("silent", &mut silent), ("dripping", &mut dripping)] {
                if !closed_within(stream, PROMPT) {
                    a.program.fail(format_args!(
                        "with --idle-timeout 1s, expected a {what} connection (sent {:?}) \
                         closed within {PROMPT:?}",
                        if what == "silent" { "" } else { "abc" }
                    ));
                }
            }
            a.send(b"fresh\n");
            let got = a.wait_lines(2, "two connections timed out and a third sent `fresh`");
            if got != ["abc", "fresh"] {
                a.program.fail(format_args!(
                    "expected the dripped `abc` kept as a last line, then `fresh`; got {got:?}"
                ));
            }
        });
    }

    #[test]
    fn a_sender_that_keeps_completing_messages_is_not_idle() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&["--format", "raw", "--idle-timeout", "1s"]);
            let mut stream = a.connect();
            // Five lines 300 ms apart: the connection outlives the timeout by its messages.
            for i in 0..5 {
                if stream.write_all(format!("tick-{i}\n").as_bytes()).is_err() {
                    a.program.fail(format_args!(
                        "with --idle-timeout 1s and a line every 300 ms, the connection was \
                         closed before line {i}"
                    ));
                }
                a.wait_lines(i + 1, "a line every 300 ms");
                std::thread::sleep(Duration::from_millis(300));
            }
            if closed_within(&mut stream, Duration::from_millis(100)) {
                a.program.fail(
                    "with --idle-timeout 1s, a connection that sent a line every 300 ms for \
                     1.5 s was closed",
                );
            }
        });
    }

    #[test]
    fn an_lf_inside_an_octet_counted_message_cannot_forge_a_record() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&["--format", "raw"]);
            let mut wire = octet_counted(b"<13>real\n<13>forged by the sender");
            wire.extend_from_slice(b"next\n");
            a.send(&wire);
            let got = a.wait_lines(2, "an octet-counted message holding an LF, then a line");
            if got != ["<13>real#012<13>forged by the sender", "next"] {
                a.program.fail(format_args!(
                    "sent `<13>real LF <13>forged by the sender` octet-counted, then `next`; \
                     expected the LF written as #012 (one record per message), got {got:?}"
                ));
            }
        });
    }

    #[test]
    fn invalid_utf8_is_kept_losslessly() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&[]);
            let raw = b"<13>caf\xe9 \xff\xfe ok";
            let mut wire = raw.to_vec();
            wire.push(b'\n');
            a.send(&wire);
            let v = a
                .wait_json(1, "a message that is not valid UTF-8")
                .remove(0);
            let decoded = v["raw_base64"]
                .as_str()
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
            if decoded.as_deref() != Some(&raw[..]) {
                a.program.fail(format_args!(
                    "sent {:?}; expected \"raw_base64\" to hold the message's exact bytes in \
                     standard base64, got {v}",
                    raw.escape_ascii().to_string()
                ));
            }
        });
    }

    #[test]
    fn random_bytes_never_crash_it_nor_touch_another_sender() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&["--format", "raw", "--max-message", "1KiB"]);
            let mut rng = Seeded(42);
            for _ in 0..8 {
                let noise: Vec<u8> = (0..32 * 1024).map(|_| rng.next() as u8).collect();
                if let Ok(mut s) = TcpStream::connect(a.addr) {
                    let _ = s.write_all(&noise);
                }
            }
            a.program.assert_running("reading random bytes");
            let before = a.lines().len();
            a.send(b"still here\n");
            let found = poll_until(PROMPT, EVERY, || {
                let lines = a.lines();
                lines[before.min(lines.len())..]
                    .iter()
                    .any(|l| l == "still here")
                    .then_some(())
            });
            if found.is_none() {
                a.program.fail(
                    "after random bytes from 8 connections, expected `still here` in the file",
                );
            }
        });
    }
}

mod stage5_shutdown {
    use super::*;

    #[test]
    fn sigterm_keeps_everything_sent_before_it() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&["--format", "raw"]);
            let lines = numbered("term", 5000, 4);
            let mut stream = a.connect();
            if let Err(e) = stream.write_all(&lf_framed(&lines)) {
                a.program.fail(format_args!("sending 5000 lines: {e}"));
            }
            // The connection stays open: the server must take what it was sent, then stop.
            a.stop();
            let got = a.lines();
            if got != lines {
                a.program.fail(format_args!(
                    "sent 5000 lines, then SIGTERM with the connection open; expected all 5000 \
                     in the file after the exit, found {}",
                    got.len()
                ));
            }
            let stopped =
                a.program
                    .expect_json(r#"{"event":"stopped","messages":5000}"#, PROMPT, |v| {
                        v["event"] == "stopped"
                    });
            if stopped["messages"] != 5000 {
                a.program.fail(format_args!(
                    "expected the stopped event to count 5000 messages, got {stopped}"
                ));
            }
        });
    }

    #[test]
    fn idle_connections_do_not_hold_up_the_exit() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&[]);
            let _idle: Vec<TcpStream> = (0..5).map(|_| a.connect()).collect();
            a.send(b"x\n");
            a.wait_lines(1, "one line");
            a.stop();
        });
    }

    #[test]
    fn every_fsync_policy_and_writer_keeps_the_lines() {
        bounded(LIMIT, || {
            for writer in ["task", "std-mutex", "tokio-mutex"] {
                for fsync in ["never", "batch", "always"] {
                    let mut a =
                        Agg::start(&["--format", "raw", "--writer", writer, "--fsync", fsync]);
                    let lines = numbered(&format!("{writer}-{fsync}"), 100, 5);
                    let mut stream = a.connect();
                    let _ = stream.write_all(&lf_framed(&lines));
                    a.stop();
                    if a.lines() != lines {
                        a.program.fail(format_args!(
                            "with --writer {writer} --fsync {fsync}, sent 100 lines then SIGTERM; \
                             expected them all in order, found {}",
                            a.lines().len()
                        ));
                    }
                }
            }
        });
    }
}

mod stage6_relp {
    use super::*;

    #[test]
    fn an_idle_session_is_closed() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&["--idle-timeout", "1s", "--relp-bind", "127.0.0.1:0"]);
            let mut session = a.relp_open();
            if !relp_closed(&mut session, PROMPT) {
                a.program.fail(
                    "with --idle-timeout 1s, opened a RELP session and sent nothing more; \
                     expected the server to close it",
                );
            }
        });
    }

    #[test]
    fn a_session_opens_sends_and_closes() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&["--relp-bind", "127.0.0.1:0"]);
            let mut conn = a.relp_open();
            for txnr in 2..5u64 {
                let msg = format!("<13>1 - host relp - - - message {txnr}");
                let _ = conn.command(txnr, "syslog", msg.as_bytes());
                a.expect_rsp(&mut conn, &format!("{txnr} syslog {msg}"), txnr, "200 OK");
            }
            let got = a.wait_json(3, "three acknowledged RELP messages");
            for (i, v) in got.iter().enumerate() {
                let want = format!("message {}", i + 2);
                if v["msg"] != want.as_str() || v["transport"] != "relp" || v["hostname"] != "host"
                {
                    a.program.fail(format_args!(
                        "expected line {i} to have msg {want:?}, transport relp, hostname host; got {v}"
                    ));
                }
            }
            let _ = conn.command(5, "close", b"");
            a.expect_rsp(&mut conn, "5 close", 5, "200");
            if !conn.is_closed(PROMPT) {
                a.program.fail(
                    "sent close and got its rsp; expected the server to close the connection",
                );
            }
        });
    }

    #[test]
    fn each_ack_comes_after_its_line_is_in_the_file() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&[
                "--relp-bind",
                "127.0.0.1:0",
                "--format",
                "raw",
                "--fsync",
                "always",
            ]);
            let mut conn = a.relp_open();
            for txnr in 2..52u64 {
                let msg = format!("acked {txnr}");
                let _ = conn.command(txnr, "syslog", msg.as_bytes());
                a.expect_rsp(&mut conn, &format!("{txnr} syslog {msg}"), txnr, "200 OK");
                let lines = a.lines();
                if lines.last() != Some(&msg) {
                    a.program.fail(format_args!(
                        "got the ack to `{txnr} syslog {msg}`, but the file's last line is {}: an \
                         ack must come only once its message is in the file",
                        quoted_line(lines.last(), "missing (the file is empty)")
                    ));
                }
            }
        });
    }

    #[test]
    fn a_full_window_is_acked_in_order() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&["--relp-bind", "127.0.0.1:0", "--format", "raw"]);
            let mut conn = a.relp_open();
            let mut wire = Vec::new();
            for txnr in 2..130u64 {
                wire.extend_from_slice(&workbook_suite::relp::encode(
                    txnr,
                    "syslog",
                    format!("w{txnr}").as_bytes(),
                ));
            }
            let _ = conn.send_raw(&wire);
            for txnr in 2..130u64 {
                a.expect_rsp(&mut conn, "128 syslog commands at once", txnr, "200 OK");
            }
            let got = a.wait_lines(128, "a window of 128 RELP messages");
            let expected: Vec<String> = (2..130).map(|t| format!("w{t}")).collect();
            if got != expected {
                a.program
                    .fail("expected the 128 messages in the file in txnr order");
            }
        });
    }

    #[test]
    fn syslog_before_open_and_garbage_end_the_session() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&["--relp-bind", "127.0.0.1:0"]);
            let mut conn = a.relp();
            let _ = conn.command(1, "syslog", b"<13>too early");
            a.expect_rsp(&mut conn, "1 syslog before open", 1, "500");
            if !relp_closed(&mut conn, PROMPT) {
                a.program
                    .fail("sent syslog before open; expected rsp 500 and the connection closed");
            }
            for garbage in [
                &b"x open 0\n"[..],
                b"1 open 99999999 abc\n",
                b"1 open 3 abcdef\n",
            ] {
                let mut conn = a.relp();
                let _ = conn.send_raw(garbage);
                if !relp_closed(&mut conn, PROMPT) {
                    a.program.fail(format_args!(
                        "sent {:?}; expected the session closed",
                        String::from_utf8_lossy(garbage)
                    ));
                }
            }
            let mut conn = a.relp_open();
            let _ = conn.command(2, "syslog", b"fine");
            a.expect_rsp(&mut conn, "2 syslog fine after the garbage", 2, "200 OK");
        });
    }

    #[test]
    fn sigterm_acks_what_came_then_sends_serverclose() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&["--relp-bind", "127.0.0.1:0", "--format", "raw"]);
            let mut conn = a.relp_open();
            let _ = conn.command(2, "syslog", b"last words");
            a.expect_rsp(&mut conn, "2 syslog last words", 2, "200 OK");
            a.program.terminate();
            let hint = a.relp_read(&mut conn, "nothing (SIGTERM to the server)");
            if hint.txnr != 0 || hint.command != "serverclose" {
                a.program.fail(format_args!(
                    "after SIGTERM, expected `0 serverclose 0`, got {hint}"
                ));
            }
            if !conn.is_closed(PROMPT) {
                a.program
                    .fail("expected the connection closed after serverclose");
            }
            match a.program.wait_exit(PROMPT) {
                Some(s) if s.success() => {}
                Some(other) => a
                    .program
                    .fail(format_args!("expected exit status 0, it exited ({other})")),
                None => a.program.fail(format_args!(
                    "expected exit status 0, it was still running after {PROMPT:?}"
                )),
            }
            if a.lines() != ["last words"] {
                a.program.fail(format_args!(
                    "expected `last words` in the file, got {:?}",
                    a.lines()
                ));
            }
        });
    }

    #[test]
    fn send_relp_gets_every_message_acked() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&["--relp-bind", "127.0.0.1:0", "--format", "raw"]);
            let relp = a.relp_addr().to_string();
            let lines = numbered("relp", 1000, 6);
            let out = a.client(&["send", "--relp", "--to", &relp], Some(&lf_framed(&lines)));
            if !out.contains(r#""sent":1000"#) {
                a.program.fail(format_args!(
                    "expected `send --relp` to report 1000 sent, got {out:?}"
                ));
            }
            if a.lines() != lines {
                a.program.fail(format_args!(
                    "`send --relp` returned, so every message was acked; expected all 1000 in the \
                     file in order, found {}",
                    a.lines().len()
                ));
            }
        });
    }

    /// The messages of `lines` that are in the file at least once (JSON `msg` ends with them).
    fn landed(a: &Agg, lines: &[String]) -> usize {
        let got: Vec<String> = a
            .lines()
            .iter()
            .filter_map(|g| serde_json::from_str::<Value>(g).ok())
            .filter_map(|v| v["msg"].as_str().map(|m| m.trim().to_owned()))
            .collect();
        lines
            .iter()
            .filter(|l| got.iter().any(|g| g == l.trim()))
            .count()
    }

    #[test]
    fn rsyslog_omrelp_loses_nothing_across_a_kill_9() {
        bounded(Duration::from_secs(90), || {
            let mut a = Agg::start(&["--relp-bind", "127.0.0.1:0"]);
            let mut conn = a.relp_open();
            let _ = conn.command(2, "syslog", b"<13>1 - - - - - - warm-up");
            a.expect_rsp(&mut conn, "2 syslog warm-up", 2, "200 OK");
            drop(conn);
            let relp = a.relp_addr();
            let actions = format!(
                "action(type=\"omrelp\" target=\"127.0.0.1\" port=\"{}\" \
                 action.resumeRetryCount=\"-1\" action.resumeInterval=\"1\")",
                relp.port()
            );
            let Some(mut rs) = Rsyslog::start(&mut a, &actions) else {
                return;
            };
            let first = numbered("before", 50, 7);
            rs.feed(&mut a, &first);
            let all_first = poll_until(Duration::from_secs(20), EVERY, || {
                (landed(&a, &first) == first.len()).then_some(())
            });
            if all_first.is_none() {
                let n = landed(&a, &first);
                a.program.fail(format_args!(
                    "rsyslog's omrelp forwarded 50 messages; {n} reached the file within 20s"
                ));
            }
            // SIGKILL: nothing gets flushed, closed or said.
            let Agg { program, dir, .. } = a;
            drop(program);
            let second = numbered("during", 50, 8);
            rs.feed_quietly(&second);
            let bind = relp.to_string();
            let mut a = Agg::start_in(dir, &["--relp-bind", &bind]);
            let all = poll_until(Duration::from_secs(40), Duration::from_millis(50), || {
                (landed(&a, &second) == second.len()).then_some(())
            });
            if all.is_none() {
                let n = landed(&a, &second);
                a.program.fail(format_args!(
                    "sent 50 messages through rsyslog while the aggregator was killed, then \
                     restarted it on {bind}; expected omrelp to resend all 50, {n} arrived within 40s"
                ));
            }
            for line in a.lines() {
                if serde_json::from_str::<Value>(&line).is_err() {
                    a.program.fail(format_args!(
                        "a torn line in the file after the kill: {line:?}"
                    ));
                }
            }
            if landed(&a, &first) != first.len() {
                a.program
                    .fail("messages acked before the kill are gone from the file");
            }
        });
    }

    impl Rsyslog {
        /// Like `feed`, when there is no aggregator to blame for a failure.
        fn feed_quietly(&mut self, lines: &[String]) {
            let mut wire = Vec::new();
            for line in lines {
                wire.extend_from_slice(
                    format!("<13>Dec  1 10:00:00 suitehost suite: {line}\n").as_bytes(),
                );
            }
            let sent =
                TcpStream::connect(("127.0.0.1", self.port)).and_then(|mut s| s.write_all(&wire));
            if let Err(e) = sent {
                let why = self.program.diagnosis();
                panic!(
                    "cannot send to rsyslogd's imtcp on {}: {e}\n{why}",
                    self.port
                );
            }
        }
    }
}

mod stage7_rotation {
    use super::*;

    #[test]
    fn rotate_size_keeps_n_files_and_splits_no_line() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&["--format", "raw", "--rotate-size", "2KiB", "--keep", "3"]);
            let lines = numbered("rot", 400, 9);
            let lines: Vec<String> = lines
                .iter()
                .map(|l| l[..l.len().min(40)].to_owned())
                .collect();
            for chunk in lines.chunks(20) {
                a.send(&lf_framed(chunk));
            }
            let out = a.out();
            let rotated = |n: usize| PathBuf::from(format!("{}.{n}", out.display()));
            let mut kept = Vec::new();
            for n in (1..=3).rev() {
                if !rotated(n).is_file() {
                    a.program.fail(format_args!(
                        "sent about 16 KiB with --rotate-size 2KiB --keep 3; expected {} to exist",
                        rotated(n).display()
                    ));
                }
                let size = std::fs::metadata(rotated(n)).map(|m| m.len()).unwrap_or(0);
                if size > 2048 {
                    a.program.fail(format_args!(
                        "{} holds {size} bytes, more than --rotate-size 2KiB",
                        rotated(n).display()
                    ));
                }
                kept.extend(Agg::lines_of(&rotated(n)));
            }
            if rotated(4).exists() {
                a.program.fail("with --keep 3, expected no FILE.4");
            }
            kept.extend(a.lines());
            let start = lines.len() - kept.len();
            if kept != lines[start..] {
                a.program.fail(format_args!(
                    "expected FILE.3, FILE.2, FILE.1 then FILE to hold the last {} lines sent, \
                     whole and in order",
                    kept.len()
                ));
            }
        });
    }

    #[test]
    fn sighup_reopens_the_file_after_a_move() {
        bounded(LIMIT, || {
            let mut a = Agg::start(&["--format", "raw"]);
            let before = numbered("old", 10, 10);
            a.send(&lf_framed(&before));
            a.wait_lines(10, "ten lines");
            let out = a.out();
            let moved = a.dir.path().join("out.log.moved");
            std::fs::rename(&out, &moved).expect("move the output file");
            a.signal("HUP");
            if poll_until(PROMPT, EVERY, || out.exists().then_some(())).is_none() {
                a.program
                    .fail("moved the output file and sent SIGHUP; expected the file created again");
            }
            let after = numbered("new", 10, 11);
            a.send(&lf_framed(&after));
            let got = a.wait_lines(10, "ten lines after SIGHUP");
            let old = Agg::lines_of(&moved);
            if got != after || old != before {
                a.program.fail(format_args!(
                    "expected the first ten lines in the moved file and the next ten in the new \
                     one; found {} and {}",
                    old.len(),
                    got.len()
                ));
            }
            a.program.assert_running("after SIGHUP");
        });
    }
}
