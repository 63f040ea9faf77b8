//! Project 1, the UDP heartbeat system, graded from the outside.
//!
//! Every test starts the real `heartbeat` binary (the one `WORKBOOK_BIN_HEARTBEAT` names, or the
//! reference solution) and speaks its real protocol: JSON heartbeats and status requests over
//! UDP, JSON events on stdout. The modules are the stages, in the order the grader reports them;
//! the book's page "The contract" is what they check.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use workbook_suite::{LIMIT, PROMPT, Program, UdpPeer, binary, bounded, command, poll_until};

/// JSON values for a failure message, written as JSON: `["n1", "n2"]`.
fn json_of<'a>(items: impl IntoIterator<Item = &'a Value>) -> String {
    Value::Array(items.into_iter().cloned().collect()).to_string()
}

fn bin() -> PathBuf {
    binary("heartbeat")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A heartbeat as the contract defines it.
fn hb(node: &str, seq: u64) -> Value {
    json!({ "node": node, "seq": seq, "sent_ms": now_ms() })
}

/// A server under test, with a UDP peer to talk to it: the peer is why this is not
/// `workbook_suite::Server` (a node's heartbeats come from one address).
struct Server {
    program: Program,
    addr: SocketAddr,
    peer: UdpPeer,
}

impl Server {
    /// Starts `heartbeat server --bind 127.0.0.1:0` with `args` and waits for its address.
    fn start(args: &[&str]) -> Server {
        let (program, addr) = Program::start_server(&bin(), args);
        Server {
            program,
            addr,
            peer: UdpPeer::bind(),
        }
    }

    fn beat(&self, node: &str, seq: u64) {
        self.peer.send_json(self.addr, &hb(node, seq));
    }

    fn beat_from(&self, peer: &UdpPeer, node: &str, seq: u64) {
        peer.send_json(self.addr, &hb(node, seq));
    }

    /// Sends each `(i, datagram)` from `peers[i % peers.len()]`, so that node `i` keeps one
    /// address, pausing 1 ms after every 50 so that the server's socket buffer never overflows
    /// (UDP drops what does not fit, and the tests that send thousands are about the server, not
    /// about loss).
    fn send_paced(&self, peers: &[UdpPeer], datagrams: impl IntoIterator<Item = (usize, Value)>) {
        for (k, (i, datagram)) in datagrams.into_iter().enumerate() {
            peers[i % peers.len()].send_json(self.addr, &datagram);
            if k % 50 == 49 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Waits for the event `{"event": kind, "node": node, ...}` on stdout.
    fn expect_event(&mut self, kind: &str, node: &str, timeout: Duration) -> Value {
        self.program.expect_json(
            format_args!("{{\"event\":\"{kind}\",\"node\":\"{node}\",...}}"),
            timeout,
            |v| v["event"] == kind && v["node"] == node,
        )
    }

    /// Fails unless a `dead` event of a node that beat every 200ms came after enough silence
    /// for phi to pass 8: with the mean at least about 190ms and the deviation floored at half
    /// of it, that takes over 680ms (about 720ms with the given `normal_tail`, 760ms with an
    /// exact normal tail); load can only make it later.
    #[track_caller]
    fn expect_not_before_phi(&mut self, dead: &Value, beats: &str) {
        let silent = dead["silent_ms"].as_u64().unwrap_or(0);
        if silent < 600 {
            self.program.fail(format_args!(
                "after {beats}, with --threshold 8, the node was declared dead after {silent}ms \
                 of silence: phi passes 8 only after about 700ms (mean 200ms, deviation floored \
                 at 100ms): {dead}"
            ));
        }
    }

    /// Waits for the event `{"event": kind, "node": ...}` for every one of `nodes`, in any
    /// order: nodes that fall silent together may be declared in one sweep or in the next, so
    /// the order of their events is not part of the contract.
    fn expect_events_for_all(&mut self, kind: &str, nodes: &[String], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut missing: BTreeSet<&str> = nodes.iter().map(String::as_str).collect();
        while !missing.is_empty() {
            let event = self.program.expect_json(
                format_args!(
                    "{{\"event\":\"{kind}\",\"node\":...}} for each of {nodes:?} in any order \
                     (still missing {missing:?})"
                ),
                deadline.saturating_duration_since(Instant::now()),
                |v| v["event"] == kind && v["node"].as_str().is_some_and(|n| missing.contains(n)),
            );
            let node = event["node"].as_str().unwrap_or_default().to_owned();
            missing.remove(node.as_str());
        }
    }

    /// The next event of any kind.
    fn next_event(&mut self, timeout: Duration) -> Value {
        self.program
            .expect_json("any event line", timeout, |v| v.get("event").is_some())
    }

    /// One status page, asked over raw UDP, retried until an answer comes.
    fn status_page(&mut self, after: Option<&str>) -> Value {
        self.status_page_sized(after).0
    }

    /// [`Server::status_page`], with the length of the datagram it came in.
    fn status_page_sized(&mut self, after: Option<&str>) -> (Value, usize) {
        match self.status_datagram_within(after, PROMPT) {
            Some(page) => page,
            None => {
                let request = status_request(after);
                // With hundreds of nodes the likely cause is a reply too large to send at all.
                // The events waiting on stdout are read first: `seen` holds only those taken.
                while self.program.next_line(Duration::ZERO).is_some() {}
                let joined = self
                    .program
                    .seen()
                    .iter()
                    .filter(|line| line.contains("\"joined\""))
                    .count();
                let why = if joined > 100 {
                    format!(
                        "\n  ({joined} nodes have joined: a reply larger than 65,507 bytes cannot \
                         be sent as one UDP datagram at all, which is why the contract pages \
                         replies at MAX_REPLY bytes)"
                    )
                } else {
                    String::new()
                };
                self.program.fail(format_args!(
                    "sent {request} to {} and got no reply within {PROMPT:?}{why}",
                    self.addr
                ))
            }
        }
    }

    /// One status page, asked over raw UDP every 250ms until an answer comes, or `None` after
    /// `within`.
    fn status_page_within(&mut self, after: Option<&str>, within: Duration) -> Option<Value> {
        self.status_datagram_within(after, within)
            .map(|(page, _)| page)
    }

    /// [`Server::status_page_within`], with the length of the datagram the page came in.
    fn status_datagram_within(
        &mut self,
        after: Option<&str>,
        within: Duration,
    ) -> Option<(Value, usize)> {
        let request = status_request(after);
        // A reply to an earlier request that was retried may still be queued: it shows the
        // table as it was, or another page.
        self.peer.drain();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            self.peer.send_json(self.addr, &request);
            let reply_window = Instant::now() + Duration::from_millis(250);
            while Instant::now() < reply_window {
                // In slices of 50ms, so that a server that has died is reported at once, not
                // after the window (against the stubs, every test starts this way).
                let slice = reply_window
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(50));
                let Some((bytes, from)) = self.peer.recv(slice) else {
                    self.program
                        .assert_running(format_args!("waiting for a reply to {request}"));
                    continue;
                };
                if from != self.addr {
                    continue;
                }
                match serde_json::from_slice::<Value>(&bytes) {
                    Ok(reply) if reply.get("nodes").is_some() => return Some((reply, bytes.len())),
                    _ => self.program.fail(format_args!(
                        "sent {request} and expected a status reply {{\"server\":{{..}},\"nodes\":[..],\"next\":..}}, got {:?}",
                        String::from_utf8_lossy(&bytes)
                    )),
                }
            }
            self.program
                .assert_running(format_args!("waiting for a reply to {request}"));
        }
        None
    }

    /// The whole table over raw UDP, following `next` from page to page.
    fn status(&mut self) -> (Value, Vec<Value>) {
        let mut nodes = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.status_page(after.as_deref());
            nodes.extend(page["nodes"].as_array().cloned().unwrap_or_default());
            match page["next"].as_str() {
                Some(next) => after = Some(next.to_owned()),
                None => return (page["server"].clone(), nodes),
            }
        }
    }

    /// Polls the whole table until `wanted` holds for it, and returns it; fails with `what` and
    /// the last table seen. A poll, not one look: a reply to an earlier, retried request may
    /// still be on its way, and show the table as it was.
    fn status_until(
        &mut self,
        what: impl Display,
        wanted: impl Fn(&Value, &[Value]) -> bool,
    ) -> (Value, Vec<Value>) {
        let mut last = (Value::Null, Vec::new());
        let found = poll_until(PROMPT, Duration::from_millis(20), || {
            let (server, nodes) = self.status();
            if wanted(&server, &nodes) {
                return Some((server, nodes));
            }
            last = (server, nodes);
            None
        });
        match found {
            Some(table) => table,
            None => self.program.fail(format_args!(
                "{what}; the last status had server {} and nodes {}",
                last.0,
                json_of(&last.1)
            )),
        }
    }

    /// The status row of `node`.
    fn node(&mut self, node: &str) -> Value {
        let (_, nodes) = self.status();
        match nodes.iter().find(|n| n["node"] == node) {
            Some(row) => row.clone(),
            None => self.program.fail(format_args!(
                "expected node {node:?} in the status reply, got nodes {}",
                json_of(nodes.iter().map(|n| &n["node"]))
            )),
        }
    }

    /// Polls the status until `node`'s row satisfies `wanted`, and returns it.
    fn node_until(&mut self, node: &str, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        let found = poll_until(PROMPT, Duration::from_millis(20), || {
            let row = self.node(node);
            if wanted(&row) {
                return Some(row);
            }
            last = row;
            None
        });
        match found {
            Some(row) => row,
            None => self.program.fail(format_args!(
                "expected node {node:?} to have {what}, its row is {last}"
            )),
        }
    }
}

/// Sends node `node` a heartbeat after each gap of `gaps` (the first at once, seq counting on
/// from `first_seq`), and returns the instants they were sent. Pacing, not synchronisation: the
/// rhythm is the input under test, and the caller judges the server by the gaps actually kept.
fn beat_with_gaps(s: &mut Server, node: &str, first_seq: u64, gaps: &[Duration]) -> Vec<Instant> {
    let mut sent = vec![Instant::now()];
    s.beat(node, first_seq);
    for (k, gap) in gaps.iter().enumerate() {
        std::thread::sleep(*gap);
        sent.push(Instant::now());
        s.beat(node, first_seq + 1 + k as u64);
    }
    s.program
        .assert_running(format_args!("receiving heartbeats of {node}"));
    sent
}

/// The mean and the standard deviation (of the population) of the last `window` gaps between
/// the instants `sent`, in milliseconds.
fn rhythm(sent: &[Instant], window: usize) -> (f64, f64) {
    let gaps: Vec<f64> = sent
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64() * 1000.0)
        .collect();
    let gaps = &gaps[gaps.len().saturating_sub(window)..];
    let n = gaps.len() as f64;
    let mean = gaps.iter().sum::<f64>() / n;
    let variance = gaps.iter().map(|g| (g - mean) * (g - mean)).sum::<f64>() / n;
    (mean, variance.sqrt())
}

/// A status row's `interval_ms`, as (mean, sd), if both are numbers.
fn interval_ms(row: &Value) -> Option<(f64, f64)> {
    Some((
        row["interval_ms"]["mean"].as_f64()?,
        row["interval_ms"]["sd"].as_f64()?,
    ))
}

/// P(X > t) for X ~ Normal(mean, sd): this suite's own, by Simpson's rule over the density from
/// the mean (2,000 slices; far closer than the 10^-4 the contract allows a server).
fn normal_tail_exact(t: f64, mean: f64, sd: f64) -> f64 {
    let y = (t - mean) / sd;
    let density = |u: f64| (-u * u / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let slices = 2_000;
    let h = y.abs() / slices as f64;
    let mut area = density(0.0) + density(y.abs());
    for k in 1..slices {
        let weight = if k % 2 == 1 { 4.0 } else { 2.0 };
        area += weight * density(k as f64 * h);
    }
    let area = area * h / 3.0;
    if y >= 0.0 { 0.5 - area } else { 0.5 + area }
}

/// A status request, for the first page or for the one after `after`.
fn status_request(after: Option<&str>) -> Value {
    match after {
        Some(after) => json!({ "op": "status", "after": after }),
        None => json!({ "op": "status" }),
    }
}

/// The ids of status rows, in their order.
fn ids(nodes: &[Value]) -> Vec<&str> {
    nodes.iter().filter_map(|n| n["node"].as_str()).collect()
}

/// Runs the binary with `args` to completion (bounded) and returns its stdout.
fn run_to_end(args: &[&str], timeout: Duration) -> String {
    let out = command("heartbeat")
        .args(args)
        .timeout(timeout)
        .assert()
        .success();
    String::from_utf8_lossy(&out.get_output().stdout).into_owned()
}

/// Receives `count` heartbeats on `peer` from a running client, failing fast if the client dies.
fn receive_beats(
    client: &mut Program,
    peer: &UdpPeer,
    count: usize,
    timeout: Duration,
) -> Vec<(Value, Instant)> {
    let deadline = Instant::now() + timeout;
    let mut beats = Vec::new();
    while beats.len() < count {
        if Instant::now() >= deadline {
            client.fail(format_args!(
                "expected {count} heartbeats on {} within {timeout:?}, got {}: {}",
                peer.addr(),
                beats.len(),
                json_of(beats.iter().map(|(b, _)| b))
            ));
        }
        match peer.recv(Duration::from_millis(100)) {
            Some((bytes, _)) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(value) => beats.push((value, Instant::now())),
                Err(e) => client.fail(format_args!(
                    "expected a JSON heartbeat, got {:?} ({e})",
                    String::from_utf8_lossy(&bytes)
                )),
            },
            None => {
                // Nothing for 100ms and the client is gone: nothing more will come.
                if client.exited().is_some() {
                    client.fail(format_args!(
                        "the client ended after sending {} of the {count} heartbeats expected",
                        beats.len()
                    ));
                }
            }
        }
    }
    beats
}

mod stage1_client {
    use super::*;

    fn client(peers: &[&UdpPeer], extra: &[&str]) -> Program {
        let addrs: Vec<String> = peers.iter().map(|p| p.addr().to_string()).collect();
        let mut args = vec!["client"];
        for addr in &addrs {
            args.extend(["--server", addr.as_str()]);
        }
        args.extend_from_slice(extra);
        Program::start(&bin(), &args)
    }

    #[test]
    fn sends_well_formed_heartbeats() {
        bounded(LIMIT, || {
            let peer = UdpPeer::bind();
            let before = now_ms();
            let mut c = client(
                &[&peer],
                &["--node", "web-1", "--interval", "50ms", "--count", "3"],
            );
            for (beat, _) in receive_beats(&mut c, &peer, 3, PROMPT) {
                let fields: Vec<&String> = beat
                    .as_object()
                    .map(|o| o.keys().collect())
                    .unwrap_or_default();
                let mut sorted = fields.clone();
                sorted.sort();
                if sorted != ["node", "sent_ms", "seq"] {
                    c.fail(format_args!("expected a heartbeat with exactly the fields node, seq, sent_ms, got {beat}"));
                }
                let sent = beat["sent_ms"].as_u64().unwrap_or(0);
                if beat["node"] != "web-1"
                    || !beat["seq"].is_u64()
                    || sent + 5_000 < before
                    || sent > now_ms() + 5_000
                {
                    c.fail(format_args!(
                        "expected node \"web-1\", an integer seq and sent_ms near the wall clock ({before}), got {beat}"
                    ));
                }
            }
        });
    }

    #[test]
    fn sequence_starts_at_one_and_counts_up() {
        bounded(LIMIT, || {
            let peer = UdpPeer::bind();
            let mut c = client(
                &[&peer],
                &["--node", "a", "--interval", "20ms", "--count", "5"],
            );
            let seqs: Vec<Value> = receive_beats(&mut c, &peer, 5, PROMPT)
                .into_iter()
                .map(|(b, _)| b["seq"].clone())
                .collect();
            if seqs != [1, 2, 3, 4, 5] {
                c.fail(format_args!(
                    "expected seq 1, 2, 3, 4, 5 in order, got {seqs:?}"
                ));
            }
        });
    }

    #[test]
    fn count_sends_exactly_that_many_then_exits_cleanly() {
        bounded(LIMIT, || {
            let peer = UdpPeer::bind();
            let mut c = client(
                &[&peer],
                &["--node", "a", "--interval", "20ms", "--count", "4"],
            );
            receive_beats(&mut c, &peer, 4, PROMPT);
            match c.wait_exit(PROMPT) {
                Some(status) if status.success() => {}
                Some(status) => c.fail(format_args!(
                    "expected exit status 0 after --count 4, got {status}"
                )),
                None => c.fail(
                    "expected the client to exit after --count 4 heartbeats; it is still running",
                ),
            }
            if let Some((extra, _)) = peer.recv(Duration::from_millis(100)) {
                c.fail(format_args!(
                    "expected exactly 4 heartbeats, got a fifth: {:?}",
                    String::from_utf8_lossy(&extra)
                ));
            }
        });
    }

    #[test]
    fn paces_heartbeats_by_the_interval() {
        bounded(LIMIT, || {
            let peer = UdpPeer::bind();
            // Gaps measured where the test reads the beats would shrink whenever the test itself
            // stalls (beats queue up, then are read at once). The time since the client started
            // cannot: the fourth beat of a paced client is sent 600ms after the first at the
            // earliest, whenever the test gets round to reading it. Nor can the beats' sent_ms.
            let started = std::time::Instant::now();
            let mut c = client(
                &[&peer],
                &["--node", "a", "--interval", "200ms", "--count", "4"],
            );
            let beats = receive_beats(&mut c, &peer, 4, PROMPT);
            // The beats' own clock shows the pacing as sent, whatever the test was doing then.
            let sent: Vec<u64> = beats
                .iter()
                .map(|(beat, _)| beat["sent_ms"].as_u64().unwrap_or(0))
                .collect();
            if sent.windows(2).any(|pair| pair[1] < pair[0] + 100) {
                c.fail(format_args!(
                    "expected heartbeats about 200ms apart with --interval 200ms, their sent_ms were {sent:?}"
                ));
            }
            let fourth = beats[3].1 - started;
            if fourth < Duration::from_millis(500) {
                c.fail(format_args!(
                    "expected heartbeats about 200ms apart with --interval 200ms, so the fourth no sooner than 600ms after the start; it came after {fourth:.2?}"
                ));
            }
            let span = beats[3].1 - beats[0].1;
            if span > Duration::from_secs(4) {
                c.fail(format_args!("expected 4 heartbeats at 200ms intervals to span about 600ms, they took {span:.2?}"));
            }
        });
    }

    #[test]
    fn broadcasts_every_heartbeat_to_every_server() {
        bounded(LIMIT, || {
            let (one, two) = (UdpPeer::bind(), UdpPeer::bind());
            let mut c = client(
                &[&one, &two],
                &["--node", "b", "--interval", "30ms", "--count", "3"],
            );
            for peer in [&one, &two] {
                let seqs: Vec<Value> = receive_beats(&mut c, peer, 3, PROMPT)
                    .into_iter()
                    .map(|(b, _)| b["seq"].clone())
                    .collect();
                if seqs != [1, 2, 3] {
                    c.fail(format_args!(
                        "expected server {} to get seq 1, 2, 3, got {seqs:?}",
                        peer.addr()
                    ));
                }
            }
        });
    }

    #[test]
    fn meta_travels_with_every_heartbeat() {
        bounded(LIMIT, || {
            let peer = UdpPeer::bind();
            let args = [
                "--node",
                "m",
                "--interval",
                "20ms",
                "--count",
                "2",
                "--meta",
                "version=1.2",
                "--meta",
                "role=web",
            ];
            let mut c = client(&[&peer], &args);
            for (beat, _) in receive_beats(&mut c, &peer, 2, PROMPT) {
                if beat["meta"] != json!({ "version": "1.2", "role": "web" }) {
                    c.fail(format_args!(
                        "expected \"meta\":{{\"version\":\"1.2\",\"role\":\"web\"}} with --meta version=1.2 --meta role=web, got {beat}"
                    ));
                }
            }
        });
    }
}

mod stage2_membership {
    use super::*;

    #[test]
    fn announces_a_new_node_once() {
        bounded(LIMIT, || {
            let mut s = Server::start(&["--timeout", "10s"]);
            let before = now_ms();
            s.beat("web-1", 1);
            let joined = s.expect_event("joined", "web-1", PROMPT);
            let at = joined["at_ms"].as_u64().unwrap_or(0);
            if joined["addr"] != s.peer.addr().to_string()
                || at + 5_000 < before
                || at > now_ms() + 5_000
            {
                s.program.fail(format_args!(
                    "expected the joined event to carry \"addr\":\"{}\" and at_ms near {before}, got {joined}",
                    s.peer.addr()
                ));
            }
            for seq in 2..=5 {
                s.beat("web-1", seq);
            }
            s.beat("web-2", 1);
            let next = s.next_event(PROMPT);
            if next["event"] != "joined" || next["node"] != "web-2" {
                s.program.fail(format_args!(
                    "after web-1's heartbeats 2 to 5 and web-2's first, expected the next event to be web-2 joining, got {next}"
                ));
            }
        });
    }

    #[test]
    fn answers_status_over_udp() {
        bounded(LIMIT, || {
            let mut s = Server::start(&["--timeout", "10s"]);
            for (node, beats) in [("b", 2), ("a", 3)] {
                for seq in 1..=beats {
                    s.beat(node, seq);
                }
            }
            let page = s.status_page(None);
            let rows: Vec<(Value, Value, Value, Value)> = page["nodes"]
                .as_array()
                .map(|n| {
                    n.iter()
                        .map(|r| {
                            (
                                r["node"].clone(),
                                r["state"].clone(),
                                r["received"].clone(),
                                r["last_seq"].clone(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let expected = vec![
                (json!("a"), json!("alive"), json!(3), json!(3)),
                (json!("b"), json!("alive"), json!(2), json!(2)),
            ];
            if rows != expected || !page["server"].is_object() || !page["next"].is_null() {
                s.program.fail(format_args!(
                    "expected one page with nodes a (alive, received 3, last_seq 3) and b (alive, 2, 2) in id order, a server object and \"next\":null; got {page}"
                ));
            }
        });
    }

    #[test]
    fn status_command_prints_json() {
        bounded(LIMIT, || {
            let mut s = Server::start(&["--timeout", "10s"]);
            for (node, beats) in [("x", 1), ("y", 4)] {
                for seq in 1..=beats {
                    s.beat(node, seq);
                }
            }
            s.expect_event("joined", "y", PROMPT);
            let addr = s.addr.to_string();
            let out = run_to_end(&["status", "--server", &addr, "--json"], PROMPT * 2);
            let doc: Value = serde_json::from_str(&out).unwrap_or_else(|e| {
                s.program.fail(format_args!(
                    "expected `status --json` to print one JSON document, got {out:?} ({e})"
                ))
            });
            let received: Vec<(Value, Value)> = doc["nodes"]
                .as_array()
                .map(|n| {
                    n.iter()
                        .map(|r| (r["node"].clone(), r["received"].clone()))
                        .collect()
                })
                .unwrap_or_default();
            if received != [(json!("x"), json!(1)), (json!("y"), json!(4))]
                || doc["server"]["nodes"] != 2
            {
                s.program.fail(format_args!(
                    "expected nodes x (received 1) and y (received 4), server.nodes 2; got {doc}"
                ));
            }
        });
    }

    #[test]
    fn status_command_prints_a_table() {
        bounded(LIMIT, || {
            let mut s = Server::start(&["--timeout", "10s"]);
            s.beat("alpha", 1);
            s.beat("beta", 1);
            s.expect_event("joined", "beta", PROMPT);
            let addr = s.addr.to_string();
            let out = run_to_end(&["status", "--server", &addr], PROMPT * 2);
            let header = out.lines().next().unwrap_or("");
            let row = |node: &str| {
                out.lines()
                    .any(|l| l.split_whitespace().next() == Some(node) && l.contains("alive"))
            };
            let has_header = header.contains("NODE") && header.contains("STATE");
            if !has_header || !row("alpha") || !row("beta") {
                s.program.fail(format_args!(
                    "expected a table: a header with NODE and STATE, then a row per node starting with its id and showing `alive`; got:\n{out}"
                ));
            }
        });
    }

    #[test]
    fn sigterm_shuts_the_server_down_cleanly() {
        bounded(LIMIT, || {
            let mut s = Server::start(&["--timeout", "10s"]);
            s.beat("a", 1);
            s.expect_event("joined", "a", PROMPT);
            s.program.terminate();
            match s.program.wait_exit(PROMPT) {
                Some(status) if status.success() => {}
                Some(status) => s.program.fail(format_args!(
                    "expected exit status 0 after SIGTERM, got {status}"
                )),
                None => s
                    .program
                    .fail("expected the server to exit after SIGTERM; it is still running"),
            }
        });
    }

    #[test]
    fn status_reports_the_rhythm_of_the_last_100_intervals() {
        bounded(LIMIT, || {
            let mut s = Server::start(&["--timeout", "10s"]);
            // One interval is not yet a rhythm.
            s.beat("newcomer", 1);
            s.beat("newcomer", 2);
            let row = s.node_until("newcomer", "received 2", |r| r["received"] == 2);
            if !row["interval_ms"].is_null() || !row["phi"].is_null() {
                s.program.fail(format_args!(
                    "a node with two heartbeats has one interval, no rhythm yet: expected \
                     \"interval_ms\":null (and \"phi\":null under the fixed timeout), got {row}"
                ));
            }
            // A steady rhythm has a deviation near nothing: reported as measured, not floored
            // (phi's floor would make it 20ms here).
            let steady = beat_with_gaps(&mut s, "steady", 1, &[Duration::from_millis(40); 9]);
            let (steady_mean, _) = rhythm(&steady, 100);
            let row = s.node_until("steady", "received 10", |r| r["received"] == 10);
            if !interval_ms(&row).is_some_and(|(m, d)| (m - steady_mean).abs() <= 5.0 && d < 15.0) {
                s.program.fail(format_args!(
                    "sent node steady 10 heartbeats 40ms apart (a mean of {steady_mean:.1}ms as \
                     sent): expected interval_ms with that mean and a deviation under 15ms, the \
                     measured one, not phi's floor; got {row}"
                ));
            }
            // 40 intervals of 50ms, then 50 alternating 4ms and 36ms, then 50 of 30ms: the
            // window holds the last 100 (a mean of 25ms), so the first 40 must have left it, and
            // left its running sums, and the 50 before the last 50 must still count.
            let mut gaps = vec![Duration::from_millis(50); 40];
            gaps.extend((0..50).map(|k| Duration::from_millis(if k % 2 == 0 { 4 } else { 36 })));
            gaps.extend([Duration::from_millis(30); 50]);
            let sent = beat_with_gaps(&mut s, "drummer", 1, &gaps);
            let (mean, sd) = rhythm(&sent, 100);
            let row = s.node_until("drummer", "received 141", |r| r["received"] == 141);
            let close = interval_ms(&row).is_some_and(|(m, d)| {
                (m - mean).abs() <= (mean * 0.05).max(1.5) && d >= sd * 0.6 && d <= sd * 1.5 + 5.0
            });
            let (server, _) = s.status();
            let beating = sent.last().map(|last| *last - sent[0]).unwrap_or_default();
            if server["uptime_ms"].as_u64().unwrap_or(0) < beating.as_millis() as u64 {
                s.program.fail(format_args!(
                    "expected server.uptime_ms of at least {1}: the server has been up for \
                     longer than the {0:.1} s this test spent beating; got {server}",
                    beating.as_secs_f64(),
                    beating.as_millis()
                ));
            }
            if !close || !row["phi"].is_null() {
                s.program.fail(format_args!(
                    "sent 141 heartbeats: 40 gaps of 50ms, 50 alternating 4ms and 36ms, then \
                     50 of 30ms; the last 100 had a mean of {mean:.1}ms and a deviation of \
                     {sd:.1}ms as sent; expected interval_ms near \
                     {{\"mean\":{mean:.1},\"sd\":{sd:.1}}} (the last 100 intervals: all 140 \
                     would have a mean of about 32ms, the last 10 one of 30ms), and \
                     \"phi\":null under the fixed timeout; got {row}"
                ));
            }
        });
    }

    #[test]
    fn the_rhythm_is_of_advancing_heartbeats_and_its_sd_the_populations() {
        bounded(LIMIT, || {
            let mut s = Server::start(&["--timeout", "10s"]);
            // Two intervals, 200ms and 600ms: a deviation of 200ms for the population, 283ms
            // for a sample.
            let ms = Duration::from_millis;
            let sent = beat_with_gaps(&mut s, "pair", 1, &[ms(200), ms(600)]);
            let (mean, sd) = rhythm(&sent, 100);
            let row = s.node_until("pair", "received 3", |r| r["received"] == 3);
            if !interval_ms(&row)
                .is_some_and(|(m, d)| (m - mean).abs() <= 15.0 && (d - sd).abs() <= 15.0)
            {
                s.program.fail(format_args!(
                    "sent node pair 3 heartbeats, {:.0}ms then {:.0}ms apart: expected \
                     interval_ms near {{\"mean\":{mean:.1},\"sd\":{sd:.1}}} (the deviation of \
                     the population, not of a sample: that would be {:.1}); got {row}",
                    mean - sd,
                    mean + sd,
                    sd * std::f64::consts::SQRT_2
                ));
            }
            // seq 1, 100ms later seq 3, 50ms later seq 2 (late) and 3 again (a duplicate),
            // 100ms later seq 4: two intervals, from 1 to 3 and from the duplicate to 4. The
            // late one and the duplicate record none, and 4's runs from the duplicate, the
            // node's last valid heartbeat.
            let t1 = Instant::now();
            s.beat("wobbly", 1);
            std::thread::sleep(ms(100));
            let t3 = Instant::now();
            s.beat("wobbly", 3);
            std::thread::sleep(ms(50));
            s.beat("wobbly", 2);
            let dup = Instant::now();
            s.beat("wobbly", 3);
            std::thread::sleep(ms(100));
            let t4 = Instant::now();
            s.beat("wobbly", 4);
            let (mean, sd) = rhythm(&[t1, t3, t3 + (t4 - dup)], 100);
            let row = s.node_until("wobbly", "last_seq 4", |r| r["last_seq"] == 4);
            if !interval_ms(&row)
                .is_some_and(|(m, d)| (m - mean).abs() <= 10.0 && (d - sd).abs() <= 10.0)
            {
                s.program.fail(format_args!(
                    "sent node wobbly seq 1, 100ms later 3, 50ms later 2 and 3 again, 100ms \
                     later 4: expected interval_ms near {{\"mean\":{mean:.1},\"sd\":{sd:.1}}} \
                     (two intervals: 1 to 3, and the duplicate 3 to 4; a late or duplicate \
                     heartbeat records none, but the next interval runs from it); got {row}"
                ));
            }
        });
    }

    #[test]
    fn status_command_ignores_a_late_reply_to_an_earlier_page() {
        bounded(LIMIT, || {
            // The suite plays the server. Asked for the page after "b", it sends the first page
            // again (as a late reply to an earlier try of it would arrive), then the right one:
            // `status` must skip the first and list every node once.
            let fake = UdpPeer::bind();
            let addr = fake.addr().to_string();
            let row = |node: &str| {
                json!({ "node": node, "state": "alive", "addr": "127.0.0.1:9",
                        "last_seen_ms_ago": 5, "last_seq": 1, "received": 1, "lost": 0,
                        "duplicates": 0, "reordered": 0, "restarts": 0,
                        "interval_ms": null, "phi": null })
            };
            let server = json!({ "nodes": 4, "alive": 4, "dead": 0, "received": 4,
                                 "rejected": 0, "status_requests": 2, "status_dropped": 0,
                                 "nodes_refused": 0, "meta_dropped": 0, "meta_bytes": 0,
                                 "events_dropped": 0, "uptime_ms": 1000,
                                 "detector": "timeout", "timeout_ms": 3000 });
            let first = json!({ "server": server, "nodes": [row("a"), row("b")], "next": "b" });
            let second = json!({ "server": server, "nodes": [row("c"), row("d")], "next": null });
            let serving = std::thread::spawn(move || {
                let deadline = Instant::now() + PROMPT;
                while Instant::now() < deadline {
                    let Some((bytes, from)) = fake.recv(Duration::from_millis(50)) else {
                        continue;
                    };
                    let request: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    fake.send_json(from, &first);
                    if request["after"] == "b" {
                        fake.send_json(from, &second);
                        return;
                    }
                }
            });
            let output = command("heartbeat")
                .args(["status", "--server", &addr, "--json"])
                .timeout(PROMPT * 2)
                .output()
                .unwrap_or_else(|e| panic!("running heartbeat status: {e}"));
            let _ = serving.join();
            let stdout = String::from_utf8_lossy(&output.stdout);
            let doc: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
            let listed: Vec<&str> = doc["nodes"]
                .as_array()
                .map(|n| n.iter().filter_map(|r| r["node"].as_str()).collect())
                .unwrap_or_default();
            if !output.status.success() || listed != ["a", "b", "c", "d"] {
                panic!(
                    "a server answered the first page with a and b (next \"b\"), and the \
                     request for the page after b with the first page again, then with c and \
                     d: `heartbeat status --json` should skip the stale page (its first node is \
                     not after b) and list a, b, c, d once each; it exited {} and listed \
                     {listed:?}\n  stdout: {stdout}\n  stderr: {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        });
    }
}

mod stage3_detection {
    use super::*;

    const TIMEOUT_MS: u64 = 300;
    const CHECK_MS: u64 = 50;

    fn server() -> Server {
        Server::start(&["--timeout", "300ms", "--check-interval", "50ms"])
    }

    #[test]
    fn a_silent_node_is_declared_dead_in_time() {
        bounded(LIMIT, || {
            let mut s = server();
            // Before the send: the server hears the heartbeat later, never earlier.
            let last = Instant::now();
            s.beat("quiet", 1);
            s.expect_event("joined", "quiet", PROMPT);
            let dead = s.expect_event("dead", "quiet", PROMPT);
            let after = last.elapsed();
            let silent = dead["silent_ms"].as_u64().unwrap_or(0);
            if after < Duration::from_millis(TIMEOUT_MS) || silent < TIMEOUT_MS {
                s.program.fail(format_args!(
                    "expected `dead` no sooner than --timeout {TIMEOUT_MS}ms after the last heartbeat; it came after {after:.2?}: {dead}"
                ));
            }
            // The contract's bound is timeout + one check period; the rest is slack for a busy machine.
            if after > Duration::from_millis(TIMEOUT_MS + CHECK_MS + 2_000) {
                s.program.fail(format_args!(
                    "expected `dead` within --timeout + --check-interval ({}ms) of the last heartbeat, it took {after:.2?}",
                    TIMEOUT_MS + CHECK_MS
                ));
            }
        });
    }

    #[test]
    fn a_node_that_keeps_sending_stays_alive() {
        bounded(LIMIT, || {
            let mut s = Server::start(&["--timeout", "1s", "--check-interval", "50ms"]);
            s.beat("quiet", 1);
            let mut seq = 0;
            let mut quiet_dead = false;
            let started = Instant::now();
            // Keep beating for a while after quiet's death too: steady must outlive it by more
            // than one timeout.
            while !(quiet_dead && seq > 45) {
                seq += 1;
                s.beat("steady", seq);
                if let Some(line) = s.program.next_line(Duration::from_millis(50)) {
                    let event: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                    if event["event"] == "dead" && event["node"] == "steady" {
                        s.program.fail(format_args!("node steady sent a heartbeat every 50ms with --timeout 1s and was declared dead: {line}"));
                    }
                    quiet_dead |= event["event"] == "dead" && event["node"] == "quiet";
                }
                if started.elapsed() > PROMPT {
                    s.program.fail("expected node quiet, silent after one heartbeat, to be declared dead within 5s (--timeout 1s)");
                }
                s.program.assert_running("receiving heartbeats");
            }
            let row = s.node("steady");
            if row["state"] != "alive" {
                s.program
                    .fail(format_args!("expected steady to be alive, got {row}"));
            }
        });
    }

    #[test]
    fn status_shows_the_dead() {
        bounded(LIMIT, || {
            let mut s = server();
            s.beat("gone", 1);
            s.expect_event("dead", "gone", PROMPT);
            let (server, nodes) = s.status();
            if nodes.len() != 1
                || nodes[0]["state"] != "dead"
                || server["dead"] != 1
                || server["alive"] != 0
            {
                s.program.fail(format_args!(
                    "expected node gone with state dead, and server.dead 1, server.alive 0; got server {server} and nodes {}",
                    json_of(&nodes)
                ));
            }
        });
    }

    #[test]
    fn death_is_announced_once() {
        bounded(LIMIT, || {
            let mut s = server();
            s.beat("first", 1);
            s.expect_event("dead", "first", PROMPT);
            s.beat("marker", 1);
            s.expect_event("joined", "marker", PROMPT);
            let next = s.next_event(PROMPT);
            if next["event"] != "dead" || next["node"] != "marker" {
                s.program.fail(format_args!(
                    "after first's death, only marker's death was due next (first stayed silent), got {next}"
                ));
            }
        });
    }
}

mod stage4_sequences {
    use super::*;

    fn server() -> Server {
        Server::start(&["--timeout", "10s"])
    }

    fn counts(row: &Value) -> [u64; 5] {
        ["received", "lost", "duplicates", "reordered", "restarts"]
            .map(|k| row[k].as_u64().unwrap_or(u64::MAX))
    }

    fn check(seqs: &[u64], expected: [u64; 5], last_seq: u64) {
        let mut s = server();
        for &seq in seqs {
            s.beat("n", seq);
        }
        let what = format!(
            "after seqs {seqs:?}: received, lost, duplicates, reordered, restarts = {expected:?} and last_seq {last_seq}"
        );
        s.node_until("n", &what, |row| {
            counts(row) == expected && row["last_seq"] == last_seq
        });
    }

    #[test]
    fn a_dead_node_that_returns_has_recovered() {
        bounded(LIMIT, || {
            let mut s = Server::start(&["--timeout", "300ms", "--check-interval", "20ms"]);
            s.beat("phoenix", 1);
            s.expect_event("dead", "phoenix", PROMPT);
            s.beat("phoenix", 2);
            let event = s.expect_event("recovered", "phoenix", PROMPT);
            if event["addr"] != s.peer.addr().to_string()
                || !event["down_ms"].is_u64()
                || !event["at_ms"].is_u64()
            {
                s.program.fail(format_args!(
                    "expected a recovered event with addr, at_ms and down_ms, got {event}"
                ));
            }
            // Recovered means alive: silent again, it must die again.
            s.expect_event("dead", "phoenix", PROMPT);
        });
    }

    #[test]
    fn gaps_count_as_lost() {
        bounded(LIMIT, || check(&[1, 2, 5], [3, 2, 0, 0, 0], 5));
    }

    #[test]
    fn duplicates_are_counted_but_not_received() {
        bounded(LIMIT, || check(&[1, 2, 2, 3, 3, 1], [3, 0, 3, 0, 0], 3));
    }

    #[test]
    fn a_late_heartbeat_fills_its_gap() {
        bounded(LIMIT, || check(&[1, 3, 2, 6, 4], [5, 1, 0, 2, 0], 6));
    }

    #[test]
    fn a_filled_gap_sent_again_is_a_duplicate() {
        bounded(LIMIT, || check(&[1, 3, 2, 2], [3, 0, 1, 1, 0], 3));
    }

    #[test]
    fn a_jump_to_the_highest_sequence_number_saturates_lost() {
        // A forger's four datagrams: 1, then 2^64 - 1 (lost 2^64 - 3), then 1 (a restart), then
        // 2^64 - 1 again. Added up naively, lost overflows: a panic in a debug build.
        bounded(LIMIT, || {
            check(
                &[1, u64::MAX, 1, u64::MAX],
                [4, u64::MAX, 0, 0, 1],
                u64::MAX,
            );
        });
    }

    #[test]
    fn every_heartbeat_refreshes_the_address_and_meta() {
        bounded(LIMIT, || {
            let mut s = server();
            // Three sockets: the node moves (a new port, as after a restart behind NAT) and its
            // last heartbeat is a duplicate, which refreshes as much as any other.
            let peers = [UdpPeer::bind(), UdpPeer::bind(), UdpPeer::bind()];
            let steps = [
                (0, 1, Some(json!({ "version": "1.0" })), 0),
                (1, 2, Some(json!({ "version": "1.1" })), 0),
                (2, 2, None, 1),
            ];
            let mut sent: Vec<String> = Vec::new();
            for (peer, seq, meta, duplicates) in steps {
                let peer = &peers[peer];
                let mut beat = hb("n", seq);
                if let Some(meta) = &meta {
                    beat["meta"] = meta.clone();
                }
                peer.send_json(s.addr, &beat);
                let from = peer.addr().to_string();
                sent.push(format!("{beat} from {from}"));
                let meta_wanted = match &meta {
                    Some(meta) => format!("\"meta\":{meta}"),
                    None => "no \"meta\" (its last heartbeat had none)".to_owned(),
                };
                let what = format!(
                    "\"addr\":\"{from}\", {meta_wanted}, received {seq} and duplicates \
                     {duplicates}, after {}",
                    sent.join(", then ")
                );
                s.node_until("n", &what, |row| {
                    let meta_ok = match &meta {
                        Some(meta) => &row["meta"] == meta,
                        None => row.get("meta").is_none(),
                    };
                    row["addr"] == from.as_str()
                        && meta_ok
                        && row["received"] == seq
                        && row["duplicates"] == duplicates
                });
            }
        });
    }

    #[test]
    fn a_restarted_client_is_recognised() {
        bounded(LIMIT, || {
            let mut seqs: Vec<u64> = (1..=100).collect();
            seqs.extend([1, 2, 3]);
            check(&seqs, [103, 0, 0, 0, 1], 3);
        });
    }

    #[test]
    fn a_recovered_node_starts_a_fresh_rhythm() {
        bounded(LIMIT, || {
            let mut s = Server::start(&["--timeout", "300ms", "--check-interval", "20ms"]);
            beat_with_gaps(&mut s, "phoenix", 1, &[Duration::from_millis(20); 5]);
            s.expect_event("dead", "phoenix", PROMPT);
            let sent = beat_with_gaps(&mut s, "phoenix", 7, &[Duration::from_millis(100); 3]);
            s.expect_event("recovered", "phoenix", PROMPT);
            let (mean, _) = rhythm(&sent, 100);
            let row = s.node_until("phoenix", "received 10", |r| r["received"] == 10);
            let fresh = interval_ms(&row).is_some_and(|(m, _)| (m - mean).abs() <= 25.0);
            let (server, _) = s.status();
            if server["dead"] != 0 || server["alive"] != 1 {
                s.program.fail(format_args!(
                    "node phoenix died and recovered: expected server.dead 0 and alive 1, got \
                     {server}"
                ));
            }
            if !fresh {
                s.program.fail(format_args!(
                    "node phoenix beat 6 times 20ms apart, died, and came back beating 100ms \
                     apart (3 intervals, a mean of {mean:.1}ms as sent): after an outage the \
                     old rhythm says nothing, so expected interval_ms.mean near {mean:.1} (with \
                     the 20ms intervals kept it would be about 50); got {row}"
                ));
            }
        });
    }
}

mod stage5_hostile {
    use super::*;

    fn expect_clean(s: &mut Server, rejected: u64, good: &[(&str, u64)]) {
        let (server, nodes) = s.status();
        let got: Vec<(Value, Value)> = nodes
            .iter()
            .map(|n| (n["node"].clone(), n["received"].clone()))
            .collect();
        let want: Vec<(Value, Value)> = good.iter().map(|(n, r)| (json!(n), json!(r))).collect();
        let received_of = |rows: &[(Value, Value)]| -> String {
            let rows = rows
                .iter()
                .map(|(node, received)| format!("{node} received {received}"));
            workbook_suite::shown::listed(rows, "none")
        };
        if server["rejected"] != rejected || got != want {
            s.program.fail(format_args!(
                "expected rejected {rejected} and only the good nodes {}; got server {server} and nodes {}",
                received_of(&want),
                received_of(&got)
            ));
        }
    }

    #[test]
    fn malformed_datagrams_are_counted_and_ignored() {
        bounded(LIMIT, || {
            let mut s = Server::start(&["--timeout", "10s"]);
            s.beat("good", 1);
            let bad: Vec<Vec<u8>> = vec![
                b"".to_vec(),
                vec![0xff, 0xfe, 0x00, 0x7b],
                b"hello".to_vec(),
                b"[1,2,3]".to_vec(),
                br#"{"node":"x"}"#.to_vec(),
                br#"{"node":"x","seq":"1","sent_ms":1}"#.to_vec(),
                br#"{"node":"x","seq":-1,"sent_ms":1}"#.to_vec(),
                br#"{"node":7,"seq":1,"sent_ms":1}"#.to_vec(),
                br#"{"node":"x","seq":1,"sent_ms":1,"extra":true}"#.to_vec(),
                br#"{"node":"x","seq":1,"sent_ms":1,"meta":"not an object"}"#.to_vec(),
                br#"{"op":"stats"}"#.to_vec(),
                br#"{"node":"x","seq":1,"sent_ms":1"#.to_vec(),
            ];
            for datagram in &bad {
                s.peer.send(s.addr, datagram);
            }
            s.beat("good", 2);
            expect_clean(&mut s, bad.len() as u64, &[("good", 2)]);
            // `received` counts the valid heartbeats alone, and counts every one.
            let (server, _) = s.status();
            if server["received"] != 2 {
                s.program.fail(format_args!(
                    "after 2 heartbeats and {} malformed datagrams, expected server.received 2, \
                     got {server}",
                    bad.len()
                ));
            }
        });
    }

    #[test]
    fn bad_node_ids_are_rejected() {
        bounded(LIMIT, || {
            let mut s = Server::start(&["--timeout", "10s"]);
            let long = "n".repeat(65);
            let ids = [
                "",
                long.as_str(),
                "two words",
                "tab\there",
                "nul\u{0}",
                "bell\u{7}",
            ];
            for id in ids {
                s.beat(id, 1);
            }
            // The longest allowed: 64 bytes.
            let longest = "n".repeat(64);
            s.beat(&longest, 1);
            let first = s.next_event(PROMPT);
            if first["node"] != longest.as_str() {
                s.program.fail(format_args!(
                    "expected the bad node ids {ids:?} to be rejected and the 64-byte id {longest:?} to join, but got the event {first}"
                ));
            }
            expect_clean(&mut s, ids.len() as u64, &[(longest.as_str(), 1)]);
        });
    }

    #[test]
    fn the_datagram_size_limit_is_exact() {
        bounded(LIMIT, || {
            let mut s = Server::start(&["--timeout", "10s"]);
            // A heartbeat padded through `meta` to exactly 1024 bytes is fine; one byte more is not.
            let padded = |node: &str, len: usize| {
                let base = json!({ "node": node, "seq": 1, "sent_ms": 1, "meta": { "pad": "" } })
                    .to_string();
                let pad = "p".repeat(len - base.len());
                json!({ "node": node, "seq": 1, "sent_ms": 1, "meta": { "pad": pad } }).to_string()
            };
            let fits = padded("fits", 1024);
            let over = padded("over", 1025);
            assert_eq!((fits.len(), over.len()), (1024, 1025));
            s.peer.send(s.addr, over.as_bytes());
            s.peer.send(s.addr, fits.as_bytes());
            expect_clean(&mut s, 1, &[("fits", 1)]);
        });
    }

    /// A `meta` whose JSON text is exactly `len` bytes: `{"p":"ppp..."}`.
    fn meta_of(len: usize) -> Value {
        json!({ "p": "p".repeat(len - 8) })
    }

    fn beat_with_meta(s: &Server, node: &str, seq: u64, meta: &Value) {
        let beat = json!({ "node": node, "seq": seq, "sent_ms": now_ms(), "meta": meta });
        s.peer.send_json(s.addr, &beat);
    }

    #[test]
    fn meta_is_bounded_per_node_and_for_the_table() {
        bounded(LIMIT, || {
            let args = [
                "--timeout",
                "10s",
                "--max-meta-bytes",
                "100",
                "--max-meta-total",
                "250",
            ];
            let mut s = Server::start(&args);
            let (small, full, over) = (meta_of(20), meta_of(100), meta_of(101));
            assert_eq!(over.to_string().len(), 101);
            beat_with_meta(&s, "big", 1, &over);
            beat_with_meta(&s, "n1", 1, &full);
            beat_with_meta(&s, "n2", 1, &full);
            // 300 bytes in all would pass --max-meta-total 250: this one is not kept.
            beat_with_meta(&s, "n3", 1, &full);
            let sent = "big (101 bytes of meta), n1, n2, n3 (100 each), with --max-meta-bytes 100 \
                        --max-meta-total 250";
            let metas = |nodes: &[Value]| -> Vec<(Value, Value, Value)> {
                nodes
                    .iter()
                    .map(|n| (n["node"].clone(), n["received"].clone(), n["meta"].clone()))
                    .collect()
            };
            let shown = |rows: &[(Value, Value, Value)]| -> String {
                rows.iter()
                    .map(|(node, received, meta)| format!("{node} received {received} meta {meta}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let row = |node: &str, received: u64, meta: Option<&Value>| {
                (
                    json!(node),
                    json!(received),
                    meta.cloned().unwrap_or(Value::Null),
                )
            };
            let want = vec![
                row("big", 1, None),
                row("n1", 1, Some(&full)),
                row("n2", 1, Some(&full)),
                row("n3", 1, None),
            ];
            s.status_until(
                format_args!(
                    "after {sent}: expected every node tracked (received 1) with the meta kept \
                     {}, server.meta_dropped 2 and server.meta_bytes 200",
                    shown(&want)
                ),
                |server, nodes| {
                    metas(nodes) == want
                        && server["meta_dropped"] == 2
                        && server["meta_bytes"] == 200
                },
            );
            // n1's next meta is smaller: its old one no longer counts, and n3's fits.
            beat_with_meta(&s, "n1", 2, &small);
            beat_with_meta(&s, "n3", 2, &full);
            let want = vec![
                row("big", 1, None),
                row("n1", 2, Some(&small)),
                row("n2", 1, Some(&full)),
                row("n3", 2, Some(&full)),
            ];
            s.status_until(
                format_args!(
                    "after {sent}, then n1 with 20 bytes of meta and n3 with 100 again: expected \
                     {}, server.meta_dropped 2 and server.meta_bytes 220",
                    shown(&want)
                ),
                |server, nodes| {
                    metas(nodes) == want
                        && server["meta_dropped"] == 2
                        && server["meta_bytes"] == 220
                },
            );
        });
    }

    #[test]
    fn a_burst_queued_while_the_server_is_busy_loses_no_heartbeat() {
        bounded(LIMIT, || {
            let mut s = Server::start(&["--timeout", "10s"]);
            // Stopped, the server stands for one too busy to read (a loaded machine, a flood):
            // what arrives meanwhile waits in the socket's receive buffer, or is lost. The
            // kernel's default buffer holds fewer than 300 small datagrams; asked for 4 MiB, it
            // holds several thousand (Linux caps it at net.core.rmem_max, and its default cap
            // still holds about 550).
            const BURST: usize = 400;
            // A reply first: the server is past its start-up, receive buffer set, and reading.
            s.status_page(None);
            s.program.signal("STOP");
            let flood = UdpPeer::bind();
            for _ in 0..BURST {
                flood.send_json(s.addr, &json!({ "op": "status" }));
            }
            s.beat("late", 1);
            s.program.signal("CONT");
            let joined = s.program.expect_json(
                format_args!(
                    "{{\"event\":\"joined\",\"node\":\"late\",...}}: its heartbeat came after \
                     {BURST} status requests that arrived while the server was stopped (SIGSTOP, \
                     then SIGCONT); is the receive buffer still the kernel's default?"
                ),
                PROMPT,
                |v| v["event"] == "joined" && v["node"] == "late",
            );
            s.status_until(
                format_args!(
                    "expected all {BURST} status requests queued while stopped counted in \
                     status_requests (after {joined})"
                ),
                |server, _| server["status_requests"].as_u64().unwrap_or(0) > BURST as u64,
            );
        });
    }

    #[test]
    fn a_status_flood_does_not_disturb_tracking() {
        bounded(LIMIT, || {
            let mut s = Server::start(&["--timeout", "10s"]);
            s.beat("a", 1);
            let flood = UdpPeer::bind();
            for _ in 0..5_000 {
                flood.send_json(s.addr, &json!({ "op": "status" }));
            }
            // A reply to this peer means the server has worked through the flood queued before it.
            s.status_page(None);
            for seq in 2..=5 {
                s.beat("a", seq);
            }
            s.node_until("a", "received 5 after the flood", |row| {
                row["received"] == 5
            });
            let (server, _) = s.status();
            if server["status_requests"].as_u64().unwrap_or(0) < 100 || server["rejected"] != 0 {
                s.program.fail(format_args!(
                    "expected the flood counted in status_requests (100 or more) and nothing rejected, got {server}"
                ));
            }
        });
    }

    #[test]
    fn max_nodes_bounds_the_table() {
        bounded(LIMIT, || {
            let args = [
                "--max-nodes",
                "2",
                "--timeout",
                "500ms",
                "--check-interval",
                "50ms",
            ];
            let mut s = Server::start(&args);
            s.beat("a", 1);
            s.beat("b", 1);
            s.expect_events_for_all("joined", &["a".to_owned(), "b".to_owned()], PROMPT);
            s.beat("c", 1);
            s.beat("d", 1);
            let sent = "a, b, c and d (seq 1 each) with --max-nodes 2";
            s.status_until(
                format_args!(
                    "after {sent}: expected c and d refused (server.nodes_refused 2, \
                     server.nodes 2) and only a and b listed"
                ),
                |server, nodes| {
                    server["nodes_refused"] == 2 && server["nodes"] == 2 && ids(nodes) == ["a", "b"]
                },
            );
            // Silent, a and b die: their deaths are the next events, since a refused node is
            // announced by none.
            for _ in 0..2 {
                let event = s.next_event(PROMPT);
                if event["event"] != "dead" {
                    s.program.fail(format_args!(
                        "after {sent}, then silence (--timeout 500ms): expected the next events \
                         to be a and b dying, c and d being refused; got {event}"
                    ));
                }
            }
            // The table forgets no node: full of dead nodes, it stays full, and a known node
            // carries on.
            s.beat("c", 2);
            s.beat("a", 2);
            let event = s.next_event(PROMPT);
            if event["event"] != "recovered" || event["node"] != "a" {
                s.program.fail(format_args!(
                    "after {sent}, a and b dead, then c (seq 2) and a (seq 2): expected c \
                     refused again (the dead keep their place) and a recovered, got {event}"
                ));
            }
            s.status_until(
                format_args!(
                    "after {sent}, a and b dead, then c and a (seq 2): expected \
                     server.nodes_refused 3, a and b listed (a received 2, b 1), and c not"
                ),
                |server, nodes| {
                    // a may have died again since: the test does not keep it beating.
                    let received: Vec<(&str, u64)> = nodes
                        .iter()
                        .filter_map(|n| Some((n["node"].as_str()?, n["received"].as_u64()?)))
                        .collect();
                    server["nodes_refused"] == 3 && received == [("a", 2), ("b", 1)]
                },
            );
        });
    }

    /// Counts the datagrams from `from` that reach `socket`, on a thread of its own (so that
    /// none is lost to a full receive buffer while the test is busy sending), until `stop` is
    /// set and nothing has come for 50ms; 30s at most.
    fn count_datagrams(
        socket: &std::net::UdpSocket,
        from: SocketAddr,
    ) -> (Arc<AtomicBool>, std::thread::JoinHandle<u64>) {
        let reader = socket.try_clone().expect("clone a UDP socket");
        reader
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("a non-zero read timeout is valid");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let counter = std::thread::spawn(move || {
            let give_up = Instant::now() + Duration::from_secs(30);
            let mut buf = vec![0u8; 65_536];
            let mut count = 0;
            while Instant::now() < give_up {
                match reader.recv_from(&mut buf) {
                    Ok((_, peer)) => count += u64::from(peer == from),
                    // A timeout, or an ICMP error from an earlier send.
                    Err(_) if stopped.load(Ordering::SeqCst) => break,
                    Err(_) => {}
                }
            }
            count
        });
        (stop, counter)
    }

    #[test]
    fn status_replies_are_rate_limited() {
        bounded(LIMIT, || {
            const FLOOD: usize = 5_000;
            const BURST: u64 = 100;
            const PER_SECOND: u64 = 1_000;
            let mut s = Server::start(&["--timeout", "10s"]);
            let flood =
                std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket on 127.0.0.1:0");
            let flood_addr = flood.local_addr().expect("a bound socket has an address");
            let (stop, counter) = count_datagrams(&flood, s.addr);
            // Half with "op" first, which a server may count without parsing, half with it
            // second, which it must parse: both are status requests, and both are limited.
            let request = status_request(None).to_string();
            let reordered = r#"{"after":"a","op":"status"}"#;
            // No status request before this one: the bucket is full.
            let started = Instant::now();
            for k in 0..FLOOD {
                let one = if k % 2 == 0 {
                    request.as_str()
                } else {
                    reordered
                };
                flood
                    .send_to(one.as_bytes(), s.addr)
                    .unwrap_or_else(|e| panic!("sending {one} to {}: {e}", s.addr));
            }
            // The bucket refills at 1,000 a second: a request asked again every 250ms is
            // answered soon, and its reply comes after every reply to the flood before it.
            let Some(page) = s.status_page_within(None, PROMPT) else {
                s.program.fail(format_args!(
                    "after {FLOOD} {request} at once from {flood_addr}, sent {request} from {} \
                     every 250ms and got no reply within {PROMPT:?}: the rate limit's tokens \
                     refill at 1,000 a second",
                    s.peer.addr()
                ));
            };
            let elapsed = started.elapsed();
            stop.store(true, Ordering::SeqCst);
            let replies = counter.join().expect("the reply counter ends");
            // Over any span of t seconds, at most 100 + 1,000 t replies (and 1 for rounding).
            let allowed = BURST + (PER_SECOND as f64 * elapsed.as_secs_f64()).ceil() as u64 + 1;
            let server = &page["server"];
            let requests = server["status_requests"].as_u64().unwrap_or(0);
            let dropped = server["status_dropped"].as_u64().unwrap_or(0);
            let answered = requests.saturating_sub(dropped);
            let sent = format!(
                "{FLOOD} status requests at once from {flood_addr} ({request} and {reordered} \
                 in turn), then {request} from {} every 250ms until answered, {elapsed:?} in all",
                s.peer.addr()
            );
            if replies > allowed {
                s.program.fail(format_args!(
                    "after {sent}: expected at most {allowed} replies (a burst of 100, then \
                     1,000 a second), got {replies} replies to {flood_addr}; server {server}"
                ));
            }
            if answered > allowed {
                s.program.fail(format_args!(
                    "after {sent}: expected at most {allowed} answered (a burst of 100, then \
                     1,000 a second) and the rest counted in status_dropped; got \
                     status_requests {requests} and status_dropped {dropped}: {answered} \
                     answered"
                ));
            }
            if answered < requests.min(BURST) {
                s.program.fail(format_args!(
                    "after {sent}: expected the first 100 answered (the burst of a full \
                     bucket); got status_requests {requests} and status_dropped {dropped}: \
                     {answered} answered"
                ));
            }
        });
    }

    #[test]
    fn the_default_meta_total_keeps_over_a_megabyte() {
        bounded(LIMIT, || {
            // 2,200 nodes with 500 bytes of `meta` each: 1.1 MB, well within the default
            // --max-meta-total of 16 MiB, so every `meta` is kept.
            const NODES: usize = 2_200;
            const META: usize = 500;
            let mut s = Server::start(&["--timeout", "30s"]);
            let peers: Vec<UdpPeer> = (0..4).map(|_| UdpPeer::bind()).collect();
            let meta = meta_of(META);
            let beat = |i: usize, seq: u64| {
                let node = format!("m-{i:04}");
                json!({ "node": node, "seq": seq, "sent_ms": now_ms(), "meta": meta })
            };
            let beat_all = |s: &Server, seq: u64| {
                s.send_paced(&peers, (0..NODES).map(|i| (i, beat(i, seq))));
            };
            beat_all(&s, 1);
            let mut server = Value::Null;
            for seq in 2..=4 {
                let found = poll_until(PROMPT, Duration::from_millis(50), || {
                    let page = s.status_page(None);
                    (page["server"]["nodes"] == NODES).then(|| page["server"].clone())
                });
                if let Some(found) = found {
                    server = found;
                    break;
                }
                // A datagram lost on the way: every node again (a `meta` replaces its own).
                beat_all(&s, seq);
            }
            let total = (NODES * META) as u64;
            if server["nodes"] != NODES
                || server["meta_dropped"] != 0
                || server["meta_bytes"] != total
            {
                s.program.fail(format_args!(
                    "sent {NODES} nodes a heartbeat with a {META}-byte meta each ({total} bytes \
                     in all, far below the default --max-meta-total of 16 MiB): expected \
                     server.nodes {NODES}, meta_dropped 0 and meta_bytes {total}; got {server}"
                ));
            }
        });
    }
}

mod stage6_scale {
    use super::*;

    const NODES: usize = 1_000;

    fn name(i: usize) -> String {
        format!("node-{i:04}")
    }

    /// The contract's most bytes in one status reply.
    const MAX_REPLY: usize = 60_000;

    /// The contract's least length of a status page that is not the last.
    const MIN_FULL_PAGE: usize = 57_000;

    /// Sends one heartbeat for each node in `range` at `seq`, paced.
    fn beat_all(s: &Server, peers: &[UdpPeer], range: std::ops::Range<usize>, seq: u64) {
        s.send_paced(peers, range.map(|i| (i, hb(&name(i), seq))));
    }

    /// Registers every one of `nodes`, sent from `peers` in turn and paced: one heartbeat each,
    /// then a heartbeat again for exactly those the status does not list (a reply to a status
    /// request comes after every datagram queued before it, so a missing node's heartbeat was
    /// dropped, not delayed), for up to 15 s.
    fn register(s: &mut Server, peers: &[UdpPeer], nodes: &[String], what: &str) {
        let send = |s: &Server, which: &[usize]| {
            s.send_paced(peers, which.iter().map(|&i| (i, hb(&nodes[i], 1))));
        };
        send(s, &(0..nodes.len()).collect::<Vec<_>>());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (_, listed) = s.status();
            let known: HashSet<&str> = listed.iter().filter_map(|n| n["node"].as_str()).collect();
            let missing: Vec<usize> = (0..nodes.len())
                .filter(|&i| !known.contains(nodes[i].as_str()))
                .collect();
            if missing.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                s.program.fail(format_args!(
                    "sent heartbeats for {} nodes ({what}), resending to the missing ones for \
                     15s; status lists {}",
                    nodes.len(),
                    known.len()
                ));
            }
            send(s, &missing);
        }
    }

    /// A server whose stdout nobody reads, with `joins` nodes joined: more joined lines than the
    /// pipe holds, so that the rest wait in the server's queue (4,096 events by default).
    fn joined_with_stdout_unread(joins: usize) -> Server {
        let mut s = Server::start(&["--timeout", "30s"]);
        s.program.pause_stdout();
        let peers: Vec<UdpPeer> = (0..4).map(|_| UdpPeer::bind()).collect();
        let names: Vec<String> = (0..joins).map(name).collect();
        register(&mut s, &peers, &names, "stdout not read");
        s
    }

    /// Reads stdout until `expected` events of `kinds` are printed or counted in `dropped`
    /// events, for up to `PROMPT`: how many were printed, and how many announced as dropped.
    fn events_out(s: &mut Server, kinds: &[&str], expected: u64) -> (u64, u64) {
        let (mut printed, mut announced) = (0u64, 0u64);
        let deadline = Instant::now() + PROMPT;
        while printed + announced < expected {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(line) = s.program.next_line(left) else {
                break;
            };
            let event: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            match event["event"].as_str() {
                Some("dropped") => announced += event["events"].as_u64().unwrap_or(0),
                Some(kind) if kinds.contains(&kind) => printed += 1,
                _ => {}
            }
        }
        (printed, announced)
    }

    #[test]
    fn a_thousand_nodes_are_tracked() {
        bounded(LIMIT, || {
            let mut s = Server::start(&["--timeout", "30s"]);
            let peers: Vec<UdpPeer> = (0..4).map(|_| UdpPeer::bind()).collect();
            let names: Vec<String> = (0..NODES).map(name).collect();
            register(&mut s, &peers, &names, "each from one of 4 sockets");
            let addr = s.addr.to_string();
            let out = run_to_end(&["status", "--server", &addr, "--json"], PROMPT * 2);
            let doc: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
            let ids: Vec<String> = doc["nodes"]
                .as_array()
                .map(|n| {
                    n.iter()
                        .filter(|r| r["state"] == "alive")
                        .filter_map(|r| r["node"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let expected: Vec<String> = (0..NODES).map(name).collect();
            if ids != expected {
                s.program.fail(format_args!(
                    "expected `status --json` to list all {NODES} nodes alive, in id order (node-0000 to node-0999), over several pages; got {} alive nodes: first {:?}",
                    ids.len(),
                    ids.iter().take(5).collect::<Vec<_>>()
                ));
            }
            check_page_sizes(&mut s, &format!("{NODES} nodes"));
        });
    }

    #[test]
    fn exactly_the_silent_hundred_die() {
        bounded(LIMIT, || {
            // The 900 must beat within the timeout, and it is this test that beats them: on a
            // machine so loaded that the test itself stalls for longer, a death among them says
            // nothing of the server. Such an attempt is void, and tried again.
            const TIMEOUT: Duration = Duration::from_secs(3);
            for attempt in 1..=3 {
                let mut s = Server::start(&["--timeout", "3s", "--check-interval", "50ms"]);
                let peers: Vec<UdpPeer> = (0..4).map(|_| UdpPeer::bind()).collect();
                // Every round, nodes 100 to 999 beat, and so does any of 0 to 99 that has not
                // joined yet (its first heartbeat may have been dropped); once joined, 0 to 99
                // fall silent.
                let mut joined: HashSet<String> = HashSet::new();
                let mut dead: Vec<String> = Vec::new();
                let mut seq = 0;
                let started = Instant::now();
                let (mut last_round, mut worst_gap) = (Instant::now(), Duration::ZERO);
                while dead.len() < 100 && started.elapsed() < Duration::from_secs(12) {
                    seq += 1;
                    let silent_to_be: Vec<usize> =
                        (0..100).filter(|&i| !joined.contains(&name(i))).collect();
                    for i in silent_to_be {
                        s.beat_from(&peers[i % peers.len()], &name(i), 1);
                    }
                    beat_all(&s, &peers, 100..NODES, seq);
                    worst_gap = worst_gap.max(last_round.elapsed());
                    last_round = Instant::now();
                    let window = Instant::now() + Duration::from_millis(150);
                    while let Some(line) = s
                        .program
                        .next_line(window.saturating_duration_since(Instant::now()))
                    {
                        let event: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                        let node = event["node"].as_str().unwrap_or("?").to_owned();
                        match event["event"].as_str() {
                            Some("joined") => {
                                joined.insert(node);
                            }
                            Some("dead") => dead.push(node),
                            _ => {}
                        }
                    }
                    s.program
                        .assert_running("receiving heartbeats from 1,000 nodes");
                }
                if worst_gap > TIMEOUT - Duration::from_millis(500) {
                    eprintln!(
                        "attempt {attempt}: this test stalled for {worst_gap:.2?} between two rounds \
                         of heartbeats, too close to the 3s timeout to judge the server; again"
                    );
                    continue;
                }
                dead.sort();
                let expected: Vec<String> = (0..100).map(name).collect();
                if dead != expected {
                    s.program.fail(format_args!(
                        "expected exactly node-0000 to node-0099 (silent) to die while node-0100 to node-0999 kept sending; {} died: {:?}",
                        dead.len(),
                        dead.iter().take(10).collect::<Vec<_>>()
                    ));
                }
                let (server, _) = s.status();
                if server["dead"] != 100 || server["alive"] != 900 {
                    s.program.fail(format_args!(
                        "expected server.dead 100 and server.alive 900, got {server}"
                    ));
                }
                return;
            }
            panic!(
                "three attempts, and in each this test stalled for over 2.5s between rounds of \
                 heartbeats: the machine (or a server spinning on every core) kept it from running"
            );
        });
    }

    #[test]
    fn a_stalled_reader_of_stdout_never_stalls_detection() {
        bounded(LIMIT, || {
            const JOINS: usize = 2_000;
            let args = [
                "--timeout",
                "1s",
                "--check-interval",
                "50ms",
                "--event-queue",
                "64",
            ];
            let mut s = Server::start(&args);
            // Whoever reads the events stops reading: 2,000 joined lines are more than the pipe
            // and the server's queue of 64 hold.
            s.program.pause_stdout();
            let peers: Vec<UdpPeer> = (0..4).map(|_| UdpPeer::bind()).collect();
            beat_all(&s, &peers, 0..JOINS, 1);
            let (server, _) = s.status();
            let nodes = server["nodes"].as_u64().unwrap_or(0);
            // Then every node falls silent: each must be declared dead all the same.
            let all_dead = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
                let (server, _) = s.status();
                (server["dead"] == nodes && nodes > 0).then_some(server)
            });
            let Some(server) = all_dead else {
                let (server, _) = s.status();
                s.program.fail(format_args!(
                    "with stdout not read, {nodes} nodes joined then fell silent (--timeout 1s): \
                     expected all of them dead within 10s, got {server}"
                ));
            };
            let dropped = server["events_dropped"].as_u64().unwrap_or(0);
            if dropped == 0 {
                s.program.fail(format_args!(
                    "with stdout not read and --event-queue 64, {} events were due: expected \
                     server.events_dropped to count those that did not fit, got {server}",
                    2 * nodes
                ));
            }
            // Read again: every event is either printed or counted in a `dropped` event.
            s.program.resume_stdout();
            let (printed, announced) = events_out(&mut s, &["joined", "dead"], 2 * nodes);
            if printed + announced != 2 * nodes {
                s.program.fail(format_args!(
                    "{nodes} nodes joined and died while stdout was not read: expected, once \
                     read again, {} events in all, printed or counted in \
                     {{\"event\":\"dropped\",\"events\":N,...}}; got {printed} printed and \
                     {announced} announced as dropped",
                    2 * nodes
                ));
            }
            s.status_until(
                format_args!(
                    "expected server.events_dropped equal to the {announced} events announced \
                     as dropped"
                ),
                |server, _| server["events_dropped"] == announced,
            );
        });
    }

    #[test]
    fn two_dozen_real_clients() {
        bounded(LIMIT, || {
            let mut s = Server::start(&["--timeout", "2s", "--check-interval", "50ms"]);
            let addr = s.addr.to_string();
            let mut clients: Vec<Program> = (0..24)
                .map(|i| {
                    let node = format!("client-{i:02}");
                    Program::start(
                        &bin(),
                        &[
                            "client",
                            "--server",
                            &addr,
                            "--node",
                            &node,
                            "--interval",
                            "100ms",
                        ],
                    )
                })
                .collect();
            let all = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
                let (server, _) = s.status();
                (server["alive"] == 24).then_some(())
            });
            if all.is_none() {
                for c in &mut clients {
                    if c.exited().is_some() {
                        c.fail("a client ended while it should be sending heartbeats");
                    }
                }
                let (server, _) = s.status();
                s.program.fail(format_args!(
                    "expected 24 alive nodes from 24 running clients, got {server}"
                ));
            }
            clients.truncate(20);
            let stopped: Vec<String> = (20..24).map(|i| format!("client-{i:02}")).collect();
            s.expect_events_for_all("dead", &stopped, Duration::from_secs(10));
            let (server, _) = s.status();
            if server["alive"] != 20 || server["dead"] != 4 {
                s.program.fail(format_args!(
                    "expected 20 alive and 4 dead after stopping 4 clients, got {server}"
                ));
            }
        });
    }

    /// Walks every status page over raw UDP and fails unless each is at most `MAX_REPLY` bytes
    /// and each but the last at least `MIN_FULL_PAGE`. Returns how many pages there were.
    fn check_page_sizes(s: &mut Server, nodes: &str) -> usize {
        let mut after: Option<String> = None;
        for page_number in 1.. {
            let (page, len) = s.status_page_sized(after.as_deref());
            let next = page["next"].as_str().map(str::to_owned);
            if len > MAX_REPLY || (next.is_some() && len < MIN_FULL_PAGE) {
                s.program.fail(format_args!(
                    "with {nodes}, status page {page_number} (after {after:?}) was {len} bytes, \
                     with \"next\":{next:?}: every page must be at most {MAX_REPLY} bytes, and \
                     every page but the last at least {MIN_FULL_PAGE}, filled before the next \
                     begins"
                ));
            }
            match next {
                Some(next) => after = Some(next),
                None => return page_number,
            }
        }
        unreachable!("the pages end with one whose next is null")
    }

    #[test]
    fn pages_stay_within_the_limit_whatever_the_ids() {
        bounded(LIMIT, || {
            // 64-byte ids, the longest allowed, of quotes and backslashes, which JSON escapes
            // to twice their length: the page must leave room for such an id in its `next`.
            const ESCAPED: usize = 600;
            let id = |i: usize| format!("{i:04}{}", "\"\\".repeat(30));
            let mut s = Server::start(&["--timeout", "30s"]);
            let peers: Vec<UdpPeer> = (0..4).map(|_| UdpPeer::bind()).collect();
            let ids: Vec<String> = (0..ESCAPED).map(id).collect();
            register(
                &mut s,
                &peers,
                &ids,
                "64-byte ids of quotes and backslashes",
            );
            let pages = check_page_sizes(
                &mut s,
                &format!("{ESCAPED} nodes whose 64-byte ids are quotes and backslashes"),
            );
            if pages < 2 {
                s.program.fail(format_args!(
                    "{ESCAPED} rows of over 300 bytes each fitted in {pages} page: expected \
                     several pages of at most {MAX_REPLY} bytes"
                ));
            }
        });
    }

    #[test]
    fn events_queued_at_shutdown_are_written_before_it_exits() {
        bounded(LIMIT, || {
            const JOINS: usize = 2_000;
            let mut s = joined_with_stdout_unread(JOINS);
            s.program.terminate();
            // The reader stays stalled a while after SIGTERM, well within the server's
            // EVENT_FLUSH_GRACE (1 s): a server that exits at once has lost what it queued.
            std::thread::sleep(Duration::from_millis(300));
            s.program.resume_stdout();
            let (printed, announced) = events_out(&mut s, &["joined"], JOINS as u64);
            if printed + announced != JOINS as u64 {
                s.program.fail(format_args!(
                    "{JOINS} nodes joined while stdout was not read, then came SIGTERM and stdout \
                     was read again: expected every joined event printed (or counted in a \
                     dropped event) before the server exits, the queue flushed for up to \
                     EVENT_FLUSH_GRACE; got {printed} printed and {announced} announced as dropped"
                ));
            }
            match s.program.wait_exit(PROMPT) {
                Some(status) if status.success() => {}
                other => s.program.fail(format_args!(
                    "expected the server to exit 0 after SIGTERM, once its events were out; got {other:?}"
                )),
            }
        });
    }

    #[test]
    fn a_reader_that_takes_nothing_does_not_hold_the_server_open() {
        bounded(LIMIT, || {
            const JOINS: usize = 2_000;
            let mut s = joined_with_stdout_unread(JOINS);
            // Nobody will read the events still queued: SIGTERM waits EVENT_FLUSH_GRACE (1 s)
            // for them, then exits all the same.
            s.program.terminate();
            let exited = s.program.wait_exit(Duration::from_secs(5));
            s.program.resume_stdout();
            match exited {
                Some(status) if status.success() => {}
                other => s.program.fail(format_args!(
                    "{JOINS} nodes joined while stdout was not read, then came SIGTERM with \
                     stdout still unread: expected exit status 0 within EVENT_FLUSH_GRACE (1 s) \
                     and some slack, 5 s in all; got {other:?}"
                )),
            }
        });
    }
}

mod stage7_phi {
    use super::*;

    /// The rhythm phi learns: a heartbeat every 200ms. With the contract's floor on the standard
    /// deviation (half the mean), phi passes 8 after about 760ms of silence; the hard timeout is
    /// ten seconds, so a death announced within four seconds can only be phi's doing.
    const RHYTHM: Duration = Duration::from_millis(200);

    fn server() -> Server {
        Server::start(&[
            "--detector",
            "phi",
            "--threshold",
            "8",
            "--timeout",
            "10s",
            "--check-interval",
            "20ms",
        ])
    }

    /// Sends `beats` heartbeats of `node` in the rhythm, then falls silent, and fails unless
    /// phi (not the 10s timeout) declares it dead: within 4 s of silence, and not before phi can
    /// have passed 8.
    #[track_caller]
    fn dies_by_phi(s: &mut Server, node: &str, beats: u64) {
        for seq in 1..=beats {
            s.beat(node, seq);
            if seq < beats {
                // Pacing, not synchronisation: the rhythm is the input under test.
                std::thread::sleep(RHYTHM);
                s.program
                    .assert_running("it was sent a heartbeat every 200ms");
            }
        }
        let last = Instant::now();
        let dead = s.expect_event("dead", node, Duration::from_secs(12));
        let after = last.elapsed();
        if after > Duration::from_secs(4) {
            s.program.fail(format_args!(
                "with --detector phi, a node that sent {beats} heartbeats 200ms apart should be \
                 dead well before the 10s timeout once silent (phi judges from the second \
                 interval on); it took {:.2} s",
                after.as_secs_f64()
            ));
        }
        s.expect_not_before_phi(&dead, &format!("{beats} heartbeats 200ms apart"));
    }

    #[test]
    fn phi_declares_a_regular_node_dead_long_before_the_timeout() {
        bounded(LIMIT, || {
            let mut s = server();
            dies_by_phi(&mut s, "regular", 12);
            let (server, _) = s.status();
            if server["detector"] != "phi" {
                s.program.fail(format_args!(
                    "expected server.detector \"phi\", got {server}"
                ));
            }
        });
    }

    #[test]
    fn phi_decides_from_the_second_interval() {
        bounded(LIMIT, || {
            let mut s = server();
            // Three heartbeats: two intervals, the fewest phi judges by.
            dies_by_phi(&mut s, "brief", 3);
        });
    }

    #[test]
    fn the_timeout_bounds_phi_whatever_the_history() {
        // A node beating every 400ms, phi's floor on the deviation (200ms), and a threshold of
        // 300 (a chance of 1 in 10^300): phi would wait over 4.5s of silence, with the given
        // `normal_tail` or an exact normal tail. The hard bound is --timeout 1200ms plus one
        // --check-interval: a death later than that plus slack is phi deciding alone.
        const BEAT: Duration = Duration::from_millis(400);
        const TIMEOUT_MS: u64 = 1_200;
        const CHECK_MS: u64 = 50;
        const SLACK_MS: u64 = 2_000;
        let args = [
            "--detector",
            "phi",
            "--threshold",
            "300",
            "--timeout",
            "1200ms",
            "--check-interval",
            "50ms",
        ];
        bounded(LIMIT, move || {
            for attempt in 1..=3 {
                let mut s = Server::start(&args);
                let (mut last, mut worst_gap) = (Instant::now(), Duration::ZERO);
                let mut early: Option<String> = None;
                for seq in 1..=8 {
                    if seq > 1 {
                        // Pacing, not synchronisation: the rhythm is the input under test.
                        let due = last + BEAT;
                        while let Some(line) = s
                            .program
                            .next_line(due.saturating_duration_since(Instant::now()))
                        {
                            let event: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                            if event["event"] == "dead" {
                                early.get_or_insert(line);
                            }
                        }
                        s.program.assert_running("receiving heartbeats every 400ms");
                        worst_gap = worst_gap.max(last.elapsed());
                    }
                    // Before the send: the server hears the heartbeat later, never earlier.
                    last = Instant::now();
                    s.beat("slow", seq);
                }
                if worst_gap > Duration::from_millis(TIMEOUT_MS - 300) {
                    eprintln!(
                        "attempt {attempt}: this test stalled for {worst_gap:?} between two \
                         heartbeats, too close to the 1200ms timeout to judge the server; again"
                    );
                    continue;
                }
                if let Some(line) = early {
                    s.program.fail(format_args!(
                        "with --detector phi --threshold 300 --timeout 1200ms, node slow sent \
                         seq 1 to 8 every 400ms and was declared dead while still beating: \
                         {line}"
                    ));
                }
                let dead = s.program.expect_json(
                    "{\"event\":\"dead\",\"node\":\"slow\",...}: node slow sent seq 1 to 8 \
                     every 400ms, then fell silent, and --timeout 1200ms bounds phi (--threshold \
                     300) whatever the history",
                    Duration::from_secs(10),
                    |v| v["event"] == "dead" && v["node"] == "slow",
                );
                let after = last.elapsed();
                if after > Duration::from_millis(TIMEOUT_MS + CHECK_MS + SLACK_MS) {
                    s.program.fail(format_args!(
                        "with --detector phi --threshold 300 --timeout 1200ms --check-interval \
                         50ms, node slow sent seq 1 to 8 every 400ms then fell silent: expected \
                         `dead` within --timeout + --check-interval ({}ms) of its last \
                         heartbeat, whatever phi says (and {SLACK_MS}ms of slack for a busy \
                         machine); it came after {after:?}: {dead}",
                        TIMEOUT_MS + CHECK_MS
                    ));
                }
                return;
            }
            panic!(
                "three attempts, and in each this test stalled for over 900ms between two \
                 heartbeats: the machine kept it from keeping the rhythm"
            );
        });
    }

    #[test]
    fn phi_keeps_a_steady_node_alive() {
        bounded(LIMIT, || {
            let mut s = server();
            let mut seq = 0;
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(3) {
                seq += 1;
                s.beat("steady", seq);
                let next_beat = Instant::now() + RHYTHM;
                while let Some(line) = s
                    .program
                    .next_line(next_beat.saturating_duration_since(Instant::now()))
                {
                    let event: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                    if event["event"] == "dead" {
                        s.program.fail(format_args!(
                            "a node beating every 200ms was declared dead by phi (threshold 8): {line}"
                        ));
                    }
                }
                s.program.assert_running("receiving heartbeats");
            }
            let row = s.node("steady");
            if row["state"] != "alive" || row["received"].as_u64().unwrap_or(0) < 5 {
                s.program.fail(format_args!(
                    "expected steady alive with its heartbeats counted, got {row}"
                ));
            }
        });
    }

    #[test]
    fn phi_stays_a_number_far_past_the_rhythm() {
        bounded(LIMIT, || {
            let mut s = server();
            // Six heartbeats 10ms apart (σ floored at 10ms), then 700ms of silence: some 69
            // deviations past the mean, where a normal tail computed naively is 0 and its
            // -log10 infinite, which JSON cannot carry.
            let sent = beat_with_gaps(&mut s, "gone", 1, &[Duration::from_millis(10); 5]);
            let since = sent.last().copied().unwrap_or_else(Instant::now);
            std::thread::sleep(Duration::from_millis(700).saturating_sub(since.elapsed()));
            let row = s.node("gone");
            if !row["phi"]
                .as_f64()
                .is_some_and(|phi| phi.is_finite() && phi > 8.0)
            {
                s.program.fail(format_args!(
                    "node gone beat 6 times 10ms apart, then fell silent for 700ms: expected \
                     its row to carry phi as a finite number above the threshold of 8 (never \
                     infinite, which JSON writes as null); got {row}"
                ));
            }
        });
    }

    #[test]
    fn status_reports_phi_for_the_silence_so_far() {
        bounded(LIMIT, || {
            let mut s = server();
            s.beat("newcomer", 1);
            s.beat("newcomer", 2);
            let row = s.node_until("newcomer", "received 2", |r| r["received"] == 2);
            if !row["phi"].is_null() {
                s.program.fail(format_args!(
                    "a node with two heartbeats has one interval, too few for phi: expected \
                     \"phi\":null, got {row}"
                ));
            }
            // Six heartbeats 100ms apart: a mean near 100ms and a deviation floored at 50ms, so
            // 150 to 250ms of silence puts phi between about 0.8 and 2.9, where it is steep
            // enough to tell a wrong formula from a right one; 40ms, before the mean, checks
            // the other side of the tail (phi near 0.05).
            let sent = beat_with_gaps(&mut s, "metronome", 1, &[Duration::from_millis(100); 5]);
            let (mean, _) = rhythm(&sent, 100);
            for silence in [40, 150, 250] {
                let since = sent.last().copied().unwrap_or_else(Instant::now);
                std::thread::sleep(Duration::from_millis(silence).saturating_sub(since.elapsed()));
                let row = s.node("metronome");
                // The rhythm as sent, loosely (phi is checked against the row's own figures),
                // and the deviation as measured, not floored (phi's floor here is 50ms).
                let rhythm_ok = interval_ms(&row)
                    .is_some_and(|(m, d)| (m - mean).abs() <= mean * 0.2 && d < 25.0);
                let (Some((m, d)), Some(silent), Some(phi)) = (
                    interval_ms(&row),
                    row["last_seen_ms_ago"].as_u64(),
                    row["phi"].as_f64(),
                ) else {
                    s.program.fail(format_args!(
                        "expected the row of metronome (6 heartbeats 100ms apart) to carry \
                         interval_ms, last_seen_ms_ago and a number for phi under --detector \
                         phi; got {row}"
                    ))
                };
                // The server's own mean, deviation and silence, floored as the contract says:
                // phi is checked against them, so this test's timing does not enter into it.
                // `last_seen_ms_ago` is whole milliseconds; the probability may be off by 10^-4.
                let floored = d.max(m * 0.5).max(10.0);
                let later = normal_tail_exact(silent as f64 + 1.0, m, floored);
                let sooner = normal_tail_exact(silent as f64, m, floored);
                let p = 10f64.powf(-phi);
                if !rhythm_ok {
                    s.program.fail(format_args!(
                        "metronome beat 6 times 100ms apart (a mean of {mean:.1}ms as sent): \
                         expected its interval_ms near that rhythm, the mean within 20% and the \
                         sd as measured (under 25ms, not floored: phi's floor is its own); got \
                         {{\"mean\":{m:.2},\"sd\":{d:.2}}} in {row}"
                    ));
                }
                if p < later - 2e-4 || p > sooner + 2e-4 {
                    s.program.fail(format_args!(
                        "metronome beat 6 times 100ms apart (a mean of {mean:.1}ms as sent), then \
                         fell silent; with its interval_ms {{\"mean\":{m:.2},\"sd\":{d:.2}}}, σ \
                         floored at {floored:.2}ms and last_seen_ms_ago {silent}, phi should be \
                         {:.3} to {:.3} (a chance of {sooner:.5} to {later:.5} that a live node \
                         is later still); got {row}",
                        -sooner.log10(),
                        -later.log10()
                    ));
                }
            }
        });
    }
}
