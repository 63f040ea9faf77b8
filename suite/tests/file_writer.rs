//! Project 5, the distributed chunked file writer that speaks tus 1.0.0, graded from the outside.
//!
//! Every test starts the real `file-writer server` on a temporary directory and talks tus to it
//! over HTTP/1.1 with the suite's own small client (`workbook_suite::http`), which sends exactly
//! the bytes a test wants: cut bodies, wrong offsets, lies. Some tests run the project's own
//! `file-writer upload`, and the last stage drives the server with curl, tuspy and
//! tus-js-client, skipping each one that is not installed.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha1::Digest as _;
use sha2::Digest as _;
use tempfile::TempDir;
use workbook_suite::http::{self, Reply, shown_headers};
use workbook_suite::shown::{first_difference, or};
use workbook_suite::{Program, binary, bounded, poll_until};

/// Every test's overall bound.
const LIMIT: Duration = Duration::from_secs(60);

/// How long an answer that should come at once may take.
const PROMPT: Duration = Duration::from_secs(10);

fn bin() -> PathBuf {
    binary("file-writer")
}

/// Deterministic bytes: the same on every run for the same seed (splitmix64).
fn seeded_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

const TUS: (&str, &str) = ("Tus-Resumable", "1.0.0");
const OCTETS: (&str, &str) = ("Content-Type", "application/offset+octet-stream");

/// A server under test, on its own temporary directory.
struct Server {
    program: Program,
    addr: SocketAddr,
    dir: TempDir,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        Server::start_in(tempfile::tempdir().expect("a temporary directory"), args)
    }

    fn start_in(dir: TempDir, args: &[&str]) -> Server {
        let dir_arg = dir.path().display().to_string();
        let mut all = vec!["--dir", dir_arg.as_str()];
        all.extend_from_slice(args);
        let (program, addr) = Program::start_server(&bin(), &all);
        Server { program, addr, dir }
    }

    /// Sends a request exactly as given (no `Tus-Resumable` added) and returns the answer.
    #[track_caller]
    fn raw(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        match http::request(self.addr, method, path, headers, body, PROMPT) {
            Ok(reply) => reply,
            Err(e) => self.program.fail(format_args!(
                "sent {method} {path} with headers {} and {} bytes of body; expected \
                 an answer, got: {e}",
                shown_headers(headers),
                body.len()
            )),
        }
    }

    /// Sends a tus request: `headers` plus `Tus-Resumable: 1.0.0`.
    #[track_caller]
    fn tus(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut all = vec![TUS];
        all.extend_from_slice(headers);
        self.raw(method, path, &all, body)
    }

    /// Fails unless `reply` has `status`.
    #[track_caller]
    fn expect(&mut self, reply: &Reply, status: u16, sent: &str) {
        if reply.status != status {
            self.program.fail(format_args!(
                "sent {sent}; expected status {status}, got {}",
                reply.summary()
            ));
        }
    }

    /// Fails unless `reply` has header `name` equal to `value`.
    #[track_caller]
    fn expect_header(&mut self, reply: &Reply, name: &str, value: &str, sent: &str) {
        if reply.header(name) != Some(value) {
            self.program.fail(format_args!(
                "sent {sent}; expected the header {name}: {value}, got {}",
                reply.summary()
            ));
        }
    }

    /// Creates an upload with `headers` and returns its path, `/files/ID`.
    #[track_caller]
    fn create(&mut self, headers: &[(&str, &str)]) -> String {
        let reply = self.tus("POST", "/files/", headers, b"");
        let sent = format!("POST /files/ with {}", shown_headers(headers));
        self.expect(&reply, 201, &sent);
        self.path_of(&reply, &sent)
    }

    /// The `/files/ID` path of the Location of `reply`.
    #[track_caller]
    fn path_of(&mut self, reply: &Reply, sent: &str) -> String {
        let location = reply.header("location").unwrap_or("").to_owned();
        match location.find("/files/") {
            Some(at) => location[at..].to_owned(),
            None => self.program.fail(format_args!(
                "sent {sent}; expected a Location header ending in /files/ID, got {}",
                reply.summary()
            )),
        }
    }

    /// Creates an upload of `length` bytes.
    #[track_caller]
    fn create_len(&mut self, length: u64) -> String {
        self.create(&[("Upload-Length", &length.to_string())])
    }

    /// PATCHes `bytes` at `offset`, with `extra` headers.
    #[track_caller]
    fn patch(&mut self, path: &str, offset: u64, bytes: &[u8], extra: &[(&str, &str)]) -> Reply {
        let offset = offset.to_string();
        let mut headers = vec![OCTETS, ("Upload-Offset", offset.as_str())];
        headers.extend_from_slice(extra);
        self.tus("PATCH", path, &headers, bytes)
    }

    /// PATCHes and expects 204 with the new offset.
    #[track_caller]
    fn patch_ok(&mut self, path: &str, offset: u64, bytes: &[u8]) {
        let reply = self.patch(path, offset, bytes, &[]);
        let sent = format!("PATCH {path} at offset {offset} with {} bytes", bytes.len());
        self.expect(&reply, 204, &sent);
        let next = (offset + bytes.len() as u64).to_string();
        self.expect_header(&reply, "Upload-Offset", &next, &sent);
    }

    /// HEAD, expecting 200.
    #[track_caller]
    fn head(&mut self, path: &str) -> Reply {
        let reply = self.tus("HEAD", path, &[], b"");
        self.expect(&reply, 200, &format!("HEAD {path}"));
        reply
    }

    /// The offset HEAD reports.
    #[track_caller]
    fn offset(&mut self, path: &str) -> u64 {
        let reply = self.head(path);
        match reply.number("Upload-Offset") {
            Some(offset) => offset,
            None => self.program.fail(format_args!(
                "sent HEAD {path}; expected an Upload-Offset, got {}",
                reply.summary()
            )),
        }
    }

    /// The bytes file of upload `path` in the directory (`DIR/ID`).
    fn data(&self, path: &str) -> Vec<u8> {
        let id = path.rsplit('/').next().unwrap_or("");
        std::fs::read(self.dir.path().join(id)).unwrap_or_default()
    }

    /// Fails unless the file of upload `path` holds `expected` (its first bytes, if `prefix`).
    #[track_caller]
    fn assert_data(&mut self, path: &str, expected: &[u8], prefix: bool) {
        let got = self.data(path);
        let same = if prefix {
            got.len() >= expected.len() && got[..expected.len()] == *expected
        } else {
            got == expected
        };
        if !same {
            self.program.fail(format_args!(
                "the file of upload {path} (DIR/ID) holds {} bytes, expected {}{} bytes; {}",
                got.len(),
                if prefix { "at least " } else { "" },
                expected.len(),
                first_difference(&got, expected)
            ));
        }
    }

    /// Fails unless OPTIONS answers: a real-client test checks this before it looks for its
    /// client, so that it never passes against a server that does not run.
    #[track_caller]
    fn answers_options(&mut self) {
        let reply = self.raw("OPTIONS", "/files/", &[], b"");
        if !matches!(reply.status, 200 | 204) {
            self.program.fail(format_args!(
                "OPTIONS /files/: expected 204, got {}",
                reply.summary()
            ));
        }
    }

    /// Two partial uploads of 5 and 6 bytes, the first holding "hel", and a final upload of
    /// both: their paths (a, b, final).
    #[track_caller]
    fn unfinished_final(&mut self) -> (String, String, String) {
        let a = self.create(&[("Upload-Length", "5"), ("Upload-Concat", "partial")]);
        let b = self.create(&[("Upload-Length", "6"), ("Upload-Concat", "partial")]);
        self.patch_ok(&a, 0, b"hel");
        let concat = format!("final;{a} {b}");
        let reply = self.tus("POST", "/files/", &[("Upload-Concat", &concat)], b"");
        self.expect(&reply, 201, "POST of a final upload of unfinished parts");
        let whole = self.path_of(&reply, "POST of a final upload");
        (a, b, whole)
    }

    /// The names in the directory.
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn sha1_b64(bytes: &[u8]) -> String {
    b64(&sha1::Sha1::digest(bytes))
}

fn sha256_b64(bytes: &[u8]) -> String {
    b64(&sha2::Sha256::digest(bytes))
}

/// Sends the head of a PATCH announcing `announced` bytes and `sent` bytes of its body, and
/// returns the open connection.
fn partial_patch(
    addr: SocketAddr,
    path: &str,
    offset: u64,
    announced: usize,
    sent: &[u8],
) -> TcpStream {
    let offset = offset.to_string();
    let announced = announced.to_string();
    let headers = [
        TUS,
        OCTETS,
        ("Upload-Offset", offset.as_str()),
        ("Content-Length", announced.as_str()),
    ];
    let mut stream = TcpStream::connect(addr)
        .unwrap_or_else(|e| panic!("cannot connect to the server at {addr}: {e}"));
    let bytes = http::request_bytes(addr, "PATCH", path, &headers, sent);
    stream
        .write_all(&bytes)
        .unwrap_or_else(|e| panic!("sending a partial PATCH {path}: {e}"));
    stream
}

/// Runs `file-writer upload` to completion (bounded) and returns its stdout's last JSON line.
fn upload(server: &mut Server, file: &Path, extra: &[&str]) -> serde_json::Value {
    let to = format!("http://{}/files/", server.addr);
    upload_to(&to, file, extra)
}

/// [`upload`] to the creation URL `to` (through a proxy, say).
fn upload_to(to: &str, file: &Path, extra: &[&str]) -> serde_json::Value {
    let file_arg = file.display().to_string();
    let mut args = vec!["upload", "--to", to];
    args.extend_from_slice(extra);
    args.push(&file_arg);
    let mut program = Program::start(&bin(), &args);
    let status = program.wait_exit(Duration::from_secs(40));
    let mut last = None;
    while let Some(line) = program.next_line(Duration::from_millis(200)) {
        last = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .or(last);
    }
    match (status, last) {
        (Some(s), Some(v)) if s.success() && v["event"] == "uploaded" => v,
        (status, last) => program.fail(format_args!(
            "expected `file-writer {}` to exit 0 with a last line {{\"event\": \"uploaded\", \
             ...}}; {}, and its last JSON line was {}",
            args.join(" "),
            match status {
                Some(s) => format!("it exited ({s})"),
                None => "it was still running after 40s".to_owned(),
            },
            or(&last, "none (no JSON line on stdout)")
        )),
    }
}

mod stage1_create_head_options {
    use super::*;

    #[test]
    fn options_announces_the_version_extensions_and_limits() {
        bounded(LIMIT, || {
            let mut s = Server::start(&["--max-size", "1MiB"]);
            let reply = s.raw("OPTIONS", "/files/", &[], b"");
            if !matches!(reply.status, 200 | 204) {
                s.program.fail(format_args!(
                    "sent OPTIONS /files/ (no Tus-Resumable, as a client may); expected 204 or \
                     200, got {}",
                    reply.summary()
                ));
            }
            s.expect_header(&reply, "Tus-Version", "1.0.0", "OPTIONS /files/");
            s.expect_header(
                &reply,
                "Tus-Max-Size",
                "1048576",
                "OPTIONS /files/ with --max-size 1MiB",
            );
            let extensions: Vec<&str> = reply
                .header("Tus-Extension")
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .collect();
            for wanted in [
                "creation",
                "creation-with-upload",
                "creation-defer-length",
                "termination",
                "expiration",
                "checksum",
                "concatenation",
                "concatenation-unfinished",
            ] {
                if !extensions.contains(&wanted) {
                    s.program.fail(format_args!(
                        "sent OPTIONS /files/; expected {wanted:?} in Tus-Extension, got {}",
                        reply.summary()
                    ));
                }
            }
            let algorithms = reply
                .header("Tus-Checksum-Algorithm")
                .unwrap_or("")
                .to_owned();
            if !algorithms.split(',').any(|a| a.trim() == "sha1")
                || !algorithms.split(',').any(|a| a.trim() == "sha256")
            {
                s.program.fail(format_args!(
                    "sent OPTIONS /files/; expected sha1 and sha256 in Tus-Checksum-Algorithm, \
                     got {}",
                    reply.summary()
                ));
            }
        });
    }

    #[test]
    fn post_creates_an_upload_that_head_describes() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            let metadata = format!("filename {},is_confidential", b64(b"report.pdf"));
            let reply = s.tus(
                "POST",
                "/files/",
                &[("Upload-Length", "100"), ("Upload-Metadata", &metadata)],
                b"",
            );
            s.expect(&reply, 201, "POST /files/ with Upload-Length: 100");
            s.expect_header(&reply, "Tus-Resumable", "1.0.0", "POST /files/");
            let path = s.path_of(&reply, "POST /files/");
            let head = s.head(&path);
            let sent = format!("HEAD {path} of a new 100-byte upload");
            s.expect_header(&head, "Upload-Offset", "0", &sent);
            s.expect_header(&head, "Upload-Length", "100", &sent);
            s.expect_header(&head, "Cache-Control", "no-store", &sent);
            s.expect_header(&head, "Tus-Resumable", "1.0.0", &sent);
            s.expect_header(&head, "Upload-Metadata", &metadata, &sent);
        });
    }

    #[test]
    fn ids_are_distinct_and_carry_128_bits() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            let mut ids = Vec::new();
            for _ in 0..20 {
                let path = s.create_len(1);
                let id = path.trim_start_matches("/files/").to_owned();
                if id.len() < 32 {
                    s.program.fail(format_args!(
                        "upload id {id:?}: expected at least 128 random bits (32 hex digits)"
                    ));
                }
                ids.push(id);
            }
            ids.sort();
            ids.dedup();
            if ids.len() != 20 {
                s.program.fail("20 POSTs gave fewer than 20 distinct ids");
            }
        });
    }

    #[test]
    fn another_or_no_tus_version_is_412_with_tus_version() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            for headers in [
                vec![("Tus-Resumable", "0.2.2"), ("Upload-Length", "5")],
                vec![("Upload-Length", "5")],
            ] {
                let reply = s.raw("POST", "/files/", &headers, b"");
                let sent = format!("POST /files/ with {}", shown_headers(&headers));
                s.expect(&reply, 412, &sent);
                s.expect_header(&reply, "Tus-Version", "1.0.0", &sent);
            }
            if s.names().iter().any(|n| !n.starts_with('.')) {
                s.program.fail(format_args!(
                    "a refused POST must create nothing; the directory holds {:?}",
                    s.names()
                ));
            }
        });
    }

    #[test]
    fn deferred_length_and_too_large_and_unknown() {
        bounded(LIMIT, || {
            let mut s = Server::start(&["--max-size", "1000"]);
            let path = s.create(&[("Upload-Defer-Length", "1")]);
            let head = s.head(&path);
            s.expect_header(
                &head,
                "Upload-Defer-Length",
                "1",
                "HEAD of a deferred-length upload",
            );
            let reply = s.tus("POST", "/files/", &[("Upload-Length", "1001")], b"");
            s.expect(
                &reply,
                413,
                "POST /files/ with Upload-Length 1001 over --max-size 1000",
            );
            let reply = s.tus("POST", "/files/", &[("Upload-Defer-Length", "2")], b"");
            s.expect(&reply, 400, "POST /files/ with Upload-Defer-Length: 2");
            let reply = s.tus("POST", "/files/", &[], b"");
            s.expect(
                &reply,
                400,
                "POST /files/ with neither Upload-Length nor Upload-Defer-Length",
            );
            let reply = s.tus("HEAD", "/files/0123456789abcdef0123456789abcdef", &[], b"");
            s.expect(&reply, 404, "HEAD of an upload that never existed");
            if reply.header("Upload-Offset").is_some() {
                s.program
                    .fail("a 404 for HEAD must not carry Upload-Offset");
            }
        });
    }
}

mod stage2_patch_at_offsets {
    use super::*;

    #[test]
    fn patches_in_order_build_the_file() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            let data = seeded_bytes(2, 300_000);
            let path = s.create_len(data.len() as u64);
            for (i, chunk) in data.chunks(64 << 10).enumerate() {
                s.patch_ok(&path, (i * (64 << 10)) as u64, chunk);
            }
            let head = s.head(&path);
            s.expect_header(
                &head,
                "Upload-Offset",
                "300000",
                "HEAD after the last PATCH",
            );
            s.assert_data(&path, &data, false);
            s.program.expect_json(
                "{\"event\": \"complete\", ...} for the finished upload",
                PROMPT,
                |v| v["event"] == "complete" && v["length"] == 300_000,
            );
        });
    }

    #[test]
    fn a_wrong_offset_is_409_and_writes_nothing() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            let path = s.create_len(10);
            s.patch_ok(&path, 0, b"hello");
            for offset in [0, 3, 7] {
                let reply = s.patch(&path, offset, b"XXXXX", &[]);
                s.expect(
                    &reply,
                    409,
                    &format!("PATCH at offset {offset} when the offset is 5"),
                );
            }
            s.assert_data(&path, b"hello", true);
            let offset = s.offset(&path);
            if offset != 5 {
                s.program.fail(format_args!(
                    "after refused PATCHes the offset is {offset}, expected 5"
                ));
            }
        });
    }

    #[test]
    fn a_wrong_content_type_is_415_and_a_missing_offset_400() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            let path = s.create_len(10);
            let reply = s.tus(
                "PATCH",
                &path,
                &[("Content-Type", "text/plain"), ("Upload-Offset", "0")],
                b"hello",
            );
            s.expect(&reply, 415, "PATCH with Content-Type: text/plain");
            let reply = s.tus("PATCH", &path, &[OCTETS], b"hello");
            s.expect(&reply, 400, "PATCH without Upload-Offset");
            let reply = s.tus("PATCH", &path, &[OCTETS, ("Upload-Offset", "-1")], b"hello");
            s.expect(&reply, 400, "PATCH with Upload-Offset: -1");
            let offset = s.offset(&path);
            if offset != 0 {
                s.program.fail(format_args!(
                    "after refused PATCHes the offset is {offset}, expected 0"
                ));
            }
        });
    }

    #[test]
    fn a_cut_patch_keeps_what_arrived_and_resumes() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            let data = seeded_bytes(3, 200_000);
            let path = s.create_len(data.len() as u64);
            let stream = partial_patch(s.addr, &path, 0, data.len(), &data[..70_000]);
            // The client dies mid-body: every byte it sent is on the server's side of the socket.
            drop(stream);
            let addr = s.addr;
            let settled = poll_until(PROMPT, Duration::from_millis(20), || {
                let reply = http::request(addr, "HEAD", &path, &[TUS], b"", PROMPT).ok()?;
                (reply.number("Upload-Offset") == Some(70_000)).then_some(())
            });
            if settled.is_none() {
                let offset = s.offset(&path);
                s.program.fail(format_args!(
                    "sent a PATCH announcing 200000 bytes, then 70000 of them, then closed; \
                     expected HEAD to report Upload-Offset 70000 (the bytes that arrived are \
                     kept), it reports {offset}"
                ));
            }
            s.patch_ok(&path, 70_000, &data[70_000..]);
            s.assert_data(&path, &data, false);
        });
    }

    #[test]
    fn creation_with_upload_and_a_deferred_length_set_later() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            let reply = s.tus(
                "POST",
                "/files/",
                &[("Upload-Length", "11"), OCTETS],
                b"hello",
            );
            s.expect(
                &reply,
                201,
                "POST with Upload-Length 11 and 5 bytes of body",
            );
            s.expect_header(&reply, "Upload-Offset", "5", "POST with 5 bytes of body");
            let path = s.path_of(&reply, "POST with a body");
            s.patch_ok(&path, 5, b" world");
            s.assert_data(&path, b"hello world", false);

            let path = s.create(&[("Upload-Defer-Length", "1")]);
            s.patch_ok(&path, 0, b"abc");
            let reply = s.patch(&path, 3, b"def", &[("Upload-Length", "6")]);
            s.expect(
                &reply,
                204,
                "PATCH with Upload-Length: 6 on a deferred upload",
            );
            let head = s.head(&path);
            s.expect_header(&head, "Upload-Length", "6", "HEAD once the length is known");
            s.assert_data(&path, b"abcdef", false);

            // A PATCH with no body that declares a length equal to the bytes already here
            // completes the upload there and then.
            let path = s.create(&[("Upload-Defer-Length", "1")]);
            s.patch_ok(&path, 0, b"xyz");
            let reply = s.patch(&path, 3, b"", &[("Upload-Length", "3")]);
            let sent =
                "PATCH with no body and Upload-Length: 3, after 3 bytes of a deferred upload";
            s.expect(&reply, 204, sent);
            let head = s.head(&path);
            s.expect_header(&head, "Upload-Length", "3", sent);
            s.program.expect_json(
                "{\"event\": \"complete\", \"length\": 3, ...} for the upload whose empty \
                 PATCH declared its length",
                PROMPT,
                |v| v["event"] == "complete" && v["length"] == 3,
            );
        });
    }

    #[test]
    fn a_patch_past_the_length_is_413() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            let path = s.create_len(4);
            let reply = s.patch(&path, 0, b"too long", &[]);
            s.expect(&reply, 413, "PATCH of 8 bytes into a 4-byte upload");
            let offset = s.offset(&path);
            if offset > 4 {
                s.program
                    .fail(format_args!("a 4-byte upload reports offset {offset}"));
            }
        });
    }

    #[test]
    fn x_http_method_override_is_the_method() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            let path = s.create_len(11);
            let headers = [
                ("X-HTTP-Method-Override", "PATCH"),
                OCTETS,
                ("Upload-Offset", "0"),
            ];
            let reply = s.tus("POST", &path, &headers, b"hello");
            let sent = format!(
                "POST {path} with {} and the body \"hello\"",
                shown_headers(&headers)
            );
            s.expect(&reply, 204, &sent);
            s.expect_header(&reply, "Upload-Offset", "5", &sent);
            if s.offset(&path) != 5 {
                s.program.fail(format_args!(
                    "sent {sent}: a PATCH by its override; HEAD should then say offset 5"
                ));
            }
            s.assert_data(&path, b"hello", false);
        });
    }

    #[test]
    fn the_upload_command_sends_a_file() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            let work = tempfile::tempdir().expect("a temporary directory");
            let data = seeded_bytes(4, 1_500_000);
            let file = work.path().join("photo.raw");
            std::fs::write(&file, &data).expect("write the file to upload");
            let done = upload(&mut s, &file, &["--chunk-size", "256KiB"]);
            let url = done["url"].as_str().unwrap_or("").to_owned();
            let path = url[url.find("/files/").unwrap_or(0)..].to_owned();
            s.assert_data(&path, &data, false);
            let head = s.head(&path);
            let metadata = format!("filename {}", b64(b"photo.raw"));
            s.expect_header(
                &head,
                "Upload-Metadata",
                &metadata,
                "HEAD of the uploaded file",
            );
            let to = format!("http://{}/files/", s.addr);
            let file_arg = file.display().to_string();
            for flag in ["--chunk-size", "--parallel"] {
                let args = ["upload", "--to", to.as_str(), flag, "0", file_arg.as_str()];
                let mut program = Program::start(&bin(), &args);
                let status = program.wait_exit(PROMPT);
                let stderr = program.final_stderr();
                if status.is_none_or(|s| s.success()) || !stderr.contains(flag) {
                    program.fail(format_args!(
                        "`file-writer {}`: expected exit status 1 and an error naming `{flag}`; \
                         got {status:?}",
                        args.join(" ")
                    ));
                }
            }
        });
    }

    #[test]
    fn the_upload_command_retries_after_a_cut_connection() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            let work = tempfile::tempdir().expect("a temporary directory");
            let data = seeded_bytes(12, 1_000_000);
            let file = work.path().join("cut.bin");
            std::fs::write(&file, &data).expect("write the file to upload");
            // The proxy cuts every connection after 300000 bytes, in the middle of a PATCH: the
            // upload gets through only by reconnecting and resuming, three times at least,
            // whether the client sends its PATCHes on the POST's connection or on new ones.
            let proxy = workbook_suite::FaultProxy::start(
                s.addr,
                workbook_suite::Fault::CutEachAfter(300_000),
            )
            .expect("start the cutting proxy");
            let to = format!("http://{}/files/", proxy.addr());
            let done = upload_to(&to, &file, &["--chunk-size", "64KiB"]);
            let url = done["url"].as_str().unwrap_or("").to_owned();
            let path = url[url.find("/files/").unwrap_or(0)..].to_owned();
            s.assert_data(&path, &data, false);
        });
    }
}

mod stage3_checksums {
    use super::*;

    #[test]
    fn sha1_and_sha256_checksums_that_match_are_accepted() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            let path = s.create_len(22);
            let sum = format!("sha1 {}", sha1_b64(b"hello world"));
            let reply = s.patch(&path, 0, b"hello world", &[("Upload-Checksum", &sum)]);
            s.expect(
                &reply,
                204,
                &format!("PATCH hello world with Upload-Checksum: {sum}"),
            );
            let sum = format!("sha256 {}", sha256_b64(b"hello again"));
            let reply = s.patch(&path, 11, b"hello again", &[("Upload-Checksum", &sum)]);
            s.expect(&reply, 204, &format!("PATCH with Upload-Checksum: {sum}"));
            s.assert_data(&path, b"hello worldhello again", false);
        });
    }

    #[test]
    fn a_mismatch_is_460_and_the_chunk_is_discarded() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            let path = s.create_len(10);
            s.patch_ok(&path, 0, b"hello");
            let sum = format!("sha1 {}", sha1_b64(b"world"));
            let reply = s.patch(&path, 5, b"worle", &[("Upload-Checksum", &sum)]);
            s.expect(&reply, 460, "PATCH of `worle` with the sha1 of `world`");
            let offset = s.offset(&path);
            if offset != 5 {
                s.program.fail(format_args!(
                    "after a 460 the chunk must be discarded: expected offset 5, HEAD says {offset}"
                ));
            }
            s.patch_ok(&path, 5, b"world");
            s.assert_data(&path, b"helloworld", false);
        });
    }

    #[test]
    fn an_unknown_algorithm_or_malformed_checksum_is_400() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            let path = s.create_len(5);
            for sum in ["md5 XUFAKrxLKna5cZ2REBfFkg==", "sha1", "sha1 !!!!"] {
                let reply = s.patch(&path, 0, b"hello", &[("Upload-Checksum", sum)]);
                s.expect(&reply, 400, &format!("PATCH with Upload-Checksum: {sum}"));
            }
            let offset = s.offset(&path);
            if offset != 0 {
                s.program
                    .fail(format_args!("refused chunks moved the offset to {offset}"));
            }
        });
    }

    #[test]
    fn the_upload_command_sends_sha1_or_no_checksum_as_asked() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            let work = tempfile::tempdir().expect("a temporary directory");
            let data = seeded_bytes(31, 700_000);
            let file = work.path().join("sums.bin");
            std::fs::write(&file, &data).expect("write the file to upload");
            for checksum in ["sha1", "none"] {
                let done = upload(
                    &mut s,
                    &file,
                    &["--chunk-size", "128KiB", "--checksum", checksum],
                );
                let url = done["url"].as_str().unwrap_or("").to_owned();
                let path = url[url.find("/files/").unwrap_or(0)..].to_owned();
                s.assert_data(&path, &data, false);
            }
            let to = format!("http://{}/files/", s.addr);
            let file_arg = file.display().to_string();
            let args = [
                "upload",
                "--to",
                to.as_str(),
                "--checksum",
                "md5",
                file_arg.as_str(),
            ];
            let mut program = Program::start(&bin(), &args);
            let status = program.wait_exit(PROMPT);
            let stderr = program.final_stderr();
            if status.is_none_or(|s| s.success()) || !stderr.contains("--checksum") {
                program.fail(format_args!(
                    "`file-writer {}`: expected a failure and an error naming `--checksum`; \
                     got {status:?}",
                    args.join(" ")
                ));
            }
        });
    }
}

mod stage4_termination_expiration {
    use super::*;

    #[test]
    fn delete_terminates_an_upload() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            let path = s.create_len(10);
            s.patch_ok(&path, 0, b"hello");
            let reply = s.tus("DELETE", &path, &[], b"");
            s.expect(&reply, 204, &format!("DELETE {path}"));
            for method in ["HEAD", "DELETE"] {
                let reply = s.tus(method, &path, &[], b"");
                if !matches!(reply.status, 404 | 410) {
                    s.program.fail(format_args!(
                        "sent {method} {path} after DELETE; expected 404 or 410, got {}",
                        reply.summary()
                    ));
                }
            }
            let reply = s.patch(&path, 5, b"world", &[]);
            if !matches!(reply.status, 404 | 410) {
                s.program.fail(format_args!(
                    "PATCH after DELETE: expected 404 or 410, got {}",
                    reply.summary()
                ));
            }
            if !s.names().is_empty() {
                s.program.fail(format_args!(
                    "after DELETE of the only upload, the directory still holds {:?}",
                    s.names()
                ));
            }
        });
    }

    #[test]
    fn an_unfinished_upload_expires_and_a_finished_one_stays() {
        bounded(LIMIT, || {
            let mut s = Server::start(&["--expire", "2s"]);
            let reply = s.tus("POST", "/files/", &[("Upload-Length", "10")], b"");
            s.expect(&reply, 201, "POST with --expire 2s");
            if reply
                .header("Upload-Expires")
                .and_then(parse_http_date)
                .is_none()
            {
                s.program.fail(format_args!(
                    "with --expire 2s, expected an Upload-Expires date (RFC 7231 format, e.g. \
                     `Wed, 25 Jun 2014 16:00:00 GMT`) on the POST, got {}",
                    reply.summary()
                ));
            }
            let unfinished = s.path_of(&reply, "POST");
            let finished = s.create_len(2);
            s.patch_ok(&finished, 0, b"ok");
            let addr = s.addr;
            let path = unfinished.clone();
            let gone = poll_until(Duration::from_secs(12), Duration::from_millis(100), || {
                let reply = http::request(addr, "HEAD", &path, &[TUS], b"", PROMPT).ok()?;
                matches!(reply.status, 404 | 410).then_some(())
            });
            if gone.is_none() {
                s.program.fail(
                    "an unfinished upload created with --expire 2s still answers HEAD after 12s",
                );
            }
            s.head(&finished);
            s.assert_data(&finished, b"ok", false);
        });
    }

    #[test]
    fn the_lifetime_counts_from_the_last_patch() {
        bounded(LIMIT, || {
            let mut s = Server::start(&["--expire", "2s"]);
            let reply = s.tus("POST", "/files/", &[("Upload-Length", "100000")], b"");
            s.expect(&reply, 201, "POST with --expire 2s");
            let created = reply.header("Upload-Expires").unwrap_or("").to_owned();
            let path = s.path_of(&reply, "POST");
            // A slow client: 10 bytes every 250 ms for 5 s, more than twice the lifetime. The
            // pause paces the client; nothing waits on the server.
            let started = std::time::Instant::now();
            let mut offset = 0u64;
            let mut latest = created.clone();
            while started.elapsed() < Duration::from_secs(5) {
                let reply = s.patch(&path, offset, b"0123456789", &[]);
                let sent = format!(
                    "with --expire 2s, PATCH {path} at offset {offset} {:.1}s after the POST \
                     (a PATCH every 250 ms, so the upload was never idle for 2s)",
                    started.elapsed().as_secs_f64()
                );
                s.expect(&reply, 204, &sent);
                offset += 10;
                latest = reply.header("Upload-Expires").unwrap_or("").to_owned();
                std::thread::sleep(Duration::from_millis(250));
            }
            if latest.is_empty() || latest == created {
                s.program.fail(format_args!(
                    "with --expire 2s, the POST announced Upload-Expires {created:?}, and the \
                     PATCHes 5s later still announce {latest:?}: the lifetime must count from \
                     the last PATCH"
                ));
            }
            let addr = s.addr;
            let gone = poll_until(Duration::from_secs(12), Duration::from_millis(100), || {
                let reply = http::request(addr, "HEAD", &path, &[TUS], b"", PROMPT).ok()?;
                matches!(reply.status, 404 | 410).then_some(())
            });
            if gone.is_none() {
                s.program.fail(
                    "with --expire 2s, an unfinished upload left idle still answers HEAD 12s \
                     after its last PATCH",
                );
            }
        });
    }

    fn parse_http_date(s: &str) -> Option<()> {
        let parts: Vec<&str> = s.split(' ').collect();
        (parts.len() == 6 && parts[0].ends_with(',') && parts[5] == "GMT").then_some(())
    }
}

mod stage5_concatenation {
    use super::*;

    #[test]
    fn a_final_upload_concatenates_finished_parts() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            let a = s.create(&[("Upload-Length", "5"), ("Upload-Concat", "partial")]);
            let b = s.create(&[("Upload-Length", "6"), ("Upload-Concat", "partial")]);
            let head = s.head(&a);
            s.expect_header(
                &head,
                "Upload-Concat",
                "partial",
                "HEAD of a partial upload",
            );
            s.patch_ok(&a, 0, b"hello");
            s.patch_ok(&b, 0, b" world");
            let concat = format!("final;{a} {b}");
            let reply = s.tus("POST", "/files/", &[("Upload-Concat", &concat)], b"");
            s.expect(&reply, 201, &format!("POST with Upload-Concat: {concat}"));
            let whole = s.path_of(&reply, "POST of a final upload");
            let head = s.head(&whole);
            let sent = "HEAD of a final upload of finished parts";
            s.expect_header(&head, "Upload-Length", "11", sent);
            s.expect_header(&head, "Upload-Offset", "11", sent);
            s.expect_header(&head, "Upload-Concat", &concat, sent);
            s.assert_data(&whole, b"hello world", false);
            let reply = s.patch(&whole, 0, b"x", &[]);
            s.expect(&reply, 403, "PATCH of a final upload");
        });
    }

    #[test]
    fn parts_of_a_final_declared_first_are_written_in_parallel() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            let data = seeded_bytes(5, 4 * 200_000);
            let parts: Vec<String> = (0..4)
                .map(|_| s.create(&[("Upload-Length", "200000"), ("Upload-Concat", "partial")]))
                .collect();
            let concat = format!("final;{}", parts.join(" "));
            let reply = s.tus("POST", "/files/", &[("Upload-Concat", &concat)], b"");
            s.expect(&reply, 201, "POST of a final upload of four empty parts");
            let whole = s.path_of(&reply, "POST of a final upload");
            let head = s.head(&whole);
            if head.header("Upload-Offset").is_some() {
                s.program.fail(format_args!(
                    "HEAD of an unfinished final upload must not carry Upload-Offset; got {}",
                    head.summary()
                ));
            }
            s.expect_header(
                &head,
                "Upload-Length",
                "800000",
                "HEAD of an unfinished final upload",
            );
            let addr = s.addr;
            let threads: Vec<_> = parts
                .iter()
                .enumerate()
                .map(|(i, path)| {
                    let (path, part) =
                        (path.clone(), data[i * 200_000..(i + 1) * 200_000].to_vec());
                    std::thread::spawn(move || {
                        for (j, chunk) in part.chunks(50_000).enumerate() {
                            let offset = (j * 50_000).to_string();
                            let headers = [TUS, OCTETS, ("Upload-Offset", offset.as_str())];
                            let reply =
                                http::request(addr, "PATCH", &path, &headers, chunk, PROMPT)
                                    .map_err(|e| e.to_string())?;
                            if reply.status != 204 {
                                return Err(format!(
                                    "PATCH {path} at {offset}: {}",
                                    reply.summary()
                                ));
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            for thread in threads {
                if let Err(e) = thread.join().expect("a PATCH thread") {
                    s.program
                        .fail(format_args!("four parts written at once: {e}"));
                }
            }
            let head = s.head(&whole);
            s.expect_header(
                &head,
                "Upload-Offset",
                "800000",
                "HEAD once every part is finished",
            );
            s.assert_data(&whole, &data, false);
        });
    }

    #[test]
    fn deleting_a_part_of_an_unfinished_final_removes_the_final() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            let (a, _, whole) = s.unfinished_final();
            let reply = s.tus("DELETE", &a, &[], b"");
            s.expect(
                &reply,
                204,
                &format!("DELETE {a}, a part of the unfinished {whole}"),
            );
            for path in [&a, &whole] {
                let reply = s.tus("HEAD", path, &[], b"");
                if !matches!(reply.status, 404 | 410) {
                    s.program.fail(format_args!(
                        "sent DELETE {a}, a part of the unfinished final upload {whole}, then \
                         HEAD {path}; expected 404 or 410 (the final goes with its part), got {}",
                        reply.summary()
                    ));
                }
            }
            let final_id = whole.rsplit('/').next().unwrap_or("");
            let left: Vec<String> = s
                .names()
                .into_iter()
                .filter(|n| n.starts_with(final_id))
                .collect();
            if !left.is_empty() {
                s.program.fail(format_args!(
                    "after DELETE {a} removed the final upload {whole}, DIR still holds {left:?}"
                ));
            }
        });
    }

    #[test]
    fn a_final_of_unknown_parts_is_refused() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            let single = s.create_len(3);
            for concat in [
                "final;/files/0123456789abcdef0123456789abcdef".to_owned(),
                format!("final;{single}"),
                "final;../../etc/passwd".to_owned(),
                "final;".to_owned(),
            ] {
                let reply = s.tus("POST", "/files/", &[("Upload-Concat", &concat)], b"");
                s.expect(&reply, 400, &format!("POST with Upload-Concat: {concat}"));
            }
        });
    }

    #[test]
    fn the_upload_command_sends_four_parts_at_once() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            let work = tempfile::tempdir().expect("a temporary directory");
            let data = seeded_bytes(6, 2_000_003);
            let file = work.path().join("video.bin");
            std::fs::write(&file, &data).expect("write the file to upload");
            let done = upload(
                &mut s,
                &file,
                &["--parallel", "4", "--chunk-size", "128KiB"],
            );
            let url = done["url"].as_str().unwrap_or("").to_owned();
            let path = url[url.find("/files/").unwrap_or(0)..].to_owned();
            let head = s.head(&path);
            if !head
                .header("Upload-Concat")
                .is_some_and(|c| c.starts_with("final;"))
            {
                s.program.fail(format_args!(
                    "`upload --parallel 4` should create a final upload (Upload-Concat: final;...); \
                     HEAD {path} says {}",
                    head.summary()
                ));
            }
            s.assert_data(&path, &data, false);
            // A file of exactly 4 bytes still has a byte for each of 4 parts.
            let tiny = work.path().join("tiny.bin");
            std::fs::write(&tiny, b"abcd").expect("write the file to upload");
            let done = upload(&mut s, &tiny, &["--parallel", "4"]);
            let url = done["url"].as_str().unwrap_or("").to_owned();
            let path = url[url.find("/files/").unwrap_or(0)..].to_owned();
            let head = s.head(&path);
            if !head
                .header("Upload-Concat")
                .is_some_and(|c| c.starts_with("final;"))
            {
                s.program.fail(format_args!(
                    "`upload --parallel 4` of a 4-byte file should create 4 parts and a final \
                     upload (Upload-Concat: final;...); HEAD {path} says {}",
                    head.summary()
                ));
            }
            s.assert_data(&path, b"abcd", false);
        });
    }
}

mod stage6_durability {
    use super::*;

    #[test]
    fn a_sigkill_keeps_every_acknowledged_byte() {
        bounded(LIMIT, || {
            const ACKED: usize = 200_000;
            // More than the contract's 1 MiB write buffer, so that the server writes some of it
            // while the body is still open.
            const IN_FLIGHT: usize = 1_500_000;
            const SEEN: usize = 64 << 10;
            let mut s = Server::start(&[]);
            let data = seeded_bytes(7, 4_000_000);
            let path = s.create_len(data.len() as u64);
            for i in 0..5 {
                let at = i * ACKED / 5;
                s.patch_ok(&path, at as u64, &data[at..at + ACKED / 5]);
            }
            // Mid-PATCH: the head announces the rest, IN_FLIGHT bytes come, then silence with
            // the connection open.
            let rest = data.len() - ACKED;
            let mut stream = match TcpStream::connect(s.addr) {
                Ok(stream) => stream,
                Err(e) => s
                    .program
                    .fail(format_args!("cannot connect to {}: {e}", s.addr)),
            };
            let offset_header = ACKED.to_string();
            let announced = rest.to_string();
            let head = http::request_bytes(
                s.addr,
                "PATCH",
                &path,
                &[
                    TUS,
                    OCTETS,
                    ("Upload-Offset", offset_header.as_str()),
                    ("Content-Length", announced.as_str()),
                ],
                &data[ACKED..ACKED + IN_FLIGHT],
            );
            if let Err(e) = stream.write_all(&head) {
                s.program.fail(format_args!(
                    "sent a PATCH at offset {ACKED} announcing {rest} bytes; sending its first \
                     {IN_FLIGHT} bytes failed: {e}"
                ));
            }
            // The kill lands inside the PATCH: once the file shows the first in-flight bytes.
            let dir = s.dir.path().join(path.rsplit('/').next().unwrap_or(""));
            let written = poll_until(PROMPT, Duration::from_millis(10), || {
                let got = std::fs::read(&dir).ok()?;
                (got.len() >= ACKED + SEEN && got[ACKED..ACKED + SEEN] == data[ACKED..ACKED + SEEN])
                    .then_some(())
            });
            if written.is_none() {
                s.program.fail(format_args!(
                    "sent a PATCH at offset {ACKED} and {IN_FLIGHT} bytes of its body (more than \
                     the 1 MiB write buffer); expected the file DIR/ID to hold the first of them \
                     within {PROMPT:?}, it does not"
                ));
            }
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &s.program.id().to_string()])
                .status();
            let _ = s.program.wait_exit(PROMPT);
            drop(stream);
            let Server { dir, .. } = s;
            let mut s = Server::start_in(dir, &[]);
            let offset = s.offset(&path);
            let sent = ACKED + IN_FLIGHT;
            if !(ACKED as u64..=sent as u64).contains(&offset) {
                s.program.fail(format_args!(
                    "after {ACKED} acknowledged bytes, {IN_FLIGHT} more sent in an open PATCH \
                     and a SIGKILL while the server wrote them, the restarted server reports \
                     offset {offset}; expected {ACKED} to {sent}: an offset counts only bytes \
                     that are on disk"
                ));
            }
            s.assert_data(&path, &data[..offset as usize], true);
            s.patch_ok(&path, offset, &data[offset as usize..]);
            s.assert_data(&path, &data, false);
        });
    }

    #[test]
    fn a_final_and_its_parts_survive_a_restart() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            let (a, b, whole) = s.unfinished_final();
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &s.program.id().to_string()])
                .status();
            let _ = s.program.wait_exit(PROMPT);
            let Server { dir, .. } = s;
            let mut s = Server::start_in(dir, &[]);
            let offset = s.offset(&a);
            if offset != 3 {
                s.program.fail(format_args!(
                    "part a had 3 bytes before the restart, HEAD says {offset}"
                ));
            }
            s.patch_ok(&a, 3, b"lo");
            s.patch_ok(&b, 0, b" world");
            let head = s.head(&whole);
            s.expect_header(
                &head,
                "Upload-Offset",
                "11",
                "HEAD of the final after a restart",
            );
            s.assert_data(&whole, b"hello world", false);
        });
    }

    /// Copies every file of `from` into `to`.
    fn copy_dir(from: &Path, to: &Path) {
        for entry in std::fs::read_dir(from).expect("read the upload directory") {
            let entry = entry.expect("an entry of the upload directory");
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                std::fs::copy(entry.path(), to.join(entry.file_name()))
                    .expect("copy a file of the upload directory");
            }
        }
    }

    #[test]
    fn a_restart_finishes_an_interrupted_concatenation() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            let a_bytes = seeded_bytes(11, 70_000);
            let b_bytes = seeded_bytes(12, 50_000);
            let a = s.create(&[("Upload-Length", "70000"), ("Upload-Concat", "partial")]);
            let b = s.create(&[("Upload-Length", "50000"), ("Upload-Concat", "partial")]);
            s.patch_ok(&a, 0, &a_bytes);
            s.patch_ok(&b, 0, &b_bytes);
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &s.program.id().to_string()])
                .status();
            let _ = s.program.wait_exit(PROMPT);
            // DIR as it was before the final upload existed: two finished, unplaced parts.
            let crashed = tempfile::tempdir().expect("a temporary directory");
            copy_dir(s.dir.path(), crashed.path());
            let Server { dir, .. } = s;
            let mut s = Server::start_in(dir, &[]);
            let concat = format!("final;{a} {b}");
            let reply = s.tus("POST", "/files/", &[("Upload-Concat", &concat)], b"");
            s.expect(&reply, 201, "POST of a final upload of two finished parts");
            let whole = s.path_of(&reply, "POST of a final upload");
            let final_id = whole.rsplit('/').next().unwrap_or("").to_owned();
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &s.program.id().to_string()])
                .status();
            let _ = s.program.wait_exit(PROMPT);
            // The crash came after the final upload's own files were made, before any part was
            // placed: its bytes file is at its full length, still zero.
            for entry in std::fs::read_dir(s.dir.path()).expect("read the upload directory") {
                let entry = entry.expect("an entry of the upload directory");
                let name = entry.file_name().to_string_lossy().into_owned();
                if name == final_id {
                    std::fs::write(crashed.path().join(&name), vec![0u8; 120_000])
                        .expect("write the final upload's empty file");
                } else if name.starts_with(&format!("{final_id}.")) {
                    std::fs::copy(entry.path(), crashed.path().join(&name))
                        .expect("copy the final upload's record");
                }
            }
            let mut s = Server::start_in(crashed, &[]);
            let head = s.head(&whole);
            s.expect_header(
                &head,
                "Upload-Length",
                "120000",
                "HEAD of a final upload whose concatenation a crash interrupted, after a restart",
            );
            s.expect_header(
                &head,
                "Upload-Offset",
                "120000",
                "HEAD of a final upload whose concatenation a crash interrupted, after a restart",
            );
            let mut expected = a_bytes;
            expected.extend_from_slice(&b_bytes);
            s.assert_data(&whole, &expected, false);
        });
    }

    #[test]
    fn the_upload_command_resumes_an_interrupted_upload() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            let work = tempfile::tempdir().expect("a temporary directory");
            let data = seeded_bytes(8, 3_000_000);
            let file = work.path().join("backup.tar");
            std::fs::write(&file, &data).expect("write the file to upload");
            let proxy =
                workbook_suite::FaultProxy::start(s.addr, workbook_suite::Fault::Throttle(1 << 20))
                    .expect("start the throttling proxy");
            let to = format!("http://{}/files/", proxy.addr());
            let file_arg = file.display().to_string();
            let args = [
                "upload",
                "--to",
                to.as_str(),
                "--chunk-size",
                "64KiB",
                file_arg.as_str(),
            ];
            let mut first = Program::start(&bin(), &args);
            let dir = s.dir.path().to_owned();
            // Until 200000 bytes are in, or the upload has exited (it cannot have finished: 3 MB
            // take 3 s through the link), so that a crash is reported at once.
            let started = first.poll_while_running(
                Duration::from_secs(20),
                Duration::from_millis(20),
                |_| {
                    std::fs::read_dir(&dir).ok().and_then(|entries| {
                        entries.filter_map(Result::ok).find(|e| {
                            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                            !e.file_name().to_string_lossy().contains('.') && len > 200_000
                        })
                    })
                },
            );
            if started.is_none() {
                first.fail(
                    "`upload` through a 1 MiB/s link: 200000 bytes never arrived (within 20s, \
                     or before it exited)",
                );
            }
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &first.id().to_string()])
                .status();
            let _ = first.wait_exit(PROMPT);
            let mut second = Program::start(&bin(), &args);
            let status = second.wait_exit(Duration::from_secs(30));
            let mut last = None;
            while let Some(line) = second.next_line(Duration::from_millis(200)) {
                last = serde_json::from_str::<serde_json::Value>(&line)
                    .ok()
                    .or(last);
            }
            let Some(done) = last
                .clone()
                .filter(|v| status.is_some_and(|s| s.success()) && v["event"] == "uploaded")
            else {
                second.fail(format_args!(
                    "the second `upload` of an interrupted file: expected it to exit 0 with a \
                     last line {{\"event\": \"uploaded\", ...}}; {}, its last JSON line {}",
                    match status {
                        Some(s) => format!("it exited ({s})"),
                        None => "it was still running after 30s".to_owned(),
                    },
                    or(&last, "none")
                ));
            };
            if done["resumed"] != true {
                second.fail(format_args!(
                    "the second `upload` should resume the first (\"resumed\": true), printed {done}"
                ));
            }
            let url = done["url"].as_str().unwrap_or("").to_owned();
            let path = url[url.find("/files/").unwrap_or(0)..].to_owned();
            s.assert_data(&path, &data, false);
        });
    }
}

mod stage7_hostile_clients {
    use super::*;

    #[test]
    fn metadata_never_becomes_a_path() {
        bounded(LIMIT, || {
            let outside = tempfile::tempdir().expect("a temporary directory");
            let target = outside.path().join("evil");
            let mut s = Server::start(&[]);
            let name = format!("../../../../../..{}", target.display());
            let metadata = format!("filename {}", b64(name.as_bytes()));
            let reply = s.tus(
                "POST",
                "/files/",
                &[
                    ("Upload-Length", "4"),
                    ("Upload-Metadata", &metadata),
                    OCTETS,
                ],
                b"evil",
            );
            s.expect(
                &reply,
                201,
                "POST whose filename metadata is a path outside DIR",
            );
            if target.exists() {
                s.program.fail(format_args!(
                    "a filename in metadata created {}",
                    target.display()
                ));
            }
            let names = s.names();
            if names.iter().any(|n| n.contains("evil")) {
                s.program.fail(format_args!(
                    "a filename in metadata named a file in DIR: {names:?}"
                ));
            }
            for path in [
                "/files/../../etc/passwd",
                "/files/%2e%2e%2fetc%2fpasswd",
                "/files/x",
            ] {
                let reply = s.tus("HEAD", path, &[], b"");
                if reply.status != 404 {
                    s.program.fail(format_args!(
                        "HEAD {path}: expected 404, got {}",
                        reply.summary()
                    ));
                }
            }
        });
    }

    #[test]
    fn malformed_headers_are_400_with_a_reason() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            for headers in [
                vec![("Upload-Length", "-5")],
                vec![("Upload-Length", "12abc")],
                vec![("Upload-Length", "99999999999999999999999")],
                vec![
                    ("Upload-Length", "5"),
                    ("Upload-Metadata", "filename !!notbase64"),
                ],
                vec![("Upload-Length", "5"), ("Upload-Metadata", "a YQ==,a Yg==")],
                vec![("Upload-Length", "5"), ("Upload-Concat", "sideways")],
            ] {
                let reply = s.tus("POST", "/files/", &headers, b"");
                s.expect(
                    &reply,
                    400,
                    &format!("POST /files/ with {}", shown_headers(&headers)),
                );
                if reply.body.is_empty() {
                    s.program.fail(format_args!(
                        "a 400 for POST /files/ with {} should say why in its body",
                        shown_headers(&headers)
                    ));
                }
            }
            let reply = s.raw("OPTIONS", "/files/", &[], b"");
            if !matches!(reply.status, 200 | 204) {
                s.program
                    .fail("the server stopped answering after malformed headers");
            }
        });
    }

    #[test]
    fn more_than_max_uploads_is_503() {
        bounded(LIMIT, || {
            let mut s = Server::start(&["--max-uploads", "2"]);
            let first = s.create_len(10);
            s.create_len(10);
            let reply = s.tus("POST", "/files/", &[("Upload-Length", "10")], b"");
            s.expect(
                &reply,
                503,
                "a third POST /files/ to a server run with --max-uploads 2",
            );
            let reply = s.tus("DELETE", &first, &[], b"");
            s.expect(&reply, 204, &format!("DELETE {first}"));
            s.create_len(10);
        });
    }

    #[test]
    fn oversized_headers_are_refused() {
        bounded(LIMIT, || {
            let mut s = Server::start(&["--max-header-bytes", "8KiB"]);
            let long = format!("filename {}", b64(&vec![b'a'; 20_000]));
            let reply = s.tus(
                "POST",
                "/files/",
                &[("Upload-Length", "5"), ("Upload-Metadata", &long)],
                b"",
            );
            if !matches!(reply.status, 413 | 431) {
                s.program.fail(format_args!(
                    "POST with 27 KB of Upload-Metadata and --max-header-bytes 8KiB: expected 431 \
                     (or 413), got {}",
                    reply.summary()
                ));
            }
            s.create_len(5);
        });
    }

    #[test]
    fn a_second_patch_at_once_is_refused_with_423() {
        bounded(LIMIT, || {
            let mut s = Server::start(&["--lock-wait", "300ms"]);
            let path = s.create_len(100_000);
            s.patch_ok(&path, 0, b"a");
            // The first PATCH sends part of its body and holds the upload while it waits.
            let first = partial_patch(s.addr, &path, 1, 99_999, &[b'a'; 999]);
            let addr = s.addr;
            // The second one is at a stale offset: 409 while nobody holds the upload (the first
            // PATCH's head may not have been read yet), 423 once the first holds it.
            let mut last = None;
            let refused = poll_until(PROMPT, Duration::from_millis(20), || {
                let headers = [TUS, OCTETS, ("Upload-Offset", "0")];
                let reply = http::request(addr, "PATCH", &path, &headers, b"bbbb", PROMPT).ok()?;
                let done = reply.status != 409;
                last = Some(reply.clone());
                done.then_some(reply)
            });
            let Some(reply) = refused else {
                let got = last.map_or("no answer".to_owned(), |r| r.summary());
                s.program.fail(format_args!(
                    "a second PATCH while the first is still sending its body: expected 423 \
                     within 10s, got {got}"
                ));
            };
            s.expect(
                &reply,
                423,
                "a second PATCH while the first is still sending its body",
            );
            drop(first);
            let kept = poll_until(PROMPT, Duration::from_millis(20), || {
                let reply = http::request(addr, "HEAD", &path, &[TUS], b"", PROMPT).ok()?;
                (reply.number("Upload-Offset") == Some(1000)).then_some(())
            });
            if kept.is_none() {
                let offset = s.offset(&path);
                s.program.fail(format_args!(
                    "the first PATCH sent 1000 bytes and was cut; expected offset 1000, got {offset}"
                ));
            }
            s.assert_data(&path, &[b'a'; 1000][..], true);
        });
    }

    #[test]
    fn a_silent_client_times_out_and_releases_its_upload() {
        bounded(LIMIT, || {
            let mut s = Server::start(&["--idle-timeout", "500ms", "--lock-wait", "5s"]);
            let path = s.create_len(10_000);
            let _silent = partial_patch(s.addr, &path, 0, 10_000, &[b'x'; 3000]);
            let addr = s.addr;
            let resumed = poll_until(Duration::from_secs(8), Duration::from_millis(50), || {
                let reply = http::request(addr, "HEAD", &path, &[TUS], b"", PROMPT).ok()?;
                (reply.number("Upload-Offset") == Some(3000)).then_some(())
            });
            if resumed.is_none() {
                let offset = s.offset(&path);
                s.program.fail(format_args!(
                    "a client sent 3000 of 10000 bytes and went silent; with --idle-timeout \
                     500ms expected offset 3000 within 8s, HEAD says {offset}"
                ));
            }
            s.patch_ok(&path, 3000, &[b'y'; 7000]);
        });
    }

    #[test]
    fn a_host_that_is_no_plain_authority_never_reaches_location() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            // A normal creation first, so that the server is known to create uploads at all.
            s.create_len(3);
            for host in ["", "evil.example/phish?x=", "two words"] {
                let request = format!(
                    "POST /files/ HTTP/1.1\r\nHost: {host}\r\nTus-Resumable: 1.0.0\r\n\
                     Upload-Length: 3\r\nConnection: close\r\n\r\n"
                );
                let reply = TcpStream::connect(s.addr).and_then(|mut stream| {
                    stream.write_all(request.as_bytes())?;
                    http::read_reply(&mut stream, false, PROMPT)
                });
                let location = reply
                    .as_ref()
                    .ok()
                    .and_then(|r| r.header("Location"))
                    .unwrap_or("");
                let id = location.strip_prefix("/files/").unwrap_or("");
                let relative = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
                if !relative {
                    s.program.fail(format_args!(
                        "sent POST /files/ with `Host: {host}` (no plain authority); expected \
                         a relative Location /files/ID, got {:?}",
                        reply.map(|r| r.summary())
                    ));
                }
            }
        });
    }

    #[test]
    fn garbage_never_stops_the_server_or_disturbs_an_upload() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            let path = s.create_len(10);
            s.patch_ok(&path, 0, b"safe!");
            for seed in 0..10 {
                let junk = seeded_bytes(100 + seed, 2000);
                if let Ok(mut stream) = TcpStream::connect(s.addr) {
                    let _ = stream.write_all(&junk);
                    let _ = http::read_reply(&mut stream, false, Duration::from_millis(500));
                }
            }
            s.patch_ok(&path, 5, b"still");
            s.assert_data(&path, b"safe!still", false);
        });
    }
}

mod stage8_real_clients {
    use super::*;

    /// Whether `program --version`-like `probe` runs; if not, says so and returns false.
    fn available(program: &str, probe: &[&str], what: &str) -> bool {
        let ok = std::process::Command::new(program)
            .args(probe)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipping: {what} not installed");
        }
        ok
    }

    fn run_tool(s: &mut Server, program: &str, args: &[&str], env: &[(&str, String)]) -> String {
        let mut command = std::process::Command::new(program);
        command.args(args);
        for (k, v) in env {
            command.env(k, v);
        }
        let output = command.output().expect("run the real client");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            s.program.fail(format_args!(
                "`{program} {}` failed ({}):\n{}\n{}",
                args.join(" "),
                output.status,
                stdout,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        stdout
    }

    #[test]
    fn curl_creates_patches_and_heads() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            s.answers_options();
            if !available("curl", &["--version"], "curl") {
                return;
            }
            let url = format!("http://{}/files/", s.addr);
            let head = run_tool(
                &mut s,
                "curl",
                &[
                    "-sS",
                    "-i",
                    "-X",
                    "POST",
                    "-H",
                    "Tus-Resumable: 1.0.0",
                    "-H",
                    "Upload-Length: 11",
                    &url,
                ],
                &[],
            );
            let location = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("location: ")
                        .or_else(|| l.strip_prefix("Location: "))
                })
                .unwrap_or("")
                .trim()
                .to_owned();
            if !location.contains("/files/") {
                s.program
                    .fail(format_args!("curl POST: expected a Location, got:\n{head}"));
            }
            run_tool(
                &mut s,
                "curl",
                &[
                    "-sS",
                    "-f",
                    "-X",
                    "PATCH",
                    "-H",
                    "Tus-Resumable: 1.0.0",
                    "-H",
                    "Upload-Offset: 0",
                    "-H",
                    "Content-Type: application/offset+octet-stream",
                    "--data-binary",
                    "hello world",
                    &location,
                ],
                &[],
            );
            let path = location[location.find("/files/").unwrap_or(0)..].to_owned();
            s.assert_data(&path, b"hello world", false);
        });
    }

    #[test]
    fn tuspy_uploads_with_checksums() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            s.answers_options();
            if !available(
                "python3",
                &["-c", "import tusclient"],
                "tuspy (python3 -m pip install tuspy)",
            ) {
                return;
            }
            let work = tempfile::tempdir().expect("a temporary directory");
            let data = seeded_bytes(9, 700_000);
            let file = work.path().join("data.bin");
            std::fs::write(&file, &data).expect("write the file to upload");
            let script = "import sys\nfrom tusclient import client\n\
                          c = client.TusClient(sys.argv[1])\n\
                          u = c.uploader(sys.argv[2], chunk_size=100000, upload_checksum=True)\n\
                          u.upload()\nprint(u.url)\n";
            let url = format!("http://{}/files/", s.addr);
            let out = run_tool(
                &mut s,
                "python3",
                &["-c", script, &url, &file.display().to_string()],
                &[],
            );
            let location = out.trim().to_owned();
            let path = location[location.find("/files/").unwrap_or(0)..].to_owned();
            s.assert_data(&path, &data, false);
        });
    }

    /// The folder where `.ci/run` installs tus-js-client: `target/npm/file-writer`.
    fn npm_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/npm/file-writer")
    }

    #[test]
    fn tus_js_client_uploads_four_parallel_parts() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            s.answers_options();
            let modules = npm_dir().join("node_modules/tus-js-client");
            if !modules.is_dir() || !available("node", &["--version"], "node") {
                eprintln!("skipping: tus-js-client not installed in target/npm/file-writer");
                return;
            }
            let work = tempfile::tempdir().expect("a temporary directory");
            let data = seeded_bytes(10, 1_000_001);
            let file = work.path().join("upload.bin");
            std::fs::write(&file, &data).expect("write the file to upload");
            let script = "const tus = require('tus-js-client'); const fs = require('fs');\n\
                const [endpoint, path] = process.argv.slice(1);\n\
                const file = fs.readFileSync(path);\n\
                const up = new tus.Upload(file, { endpoint, parallelUploads: 4, chunkSize: 65536,\n\
                  retryDelays: [0, 100, 500], metadata: { filename: 'upload.bin' },\n\
                  onError: (e) => { console.error(String(e)); process.exit(1); },\n\
                  onSuccess: () => { console.log(up.url); } });\n\
                up.start();\n";
            let url = format!("http://{}/files/", s.addr);
            let out = run_tool(
                &mut s,
                "node",
                &["-e", script, &url, &file.display().to_string()],
                &[(
                    "NODE_PATH",
                    npm_dir().join("node_modules").display().to_string(),
                )],
            );
            let location = out.trim().to_owned();
            let path = location[location.find("/files/").unwrap_or(0)..].to_owned();
            let head = s.head(&path);
            if !head
                .header("Upload-Concat")
                .is_some_and(|c| c.starts_with("final;"))
            {
                s.program.fail(format_args!(
                    "tus-js-client with parallelUploads: 4 should end with a final upload; HEAD \
                     {path} says {}",
                    head.summary()
                ));
            }
            s.assert_data(&path, &data, false);
        });
    }

    #[test]
    fn tus_js_client_resumes_after_a_cut_connection() {
        bounded(LIMIT, || {
            let mut s = Server::start(&[]);
            s.answers_options();
            let modules = npm_dir().join("node_modules/tus-js-client");
            if !modules.is_dir() || !available("node", &["--version"], "node") {
                eprintln!("skipping: tus-js-client not installed in target/npm/file-writer");
                return;
            }
            let proxy =
                workbook_suite::FaultProxy::start(s.addr, workbook_suite::Fault::CutAfter(300_000))
                    .expect("start the cutting proxy");
            let work = tempfile::tempdir().expect("a temporary directory");
            let data = seeded_bytes(11, 1_000_000);
            let file = work.path().join("cut.bin");
            std::fs::write(&file, &data).expect("write the file to upload");
            let script = "const tus = require('tus-js-client'); const fs = require('fs');\n\
                const [endpoint, path] = process.argv.slice(1);\n\
                let retries = 0;\n\
                const up = new tus.Upload(fs.readFileSync(path), { endpoint,\n\
                  retryDelays: [0, 200, 500, 1000],\n\
                  onShouldRetry: () => { retries += 1; return true; },\n\
                  onError: (e) => { console.error(String(e)); process.exit(1); },\n\
                  onSuccess: () => { console.log(up.url + ' ' + retries); } });\n\
                up.start();\n";
            let url = format!("http://{}/files/", proxy.addr());
            let out = run_tool(
                &mut s,
                "node",
                &["-e", script, &url, &file.display().to_string()],
                &[(
                    "NODE_PATH",
                    npm_dir().join("node_modules").display().to_string(),
                )],
            );
            let (location, retries) = out.trim().rsplit_once(' ').unwrap_or(("", "0"));
            if retries == "0" {
                s.program.fail(format_args!(
                    "tus-js-client through a proxy that cuts the first connection after 300000 \
                     bytes should have retried at least once; it printed {out:?}"
                ));
            }
            let path = location[location.find("/files/").unwrap_or(0)..].to_owned();
            s.assert_data(&path, &data, false);
        });
    }
}
