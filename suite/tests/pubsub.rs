//! Project 7, the pub/sub broker speaking the NATS protocol, graded from the outside.
//!
//! Every test starts the real `pubsub broker` (the binary `WORKBOOK_BIN_PUBSUB` names, or the
//! reference solution) and talks to it over TCP with the suite's own NATS client, or runs the
//! project's `pub` and `sub` subcommands against it. The last stage replays a conversation
//! recorded against a real `nats-server`, and runs the project's clients against a real
//! `nats-server` where one is installed.
//!
//! One rule of the protocol makes these tests deterministic: once a publisher has its `PONG`,
//! the broker has handed every message published before that `PING` to every subscriber's
//! outbound queue. A subscriber that then sends `PING` gets its `PONG` after those messages.

use std::collections::BTreeSet;
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use workbook_suite::framed::describe;
use workbook_suite::nats::{Frame, NatsConn, NoFrame};
use workbook_suite::{LIMIT, PROMPT, Program, Server, binary, bounded, poll_until};

fn bin() -> PathBuf {
    binary("pubsub")
}

/// What these tests do with a broker: NATS clients and what they read.
trait Nats {
    fn raw(&mut self) -> NatsConn;
    fn read(&mut self, conn: &mut NatsConn, after: impl Display) -> Frame;
    fn info(&mut self, conn: &mut NatsConn) -> serde_json::Value;
    fn client(&mut self) -> NatsConn;
    fn send(&mut self, conn: &mut NatsConn, bytes: &[u8]);
    fn expect(&mut self, conn: &mut NatsConn, sent: &[u8], expected: &[Frame]);
    fn sync(&mut self, conn: &mut NatsConn, after: impl Display);
    fn subscribe(&mut self, conn: &mut NatsConn, subject: &str, queue: Option<&str>, sid: &str);
    fn publish(&mut self, conn: &mut NatsConn, messages: &[(&str, Vec<u8>)]);
    fn receive(&mut self, conn: &mut NatsConn, n: usize, what: impl Display) -> Vec<Frame>;
}

/// `pubsub broker --bind 127.0.0.1:0 ARGS...`.
fn broker(args: &[&str]) -> Server {
    Server::start_as("pubsub", "broker", args)
}

impl Nats for Server {
    /// A connection that has read nothing yet.
    fn raw(&mut self) -> NatsConn {
        self.connect_with(NatsConn::connect)
    }

    /// The next frame on `conn`, failing with a diagnosis if none comes.
    fn read(&mut self, conn: &mut NatsConn, after: impl Display) -> Frame {
        match conn.read(PROMPT) {
            Ok(frame) => frame,
            Err(no) => self.program.fail(format_args!(
                "after {after}, expected a frame, got {}",
                no.after(PROMPT)
            )),
        }
    }

    /// Reads `INFO` and returns its JSON.
    fn info(&mut self, conn: &mut NatsConn) -> serde_json::Value {
        match self.read(conn, "connecting") {
            Frame::Info(json) => serde_json::from_str(&json).unwrap_or_else(|e| {
                self.program.fail(format_args!(
                    "INFO must carry a JSON object: {e} in {json:?}"
                ))
            }),
            other => self.program.fail(format_args!(
                "expected INFO as the first frame after connecting, got {other}"
            )),
        }
    }

    /// A connected, quiet client: INFO read, `CONNECT {"verbose":false}` sent and confirmed.
    fn client(&mut self) -> NatsConn {
        let mut conn = self.raw();
        self.info(&mut conn);
        self.send(
            &mut conn,
            b"CONNECT {\"verbose\":false,\"pedantic\":true,\"name\":\"suite\"}\r\n",
        );
        self.sync(&mut conn, "CONNECT {\"verbose\":false}");
        conn
    }

    fn send(&mut self, conn: &mut NatsConn, bytes: &[u8]) {
        if let Err(e) = conn.send_raw(bytes) {
            self.program
                .fail(format_args!("sending \"{}\": {e}", shown(bytes)));
        }
    }

    /// Sends `sent` and expects exactly `expected` back, in order.
    /// With nothing to send (`b""`), waits for what is due on `conn`: messages published by
    /// another client.
    fn expect(&mut self, conn: &mut NatsConn, sent: &[u8], expected: &[Frame]) {
        self.send(conn, sent);
        let doing = if sent.is_empty() {
            format!("waiting for {}", list(expected))
        } else {
            format!("sending \"{}\"", shown(sent))
        };
        for (i, want) in expected.iter().enumerate() {
            let got = self.read(conn, &doing);
            if &got != want {
                self.program.fail(format_args!(
                    "{doing}: expected {}, got {got} (frame {} of the answer)",
                    list(expected),
                    i + 1
                ));
            }
        }
    }

    /// `PING`, and nothing but `PONG` back: whatever was due on `conn` before has come.
    fn sync(&mut self, conn: &mut NatsConn, after: impl Display) {
        self.send(conn, b"PING\r\n");
        match conn.read(PROMPT) {
            Ok(Frame::Pong) => {}
            Ok(other) => self.program.fail(format_args!(
                "after {after}, sent PING: expected PONG and nothing before it, got {other}"
            )),
            Err(no) => self.program.fail(format_args!(
                "after {after}, sent PING: expected PONG, got {}",
                no.after(PROMPT)
            )),
        }
    }

    /// `SUB subject [queue] sid`, confirmed with PING/PONG.
    fn subscribe(&mut self, conn: &mut NatsConn, subject: &str, queue: Option<&str>, sid: &str) {
        let line = match queue {
            Some(q) => format!("SUB {subject} {q} {sid}\r\n"),
            None => format!("SUB {subject} {sid}\r\n"),
        };
        self.send(conn, line.as_bytes());
        self.sync(conn, line.trim_end());
    }

    /// Publishes every `(subject, payload)` in one write, then PING/PONG.
    fn publish(&mut self, conn: &mut NatsConn, messages: &[(&str, Vec<u8>)]) {
        let mut wire = Vec::new();
        for (subject, payload) in messages {
            wire.extend(workbook_suite::nats::encode_pub(subject, payload));
        }
        self.send(conn, &wire);
        self.sync(conn, format_args!("publishing {} messages", messages.len()));
    }

    /// Reads `n` frames that must all be MSGs, then PING/PONG (no more are due).
    fn receive(&mut self, conn: &mut NatsConn, n: usize, what: impl Display) -> Vec<Frame> {
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            match conn.read(PROMPT) {
                Ok(frame @ Frame::Msg { .. }) => got.push(frame),
                Ok(other) => self.program.fail(format_args!(
                    "{what}: expected {n} MSGs, got {other} after {}",
                    got.len()
                )),
                Err(no) => self.program.fail(format_args!(
                    "{what}: expected {n} MSGs, but after {} got {}",
                    got.len(),
                    no.after(PROMPT)
                )),
            }
        }
        self.sync(conn, format_args!("{what} ({n} MSGs)"));
        got
    }
}

/// Bytes as a test message shows them: escaped, and cut if long.
fn shown(bytes: &[u8]) -> String {
    let text = bytes.escape_ascii().to_string();
    if text.len() > 120 {
        format!("{}... ({} bytes)", &text[..120], bytes.len())
    } else {
        text
    }
}

fn list(frames: &[Frame]) -> String {
    let items: Vec<String> = frames.iter().map(ToString::to_string).collect();
    format!("[{}]", items.join(", "))
}

fn msg(subject: &str, sid: &str, payload: &str) -> Frame {
    Frame::msg(subject, sid, payload.as_bytes())
}

fn payload_of(frame: &Frame) -> String {
    match frame {
        Frame::Msg { payload, .. } => String::from_utf8_lossy(payload).into_owned(),
        other => other.to_string(),
    }
}

fn numbered(subject: &'static str, n: usize, tag: &str) -> Vec<(&'static str, Vec<u8>)> {
    (0..n)
        .map(|i| (subject, format!("{tag}{i}").into_bytes()))
        .collect()
}

/// Runs `pubsub ARGS` to completion and fails unless it succeeds.
fn run_client(broker: &mut Server, args: &[&str]) {
    let mut client = Program::start(&bin(), args);
    match client.wait_exit(PROMPT) {
        Some(status) if status.success() => {}
        Some(status) => {
            let why = client.diagnosis();
            broker.program.fail(format_args!(
                "`pubsub {}` failed ({status}):\n{why}",
                args.join(" ")
            ))
        }
        None => {
            let why = client.diagnosis();
            broker.program.fail(format_args!(
                "`pubsub {}` did not finish within {PROMPT:?}:\n{why}",
                args.join(" ")
            ))
        }
    }
}

/// Starts `pubsub sub --server ADDR SUBJECT [--count N]` and waits for its `subscribed` line.
fn start_sub(server: &str, subject: &str, count: Option<usize>) -> Program {
    let mut args = vec!["sub", "--server", server, subject];
    let count = count.map(|n| n.to_string());
    if let Some(count) = &count {
        args.extend(["--count", count]);
    }
    let mut sub = Program::start(&bin(), &args);
    sub.expect_json(
        format_args!("{{\"subscribed\":\"{subject}\"}} once the subscription is in place"),
        PROMPT,
        |v| v["subscribed"] == subject,
    );
    sub
}

/// Reads `sub`'s JSON lines for `expected` payloads, in order.
fn expect_sub_lines(sub: &mut Program, subject_of: &[(&str, &str)]) {
    for (subject, payload) in subject_of {
        sub.expect_json(
            format_args!("{{\"subject\":\"{subject}\",\"payload\":\"{payload}\",...}}"),
            PROMPT,
            |v| v["subject"] == *subject && v["payload"] == *payload,
        );
    }
}

/// Reads `sub`'s JSON lines for `expected` payloads, in order, and its clean exit.
fn expect_sub_output(sub: &mut Program, subject_of: &[(&str, &str)]) {
    expect_sub_lines(sub, subject_of);
    match sub.wait_exit(PROMPT) {
        Some(status) if status.success() => {}
        Some(status) => sub.fail(format_args!(
            "expected `sub --count {}` to exit 0 after its messages, got {status}",
            subject_of.len()
        )),
        None => sub.fail(format_args!(
            "expected `sub --count {}` to exit after its messages; it is still running",
            subject_of.len()
        )),
    }
}

/// One step of a broker the suite plays for the project's own client.
enum Play {
    /// Write these bytes, `{sid}` replaced by the sid of the client's `SUB`, then wait 5 ms, so
    /// that the next write is likely read apart.
    Send(&'static [u8]),
    /// Read until the client has sent this, after what earlier steps waited for.
    Await(&'static str),
}

/// Plays a broker for one client on a port of its own: runs `script`, then reads until the
/// client closes. Gives the address, and a handle that yields everything the client sent or
/// says which step it never got to.
fn play_broker(script: Vec<Play>) -> (String, std::thread::JoinHandle<Result<String, String>>) {
    use std::io::{Read, Write};
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").expect("a port for the played broker");
    let addr = listener.local_addr().expect("its address").to_string();
    let played = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().map_err(|e| format!("accepting: {e}"))?;
        conn.set_read_timeout(Some(PROMPT))
            .map_err(|e| e.to_string())?;
        conn.set_nodelay(true).map_err(|e| e.to_string())?;
        let (mut heard, mut from) = (Vec::new(), 0);
        let mut chunk = [0u8; 4096];
        for step in script {
            match step {
                Play::Send(bytes) => {
                    let text = String::from_utf8_lossy(bytes);
                    let bytes = if text.contains("{sid}") {
                        let heard = String::from_utf8_lossy(&heard);
                        let Some(sid) = sid_of_sub(&heard) else {
                            return Err(format!(
                                "expected the client to send SUB before its PING; it sent {heard:?}"
                            ));
                        };
                        text.replace("{sid}", sid).into_bytes()
                    } else {
                        bytes.to_vec()
                    };
                    conn.write_all(&bytes)
                        .map_err(|e| format!("writing {:?}: {e}", shown(&bytes)))?;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Play::Await(text) => loop {
                    let seen = String::from_utf8_lossy(&heard[from..]).into_owned();
                    if let Some(at) = seen.find(text) {
                        from += at + text.len();
                        break;
                    }
                    match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => {
                            return Err(format!(
                                "expected the client to send {:?}; it sent {:?}, then nothing",
                                text,
                                String::from_utf8_lossy(&heard)
                            ));
                        }
                        Ok(n) => heard.extend_from_slice(&chunk[..n]),
                    }
                },
            }
        }
        while let Ok(n @ 1..) = conn.read(&mut chunk) {
            heard.extend_from_slice(&chunk[..n]);
        }
        Ok(String::from_utf8_lossy(&heard).into_owned())
    });
    (addr, played)
}

/// The sid of the first `SUB` a client sent: the last argument of its line.
fn sid_of_sub(heard: &str) -> Option<&str> {
    heard
        .lines()
        .find(|line| line.starts_with("SUB "))
        .and_then(|line| line.split_whitespace().last())
}

/// Waits for the played broker's verdict, failing `client`'s test with it.
fn played_through(
    client: &mut Program,
    played: std::thread::JoinHandle<Result<String, String>>,
) -> String {
    match played.join() {
        Ok(Ok(heard)) => heard,
        Ok(Err(why)) => client.fail(format_args!("the broker the suite played: {why}")),
        Err(_) => client.fail("the broker the suite played panicked"),
    }
}

mod stage1_handshake {
    use super::*;

    #[test]
    fn info_comes_first_and_ping_gets_pong() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            let mut c = b.raw();
            let info = b.info(&mut c);
            for field in ["server_id", "max_payload", "proto"] {
                if info.get(field).is_none() {
                    b.program
                        .fail(format_args!("INFO must have {field:?}; it was {info}"));
                }
            }
            if info["max_payload"] != 1024 * 1024 {
                b.program.fail(format_args!(
                    "INFO's max_payload must be 1048576 by default; INFO was {info}"
                ));
            }
            // Before CONNECT, PING works already.
            b.expect(&mut c, b"PING\r\n", &[Frame::Pong]);
        });
    }

    #[test]
    fn connect_verbose_acknowledges_and_quiet_does_not() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            let mut c = b.raw();
            b.info(&mut c);
            b.expect(
                &mut c,
                b"CONNECT {\"verbose\":true,\"pedantic\":false,\"lang\":\"suite\"}\r\n",
                &[Frame::Ok],
            );
            b.expect(&mut c, b"PING\r\n", &[Frame::Pong]);
            b.send(&mut c, b"CONNECT {\"verbose\":false}\r\n");
            b.sync(&mut c, "CONNECT {\"verbose\":false}");
        });
    }

    #[test]
    fn verbs_in_any_case_and_bare_newlines() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            let mut c = b.client();
            b.expect(
                &mut c,
                b"ping\r\nPiNg\nPONG\r\nPING\r\n",
                &[Frame::Pong, Frame::Pong, Frame::Pong],
            );
        });
    }

    #[test]
    fn max_payload_is_configurable() {
        bounded(LIMIT, || {
            let mut b = broker(&["--max-payload", "1000"]);
            let mut c = b.raw();
            let info = b.info(&mut c);
            if info["max_payload"] != 1000 {
                b.program.fail(format_args!(
                    "started with --max-payload 1000, INFO's max_payload must be 1000; INFO was {info}"
                ));
            }
        });
    }

    #[test]
    fn threads_sets_the_runtime_workers() {
        bounded(LIMIT, || {
            // `--threads N` runs N workers: three of them are two threads more than one.
            let threads = |n: &str| {
                let mut b = broker(&["--threads", n]);
                let mut c = b.client();
                b.sync(
                    &mut c,
                    format_args!("connecting to a broker with --threads {n}"),
                );
                let tasks = format!("/proc/{}/task", b.program.id());
                let count = std::fs::read_dir(&tasks).map_or(0, Iterator::count);
                (b, count)
            };
            let (_one, with_one) = threads("1");
            let (mut three, with_three) = threads("3");
            if with_one == 0 {
                eprintln!("skipping the thread count: this system has no /proc/PID/task");
                return;
            }
            if with_three < with_one + 2 {
                three.program.fail(format_args!(
                    "expected a broker with --threads 3 to run at least two threads more than one \
                     with --threads 1; it runs {with_three}, and that one {with_one}"
                ));
            }
        });
    }
}

mod stage2_one_to_one {
    use super::*;

    #[test]
    fn a_message_reaches_its_subscriber() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            let mut sub = b.client();
            b.subscribe(&mut sub, "greetings", None, "1");
            let mut publisher = b.client();
            b.publish(&mut publisher, &[("greetings", b"hello".to_vec())]);
            b.expect(&mut sub, b"", &[msg("greetings", "1", "hello")]);
        });
    }

    #[test]
    fn only_the_subscribed_subject_is_delivered() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            let mut sub = b.client();
            b.subscribe(&mut sub, "foo", None, "7");
            let mut publisher = b.client();
            b.publish(
                &mut publisher,
                &[
                    ("bar", b"no".to_vec()),
                    ("foo.bar", b"no".to_vec()),
                    ("fo", b"no".to_vec()),
                    ("foo", b"yes".to_vec()),
                ],
            );
            let got = b.receive(
                &mut sub,
                1,
                "subscribed to foo, published to bar, foo.bar, fo, foo",
            );
            if got != [msg("foo", "7", "yes")] {
                b.program.fail(format_args!(
                    "subscribed to foo, expected only [MSG foo 7 3 \"yes\"], got {}",
                    list(&got)
                ));
            }
        });
    }

    #[test]
    fn payloads_are_binary_safe() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            let mut sub = b.client();
            b.subscribe(&mut sub, "bin", None, "1");
            let mut publisher = b.client();
            let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 256) as u8).collect();
            let payloads: Vec<Vec<u8>> = vec![
                b"line one\r\nline two".to_vec(),
                b"\0\x01\xff".to_vec(),
                b"MSG bin 1 3\r\nabc\r\n".to_vec(),
                Vec::new(),
                big,
            ];
            let messages: Vec<(&str, Vec<u8>)> =
                payloads.iter().map(|p| ("bin", p.clone())).collect();
            b.publish(&mut publisher, &messages);
            let got = b.receive(&mut sub, payloads.len(), "publishing binary payloads");
            for (frame, sent) in got.iter().zip(&payloads) {
                let expected = Frame::msg("bin", "1", sent);
                if *frame != expected {
                    b.program.fail(format_args!(
                        "published a payload of {} bytes, expected it back unchanged as {expected}, got {frame}",
                        sent.len()
                    ));
                }
            }
        });
    }

    #[test]
    fn a_reply_subject_is_passed_on() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            let mut sub = b.client();
            b.subscribe(&mut sub, "service", None, "3");
            let mut publisher = b.client();
            b.send(&mut publisher, b"PUB service _INBOX.answer 4\r\nping\r\n");
            b.sync(&mut publisher, "PUB service _INBOX.answer 4");
            let expected = Frame::Msg {
                subject: "service".into(),
                sid: "3".into(),
                reply: Some("_INBOX.answer".into()),
                payload: b"ping".to_vec(),
            };
            b.expect(&mut sub, b"", &[expected]);
        });
    }

    #[test]
    fn a_thousand_messages_arrive_in_order() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            let mut sub = b.client();
            b.subscribe(&mut sub, "seq", None, "1");
            let mut publisher = b.client();
            b.publish(&mut publisher, &numbered("seq", 1000, "m"));
            let got = b.receive(&mut sub, 1000, "publishing m0..m999 in one write");
            for (i, frame) in got.iter().enumerate() {
                if payload_of(frame) != format!("m{i}") {
                    b.program.fail(format_args!(
                        "published m0..m999 in order, message {i} was {frame}"
                    ));
                }
            }
        });
    }

    #[test]
    fn echo_off_skips_the_publishers_own_subscription() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            let mut me = b.client();
            b.subscribe(&mut me, "self", None, "1");
            b.expect(
                &mut me,
                b"PUB self 4\r\necho\r\nPING\r\n",
                &[msg("self", "1", "echo"), Frame::Pong],
            );
            let mut other = b.client();
            b.subscribe(&mut other, "self", None, "9");
            b.send(&mut me, b"CONNECT {\"verbose\":false,\"echo\":false}\r\n");
            b.send(&mut me, b"PUB self 7\r\nno echo\r\n");
            b.sync(
                &mut me,
                "CONNECT {\"echo\":false} and publishing to my own subscription",
            );
            // Another client's subscription is not the publisher's own: it gets the message.
            b.expect(&mut other, b"", &[msg("self", "9", "no echo")]);
        });
    }

    #[test]
    fn the_pub_and_sub_subcommands() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            let server = b.addr.to_string();
            // Without --count: `sub --count` sends UNSUB, which is stage 5 (and tested there).
            let mut sub = start_sub(&server, "news", None);
            run_client(&mut b, &["pub", "--server", &server, "news", "first"]);
            run_client(&mut b, &["pub", "--server", &server, "news", "second one"]);
            expect_sub_lines(&mut sub, &[("news", "first"), ("news", "second one")]);
        });
    }

    #[test]
    fn sub_reads_whatever_a_broker_may_send() {
        bounded(LIMIT, || {
            // The suite plays the broker: `+OK` (which a broker may send anyway), a MSG with a
            // reply subject and a payload of exactly INFO's max_payload before the PONG that
            // confirms the subscription, a PING the client must answer, a payload in two
            // pieces, and last an -ERR.
            let (addr, played) = play_broker(vec![
                Play::Send(b"INFO {\"server_id\":\"played\",\"proto\":1,\"max_payload\":16}\r\n"),
                Play::Await("PING\r\n"),
                Play::Send(b"+OK\r\nMSG s {sid} inbox 16\r\n0123456789abcdef\r\nPING\r\n"),
                Play::Await("PONG\r\n"),
                Play::Send(b"PONG\r\n"),
                Play::Send(b"MSG s {sid} 5\r\nhe"),
                Play::Send(b"llo\r\n"),
                Play::Send(b"-ERR 'Played Failure'\r\n"),
            ]);
            let mut sub = Program::start(&bin(), &["sub", "--server", &addr, "s"]);
            sub.expect_json(
                "{\"subscribed\":\"s\"} once the played broker has answered PING with PONG",
                PROMPT,
                |v| v["subscribed"] == "s",
            );
            sub.expect_json(
                "{\"subject\":\"s\",\"reply\":\"inbox\",\"payload\":\"0123456789abcdef\"}: a MSG \
                 of max_payload bytes that came before the PONG",
                PROMPT,
                |v| {
                    v["subject"] == "s"
                        && v["reply"] == "inbox"
                        && v["payload"] == "0123456789abcdef"
                },
            );
            sub.expect_json(
                "{\"subject\":\"s\",\"reply\":null,\"payload\":\"hello\"}: a MSG whose payload \
                 came in two pieces",
                PROMPT,
                |v| v["subject"] == "s" && v["reply"].is_null() && v["payload"] == "hello",
            );
            match sub.wait_exit(PROMPT) {
                Some(status) if status.code() == Some(1) => {}
                other => sub.fail(format_args!(
                    "after -ERR 'Played Failure' from the broker, expected `sub` to exit with \
                     status 1, got {}",
                    other.map_or("no exit".to_owned(), |s| s.to_string())
                )),
            }
            let stderr = sub.final_stderr();
            if !stderr.contains("Played Failure") {
                sub.fail("after -ERR 'Played Failure', expected `sub` to say it on stderr");
            }
            played_through(&mut sub, played);
        });
    }
}

mod stage3_fan_out {
    use super::*;

    #[test]
    fn every_subscriber_gets_every_message_once() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            let mut subs: Vec<NatsConn> = (0..20).map(|_| b.client()).collect();
            for (i, sub) in subs.iter_mut().enumerate() {
                b.subscribe(sub, "fan", None, &format!("s{i}"));
            }
            let mut publisher = b.client();
            b.publish(&mut publisher, &numbered("fan", 200, "m"));
            for (i, sub) in subs.iter_mut().enumerate() {
                let got = b.receive(sub, 200, format_args!("subscriber {i} of 20, 200 messages"));
                for (n, frame) in got.iter().enumerate() {
                    if *frame != msg("fan", &format!("s{i}"), &format!("m{n}")) {
                        b.program.fail(format_args!(
                            "subscriber {i} of 20: message {n} should be m{n} for sid s{i}, got {frame}"
                        ));
                    }
                }
            }
        });
    }

    #[test]
    fn two_subscriptions_on_one_connection_get_a_copy_each() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            let mut sub = b.client();
            b.subscribe(&mut sub, "dup", None, "1");
            b.subscribe(&mut sub, "dup", None, "2");
            let mut publisher = b.client();
            b.publish(&mut publisher, &[("dup", b"x".to_vec())]);
            let mut sids: Vec<String> = b
                .receive(&mut sub, 2, "two subscriptions to dup, one message")
                .iter()
                .map(|f| match f {
                    Frame::Msg { sid, .. } => sid.clone(),
                    other => other.to_string(),
                })
                .collect();
            sids.sort();
            if sids != ["1", "2"] {
                b.program.fail(format_args!(
                    "one connection with sids 1 and 2 on dup: expected one MSG for each, got sids {sids:?}"
                ));
            }
        });
    }

    #[test]
    fn many_publishers_each_keep_their_order() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            let mut sub = b.client();
            b.subscribe(&mut sub, "mix", None, "1");
            let mut publishers: Vec<NatsConn> = (0..4).map(|_| b.client()).collect();
            // Interleave the publishers' writes, so that the broker reads them concurrently.
            for round in 0..10 {
                for (p, conn) in publishers.iter_mut().enumerate() {
                    let mut wire = Vec::new();
                    for i in 0..25 {
                        let n = round * 25 + i;
                        wire.extend(workbook_suite::nats::encode_pub(
                            "mix",
                            format!("p{p}-{n}").as_bytes(),
                        ));
                    }
                    b.send(conn, &wire);
                }
            }
            for conn in &mut publishers {
                b.sync(conn, "publishing 250 messages");
            }
            let got = b.receive(&mut sub, 1000, "4 publishers, 250 messages each");
            let mut next = [0usize; 4];
            for frame in &got {
                let text = payload_of(frame);
                let parsed = text
                    .strip_prefix('p')
                    .and_then(|t| t.split_once('-'))
                    .and_then(|(p, n)| Some((p.parse::<usize>().ok()?, n.parse::<usize>().ok()?)));
                match parsed {
                    Some((p, n)) if p < 4 && n == next[p] => next[p] += 1,
                    _ => b.program.fail(format_args!(
                        "4 publishers each sent pP-0..pP-249 in order; got {text:?} when expecting {:?}",
                        next.iter()
                            .enumerate()
                            .map(|(p, n)| format!("p{p}-{n}"))
                            .collect::<Vec<_>>()
                    )),
                }
            }
        });
    }
}

mod stage4_wildcards_and_queues {
    use super::*;

    /// Subscribes to `pattern`, publishes to every subject, and checks which arrived.
    fn matching(pattern: &str, subjects: &[&'static str], expected: &[&str]) {
        let mut b = broker(&[]);
        let mut sub = b.client();
        b.subscribe(&mut sub, pattern, None, "1");
        let mut publisher = b.client();
        let messages: Vec<(&str, Vec<u8>)> = subjects
            .iter()
            .map(|s| (*s, s.as_bytes().to_vec()))
            .collect();
        b.publish(&mut publisher, &messages);
        let got: Vec<String> = b
            .receive(
                &mut sub,
                expected.len(),
                format_args!("subscribed to {pattern}, published to {subjects:?}"),
            )
            .iter()
            .map(payload_of)
            .collect();
        if got != expected {
            b.program.fail(format_args!(
                "subscribed to {pattern}, published to {subjects:?}: expected {expected:?}, got {got:?}"
            ));
        }
    }

    #[test]
    fn star_matches_exactly_one_token() {
        bounded(LIMIT, || {
            matching(
                "orders.*.paris",
                &[
                    "orders.eu.paris",
                    "orders.paris",
                    "orders.eu.fr.paris",
                    "orders.us.paris",
                    "orders.eu.lyon",
                ],
                &["orders.eu.paris", "orders.us.paris"],
            );
        });
    }

    #[test]
    fn greater_than_matches_one_or_more_tokens() {
        bounded(LIMIT, || {
            matching(
                "orders.>",
                &[
                    "orders",
                    "orders.eu",
                    "orders.eu.paris.1",
                    "order.eu",
                    "x.orders.eu",
                ],
                &["orders.eu", "orders.eu.paris.1"],
            );
        });
    }

    #[test]
    fn a_subject_of_forty_tokens_is_matched_too() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            let subject: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
            let subject = subject.join(".");
            let mut sub = b.client();
            let patterns = [("t0.>", "1"), (subject.as_str(), "2"), ("*.t1.>", "3")];
            for (pattern, sid) in patterns {
                b.subscribe(&mut sub, pattern, None, sid);
            }
            let mut publisher = b.client();
            b.publish(&mut publisher, &[(subject.as_str(), b"deep".to_vec())]);
            let doing = "subscribed to t0.>, to the 40-token subject t0.t1...t39 itself and to \
                         *.t1.>, then published to that subject";
            let mut sids: Vec<String> = b
                .receive(&mut sub, 3, doing)
                .into_iter()
                .map(|frame| match frame {
                    Frame::Msg { sid, .. } => sid,
                    other => other.to_string(),
                })
                .collect();
            sids.sort();
            if sids != ["1", "2", "3"] {
                b.program.fail(format_args!(
                    "{doing}: expected one message for each of sids 1, 2 and 3, got {}",
                    sids.join(", ")
                ));
            }
        });
    }

    #[test]
    fn a_star_inside_a_token_is_a_literal() {
        bounded(LIMIT, || {
            matching("a*.b", &["ax.b", "a*.b", "a.b"], &["a*.b"]);
        });
    }

    #[test]
    fn a_queue_group_gets_each_message_once() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            // The same four workers serve two subjects, and the publisher alternates between
            // them: a member picked by a counter shared across subjects (`turn % 4`) would see
            // only even turns for `jobs`, so two members would get none.
            let mut members: Vec<NatsConn> = (0..4).map(|_| b.client()).collect();
            for (i, m) in members.iter_mut().enumerate() {
                b.subscribe(m, "jobs", Some("workers"), &format!("w{i}"));
                b.subscribe(m, "chores", Some("workers"), &format!("c{i}"));
            }
            let mut watcher = b.client();
            b.subscribe(&mut watcher, "jobs", None, "all");
            let mut publisher = b.client();
            let messages: Vec<(&str, Vec<u8>)> = numbered("jobs", 300, "j")
                .into_iter()
                .zip(numbered("chores", 300, "c"))
                .flat_map(|(job, chore)| [job, chore])
                .collect();
            b.publish(&mut publisher, &messages);
            b.receive(
                &mut watcher,
                300,
                "a plain subscriber beside the queue group",
            );
            let mut seen = Vec::new();
            let mut jobs_per_member = Vec::new();
            for (i, m) in members.iter_mut().enumerate() {
                // Each member drains what it got: MSGs until the PONG of a PING.
                b.send(m, b"PING\r\n");
                let mut jobs = 0;
                loop {
                    match b.read(m, format_args!("PING to queue member {i}")) {
                        Frame::Pong => break,
                        frame @ Frame::Msg { .. } => {
                            let payload = payload_of(&frame);
                            jobs += usize::from(payload.starts_with('j'));
                            seen.push(payload);
                        }
                        other => b.program.fail(format_args!(
                            "queue member {i}: expected MSGs then PONG, got {other}"
                        )),
                    }
                }
                jobs_per_member.push(jobs);
            }
            let unique: BTreeSet<&String> = seen.iter().collect();
            if seen.len() != 600 || unique.len() != 600 {
                b.program.fail(format_args!(
                    "300 `jobs` and 300 `chores`, alternating, to a queue group of 4: expected \
                     each delivered to exactly one member, got {} deliveries of {} distinct \
                     messages",
                    seen.len(),
                    unique.len()
                ));
            }
            // About 75 each (a standard deviation of 7.5 if picked at random); under 30 is a
            // member starved by how the broker picks.
            if jobs_per_member.iter().any(|&n| n < 30) {
                b.program.fail(format_args!(
                    "300 `jobs`, alternating with `chores`, to a queue group of 4 on both: \
                     expected the work spread (about 75 each), got {jobs_per_member:?} per \
                     member; pick the member per message and per subject, not from a counter \
                     shared by every subject"
                ));
            }
        });
    }

    #[test]
    fn each_queue_group_gets_its_own_copy() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            let mut a = b.client();
            b.subscribe(&mut a, "ev.*", Some("billing"), "a");
            let mut c = b.client();
            b.subscribe(&mut c, "ev.>", Some("audit"), "c");
            let mut publisher = b.client();
            b.publish(&mut publisher, &numbered("ev.x", 10, "e"));
            for (conn, sid, group) in [(&mut a, "a", "billing"), (&mut c, "c", "audit")] {
                let got = b.receive(
                    conn,
                    10,
                    format_args!("the only member of queue group {group}"),
                );
                for (n, frame) in got.iter().enumerate() {
                    if *frame != msg("ev.x", sid, &format!("e{n}")) {
                        b.program.fail(format_args!(
                            "the only member of queue group {group}: message {n} should be e{n}, got {frame}"
                        ));
                    }
                }
            }
        });
    }
}

mod stage5_unsubscribe {
    use super::*;

    #[test]
    fn unsub_stops_delivery() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            let mut sub = b.client();
            b.subscribe(&mut sub, "u", None, "1");
            b.subscribe(&mut sub, "u", None, "2");
            let mut publisher = b.client();
            b.publish(&mut publisher, &[("u", b"before".to_vec())]);
            b.receive(&mut sub, 2, "two subscriptions, one message");
            b.send(&mut sub, b"UNSUB 1\r\n");
            b.sync(&mut sub, "UNSUB 1");
            b.publish(&mut publisher, &[("u", b"after".to_vec())]);
            b.expect(&mut sub, b"", &[msg("u", "2", "after")]);
            b.sync(&mut sub, "UNSUB 1 then a message: only sid 2 may get it");
        });
    }

    #[test]
    fn unsub_with_max_delivers_that_many_in_all() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            let mut sub = b.client();
            b.subscribe(&mut sub, "m", None, "1");
            let mut publisher = b.client();
            b.publish(&mut publisher, &[("m", b"m0".to_vec())]);
            b.receive(&mut sub, 1, "one message before UNSUB 1 3");
            b.send(&mut sub, b"UNSUB 1 3\r\n");
            b.sync(&mut sub, "UNSUB 1 3");
            b.publish(&mut publisher, &numbered("m", 5, "n"));
            let got: Vec<String> = b
                .receive(
                    &mut sub,
                    2,
                    "UNSUB 1 3 after 1 message, then 5 more published",
                )
                .iter()
                .map(payload_of)
                .collect();
            if got != ["n0", "n1"] {
                b.program.fail(format_args!(
                    "UNSUB 1 3 after one message: expected 2 more (n0, n1), got {got:?}"
                ));
            }
        });
    }

    #[test]
    fn a_max_holds_against_publishers_at_once() {
        bounded(LIMIT, || {
            // Four publishers send 200 messages each at the same time to 20 subscriptions, each
            // limited to 2 in all: they deliver 2 each, however the broker's threads interleave.
            let mut b = broker(&[]);
            let mut sub = b.client();
            let mut wire = Vec::new();
            for sid in 0..20 {
                wire.extend(format!("SUB race {sid}\r\nUNSUB {sid} 2\r\n").into_bytes());
            }
            b.send(&mut sub, &wire);
            b.sync(&mut sub, "20 times SUB race SID and UNSUB SID 2");
            let mut publishers: Vec<NatsConn> = (0..4).map(|_| b.client()).collect();
            let mut wire = Vec::new();
            for n in 0..200 {
                wire.extend(workbook_suite::nats::encode_pub(
                    "race",
                    format!("r{n}").as_bytes(),
                ));
            }
            for publisher in &mut publishers {
                b.send(publisher, &wire);
            }
            for publisher in &mut publishers {
                b.sync(
                    publisher,
                    "200 messages from each of four publishers at once",
                );
            }
            let got = b.receive(
                &mut sub,
                40,
                "20 subscriptions with a max of 2, then 800 messages from four publishers at once",
            );
            let mut per_sid = std::collections::BTreeMap::new();
            for frame in &got {
                if let Frame::Msg { sid, .. } = frame {
                    *per_sid.entry(sid.clone()).or_insert(0) += 1;
                }
            }
            if per_sid.len() != 20 || per_sid.values().any(|&n| n != 2) {
                b.program.fail(format_args!(
                    "20 subscriptions with UNSUB SID 2, then 800 messages from four publishers at \
                     once: expected 2 MSGs for each sid, got {per_sid:?}"
                ));
            }
        });
    }

    #[test]
    fn unsub_with_a_max_already_reached_unsubscribes_at_once() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            let mut sub = b.client();
            b.subscribe(&mut sub, "m", None, "1");
            let mut publisher = b.client();
            b.publish(&mut publisher, &numbered("m", 2, "m"));
            b.receive(&mut sub, 2, "two messages before UNSUB 1 1");
            b.send(&mut sub, b"UNSUB 1 1\r\n");
            b.sync(&mut sub, "UNSUB 1 1");
            b.publish(&mut publisher, &[("m", b"late".to_vec())]);
            b.sync(
                &mut sub,
                "UNSUB 1 1 after 2 messages, then a third published",
            );
        });
    }

    #[test]
    fn a_sid_is_free_again_once_its_max_is_reached() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            let mut sub = b.client();
            b.subscribe(&mut sub, "first", None, "1");
            b.send(&mut sub, b"UNSUB 1 1\r\n");
            b.sync(&mut sub, "SUB first 1, UNSUB 1 1");
            let mut publisher = b.client();
            b.publish(&mut publisher, &[("first", b"only".to_vec())]);
            b.expect(&mut sub, b"", &[msg("first", "1", "only")]);
            // Sid 1 has delivered its one message and is gone: it may name a new subscription.
            b.subscribe(&mut sub, "second", None, "1");
            b.publish(&mut publisher, &[("second", b"again".to_vec())]);
            b.expect(&mut sub, b"", &[msg("second", "1", "again")]);
        });
    }

    #[test]
    fn unsub_stops_wildcard_subscriptions_too() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            let mut sub = b.client();
            let patterns = ["*", "w.*", "w.*.x", ">", "w.>", "*.>"];
            for (sid, pattern) in patterns.iter().enumerate() {
                b.subscribe(&mut sub, pattern, None, &sid.to_string());
            }
            for sid in 0..patterns.len() {
                b.send(&mut sub, format!("UNSUB {sid}\r\n").as_bytes());
            }
            b.subscribe(&mut sub, "w.v.x", None, "kept");
            b.sync(
                &mut sub,
                "UNSUB of subscriptions to *, w.*, w.*.x, >, w.> and *.>",
            );
            let mut publisher = b.client();
            b.publish(
                &mut publisher,
                &[
                    ("w", b"1".to_vec()),
                    ("w.v", b"2".to_vec()),
                    ("w.v.x", b"3".to_vec()),
                ],
            );
            b.expect(&mut sub, b"", &[msg("w.v.x", "kept", "3")]);
            b.sync(
                &mut sub,
                "messages to w, w.v and w.v.x after UNSUB of every wildcard subscription",
            );
        });
    }

    #[test]
    fn unsub_of_an_unknown_sid_is_harmless() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            let mut sub = b.client();
            b.subscribe(&mut sub, "k", None, "1");
            b.send(&mut sub, b"UNSUB 99\r\nUNSUB nope 4\r\n");
            b.sync(&mut sub, "UNSUB of sids never subscribed");
            let mut publisher = b.client();
            b.publish(&mut publisher, &[("k", b"still".to_vec())]);
            b.expect(&mut sub, b"", &[msg("k", "1", "still")]);
        });
    }

    #[test]
    fn a_departed_client_receives_nothing_and_breaks_nothing() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            for i in 0..20 {
                let mut gone = b.client();
                b.subscribe(&mut gone, "d", None, &format!("{i}"));
                drop(gone);
            }
            let mut stays = b.client();
            b.subscribe(&mut stays, "d", None, "1");
            let mut publisher = b.client();
            b.publish(&mut publisher, &numbered("d", 50, "d"));
            b.receive(&mut stays, 50, "after 20 subscribers left");
            b.program
                .assert_running("publishing to subscribers that had disconnected");
        });
    }

    #[test]
    fn sub_count_exits_after_n_messages() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            let server = b.addr.to_string();
            let mut sub = start_sub(&server, "tick.*", Some(3));
            let mut publisher = b.client();
            b.publish(&mut publisher, &numbered("tick.a", 5, "t"));
            expect_sub_output(
                &mut sub,
                &[("tick.a", "t0"), ("tick.a", "t1"), ("tick.a", "t2")],
            );
        });
    }

    #[test]
    fn sub_count_tells_the_broker_the_count() {
        bounded(LIMIT, || {
            // The suite plays the broker and reads what `sub --count 2` sends before its PING:
            // UNSUB with the sid of its SUB and 2, so that the broker too stops after 2.
            let (addr, played) = play_broker(vec![
                Play::Send(b"INFO {\"server_id\":\"played\",\"proto\":1,\"max_payload\":1024}\r\n"),
                Play::Await("PING\r\n"),
                Play::Send(b"PONG\r\nMSG c {sid} 1\r\na\r\nMSG c {sid} 1\r\nb\r\n"),
            ]);
            let mut sub = start_sub(&addr, "c", Some(2));
            expect_sub_output(&mut sub, &[("c", "a"), ("c", "b")]);
            let heard = played_through(&mut sub, played);
            let Some(sid) = sid_of_sub(&heard).filter(|sid| {
                heard
                    .lines()
                    .any(|line| line.trim_end() == format!("SUB c {sid}"))
            }) else {
                sub.fail(format_args!(
                    "expected `sub` to send \"SUB c SID\"; it sent {heard:?}"
                ));
            };
            let unsub = format!("UNSUB {sid} 2");
            if !heard.lines().any(|line| line.trim_end() == unsub) {
                sub.fail(format_args!(
                    "expected `sub --count 2` to send \"{unsub}\" (the sid of its SUB); it sent \
                     {heard:?}"
                ));
            }
        });
    }
}

mod stage6_slow_and_silent_consumers {
    use super::*;

    /// The most bytes the kernel may buffer for one loopback connection, both ends together.
    fn socket_buffers() -> usize {
        let max_of = |path: &str| -> usize {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|t| t.split_whitespace().last()?.parse().ok())
                .unwrap_or(8 << 20)
        };
        max_of("/proc/sys/net/ipv4/tcp_rmem") + max_of("/proc/sys/net/ipv4/tcp_wmem")
    }

    #[test]
    fn a_slow_consumer_is_cut_off_and_the_others_keep_up() {
        bounded(LIMIT, || {
            const PENDING: usize = 1 << 20;
            let pending = PENDING.to_string();
            let mut b = broker(&["--max-pending", &pending, "--write-deadline", "60s"]);
            let mut slow = b.client();
            b.subscribe(&mut slow, "firehose", None, "slow");
            let mut fast = b.client();
            b.subscribe(&mut fast, "firehose", None, "fast");
            let mut publisher = b.client();
            // Enough to fill the slow subscriber's socket buffers and its queue several times.
            let size = 32 * 1024;
            let total = (socket_buffers() + 4 * PENDING) / size + 64;
            let per_round = 8;
            let mut sent = 0;
            while sent < total {
                let round: Vec<(&str, Vec<u8>)> = (sent..sent + per_round)
                    .map(|i| ("firehose", format!("{i:08}").repeat(size / 8).into_bytes()))
                    .collect();
                b.publish(&mut publisher, &round);
                let got = b.receive(&mut fast, per_round, format_args!(
                    "the fast subscriber, with a slow one beside it, after {sent} messages of {size} bytes"
                ));
                for (i, frame) in got.iter().enumerate() {
                    if !payload_of(frame).starts_with(&format!("{:08}", sent + i)) {
                        b.program.fail(format_args!(
                            "the fast subscriber: message {} out of order or corrupted",
                            sent + i
                        ));
                    }
                }
                sent += per_round;
            }
            // The slow one now reads: a prefix of the messages, in order, then the verdict.
            let mut received = 0;
            loop {
                match slow.read(PROMPT) {
                    Ok(Frame::Msg { payload, .. }) => {
                        if !payload.starts_with(format!("{received:08}").as_bytes()) {
                            b.program.fail(format_args!(
                                "the slow subscriber: message {received} out of order or corrupted"
                            ));
                        }
                        received += 1;
                    }
                    Ok(Frame::Err(e)) if e == "Slow Consumer" => break,
                    Ok(other) => b.program.fail(format_args!(
                        "the slow subscriber, after {received} messages: expected more MSGs then \
                         -ERR 'Slow Consumer', got {other}"
                    )),
                    Err(no) => b.program.fail(format_args!(
                        "the slow subscriber never read while {sent} messages of {size} bytes were \
                         published with --max-pending {PENDING}: after {received} MSGs expected \
                         -ERR 'Slow Consumer', got {}",
                        no.after(PROMPT)
                    )),
                }
            }
            if received >= sent {
                b.program.fail(format_args!(
                    "the slow subscriber got all {sent} messages and was still cut off"
                ));
            }
            if !slow.is_closed(PROMPT) {
                b.program.fail(
                    "expected the slow consumer's connection closed after -ERR 'Slow Consumer'",
                );
            }
            // Closed for reading too: what the cut-off client still sends is refused by its
            // kernel once the broker has let go of the socket, and never handled.
            let refused = poll_until(PROMPT, Duration::from_millis(20), || {
                slow.send_raw(b"PING\r\n").err()
            });
            if refused.is_none() {
                b.program.fail(format_args!(
                    "after -ERR 'Slow Consumer', the cut-off client kept sending PING for \
                     {PROMPT:?} and the broker kept its connection open: expected the broker to \
                     stop reading it and close the socket"
                ));
            }
            b.sync(&mut publisher, "a slow consumer was cut off");
        });
    }

    /// The payload length that makes `MSG subject sid [reply] size\r\npayload\r\n` exactly
    /// `frame` bytes.
    fn payload_for(frame: usize, subject: &str, sid: &str, reply: Option<&str>) -> usize {
        let reply = reply.map_or(String::new(), |r| format!("{r} "));
        (0..frame)
            .find(|&n| format!("MSG {subject} {sid} {reply}{n}\r\n").len() + n + 2 == frame)
            .expect("a payload length that fits")
    }

    /// `PUB subject [reply] size` with `payload`.
    fn pub_wire(subject: &str, reply: Option<&str>, payload: &[u8]) -> Vec<u8> {
        let reply = reply.map_or(String::new(), |r| format!("{r} "));
        let mut wire = format!("PUB {subject} {reply}{}\r\n", payload.len()).into_bytes();
        wire.extend_from_slice(payload);
        wire.extend_from_slice(b"\r\n");
        wire
    }

    #[test]
    fn the_queue_bound_counts_a_message_to_the_byte() {
        bounded(LIMIT, || {
            // A MSG of exactly --max-pending bytes fits an empty queue; one byte more does not,
            // and its subscriber is a slow consumer at once. The bytes counted are the MSG's
            // own, reply subject included.
            const PENDING: usize = 200;
            let mut b = broker(&["--max-pending", &PENDING.to_string()]);
            let mut publisher = b.client();
            for reply in [None, Some("inbox.7")] {
                let fits = vec![b'f'; payload_for(PENDING, "q", "1", reply)];
                let with = reply.map_or(String::new(), |r| format!(" with reply subject {r}"));
                // The queue is empty once its writer has noted that the last write finished,
                // a moment after the client read it: a fresh subscriber each try.
                let delivered = poll_until(PROMPT, Duration::from_millis(20), || {
                    let mut sub = b.client();
                    b.subscribe(&mut sub, "q", None, "1");
                    b.send(&mut publisher, &pub_wire("q", reply, &fits));
                    b.sync(&mut publisher, "publishing");
                    match sub.read(PROMPT) {
                        Ok(Frame::Msg { payload, .. }) if payload == fits => Some(()),
                        _ => None,
                    }
                });
                if delivered.is_none() {
                    b.program.fail(format_args!(
                        "with --max-pending {PENDING}, a MSG{with} of exactly {PENDING} bytes \
                         to an empty queue: expected it delivered, but the subscriber never got it"
                    ));
                }
                let over = vec![b'o'; fits.len() + 1];
                let mut sub = b.client();
                b.subscribe(&mut sub, "q", None, "1");
                b.send(&mut publisher, &pub_wire("q", reply, &over));
                b.sync(&mut publisher, "publishing");
                match sub.read(PROMPT) {
                    Ok(Frame::Err(e)) if e == "Slow Consumer" => {}
                    got => b.program.fail(format_args!(
                        "with --max-pending {PENDING}, a MSG{with} of {} bytes (one past the \
                         bound): expected -ERR 'Slow Consumer', got {}",
                        PENDING + 1,
                        describe(&got, PROMPT)
                    )),
                }
            }
        });
    }

    #[test]
    fn the_default_queue_holds_seven_mebibytes() {
        bounded(LIMIT, || {
            // --max-pending defaults to 8 MiB, and --max-total-pending to 1 GiB: a subscriber
            // that reads nothing while 7.5 MiB are published to it is still served.
            const SIZE: usize = 64 * 1024;
            const COUNT: usize = 120;
            let mut b = broker(&[]);
            let mut stalled = b.client();
            b.subscribe(&mut stalled, "bulk", None, "1");
            let mut publisher = b.client();
            b.publish(&mut publisher, &vec![("bulk", vec![b'b'; SIZE]); COUNT]);
            for n in 0..COUNT {
                match stalled.read(PROMPT) {
                    Ok(Frame::Msg { payload, .. }) if payload.len() == SIZE => {}
                    got => b.program.fail(format_args!(
                        "with the default limits, {COUNT} messages of 64 KiB (7.5 MiB) published \
                         to a subscriber that read none until all were queued: expected them all, \
                         got {} after {n}",
                        describe(&got, PROMPT)
                    )),
                }
            }
            b.sync(&mut stalled, "7.5 MiB of messages");
        });
    }

    #[test]
    fn a_queue_group_member_cut_off_leaves_the_group_to_the_others() {
        bounded(LIMIT, || {
            // Two members of queue group "g": one reads nothing and is cut off once its socket
            // buffers and its queue are full; from then on the other takes every message, and
            // the publisher never notices.
            const PENDING: usize = 1 << 20;
            let pending = PENDING.to_string();
            let mut b = broker(&["--max-pending", &pending, "--write-deadline", "60s"]);
            let mut slow = b.client();
            b.subscribe(&mut slow, "work", Some("g"), "slow");
            let mut fast = b.client();
            b.subscribe(&mut fast, "work", Some("g"), "fast");
            let mut publisher = b.client();
            let size = 32 * 1024;
            let most = 3 * (socket_buffers() + 4 * PENDING) / size;
            let per_round = 8;
            let (mut sent, mut all_mine) = (0, 0);
            // Until the fast member has had every message of eight rounds in a row: the slow
            // one is gone (while both are members, that is one chance in 2^64).
            while all_mine < 8 {
                if sent >= most {
                    b.program.fail(format_args!(
                        "{sent} messages of {size} bytes published to a queue group of two, one \
                         of which reads nothing, with --max-pending {PENDING}: expected the one \
                         that reads nothing cut off, and the other to get every message after"
                    ));
                }
                let round = vec![("work", vec![b'w'; size]); per_round];
                b.publish(&mut publisher, &round);
                let mut mine = 0;
                b.send(&mut fast, b"PING\r\n");
                loop {
                    match fast.read(PROMPT) {
                        Ok(Frame::Msg { .. }) => mine += 1,
                        Ok(Frame::Pong) => break,
                        got => b.program.fail(format_args!(
                            "the member that reads, after {sent} messages to its group: \
                             expected MSGs then PONG, got {}",
                            describe(&got, PROMPT)
                        )),
                    }
                }
                all_mine = if mine == per_round { all_mine + 1 } else { 0 };
                sent += per_round;
            }
            let round = vec![("work", b"after".to_vec()); 100];
            b.publish(&mut publisher, &round);
            b.receive(
                &mut fast,
                100,
                "100 messages to a queue group whose other member was cut off",
            );
        });
    }

    #[test]
    fn a_client_that_never_reads_its_replies_is_cut_off() {
        bounded(LIMIT, || {
            // A write deadline of 1s: the broker stops reading from a client it cuts off, and
            // this test stops writing only when the broker closes the connection.
            let mut b = broker(&["--max-pending", "65536", "--write-deadline", "1s"]);
            let mut deaf = b.client();
            // More PINGs than the socket buffers and the queue hold PONGs, never reading one.
            let count = (socket_buffers() + 65536) / 6 + 10_000;
            let _ = deaf.send_raw(&b"PING\r\n".repeat(count));
            let mut watcher = b.client();
            b.subscribe(&mut watcher, "alive", None, "1");
            let mut publisher = b.client();
            b.publish(&mut publisher, &[("alive", b"yes".to_vec())]);
            b.expect(&mut watcher, b"", &[msg("alive", "1", "yes")]);
            let mut pongs = 0usize;
            let ended = loop {
                match deaf.read(PROMPT) {
                    Ok(Frame::Pong) => pongs += 1,
                    Ok(Frame::Err(e)) if e == "Slow Consumer" => break true,
                    Err(NoFrame::Closed) => break true,
                    Ok(_) | Err(NoFrame::Garbage(_) | NoFrame::Timeout) => break false,
                }
            };
            if !ended || pongs >= count {
                b.program.fail(format_args!(
                    "a client sent {count} PINGs without reading, with --max-pending 65536: expected \
                     it cut off as a slow consumer, but it got {pongs} PONGs and {}",
                    if ended { "then the verdict" } else { "no verdict" }
                ));
            }
        });
    }
    #[test]
    fn a_silent_client_is_pinged_and_dropped_if_it_never_answers() {
        bounded(LIMIT, || {
            // Every client here must answer a PING within two intervals or be dropped, and the
            // test cannot answer while it waits on another client: the interval leaves room for
            // a loaded machine.
            let mut b = broker(&["--ping-interval", "500ms"]);
            let mut answers = b.client();
            let mut silent = b.client();
            for n in 1..=3 {
                match answers.read(PROMPT) {
                    Ok(Frame::Ping) => b.send(&mut answers, b"PONG\r\n"),
                    other => b.program.fail(format_args!(
                        "with --ping-interval 500ms, a client that says nothing expects the \
                         broker's PING (number {n}), got {}",
                        describe(&other, PROMPT)
                    )),
                }
            }
            let mut pings = 0;
            loop {
                match silent.read(PROMPT) {
                    Ok(Frame::Ping) => pings += 1,
                    Ok(Frame::Err(e)) if e == "Stale Connection" => break,
                    other => b.program.fail(format_args!(
                        "with --ping-interval 500ms, a client that never answers expects 2 PINGs \
                         then -ERR 'Stale Connection'; after {pings} PINGs got {}",
                        describe(&other, PROMPT)
                    )),
                }
            }
            if pings != 2 {
                b.program.fail(format_args!(
                    "expected 2 unanswered PINGs before -ERR 'Stale Connection', got {pings}"
                ));
            }
            if !silent.is_closed(PROMPT) {
                b.program
                    .fail("expected the stale connection closed after -ERR 'Stale Connection'");
            }
            // The client that answers is still served. The broker may have sent it another PING
            // meanwhile: answer it too, and wait for the PONG to this one.
            b.send(&mut answers, b"PING\r\n");
            loop {
                match answers.read(PROMPT) {
                    Ok(Frame::Pong) => break,
                    Ok(Frame::Ping) => b.send(&mut answers, b"PONG\r\n"),
                    other => b.program.fail(format_args!(
                        "a client that answered every PING sent PING: expected PONG (after any \
                         PINGs of the broker's), got {}",
                        describe(&other, PROMPT)
                    )),
                }
            }
        });
    }

    #[test]
    fn a_subscriber_that_never_reads_cannot_hold_the_broker_open() {
        bounded(LIMIT, || {
            // A queue bound far above what is published, so that only the write deadline can
            // free the broker from the writer blocked on this subscriber.
            let mut b = broker(&["--max-pending", "268435456", "--write-deadline", "1s"]);
            let mut deaf = b.client();
            b.subscribe(&mut deaf, "deaf", None, "1");
            let mut publisher = b.client();
            let size = 512 * 1024;
            let total = socket_buffers() / size + 16;
            let payload = vec![b'd'; size];
            for _ in 0..total.div_ceil(8) {
                let round: Vec<(&str, Vec<u8>)> =
                    (0..8).map(|_| ("deaf", payload.clone())).collect();
                b.publish(&mut publisher, &round);
            }
            // More than the socket buffers hold is queued for a client that reads nothing: the
            // broker's writer is stuck in a write. Shutdown drains queues, so only the deadline
            // on that write lets it finish.
            b.program.terminate();
            match b.program.wait_exit(PROMPT) {
                Some(status) if status.success() => {}
                Some(status) => b.program.fail(format_args!(
                    "expected exit status 0 after SIGTERM, got {status}"
                )),
                None => b.program.fail(format_args!(
                    "a subscriber read none of {} MB published to it, then SIGTERM: with \
                     --write-deadline 1s expected the broker to give up on that write and exit \
                     within {PROMPT:?}; it is still running",
                    (total * size) >> 20
                )),
            }
            drop(deaf);
        });
    }

    #[test]
    fn the_queues_of_all_clients_share_one_budget() {
        bounded(LIMIT, || {
            // Each client's own bound is far above what is published: only the broker's budget
            // for every queue together can cut the subscriber off.
            const TOTAL: usize = 4 << 20;
            let total = TOTAL.to_string();
            let args = [
                "--max-pending",
                "268435456",
                "--max-total-pending",
                &total,
                "--write-deadline",
                "60s",
            ];
            let mut b = broker(&args);
            let mut deaf = b.client();
            b.subscribe(&mut deaf, "firehose", None, "1");
            let mut publisher = b.client();
            // More than the kernel can buffer for the connection, and the budget twice over.
            let size = 64 * 1024;
            let count = (socket_buffers() + 2 * TOTAL) / size + 16;
            let mut sent = 0;
            while sent < count {
                let round: Vec<(&str, Vec<u8>)> = (sent..sent + 8)
                    .map(|i| ("firehose", format!("{i:08}").repeat(size / 8).into_bytes()))
                    .collect();
                b.publish(&mut publisher, &round);
                sent += 8;
            }
            let mut received = 0;
            loop {
                match deaf.read(PROMPT) {
                    Ok(Frame::Msg { .. }) => received += 1,
                    Ok(Frame::Err(e)) if e == "Slow Consumer" => break,
                    Ok(other) => b.program.fail(format_args!(
                        "the subscriber that did not read, after {received} MSGs: expected more \
                         MSGs then -ERR 'Slow Consumer', got {other}"
                    )),
                    Err(no) => b.program.fail(format_args!(
                        "a subscriber read none of {sent} messages of {size} bytes while they were \
                         published, with --max-pending 256 MiB but --max-total-pending {TOTAL}: \
                         after {received} MSGs expected -ERR 'Slow Consumer', got {}",
                        no.after(PROMPT)
                    )),
                }
            }
            // The broker gave the budget back: a new subscriber is served in full.
            let mut next = b.client();
            b.subscribe(&mut next, "firehose", None, "2");
            let round: Vec<(&str, Vec<u8>)> = (0..32)
                .map(|i| ("firehose", format!("{i:08}").repeat(size / 8).into_bytes()))
                .collect();
            b.publish(&mut publisher, &round);
            b.receive(
                &mut next,
                32,
                "a new subscriber, once the one that did not read was cut off",
            );
        });
    }

    #[test]
    fn a_client_that_leaves_gives_back_what_its_queue_held() {
        bounded(LIMIT, || {
            // One 16 MiB message for a subscriber that reads none of it: more than the kernel
            // takes for a connection that has read nothing (its buffers grow as it reads), so the
            // broker's writer holds it (the bytes being written count) until the subscriber
            // leaves. Then the broker's budget, 16 MiB and 16 KiB in all, must come
            // back whole: a burst of 50 messages of 2 KiB to a new subscriber needs 100 KiB.
            const BIG: usize = 16 << 20;
            let total = (BIG + (16 << 10)).to_string();
            let args = [
                "--max-payload",
                "16MiB",
                "--max-pending",
                "64MiB",
                "--max-total-pending",
                &total,
                "--write-deadline",
                "60s",
            ];
            let mut b = broker(&args);
            let mut deaf = b.client();
            b.subscribe(&mut deaf, "deaf", None, "1");
            let mut publisher = b.client();
            b.publish(&mut publisher, &[("deaf", vec![b'd'; BIG])]);
            drop(deaf);
            let burst = vec![("burst", vec![b'b'; 2048]); 50];
            let served = poll_until(PROMPT, Duration::from_millis(20), || {
                let mut next = b.client();
                b.subscribe(&mut next, "burst", None, "2");
                b.publish(&mut publisher, &burst);
                (0..burst.len())
                    .all(|_| matches!(next.read(PROMPT), Ok(Frame::Msg { .. })))
                    .then_some(())
            });
            if served.is_none() {
                b.program.fail(
                    "a subscriber left while the broker held a 16 MiB message for it, with \
                     --max-total-pending 16 MiB + 16 KiB: expected the budget back, so that a new \
                     subscriber gets a burst of 50 messages of 2 KiB; it was cut off as a slow \
                     consumer every time",
                );
            }
        });
    }

    #[test]
    fn a_zero_ping_interval_never_pings() {
        bounded(LIMIT, || {
            let mut b = broker(&["--ping-interval", "0s"]);
            let mut sub = b.client();
            b.subscribe(&mut sub, "z", None, "1");
            let mut publisher = b.client();
            b.publish(&mut publisher, &[("z", b"still served".to_vec())]);
            b.expect(&mut sub, b"", &[msg("z", "1", "still served")]);
            b.sync(&mut sub, "a message with --ping-interval 0s (never ping)");
        });
    }
}

mod stage7_hostile_input {
    use super::*;

    /// Sends `wire`, expects `-ERR 'text'` (after any +OK) and a closed connection, while another
    /// client keeps receiving and the broker keeps running.
    fn refused(args: &[&str], wire: &[u8], text: &str) {
        let mut b = broker(args);
        let mut other = b.client();
        b.subscribe(&mut other, "safe", None, "1");
        let mut c = b.client();
        b.send(&mut c, wire);
        loop {
            match c.read(PROMPT) {
                Ok(Frame::Ok) => {}
                Ok(Frame::Err(e)) if e == text => break,
                got => b.program.fail(format_args!(
                    "sent \"{}\": expected -ERR '{text}', got {}",
                    shown(wire),
                    describe(&got, PROMPT)
                )),
            }
        }
        if !c.is_closed(PROMPT) {
            b.program.fail(format_args!(
                "sent \"{}\": expected the connection closed after -ERR '{text}'",
                shown(wire)
            ));
        }
        let mut publisher = b.client();
        b.publish(&mut publisher, &[("safe", b"still here".to_vec())]);
        b.expect(&mut other, b"", &[msg("safe", "1", "still here")]);
        b.program
            .assert_running("after a protocol error on another connection");
    }

    #[test]
    fn an_unknown_verb_is_refused() {
        bounded(LIMIT, || {
            refused(&[], b"FLY away\r\n", "Unknown Protocol Operation")
        });
    }

    #[test]
    fn a_payload_longer_than_announced_is_refused() {
        bounded(LIMIT, || {
            refused(
                &[],
                b"PUB safe 3\r\nhello\r\n",
                "Unknown Protocol Operation",
            )
        });
    }

    #[test]
    fn a_payload_over_the_maximum_is_refused() {
        bounded(LIMIT, || {
            refused(
                &["--max-payload", "1024"],
                b"PUB safe 2000\r\n",
                "Maximum Payload Violation",
            )
        });
    }

    #[test]
    fn malformed_arguments_are_refused() {
        bounded(LIMIT, || {
            for wire in [
                &b"PUB safe\r\n"[..],
                b"PUB safe many\r\n",
                b"SUB safe\r\n",
                b"UNSUB\r\n",
            ] {
                refused(&[], wire, "Parser Error");
            }
        });
    }

    #[test]
    fn a_connect_that_is_not_json_is_refused() {
        bounded(LIMIT, || {
            refused(&[], b"CONNECT {verbose:\r\n", "Parser Error")
        });
    }

    #[test]
    fn an_endless_control_line_is_refused() {
        bounded(LIMIT, || {
            refused(&[], &vec![b'S'; 10_000], "maximum control line exceeded")
        });
    }

    #[test]
    fn limits_hold_to_the_byte() {
        bounded(LIMIT, || {
            // A control line counts the bytes before its `\n`, its `\r` among them: 4096 are
            // served, whether they arrive with their `\n` or before it, and 4097 are refused. A
            // payload of exactly --max-payload is served, and one whose `\r\n` comes later.
            // (The 20ms pauses only make it likely that the broker reads the pieces apart; it
            // must serve them either way.)
            let mut b = broker(&["--max-payload", "16"]);
            let mut c = b.client();
            let line = |sid: &str| {
                let subject = "s".repeat(4096 - format!("SUB  {sid}\r").len());
                format!("SUB {subject} {sid}\r")
            };
            let whole = line("1");
            b.send(&mut c, format!("{whole}\n").as_bytes());
            b.sync(&mut c, "a SUB line of 4096 bytes, its \\r included");
            let cut = line("2");
            b.send(&mut c, cut.as_bytes());
            std::thread::sleep(Duration::from_millis(20));
            b.send(&mut c, b"\n");
            b.sync(&mut c, "a SUB line of 4096 bytes whose \\n came 20ms later");
            b.subscribe(&mut c, "p", None, "3");
            let mut publisher = b.client();
            b.publish(&mut publisher, &[("p", b"0123456789abcdef".to_vec())]);
            b.expect(&mut c, b"", &[msg("p", "3", "0123456789abcdef")]);
            b.send(&mut publisher, b"PUB p 5\r\nhello");
            std::thread::sleep(Duration::from_millis(20));
            b.send(&mut publisher, b"\r\n");
            b.sync(
                &mut publisher,
                "PUB p 5 whose payload's \\r\\n came 20ms later",
            );
            b.expect(&mut c, b"", &[msg("p", "3", "hello")]);
            refused(
                &[],
                format!("{}x\n", line("4")).as_bytes(),
                "maximum control line exceeded",
            );
            refused(
                &["--max-payload", "16"],
                b"PUB p 17\r\n",
                "Maximum Payload Violation",
            );
        });
    }

    #[test]
    fn invalid_subjects_are_refused_and_the_connection_stays() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            let mut c = b.client();
            let invalid = Frame::Err("Invalid Subject".into());
            for bad in [
                "foo..bar",
                ".foo",
                "foo.",
                "a.>.b",
                "form\x0cfeed",
                "carriage\rreturn",
            ] {
                b.expect(
                    &mut c,
                    format!("SUB {bad} 1\r\n").as_bytes(),
                    std::slice::from_ref(&invalid),
                );
            }
            let invalid = Frame::Err("Invalid Publish Subject".into());
            for bad in ["a.*", "a.>", "a..b"] {
                b.expect(
                    &mut c,
                    format!("PUB {bad} 1\r\nx\r\n").as_bytes(),
                    std::slice::from_ref(&invalid),
                );
            }
            b.sync(&mut c, "refused subjects");
        });
    }

    #[test]
    fn the_connection_limit_is_enforced() {
        bounded(LIMIT, || {
            let mut b = broker(&["--max-connections", "3"]);
            let mut held: Vec<NatsConn> = (0..3).map(|_| b.client()).collect();
            let mut extra = b.raw();
            match extra.read(PROMPT) {
                Ok(Frame::Err(e)) if e == "Maximum Connections Exceeded" => {}
                other => b.program.fail(format_args!(
                    "with --max-connections 3 and 3 clients connected, expected a 4th to get \
                     -ERR 'Maximum Connections Exceeded', got {}",
                    describe(&other, PROMPT)
                )),
            }
            drop(held.pop());
            let addr = b.addr;
            let room = poll_until(PROMPT, Duration::from_millis(20), || {
                let mut c = NatsConn::connect(addr).ok()?;
                matches!(c.read(Duration::from_millis(500)).ok()?, Frame::Info(_)).then_some(())
            });
            if room.is_none() {
                b.program
                    .fail("after one of 3 clients left, expected a new client to get INFO");
            }
        });
    }

    #[test]
    fn the_subscription_limit_is_enforced() {
        bounded(LIMIT, || {
            let mut b = broker(&["--max-subscriptions", "2"]);
            let mut c = b.client();
            b.subscribe(&mut c, "a", None, "1");
            b.subscribe(&mut c, "b", None, "2");
            b.expect(
                &mut c,
                b"SUB c 3\r\n",
                &[Frame::Err("Maximum Subscriptions Exceeded".into())],
            );
            b.send(&mut c, b"UNSUB 1\r\n");
            b.subscribe(&mut c, "c", None, "3");
        });
    }

    /// One subscription that stays, and five in turn, each gone after its one message: a limit
    /// of three subscriptions (`limit` is `--max-subscriptions 3` or the bytes of three) is
    /// never reached if each leaves when it has delivered its last.
    fn done_subscriptions_leave(limit: &[&str]) {
        let mut b = broker(limit);
        let mut c = b.client();
        let mut publisher = b.client();
        b.subscribe(&mut c, "keep", None, "0");
        for i in 1..=5 {
            let sid = i.to_string();
            b.subscribe(&mut c, "once", None, &sid);
            b.send(&mut c, format!("UNSUB {sid} 1\r\n").as_bytes());
            b.sync(&mut c, format_args!("SUB once {sid}, UNSUB {sid} 1"));
            b.publish(&mut publisher, &[("once", format!("m{i}").into_bytes())]);
            b.expect(&mut c, b"", &[msg("once", &sid, &format!("m{i}"))]);
        }
        b.subscribe(&mut c, "a", None, "10");
        b.subscribe(&mut c, "b", None, "11");
        b.publish(&mut publisher, &[("keep", b"kept".to_vec())]);
        b.expect(&mut c, b"", &[msg("keep", "0", "kept")]);
    }

    #[test]
    fn a_subscription_that_reached_its_max_frees_its_slot() {
        bounded(LIMIT, || {
            done_subscriptions_leave(&["--max-subscriptions", "3"])
        });
    }

    #[test]
    fn a_subscription_that_reached_its_max_frees_its_bytes() {
        bounded(LIMIT, || {
            let limit = cost("keep", None, "0") + cost("a", None, "10") + cost("b", None, "11");
            done_subscriptions_leave(&["--max-subscription-bytes", &limit.to_string()]);
        });
    }

    #[test]
    fn a_subscription_that_reaches_its_max_later_still_frees_its_slot() {
        bounded(LIMIT, || {
            // --max-subscriptions 2. Sid 1 may take 2 messages and sid 2 one; sid 2 finishes
            // and makes room for sid 3. Then sid 1 finishes too, and must make room for sid 4,
            // although it was still live when sid 2's slot was freed.
            let mut b = broker(&["--max-subscriptions", "2"]);
            let mut c = b.client();
            let mut publisher = b.client();
            b.send(&mut c, b"SUB a 1\r\nUNSUB 1 2\r\nSUB b 2\r\nUNSUB 2 1\r\n");
            b.sync(&mut c, "SUB a 1, UNSUB 1 2, SUB b 2, UNSUB 2 1");
            b.publish(&mut publisher, &[("b", b"b1".to_vec())]);
            b.expect(&mut c, b"", &[msg("b", "2", "b1")]);
            b.subscribe(&mut c, "c", None, "3");
            b.publish(
                &mut publisher,
                &[("a", b"a1".to_vec()), ("a", b"a2".to_vec())],
            );
            b.expect(&mut c, b"", &[msg("a", "1", "a1"), msg("a", "1", "a2")]);
            b.subscribe(&mut c, "d", None, "4");
            b.publish(&mut publisher, &[("d", b"d1".to_vec())]);
            b.expect(&mut c, b"", &[msg("d", "4", "d1")]);
        });
    }

    /// What the contract says one subscription holds, in bytes, for `--max-subscription-bytes`.
    fn cost(subject: &str, queue: Option<&str>, sid: &str) -> usize {
        256 + 320 * subject.split('.').count()
            + 2 * subject.len()
            + 2 * sid.len()
            + queue.map_or(0, str::len)
    }

    #[test]
    fn the_subscription_memory_limit_is_enforced() {
        bounded(LIMIT, || {
            // A count of subscriptions does not bound their memory: one 4 KB control line can be
            // a subject of 2,000 tokens (2,000 nodes of the index) or a 4 KB sid.
            let limit = cost("a.b.c.d.e.f", None, "1") + cost("a.*.c", Some("q"), "2");
            let mut b = broker(&["--max-subscription-bytes", &limit.to_string()]);
            let mut c = b.client();
            b.subscribe(&mut c, "a.b.c.d.e.f", None, "1");
            b.subscribe(&mut c, "a.*.c", Some("q"), "2");
            b.expect(
                &mut c,
                b"SUB z 3\r\n",
                &[Frame::Err("Maximum Subscriptions Exceeded".into())],
            );
            b.send(&mut c, b"UNSUB 1\r\n");
            // Room for 6 tokens again, but not for the same 6 tokens with a long sid.
            let long_sid = "9".repeat(64);
            b.expect(
                &mut c,
                format!("SUB x.y.z.w.v.u {long_sid}\r\n").as_bytes(),
                &[Frame::Err("Maximum Subscriptions Exceeded".into())],
            );
            b.subscribe(&mut c, "x.y.z.w.v.u", None, "3");
            let mut publisher = b.client();
            b.publish(&mut publisher, &[("x.y.z.w.v.u", b"in".to_vec())]);
            b.expect(&mut c, b"", &[msg("x.y.z.w.v.u", "3", "in")]);
        });
    }

    #[test]
    fn the_charge_counts_every_part_of_a_subscription() {
        bounded(LIMIT, || {
            // Room for exactly one subscription whose subject, queue name or sid is long: it is
            // taken, and then not even `SUB b 2` fits.
            let (subject, queue, sid) = ("s".repeat(1_000), "q".repeat(300), "7".repeat(300));
            for (subject, queue, sid, what) in [
                (subject.as_str(), None, "1", "a subject of 1,000 bytes"),
                ("a", Some(queue.as_str()), "1", "a queue name of 300 bytes"),
                ("a", None, sid.as_str(), "a sid of 300 bytes"),
            ] {
                let limit = cost(subject, queue, sid);
                let mut b = broker(&["--max-subscription-bytes", &limit.to_string()]);
                let mut c = b.client();
                b.subscribe(&mut c, subject, queue, sid);
                b.send(&mut c, b"SUB b 2\r\n");
                let got = b.read(&mut c, "sending \"SUB b 2\"");
                if got != Frame::Err("Maximum Subscriptions Exceeded".into()) {
                    b.program.fail(format_args!(
                        "with --max-subscription-bytes {limit}, the charge of one subscription \
                         with {what}, and that subscription taken: expected SUB b 2 refused \
                         with -ERR 'Maximum Subscriptions Exceeded', got {got}"
                    ));
                }
            }
        });
    }

    #[test]
    fn the_default_subscription_memory_holds_a_thousand_long_subjects() {
        bounded(LIMIT, || {
            // --max-subscription-bytes defaults to 128 MiB and --max-total-subscription-bytes to
            // 1 GiB: a thousand subscriptions charged some 2.9 KB each (2.9 MB) all fit.
            let mut b = broker(&[]);
            let mut c = b.client();
            let stem = "l".repeat(1_000);
            let mut wire = Vec::new();
            for n in 0..1_000 {
                wire.extend(format!("SUB {stem}.{n} {n}\r\n").into_bytes());
            }
            b.send(&mut c, &wire);
            b.sync(
                &mut c,
                "1,000 SUBs of subjects of 1,002 to 1,004 bytes with the default limits (none refused)",
            );
            let mut publisher = b.client();
            let last = format!("{stem}.999");
            b.publish(&mut publisher, &[(last.as_str(), b"held".to_vec())]);
            b.expect(&mut c, b"", &[msg(&last, "999", "held")]);
        });
    }

    #[test]
    fn the_subscriptions_of_all_clients_share_one_budget() {
        bounded(LIMIT, || {
            // Each client may hold 10 subscriptions of "s.N" (sid N); all clients together 15.
            let one = cost("s.10", None, "10");
            let args = [
                "--max-subscription-bytes".to_owned(),
                (10 * one).to_string(),
                "--max-total-subscription-bytes".to_owned(),
                (15 * one).to_string(),
            ];
            let mut b = broker(&args.iter().map(String::as_str).collect::<Vec<_>>());
            let mut first = b.client();
            for n in 10..20 {
                b.subscribe(&mut first, &format!("s.{n}"), None, &n.to_string());
            }
            let mut second = b.client();
            for n in 20..25 {
                b.subscribe(&mut second, &format!("s.{n}"), None, &n.to_string());
            }
            b.expect(
                &mut second,
                b"SUB s.25 25\r\n",
                &[Frame::Err("Maximum Subscriptions Exceeded".into())],
            );
            // The refused subscription does not exist; the others are served.
            let mut publisher = b.client();
            b.publish(
                &mut publisher,
                &[("s.25", b"no".to_vec()), ("s.24", b"yes".to_vec())],
            );
            b.expect(&mut second, b"", &[msg("s.24", "24", "yes")]);
            b.sync(&mut second, "a message on s.24 and one on the refused s.25");
            // A client that leaves gives its share back.
            drop(first);
            let room = poll_until(PROMPT, Duration::from_millis(20), || {
                b.send(&mut second, b"SUB s.26 26\r\nPING\r\n");
                match second.read(PROMPT) {
                    Ok(Frame::Pong) => Some(()),
                    _ => {
                        let _ = second.read(PROMPT);
                        None
                    }
                }
            });
            if room.is_none() {
                b.program.fail(
                    "after the client holding 10 of the 15 subscriptions the broker allows in all \
                     left, expected SUB to succeed again; it was still refused",
                );
            }
            b.publish(&mut publisher, &[("s.26", b"back".to_vec())]);
            b.expect(&mut second, b"", &[msg("s.26", "26", "back")]);
        });
    }

    #[test]
    fn seeded_garbage_never_kills_the_broker() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            let mut keep = b.client();
            b.subscribe(&mut keep, "safe", None, "1");
            // Seeded: the same garbage on every run.
            let mut rng = workbook_suite::seeded::rng(0x2545_F491_4F6C_DD1D);
            let pieces: [&[u8]; 8] = [b"PUB ", b"SUB ", b"MSG ", b"\r\n", b" 9", b".", b"*", b">"];
            for round in 0..30 {
                let mut junk = Vec::with_capacity(512);
                while junk.len() < 512 {
                    let byte: u8 = rand::RngExt::random(&mut rng);
                    match byte % 4 {
                        0 => junk.extend_from_slice(pieces[usize::from(byte / 4 % 8)]),
                        _ => junk.push(byte),
                    }
                }
                let mut c = b.raw();
                let _ = c.send_raw(&junk);
                // Whatever it answers, it must answer or close, and not take long about it.
                let _ = c.read(Duration::from_millis(100));
                b.program
                    .assert_running(format_args!("receiving garbage (round {round})"));
            }
            let mut publisher = b.client();
            b.publish(&mut publisher, &[("safe", b"ok".to_vec())]);
            b.expect(&mut keep, b"", &[msg("safe", "1", "ok")]);
        });
    }
}

mod stage8_shutdown {
    use super::*;

    #[test]
    fn sigterm_flushes_queued_messages_then_says_goodbye() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            let mut sub = b.client();
            b.subscribe(&mut sub, "last", None, "1");
            let mut publisher = b.client();
            b.publish(&mut publisher, &numbered("last", 500, "l"));
            b.program.terminate();
            // The subscriber reads only now: everything published before SIGTERM must come.
            for n in 0..500 {
                match sub.read(PROMPT) {
                    Ok(frame) if frame == msg("last", "1", &format!("l{n}")) => {}
                    other => b.program.fail(format_args!(
                        "500 messages were published (and PONGed) before SIGTERM; message {n} \
                         should be l{n}, got {}",
                        describe(&other, PROMPT)
                    )),
                }
            }
            match sub.read(PROMPT) {
                Ok(Frame::Info(json)) if json.contains("\"ldm\":true") => {}
                other => b.program.fail(format_args!(
                    "after the queued messages, expected INFO with \"ldm\":true (the server is going), got {}",
                    describe(&other, PROMPT)
                )),
            }
            if !sub.is_closed(PROMPT) {
                b.program.fail("expected the connection closed at shutdown");
            }
            match b.program.wait_exit(PROMPT) {
                Some(status) if status.success() => {}
                Some(status) => b.program.fail(format_args!(
                    "expected exit status 0 after SIGTERM, got {status}"
                )),
                None => b
                    .program
                    .fail("expected the broker to exit after SIGTERM; it is still running"),
            }
        });
    }

    #[test]
    fn sigterm_with_idle_clients_exits_cleanly() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            let mut idle: Vec<NatsConn> = (0..5).map(|_| b.client()).collect();
            b.subscribe(&mut idle[0], "x", None, "1");
            b.program.terminate();
            match b.program.wait_exit(PROMPT) {
                Some(status) if status.success() => {}
                Some(status) => b.program.fail(format_args!(
                    "expected exit status 0 after SIGTERM, got {status}"
                )),
                None => b.program.fail(
                    "expected the broker to exit after SIGTERM, even with clients connected; it is still running",
                ),
            }
            for c in &mut idle {
                let mut closed = false;
                for _ in 0..3 {
                    match c.read(PROMPT) {
                        Ok(Frame::Info(_)) => {}
                        Err(NoFrame::Closed) => {
                            closed = true;
                            break;
                        }
                        _ => break,
                    }
                }
                if !closed {
                    b.program
                        .fail("expected every client's connection closed at shutdown");
                }
            }
        });
    }
}

mod stage9_real_nats {
    use super::*;

    /// One recorded exchange: what the client sent, the frames that came back, whether the
    /// server closed.
    struct Exchange {
        title: String,
        sent: Vec<u8>,
        frames: Vec<Frame>,
        closed: bool,
    }

    fn unescape(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut chars = text.bytes();
        while let Some(c) = chars.next() {
            if c != b'\\' {
                out.push(c);
                continue;
            }
            out.push(match chars.next() {
                Some(b'r') => b'\r',
                Some(b'n') => b'\n',
                Some(b't') => b'\t',
                Some(b'0') => 0,
                Some(other) => other,
                None => b'\\',
            });
        }
        out
    }

    fn recorded() -> Vec<Exchange> {
        let text = include_str!("fixtures/pubsub_conversation.txt");
        let mut exchanges = Vec::new();
        for block in text.split("\n---\n") {
            let mut exchange = Exchange {
                title: String::new(),
                sent: Vec::new(),
                frames: Vec::new(),
                closed: false,
            };
            let mut answer = Vec::new();
            for line in block.lines() {
                if let Some(comment) = line.strip_prefix("# ") {
                    exchange.title = comment.to_owned();
                } else if let Some(bytes) = line.strip_prefix("> ") {
                    exchange.sent.extend(unescape(bytes));
                } else if let Some(bytes) = line.strip_prefix("< ") {
                    answer.extend(unescape(bytes));
                } else if line == "closed" {
                    exchange.closed = true;
                }
            }
            let mut at = 0;
            while let Ok(Some((frame, used))) = workbook_suite::nats::parse(&answer[at..]) {
                exchange.frames.push(frame);
                at += used;
            }
            exchanges.push(exchange);
        }
        exchanges
    }

    /// The order of one message's copies to different subscriptions is not part of the
    /// protocol: sort each run of MSGs by sid (stably, so each sid keeps its own order).
    fn normalised(mut frames: Vec<Frame>) -> Vec<Frame> {
        let sid = |f: &Frame| match f {
            Frame::Msg { sid, .. } => Some(sid.clone()),
            _ => None,
        };
        let mut start = 0;
        while start < frames.len() {
            let end = (start..frames.len())
                .find(|&i| sid(&frames[i]).is_none())
                .unwrap_or(frames.len());
            frames[start..end].sort_by_key(sid);
            start = end + 1;
        }
        frames
    }

    #[test]
    fn a_conversation_recorded_with_nats_server_gets_the_same_replies() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            for exchange in recorded() {
                let mut c = b.raw();
                b.info(&mut c);
                b.send(&mut c, &exchange.sent);
                let mut got = Vec::new();
                while got.len() < exchange.frames.len() {
                    match c.read(PROMPT) {
                        Ok(frame) => got.push(frame),
                        Err(_) => break,
                    }
                }
                let ended = if exchange.closed {
                    c.is_closed(PROMPT)
                } else {
                    true
                };
                let (got, expected) = (normalised(got), normalised(exchange.frames));
                if got != expected || !ended {
                    b.program.fail(format_args!(
                        "{}:\n  sent     \"{}\"\n  expected {}{}\n  got      {}{}",
                        exchange.title,
                        shown(&exchange.sent),
                        list(&expected),
                        if exchange.closed {
                            " and the connection closed"
                        } else {
                            ""
                        },
                        list(&got),
                        if ended {
                            ""
                        } else {
                            " and the connection still open"
                        },
                    ));
                }
            }
        });
    }

    /// The real `nats-server`, if this machine has it (CI installs Debian's nats-server).
    fn nats_server() -> Option<PathBuf> {
        std::env::var_os("PATH")?
            .to_str()?
            .split(':')
            .map(|dir| PathBuf::from(dir).join("nats-server"))
            .find(|p| p.is_file())
    }

    /// The `sub` and `pub` subcommands against `server`: two messages across a wildcard.
    fn clients_work_against(broker: &mut Server, server: &str) {
        let mut sub = start_sub(server, "greet.*", Some(2));
        run_client(broker, &["pub", "--server", server, "greet.en", "hello"]);
        run_client(broker, &["pub", "--server", server, "greet.fr", "bonjour"]);
        expect_sub_output(&mut sub, &[("greet.en", "hello"), ("greet.fr", "bonjour")]);
    }

    #[test]
    fn the_clients_work_against_the_real_nats_server() {
        bounded(LIMIT, || {
            let mut b = broker(&[]);
            let ours = b.addr.to_string();
            clients_work_against(&mut b, &ours);
            let Some(nats) = nats_server() else {
                eprintln!(
                    "nats-server is not installed: skipping the checks against the real server (apt-get install nats-server)"
                );
                return;
            };
            // nats-server takes no port 0: pick one that is free now.
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap_or_else(|e| panic!("cannot find a free port: {e}"));
            let mut real = Program::start(&nats, &["-a", "127.0.0.1", "-p", &port.to_string()]);
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let up = poll_until(PROMPT, Duration::from_millis(20), || {
                let mut c = NatsConn::connect(addr).ok()?;
                matches!(c.read(Duration::from_millis(500)).ok()?, Frame::Info(_)).then_some(())
            });
            if up.is_none() {
                real.fail(format_args!("nats-server did not answer on port {port}"));
            }
            clients_work_against(&mut b, &addr.to_string());
            // A payload of the broker's own clients, checked by the suite's client on the real
            // server: the frames are exactly NATS.
            let mut watcher = NatsConn::connect(addr).unwrap_or_else(|e| real.fail(e));
            let _ = watcher.send_raw(b"CONNECT {\"verbose\":false}\r\nSUB exact 1\r\nPING\r\n");
            loop {
                match watcher.read(PROMPT) {
                    Ok(Frame::Pong) => break,
                    Ok(_) => {}
                    Err(no) => real.fail(format_args!(
                        "subscribing on nats-server: {}",
                        no.after(PROMPT)
                    )),
                }
            }
            run_client(
                &mut b,
                &["pub", "--server", &addr.to_string(), "exact", "a b\tc"],
            );
            match watcher.read(PROMPT) {
                Ok(frame) if frame == msg("exact", "1", "a b\tc") => {}
                other => real.fail(format_args!(
                    "`pubsub pub --server nats-server exact \"a b\\tc\"`: expected the suite's \
                     subscriber on nats-server to get MSG exact 1 5 \"a b\\tc\", got {}",
                    describe(&other, PROMPT)
                )),
            }
        });
    }
}
