//! Project 8, leader election, graded from the outside.
//!
//! Every test starts the real `leader-election` binary (the one `WORKBOOK_BIN_LEADER_ELECTION`
//! names, or the reference solution) and speaks its real protocol: JSON datagrams over UDP,
//! JSON events on stdout. Clusters run behind the suite's own UDP relay, which partitions and
//! drops on purpose; some tests play the peers themselves. The modules are the stages, in the
//! order the grader reports them; the book's page "The contract" is what they check.
//!
//! The timing bounds follow MIT 6.824's election tests, with margins for a loaded machine: the
//! nodes run with 6.824's settings, a 100 ms heartbeat and a 1 s election timeout (shorter ones
//! made stability checks flaky on a loaded 2-core machine, where an fsync can take 300 ms).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tempfile::TempDir;
use workbook_suite::shown::{listed, or};
use workbook_suite::{Program, UdpPeer, UdpRelay, binary, bounded, poll_until};

/// Member names for a failure message: `n1, n3`, or `none`.
fn names<'a>(ids: impl IntoIterator<Item = &'a String>) -> String {
    listed(ids, "none")
}

/// Counts by message type, as the relay kept them: `vote 6, heartbeat 12`.
fn counted(counts: &BTreeMap<String, u64>) -> String {
    listed(
        counts.iter().map(|(kind, n)| format!("{kind} {n}")),
        "none counted",
    )
}

/// Every test's overall bound.
const LIMIT: Duration = Duration::from_secs(90);
/// How long a test waits for something that should come at once.
const PROMPT: Duration = Duration::from_secs(5);
/// The heartbeat interval the nodes run with.
const HEARTBEAT: Duration = Duration::from_millis(100);
/// The election timeout the nodes run with.
const TIMEOUT: Duration = Duration::from_secs(1);
/// Added to every timing bound: the machine may be busy with other work. Under a load average
/// of 20 on 2 cores, a vote's fsync took long enough for a new leader's lease to run out as it
/// won, and the next election came 2.5 s after a kill; a pass costs no extra time, since every
/// wait is a poll.
const MARGIN: Duration = Duration::from_secs(5);

fn bin() -> PathBuf {
    binary("leader-election")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// The messages of an election, as the contract names them.
const ELECTION_TYPES: [&str; 4] = ["prevote", "prevote_reply", "vote", "vote_reply"];

/// One member of a cluster under test.
struct Member {
    id: String,
    priority: u64,
    data: TempDir,
    program: Option<Program>,
    paused: bool,
    /// Its latest event since it last started.
    last: Option<Value>,
}

/// A cluster of nodes behind the relay.
struct Cluster {
    relay: UdpRelay,
    members: Vec<Member>,
    extra: Vec<String>,
    /// Every event of every member, in the order the suite read them.
    events: Vec<Value>,
    /// When the last member of the first start printed its address, in Unix ms.
    started_ms: u64,
}

impl Cluster {
    /// Starts one node per priority, named n0, n1, ..., with `extra` flags for all.
    fn start(priorities: &[u64], extra: &[&str]) -> Cluster {
        let members = priorities
            .iter()
            .enumerate()
            .map(|(i, p)| Member {
                id: format!("n{i}"),
                priority: *p,
                data: TempDir::new().expect("a temporary directory"),
                program: None,
                paused: false,
                last: None,
            })
            .collect();
        let mut cluster = Cluster {
            relay: UdpRelay::new(priorities.len(), 0x5eed_0008),
            members,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            events: Vec::new(),
            started_ms: 0,
        };
        for i in 0..priorities.len() {
            cluster.start_member(i);
        }
        cluster.started_ms = now_ms();
        cluster
    }

    fn args(&self, i: usize) -> Vec<String> {
        let m = &self.members[i];
        let mut args: Vec<String> = vec![
            "node".into(),
            "--id".into(),
            m.id.clone(),
            "--priority".into(),
            m.priority.to_string(),
            "--bind".into(),
            "127.0.0.1:0".into(),
            "--heartbeat".into(),
            ms(HEARTBEAT),
            "--timeout".into(),
            ms(TIMEOUT),
            "--data".into(),
            m.data.path().display().to_string(),
        ];
        for j in 0..self.members.len() {
            if j != i {
                args.push("--peer".into());
                args.push(format!("{}={}", self.members[j].id, self.relay.link(i, j)));
            }
        }
        args.extend(self.extra.iter().cloned());
        args
    }

    /// Starts (or restarts) member `i` and tells the relay where it listens.
    fn start_member(&mut self, i: usize) {
        let args = self.args(i);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut program = Program::start(&bin(), &refs);
        let addr = program.listening();
        self.relay.set_member(i, addr);
        let m = &mut self.members[i];
        m.program = Some(program);
        m.paused = false;
        m.last = None;
    }

    /// Kills member `i` with SIGKILL.
    fn kill(&mut self, i: usize) {
        self.pump();
        let m = &mut self.members[i];
        m.program = None;
        m.last = None;
    }

    fn pause(&mut self, i: usize) {
        if let Some(p) = &self.members[i].program {
            p.signal("STOP");
            self.members[i].paused = true;
        }
    }

    fn resume(&mut self, i: usize) {
        if let Some(p) = &self.members[i].program {
            p.signal("CONT");
            self.members[i].paused = false;
        }
    }

    /// Reads every event printed so far; fails if a member died on its own.
    #[track_caller]
    fn pump(&mut self) {
        for i in 0..self.members.len() {
            let member = &mut self.members[i];
            let Some(program) = member.program.as_mut() else {
                continue;
            };
            while let Some(line) = program.next_line(Duration::ZERO) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v.get("event").is_some()
                {
                    member.last = Some(v.clone());
                    self.events.push(v);
                }
            }
            if !member.paused && program.exited().is_some() {
                let id = member.id.clone();
                let timeline = self.timeline();
                let program = self.members[i].program.as_mut().expect("checked above");
                program.fail(format_args!(
                    "node {id} ended on its own\n  events so far:\n{timeline}"
                ));
            }
        }
    }

    /// The events so far, one per line, for failure messages.
    fn timeline(&self) -> String {
        let tail = &self.events[self.events.len().saturating_sub(40)..];
        let mut out = String::new();
        for e in tail {
            out.push_str(&format!(
                "    +{}ms {} {} term {} leader {} ({})\n",
                e["time_ms"]
                    .as_u64()
                    .unwrap_or(0)
                    .saturating_sub(self.started_ms) as i64,
                e["node"].as_str().unwrap_or("?"),
                e["event"].as_str().unwrap_or("?"),
                e["term"],
                e["leader"],
                e["reason"].as_str().unwrap_or("")
            ));
        }
        if out.is_empty() {
            out.push_str("    (no events)\n");
        }
        out
    }

    /// The running, unpaused members whose latest event is `leader`.
    fn leaders(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| {
                let m = &self.members[i];
                m.program.is_some()
                    && !m.paused
                    && m.last.as_ref().is_some_and(|e| e["event"] == "leader")
            })
            .collect()
    }

    /// Waits until exactly one running member leads, and returns it.
    #[track_caller]
    fn one_leader(&mut self, within: Duration, what: &str) -> usize {
        let found = poll_until(within, Duration::from_millis(10), || {
            self.pump();
            let leaders = self.leaders();
            (leaders.len() == 1).then(|| leaders[0])
        });
        match found {
            Some(i) => i,
            None => self.fail(format_args!(
                "expected exactly one leader within {within:?} ({what}); leaders now: {}",
                self.leaders_shown()
            )),
        }
    }

    /// The members that lead now, for a failure message: `n1, n3`, or `none`.
    fn leaders_shown(&self) -> String {
        names(&self.leader_ids())
    }

    fn leader_ids(&self) -> Vec<String> {
        self.leaders()
            .iter()
            .map(|&i| self.members[i].id.clone())
            .collect()
    }

    /// The first `leader` event at or after `since_ms`, by any member.
    fn leader_event_since(&self, since_ms: u64) -> Option<&Value> {
        self.events
            .iter()
            .find(|e| e["event"] == "leader" && e["time_ms"].as_u64().unwrap_or(0) >= since_ms)
    }

    /// Checks that no term had two leaders, across every event of every member.
    #[track_caller]
    fn check_one_leader_per_term(&mut self) {
        self.pump();
        let mut by_term: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
        for e in self.events.iter().filter(|e| e["event"] == "leader") {
            by_term
                .entry(e["term"].as_u64().unwrap_or(0))
                .or_default()
                .insert(e["node"].as_str().unwrap_or("?").to_owned());
        }
        if let Some((term, nodes)) = by_term.iter().find(|(_, n)| n.len() > 1) {
            let (term, nodes) = (*term, nodes.clone());
            self.fail(format_args!(
                "two leaders in one term: term {term} was led by {}",
                names(&nodes)
            ));
        }
    }

    /// Election messages the relay passed on so far.
    fn election_messages(&self) -> u64 {
        let counts = self.relay.counts();
        ELECTION_TYPES
            .iter()
            .map(|t| counts.get(*t).copied().unwrap_or(0))
            .sum()
    }

    /// Waits until every running member follows (or is) member `leader`.
    #[track_caller]
    fn all_follow(&mut self, leader: usize) {
        let id = self.members[leader].id.clone();
        let done = poll_until(PROMPT, Duration::from_millis(10), || {
            self.pump();
            self.members
                .iter()
                .filter(|m| m.program.is_some() && !m.paused)
                .all(|m| m.last.as_ref().is_some_and(|e| e["leader"] == id.as_str()))
                .then_some(())
        });
        if done.is_none() {
            self.fail(format_args!(
                "expected every running member to follow {id} within {PROMPT:?}"
            ));
        }
    }

    /// Checks for `quiet` that no member prints anything but what it printed before.
    #[track_caller]
    fn stays_stable(&mut self, quiet: Duration) {
        let before = self.events.len();
        let deadline = Instant::now() + quiet;
        while Instant::now() < deadline {
            self.pump();
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.events.len() != before {
            self.fail(format_args!(
                "expected the cluster to stay as it was for {quiet:?} (one leader, every other \
                 member following it), but {} new events came",
                self.events.len() - before
            ));
        }
    }

    /// Panics with `message`, the timeline, and the state of every member.
    #[track_caller]
    fn fail(&mut self, message: std::fmt::Arguments<'_>) -> ! {
        let timeline = self.timeline();
        let mut states = String::new();
        for m in &mut self.members {
            if let Some(p) = m.program.as_mut()
                && p.exited().is_some()
            {
                states.push_str(&format!("  node {}: {}", m.id, p.diagnosis()));
            }
        }
        panic!("{message}\n  events (time since start):\n{timeline}{states}");
    }
}

/// One node whose two peers, `b` and `c`, are played by the test.
struct Lone {
    program: Program,
    addr: SocketAddr,
    b: UdpPeer,
    c: UdpPeer,
    data: TempDir,
    extra: Vec<String>,
}

impl Lone {
    /// Starts node `a` (priority 1) with peers b and c, and `extra` flags. Its election timeout
    /// is long, so that it stays quiet while the test talks to it.
    fn start(extra: &[&str]) -> Lone {
        let b = UdpPeer::bind();
        let c = UdpPeer::bind();
        let data = TempDir::new().expect("a temporary directory");
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let (program, addr) = Lone::spawn(&b, &c, &data, &extra);
        Lone {
            program,
            addr,
            b,
            c,
            data,
            extra,
        }
    }

    fn spawn(b: &UdpPeer, c: &UdpPeer, data: &TempDir, extra: &[String]) -> (Program, SocketAddr) {
        let mut args: Vec<String> = vec![
            "node".into(),
            "--id".into(),
            "a".into(),
            "--priority".into(),
            "1".into(),
            "--bind".into(),
            "127.0.0.1:0".into(),
            "--peer".into(),
            format!("b={}", b.addr()),
            "--peer".into(),
            format!("c={}", c.addr()),
            "--heartbeat".into(),
            ms(HEARTBEAT),
            "--timeout".into(),
            "10s".into(),
            "--data".into(),
            data.path().display().to_string(),
        ];
        args.extend(extra.iter().cloned());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut program = Program::start(&bin(), &refs);
        let addr = program.listening();
        (program, addr)
    }

    /// Kills the node and starts it again on the same data directory.
    fn restart(&mut self) {
        self.program.signal("KILL");
        let _ = self.program.wait_exit(PROMPT);
        let (program, addr) = Lone::spawn(&self.b, &self.c, &self.data, &self.extra);
        self.program = program;
        self.addr = addr;
        self.b.drain();
        self.c.drain();
    }

    /// Sends `message` from `peer` and waits for the first datagram of type `want` back.
    #[track_caller]
    fn ask(&mut self, from_c: bool, message: Value, want: &str) -> Value {
        let peer = if from_c { &self.c } else { &self.b };
        peer.send_json(self.addr, &message);
        let deadline = Instant::now() + PROMPT;
        while let Some((bytes, from)) =
            peer.recv(deadline.saturating_duration_since(Instant::now()))
        {
            if from != self.addr {
                continue;
            }
            if let Ok(v) = serde_json::from_slice::<Value>(&bytes)
                && v["type"] == want
            {
                return v;
            }
        }
        self.program.fail(format_args!(
            "sent {message} and expected a {{\"type\":\"{want}\",...}} back within {PROMPT:?}, \
             but none came"
        ))
    }

    /// The node's status reply.
    #[track_caller]
    fn status(&mut self) -> Value {
        status_of(&mut self.program, self.addr)
    }
}

/// Asks the node at `addr` for its status over raw UDP, retrying.
#[track_caller]
fn status_of(program: &mut Program, addr: SocketAddr) -> Value {
    let peer = UdpPeer::bind();
    let request = json!({ "type": "status" });
    let got = poll_until(PROMPT, Duration::ZERO, || {
        peer.send_json(addr, &request);
        let (bytes, _) = peer.recv(Duration::from_millis(300))?;
        serde_json::from_slice::<Value>(&bytes).ok()
    });
    match got {
        Some(v) if v["type"] == "status_reply" => v,
        Some(v) => program.fail(format_args!(
            "sent {request} and expected {{\"type\":\"status_reply\",...}}, got {v}"
        )),
        None => program.fail(format_args!(
            "sent {request} to {addr} and got no reply within {PROMPT:?}"
        )),
    }
}

mod stage1_heartbeats {
    use super::*;

    #[test]
    fn a_node_prints_its_start_and_sends_heartbeats_to_every_peer() {
        bounded(LIMIT, || {
            let mut lone = Lone::start(&[]);
            lone.program.expect_json(
                "{\"event\":\"follower\",\"node\":\"a\",\"term\":0,\"leader\":null,...}",
                PROMPT,
                |v| {
                    v["event"] == "follower"
                        && v["node"] == "a"
                        && v["term"] == 0
                        && v["leader"].is_null()
                },
            );
            for (name, peer) in [("b", &lone.b), ("c", &lone.c)] {
                // Beats that queued up while the other peer was read would all come at once.
                peer.drain();
                let mut seqs = Vec::new();
                let started = Instant::now();
                while seqs.len() < 4 && started.elapsed() < PROMPT {
                    let Some((bytes, _)) = peer.recv(PROMPT) else {
                        break;
                    };
                    let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
                        lone.program.fail(format_args!(
                            "peer {name} received a datagram that is not JSON: {:?}",
                            String::from_utf8_lossy(&bytes)
                        ));
                    };
                    if v["type"] != "heartbeat" {
                        continue;
                    }
                    let fields_ok = v["from"] == "a"
                        && v["term"].is_u64()
                        && v["priority"] == 1
                        && v.get("leader").is_some()
                        && v["seq"].is_u64();
                    if !fields_ok {
                        lone.program.fail(format_args!(
                            "expected a heartbeat {{\"type\":\"heartbeat\",\"from\":\"a\",\"term\":N,\
                             \"priority\":1,\"leader\":null,\"seq\":N}}, got {v}"
                        ));
                    }
                    seqs.push(v["seq"].as_u64().unwrap_or(0));
                }
                let elapsed = started.elapsed();
                if seqs.len() < 4 {
                    lone.program.fail(format_args!(
                        "expected 4 heartbeats at peer {name} within {PROMPT:?} (one every \
                         {HEARTBEAT:?}), got {}",
                        seqs.len()
                    ));
                }
                assert!(
                    seqs.windows(2).all(|w| w[1] > w[0]),
                    "heartbeat seq must grow, got {seqs:?}"
                );
                // Four beats 50 ms apart take about 150 ms; far faster is a flood, far slower a
                // missed timer.
                assert!(
                    elapsed >= HEARTBEAT * 2,
                    "4 heartbeats came within {elapsed:.2?}: faster than one per {HEARTBEAT:?}"
                );
            }
        });
    }

    #[test]
    fn a_node_without_peers_leads_alone() {
        bounded(LIMIT, || {
            let mut program = Program::start(
                &bin(),
                &[
                    "node",
                    "--id",
                    "solo",
                    "--bind",
                    "127.0.0.1:0",
                    "--heartbeat",
                    &ms(HEARTBEAT),
                    "--timeout",
                    &ms(TIMEOUT),
                ],
            );
            program.listening();
            let bound = TIMEOUT * 5 / 2 + MARGIN;
            let e = program.expect_json(
                "{\"event\":\"leader\",\"node\":\"solo\",\"leader\":\"solo\",\"term\":1,...}",
                bound,
                |v| v["event"] == "leader",
            );
            assert!(e["leader"] == "solo", "a leader names itself: {e}");
            assert!(e["term"] == 1, "the first election is term 1: {e}");
        });
    }

    #[test]
    fn three_nodes_elect_one_leader_within_two_and_a_half_timeouts() {
        bounded(LIMIT, || {
            let mut cluster = Cluster::start(&[1, 2, 3], &[]);
            let bound = TIMEOUT * 5 / 2 + MARGIN;
            let leader = cluster.one_leader(bound, "after start");
            let id = cluster.members[leader].id.clone();
            let followed = poll_until(PROMPT, Duration::from_millis(10), || {
                cluster.pump();
                cluster
                    .members
                    .iter()
                    .all(|m| m.last.as_ref().is_some_and(|e| e["leader"] == id.as_str()))
                    .then_some(())
            });
            if followed.is_none() {
                cluster.fail(format_args!(
                    "expected every member to follow {id} within {PROMPT:?}"
                ));
            }
            cluster.stays_stable(TIMEOUT * 4);
            cluster.check_one_leader_per_term();
        });
    }

    #[test]
    fn status_shows_the_term_the_leader_and_the_peers() {
        bounded(LIMIT, || {
            let mut cluster = Cluster::start(&[1, 2, 3], &[]);
            let leader = cluster.one_leader(TIMEOUT * 5 / 2 + MARGIN, "after start");
            let id = cluster.members[leader].id.clone();
            let term = cluster.members[leader]
                .last
                .as_ref()
                .map(|e| e["term"].clone());
            // Ask a follower: its view must name the leader, the term and both peers alive.
            let follower = (leader + 1) % 3;
            poll_until(PROMPT, Duration::from_millis(10), || {
                cluster.pump();
                cluster.members[follower]
                    .last
                    .as_ref()
                    .is_some_and(|e| e["leader"] == id.as_str())
                    .then_some(())
            });
            let program = cluster.members[follower].program.as_mut().expect("running");
            let addr = status_addr(program);
            let status = status_of(program, addr);
            let peers = status["peers"].as_array().cloned().unwrap_or_default();
            let ok = status["id"] == cluster.members[follower].id.as_str()
                && status["role"] == "follower"
                && status["leader"] == id.as_str()
                && Some(status["term"].clone()) == term
                && peers.len() == 2
                && peers
                    .iter()
                    .all(|p| p["alive"] == true && p["last_heard_ms"].is_u64());
            if !ok {
                cluster.fail(format_args!(
                    "expected follower n{follower}'s status to name leader {id} in term {} \
                     and two live peers with last_heard_ms, got {status}",
                    or(&term, "(no leader event named it)")
                ));
            }
        });
    }

    #[test]
    fn the_status_command_prints_the_reply_as_one_json_line() {
        bounded(LIMIT, || {
            let mut lone = Lone::start(&[]);
            let node = lone.addr.to_string();
            let out = std::process::Command::new(bin())
                .args(["status", "--node", &node, "--wait", "500ms"])
                .env("RUST_BACKTRACE", "0")
                .output();
            let out = match out {
                Ok(out) => out,
                Err(e) => lone
                    .program
                    .fail(format_args!("cannot run `leader-election status`: {e}")),
            };
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let lines: Vec<&str> = stdout.lines().collect();
            let reply = match lines.as_slice() {
                [line] => serde_json::from_str::<Value>(line).ok(),
                _ => None,
            };
            let ok = out.status.success()
                && reply
                    .as_ref()
                    .is_some_and(|v| v["type"] == "status_reply" && v["id"] == "a");
            if !ok {
                lone.program.fail(format_args!(
                    "ran `leader-election status --node {node} --wait 500ms` against node a: \
                     expected exit 0 and one JSON line {{\"type\":\"status_reply\",\"id\":\"a\",\
                     ...}}, got {} with stdout {stdout:?} and stderr {:?}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        });
    }
    /// The address a cluster member listens on, from its first stdout line.
    fn status_addr(program: &Program) -> SocketAddr {
        program.seen()[0]
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .expect("the first line was checked to be `listening on ADDR`")
    }
}

mod stage2_failover {
    use super::*;

    #[test]
    fn a_new_leader_is_elected_after_the_leader_is_killed() {
        bounded(LIMIT, || {
            let mut cluster = Cluster::start(&[1, 2, 3], &[]);
            for round in 0..2 {
                let leader = cluster.one_leader(TIMEOUT * 5 / 2 + MARGIN, "before the kill");
                let killed_at = now_ms();
                cluster.kill(leader);
                let bound = TIMEOUT + HEARTBEAT * 2 + MARGIN;
                let next = cluster.one_leader(bound, "after the leader was killed");
                assert_ne!(next, leader);
                let e = cluster.leader_event_since(killed_at).cloned();
                let took = e
                    .as_ref()
                    .and_then(|e| e["time_ms"].as_u64())
                    .map(|t| t.saturating_sub(killed_at));
                if took.is_none_or(|t| t > bound.as_millis() as u64) {
                    cluster.fail(format_args!(
                        "round {round}: {} after the kill (bound {bound:?})",
                        match took {
                            Some(t) => format!("a new leader took {t} ms"),
                            None => "no new leader was elected".to_owned(),
                        }
                    ));
                }
                cluster.start_member(leader);
            }
            cluster.check_one_leader_per_term();
        });
    }

    #[test]
    fn a_vote_is_granted_once_per_term() {
        bounded(LIMIT, || {
            let mut lone = Lone::start(&[]);
            let vote = |term: u64, from: &str, priority: u64| json!({ "type": "vote", "from": from, "term": term, "priority": priority });
            let reply = lone.ask(false, vote(1, "b", 50), "vote_reply");
            if !(reply["granted"] == true && reply["term"] == 1 && reply["from"] == "a") {
                lone.program.fail(format_args!(
                    "sent {} from b and expected {{\"type\":\"vote_reply\",\"from\":\"a\",\"term\":1,\
                     \"granted\":true}}, got {reply}",
                    vote(1, "b", 50)
                ));
            }
            let again = lone.ask(false, vote(1, "b", 50), "vote_reply");
            assert!(
                again["granted"] == true,
                "asking twice for the same vote gets it twice: {again}"
            );
            let other = lone.ask(true, vote(1, "c", 90), "vote_reply");
            if other["granted"] != false {
                lone.program.fail(format_args!(
                    "a voted for b in term 1, then c asked for term 1 too and got {other}: two \
                     votes in one term"
                ));
            }
            let status = lone.status();
            assert!(
                (&status["term"], &status["voted_for"]) == (&json!(1), &json!("b")),
                "status after the vote: {status}"
            );
        });
    }

    #[test]
    fn a_node_that_hears_a_leader_refuses_votes_and_keeps_its_term() {
        bounded(LIMIT, || {
            let mut lone = Lone::start(&[]);
            // b leads term 2: a follows it and acks.
            let beat = json!({ "type": "heartbeat", "from": "b", "term": 2, "priority": 5,
                               "leader": "b", "seq": 1 });
            let ack = lone.ask(false, beat.clone(), "ack");
            if !(ack["from"] == "a" && ack["term"] == 2 && ack["seq"] == 1) {
                lone.program.fail(format_args!(
                    "sent {beat} and expected {{\"type\":\"ack\",\"from\":\"a\",\"term\":2,\"seq\":1}}, got {ack}"
                ));
            }
            lone.program.expect_json(
                "{\"event\":\"follower\",\"node\":\"a\",\"term\":2,\"leader\":\"b\",...}",
                PROMPT,
                |v| v["event"] == "follower" && v["term"] == 2 && v["leader"] == "b",
            );
            let vote = json!({ "type": "vote", "from": "c", "term": 7, "priority": 99 });
            let reply = lone.ask(true, vote.clone(), "vote_reply");
            if reply["granted"] != false || reply["term"] != 2 {
                lone.program.fail(format_args!(
                    "a heard leader b just now; sent {vote} from c and expected a refusal in \
                     term 2, got {reply}"
                ));
            }
            let prevote = json!({ "type": "prevote", "from": "c", "term": 3, "priority": 99 });
            let reply = lone.ask(true, prevote.clone(), "prevote_reply");
            assert!(
                reply["granted"] == false,
                "sent {prevote} while b leads: {reply}"
            );
            let status = lone.status();
            assert!(
                status["term"] == 2,
                "refusals must not raise the term: {status}"
            );
        });
    }

    #[test]
    fn a_prevote_changes_nothing() {
        bounded(LIMIT, || {
            let mut lone = Lone::start(&[]);
            let prevote = json!({ "type": "prevote", "from": "b", "term": 5, "priority": 9 });
            let reply = lone.ask(false, prevote.clone(), "prevote_reply");
            if !(reply["granted"] == true && reply["term"] == 5) {
                lone.program.fail(format_args!(
                    "sent {prevote} to a node that hears no leader; expected \
                     {{\"type\":\"prevote_reply\",\"from\":\"a\",\"term\":5,\"granted\":true}}, got {reply}"
                ));
            }
            let status = lone.status();
            assert!(
                status["term"] == 0 && status["voted_for"].is_null(),
                "a prevote must change neither term nor vote: {status}"
            );
        });
    }

    #[test]
    fn an_election_takes_a_bounded_number_of_messages() {
        bounded(LIMIT, || {
            let mut cluster = Cluster::start(&[1, 2, 3], &[]);
            cluster.one_leader(TIMEOUT * 5 / 2 + MARGIN, "after start");
            let first = cluster.election_messages();
            // One round is 4 (N - 1) = 8 messages; 6.824 allows 30 for the first leader.
            if first > 30 {
                cluster.fail(format_args!(
                    "the first election took {first} election messages (bound 30): {}",
                    counted(&cluster.relay.counts())
                ));
            }
            let leader = cluster.one_leader(PROMPT, "still");
            cluster.kill(leader);
            let next = cluster.one_leader(TIMEOUT + HEARTBEAT * 2 + MARGIN, "after the kill");
            cluster.all_follow(next);
            let second = cluster.election_messages() - first;
            if second > 30 {
                cluster.fail(format_args!(
                    "the re-election took {second} election messages (bound 30): {}",
                    counted(&cluster.relay.counts())
                ));
            }
            // Once a leader leads, no election messages flow.
            let settled = cluster.election_messages();
            cluster.stays_stable(TIMEOUT * 2);
            assert_eq!(
                cluster.election_messages(),
                settled,
                "election messages while a leader leads"
            );
        });
    }

    #[test]
    fn malformed_forged_and_foreign_messages_are_dropped_and_counted() {
        bounded(LIMIT, || {
            let mut lone = Lone::start(&[]);
            let stranger = UdpPeer::bind();
            let sends: Vec<Vec<u8>> = vec![
                b"not json".to_vec(),
                b"{\"type\":\"vote\"".to_vec(),
                json!({ "type": "bogus", "from": "b" })
                    .to_string()
                    .into_bytes(),
                json!({ "type": "vote", "from": "b", "term": u64::MAX, "priority": 1 })
                    .to_string()
                    .into_bytes(),
                vec![b'x'; 20_000],
            ];
            for s in &sends {
                lone.b.send(lone.addr, s);
            }
            // A vote far in the future from a non-member, and one naming b from elsewhere.
            stranger.send_json(
                lone.addr,
                &json!({ "type": "vote", "from": "z", "term": 1_000_000, "priority": 1_000_000 }),
            );
            stranger.send_json(
                lone.addr,
                &json!({ "type": "vote", "from": "b", "term": 3, "priority": 1_000_000 }),
            );
            stranger.send_json(lone.addr, &json!({ "type": "heartbeat", "from": "z", "term": 9, "priority": 1_000_000, "leader": "z", "seq": 1 }));
            let counted = poll_until(PROMPT, Duration::from_millis(50), || {
                let status = lone.status();
                let d = &status["dropped"];
                let total: u64 = ["malformed", "non_member", "forged", "oversized"]
                    .iter()
                    .map(|k| d[*k].as_u64().unwrap_or(0))
                    .sum();
                (total >= 8
                    && d["non_member"].as_u64() >= Some(2)
                    && d["forged"].as_u64() >= Some(1))
                .then_some(status)
            });
            let Some(status) = counted else {
                let status = lone.status();
                lone.program.fail(format_args!(
                    "sent 5 malformed or oversized datagrams, 2 from a non-member and 1 forged; \
                     expected them counted in status's \"dropped\", got {status}"
                ));
            };
            assert!(
                status["term"] == 0 && status["voted_for"].is_null() && status["leader"].is_null(),
                "dropped messages must change nothing: {status}"
            );
            lone.program.assert_running("receiving hostile datagrams");
        });
    }

    #[test]
    fn status_replies_are_capped_by_status_rate() {
        bounded(LIMIT, || {
            let mut lone = Lone::start(&["--status-rate", "2"]);
            // One reply first, so that the node is surely up.
            lone.status();
            let peer = UdpPeer::bind();
            for _ in 0..20 {
                peer.send_json(lone.addr, &json!({ "type": "status" }));
            }
            let mut replies = 0;
            while let Some((bytes, _)) = peer.recv(Duration::from_millis(500)) {
                if serde_json::from_slice::<Value>(&bytes)
                    .is_ok_and(|v| v["type"] == "status_reply")
                {
                    replies += 1;
                }
            }
            // The 20 requests fall within at most two one-second windows: 2 replies each.
            if replies > 4 {
                lone.program.fail(format_args!(
                    "with --status-rate 2, sent 20 {{\"type\":\"status\"}} at once and expected \
                     at most 4 replies (2 a second), got {replies}"
                ));
            }
        });
    }
}

mod stage3_priority {
    use super::*;

    #[test]
    fn the_node_of_highest_priority_leads() {
        bounded(LIMIT, || {
            let mut cluster = Cluster::start(&[10, 50, 30], &[]);
            let leader = cluster.one_leader(TIMEOUT * 5 / 2 + MARGIN, "after start");
            if leader != 1 {
                cluster.fail(format_args!(
                    "expected n1 (priority 50) to lead, got n{leader}"
                ));
            }
            cluster.kill(1);
            let next = cluster.one_leader(TIMEOUT + HEARTBEAT * 2 + MARGIN, "after n1 was killed");
            if next != 2 {
                cluster.fail(format_args!(
                    "n1 died; expected n2 (priority 30) to lead, not n{next} (priority 10)"
                ));
            }
        });
    }

    #[test]
    fn a_recovered_node_of_higher_priority_takes_over_after_the_hold_down() {
        bounded(LIMIT, || {
            let hold = Duration::from_millis(1500);
            let mut cluster = Cluster::start(&[10, 50, 30], &["--hold-down", "1500ms"]);
            cluster.one_leader(TIMEOUT * 5 / 2 + MARGIN, "after start");
            cluster.kill(1);
            cluster.one_leader(TIMEOUT + HEARTBEAT * 2 + MARGIN, "after n1 was killed");
            cluster.start_member(1);
            let restarted = now_ms();
            let bound = hold + TIMEOUT * 2 + MARGIN;
            let back = poll_until(bound, Duration::from_millis(10), || {
                cluster.pump();
                (cluster.leaders() == [1]).then_some(())
            });
            if back.is_none() {
                cluster.fail(format_args!(
                    "n1 (priority 50) came back; expected it to lead again within {bound:?}"
                ));
            }
            let e = cluster
                .leader_event_since(restarted)
                .cloned()
                .unwrap_or_default();
            let after = e["time_ms"].as_u64().unwrap_or(0).saturating_sub(restarted);
            // Not before the hold-down (less the start-up it takes to print `listening`).
            if after + 300 < hold.as_millis() as u64 {
                cluster.fail(format_args!(
                    "n1 took over {after} ms after its restart: before the {hold:?} hold-down"
                ));
            }
            cluster.check_one_leader_per_term();
        });
    }

    #[test]
    fn without_preemption_the_leader_stays() {
        bounded(LIMIT, || {
            let mut cluster =
                Cluster::start(&[10, 50, 30], &["--preempt", "off", "--hold-down", "500ms"]);
            cluster.one_leader(TIMEOUT * 5 / 2 + MARGIN, "after start");
            cluster.kill(1);
            let next = cluster.one_leader(TIMEOUT + HEARTBEAT * 2 + MARGIN, "after n1 was killed");
            cluster.start_member(1);
            // n1 starts, follows the leader, and nothing else happens.
            let joined = poll_until(PROMPT, Duration::from_millis(10), || {
                cluster.pump();
                cluster.members[1]
                    .last
                    .as_ref()
                    .is_some_and(|e| e["leader"] == cluster.members[next].id.as_str())
                    .then_some(())
            });
            if joined.is_none() {
                cluster.fail(format_args!("the restarted n1 should follow n{next}"));
            }
            cluster.all_follow(next);
            cluster.stays_stable(Duration::from_millis(500) + TIMEOUT * 3);
        });
    }
}

mod stage4_persistence {
    use super::*;

    #[test]
    fn a_restarted_node_keeps_its_term_and_its_vote() {
        bounded(LIMIT, || {
            let mut lone = Lone::start(&[]);
            let vote = |term: u64, from: &str| json!({ "type": "vote", "from": from, "term": term, "priority": 9 });
            let reply = lone.ask(false, vote(3, "b"), "vote_reply");
            assert!(
                reply["granted"] == true,
                "sent {} to a fresh node: {reply}",
                vote(3, "b")
            );
            lone.restart();
            lone.program.expect_json(
                "{\"event\":\"follower\",\"node\":\"a\",\"term\":3,...} after a restart",
                PROMPT,
                |v| v["event"] == "follower" && v["term"] == 3,
            );
            let other = lone.ask(true, vote(3, "c"), "vote_reply");
            if other["granted"] != false {
                lone.program.fail(format_args!(
                    "a voted for b in term 3 and was restarted; c asked for term 3 and got \
                     {other}: the vote was not kept"
                ));
            }
            let next = lone.ask(true, vote(4, "c"), "vote_reply");
            assert!(
                next["granted"] == true,
                "term 4 is a new term, c may have its vote: {next}"
            );
            lone.restart();
            let status = lone.status();
            assert!(
                (&status["term"], &status["voted_for"]) == (&json!(4), &json!("c")),
                "after a second restart: {status}"
            );
        });
    }

    #[test]
    fn terms_only_grow_across_a_restart_of_every_node() {
        bounded(LIMIT, || {
            let mut cluster = Cluster::start(&[1, 2, 3], &[]);
            let leader = cluster.one_leader(TIMEOUT * 5 / 2 + MARGIN, "after start");
            let old_term = cluster.members[leader]
                .last
                .as_ref()
                .map_or(0, |e| e["term"].as_u64().unwrap_or(0));
            let all_follow = poll_until(PROMPT, Duration::from_millis(10), || {
                cluster.pump();
                cluster
                    .members
                    .iter()
                    .all(|m| m.last.as_ref().is_some_and(|e| e["term"] == old_term))
                    .then_some(())
            });
            if all_follow.is_none() {
                cluster.fail(format_args!(
                    "expected every member in term {old_term} within {PROMPT:?}"
                ));
            }
            for i in 0..3 {
                cluster.kill(i);
            }
            let restarted = now_ms();
            for i in 0..3 {
                cluster.start_member(i);
            }
            let leader = cluster.one_leader(TIMEOUT * 5 / 2 + MARGIN, "after every node restarted");
            let new_term = cluster.members[leader]
                .last
                .as_ref()
                .map_or(0, |e| e["term"].as_u64().unwrap_or(0));
            if new_term <= old_term {
                cluster.fail(format_args!(
                    "the leader before the restart led term {old_term}; after it, n{leader} leads \
                     term {new_term}: a term was reused"
                ));
            }
            let starts: Vec<Value> = cluster
                .events
                .iter()
                .filter(|e| {
                    e["time_ms"].as_u64().unwrap_or(0) >= restarted && e["reason"] == "start"
                })
                .cloned()
                .collect();
            for e in &starts {
                if e["term"].as_u64().unwrap_or(0) < old_term {
                    cluster.fail(format_args!(
                        "a node restarted at term 0 after term {old_term}: {e}"
                    ));
                }
            }
            cluster.check_one_leader_per_term();
        });
    }
}

mod stage5_partitions {
    use super::*;

    #[test]
    fn a_cut_off_leader_steps_down_before_the_majority_elects_another() {
        bounded(LIMIT, || {
            let mut cluster = Cluster::start(&[1, 2, 3], &["--preempt", "off", "--lease", "500ms"]);
            let old = cluster.one_leader(TIMEOUT * 5 / 2 + MARGIN, "after start");
            let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
            let cut_at = now_ms();
            cluster.relay.partition(&[&[old], &others]);
            let new = poll_until(TIMEOUT * 3 + MARGIN, Duration::from_millis(10), || {
                cluster.pump();
                let l = cluster.leaders();
                l.iter().find(|&&i| i != old).copied()
            });
            let Some(new) = new else {
                cluster.fail(format_args!(
                    "n{old} was cut off; the other two elected no one"
                ));
            };
            // The old leader's step-down must come before the new leader's election.
            let stepped = cluster
                .events
                .iter()
                .find(|e| {
                    e["node"] == cluster.members[old].id.as_str()
                        && e["event"] != "leader"
                        && e["time_ms"].as_u64().unwrap_or(0) >= cut_at
                })
                .cloned();
            let old_id = cluster.members[old].id.clone();
            let elected = cluster
                .events
                .iter()
                .find(|e| {
                    e["event"] == "leader"
                        && e["node"] != old_id.as_str()
                        && e["time_ms"].as_u64().unwrap_or(0) >= cut_at
                })
                .cloned()
                .unwrap_or_default();
            let ok = stepped
                .as_ref()
                .is_some_and(|s| s["time_ms"].as_u64() <= elected["time_ms"].as_u64());
            if !ok {
                let stepped = stepped.map_or_else(
                    || "never stepped down".to_owned(),
                    |e| format!("stepped down at {e}"),
                );
                cluster.fail(format_args!(
                    "n{old} was cut off from the majority; it {stepped}, and n{new} \
                     was elected at {elected}: the old leader must step down first (lease 500ms, \
                     timeout 1s)"
                ));
            }
            // Alone, it leads no one.
            let deadline = Instant::now() + TIMEOUT * 4;
            while Instant::now() < deadline {
                cluster.pump();
                if cluster.members[old]
                    .last
                    .as_ref()
                    .is_some_and(|e| e["event"] == "leader")
                {
                    cluster.fail(format_args!("n{old}, alone in a minority, became leader"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            cluster.relay.heal();
            // Back in touch, it follows a leader, and it never stood for election: its
            // pre-votes failed while it was alone, so it has no higher term to disturb anyone.
            let rejoined = poll_until(PROMPT, Duration::from_millis(10), || {
                cluster.pump();
                cluster.members[old]
                    .last
                    .as_ref()
                    .is_some_and(|e| e["leader"].is_string())
                    .then_some(())
            });
            if rejoined.is_none() {
                cluster.fail(format_args!(
                    "after the heal, n{old} should follow a leader"
                ));
            }
            let stood = cluster.events.iter().any(|e| {
                e["node"] == old_id.as_str()
                    && e["event"] == "candidate"
                    && e["time_ms"].as_u64().unwrap_or(0) >= cut_at
            });
            if stood {
                cluster.fail(format_args!(
                    "n{old}, cut off and then rejoining, stood for election (printed `candidate`): \
                     its pre-votes should have failed, leaving its term as it was"
                ));
            }
            cluster.check_one_leader_per_term();
        });
    }

    #[test]
    fn no_leader_without_a_majority_and_one_when_it_returns() {
        bounded(LIMIT, || {
            let mut cluster = Cluster::start(&[1, 2, 3], &[]);
            cluster.one_leader(TIMEOUT * 5 / 2 + MARGIN, "after start");
            // Every node alone: 2 of 3 are "down" from each one's point of view.
            cluster.relay.partition(&[&[0], &[1], &[2]]);
            let cut = Instant::now();
            let gone = poll_until(TIMEOUT * 2 + MARGIN, Duration::from_millis(10), || {
                cluster.pump();
                cluster.leaders().is_empty().then_some(())
            });
            if gone.is_none() {
                cluster.fail(format_args!(
                    "every link was cut; the leader should have stepped down"
                ));
            }
            let lease_gone = cut.elapsed();
            let deadline = Instant::now() + TIMEOUT * 4;
            while Instant::now() < deadline {
                cluster.pump();
                if !cluster.leaders().is_empty() {
                    cluster.fail(format_args!(
                        "no node can reach a majority, yet {} became leader ({lease_gone:.2?} after the cut)",
                        cluster.leaders_shown()
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            cluster.relay.partition(&[&[0, 2], &[1]]);
            cluster.one_leader(TIMEOUT * 3 + MARGIN, "after n0 and n2 were joined again");
            cluster.relay.heal();
            cluster.one_leader(TIMEOUT * 3 + MARGIN, "after the heal");
            cluster.check_one_leader_per_term();
        });
    }

    #[test]
    fn the_bully_algorithm_splits_under_a_partition() {
        bounded(LIMIT, || {
            let mut cluster = Cluster::start(&[1, 2, 3], &["--algorithm", "bully"]);
            let leader = cluster.one_leader(TIMEOUT * 5 / 2 + MARGIN, "bully, after start");
            if leader != 2 {
                cluster.fail(format_args!(
                    "the bully algorithm crowns the highest priority, n2; got n{leader}"
                ));
            }
            // The others follow it, and say so.
            let followed = poll_until(TIMEOUT * 2 + MARGIN, Duration::from_millis(10), || {
                cluster.pump();
                cluster.members[..2]
                    .iter()
                    .all(|m| {
                        m.last
                            .as_ref()
                            .is_some_and(|e| e["event"] == "follower" && e["leader"] == "n2")
                    })
                    .then_some(())
            });
            if followed.is_none() {
                cluster.fail(format_args!(
                    "with --algorithm bully, n0 and n1 should print a follower event naming n2 \
                     as their leader once n2 leads"
                ));
            }
            cluster.relay.partition(&[&[2], &[0, 1]]);
            let split = poll_until(TIMEOUT * 3 + MARGIN, Duration::from_millis(10), || {
                cluster.pump();
                (cluster.leaders().len() == 2).then_some(())
            });
            if split.is_none() {
                cluster.fail(format_args!(
                    "with --algorithm bully and n2 cut off, both n2 and n1 should act as leader \
                     (no quorum, no lease): the split brain the chapter shows"
                ));
            }
        });
    }
}

mod stage6_fencing {
    use super::*;

    /// A `resource` store under test, with a client socket.
    fn resource() -> (Program, SocketAddr, UdpPeer) {
        let mut program = Program::start(&bin(), &["resource", "--bind", "127.0.0.1:0"]);
        let addr = program.listening();
        (program, addr, UdpPeer::bind())
    }

    #[track_caller]
    fn call(program: &mut Program, addr: SocketAddr, peer: &UdpPeer, request: Value) -> Value {
        // Asked again every 300 ms until a JSON reply, or until the resource has exited.
        let got = program.poll_while_running(PROMPT, Duration::ZERO, |_| {
            peer.send_json(addr, &request);
            peer.recv(Duration::from_millis(300))
                .and_then(|(bytes, _)| serde_json::from_slice::<Value>(&bytes).ok())
        });
        got.unwrap_or_else(|| {
            program.fail(format_args!(
                "sent {request} to the resource and got no JSON reply"
            ))
        })
    }

    #[test]
    fn the_store_refuses_a_stale_token() {
        bounded(LIMIT, || {
            let (mut program, addr, peer) = resource();
            let write = |token: u64, value: &str| json!({ "op": "write", "token": token, "key": "k", "value": value, "from": "t" });
            let r = call(&mut program, addr, &peer, write(5, "five"));
            assert!(
                r["ok"] == true && r["highest"] == 5,
                "sent {} and got {r}",
                write(5, "five")
            );
            let r = call(&mut program, addr, &peer, write(4, "late"));
            if !(r["ok"] == false && r["highest"] == 5 && r["error"] == "stale token") {
                program.fail(format_args!(
                    "sent {} after token 5 and expected {{\"ok\":false,\"highest\":5,\"error\":\"stale token\"}}, got {r}",
                    write(4, "late")
                ));
            }
            let r = call(&mut program, addr, &peer, write(5, "again"));
            assert!(
                r["ok"] == true,
                "a token equal to the highest is accepted: {r}"
            );
            let r = call(
                &mut program,
                addr,
                &peer,
                json!({ "op": "read", "key": "k" }),
            );
            assert!(
                r["ok"] == true && r["value"] == "again" && r["highest"] == 5,
                "read: {r}"
            );
            let r = call(&mut program, addr, &peer, json!({ "op": "nonsense" }));
            assert!(
                r["ok"] == false && r["error"].is_string(),
                "a malformed request: {r}"
            );
            program.expect_json(
                "{\"event\":\"write\",\"token\":4,\"accepted\":false,...}",
                PROMPT,
                |v| v["event"] == "write" && v["token"] == 4 && v["accepted"] == false,
            );
        });
    }

    #[test]
    fn a_deposed_leaders_token_is_refused() {
        bounded(LIMIT, || {
            let (mut store, store_addr, peer) = resource();
            let flag = store_addr.to_string();
            let mut cluster = Cluster::start(&[1, 2, 3], &["--resource", &flag]);
            let first = cluster.one_leader(TIMEOUT * 5 / 2 + MARGIN, "after start");
            let first_id = cluster.members[first].id.clone();
            let w1 = store.expect_json(
                format_args!("a write from the leader {first_id}"),
                PROMPT,
                |v| {
                    v["event"] == "write" && v["from"] == first_id.as_str() && v["accepted"] == true
                },
            );
            let old_token = w1["token"].as_u64().unwrap_or(0);
            // Pause the leader (its lease frozen in its own eyes), elect another.
            cluster.pause(first);
            let second = poll_until(TIMEOUT * 3 + MARGIN, Duration::from_millis(10), || {
                cluster.pump();
                cluster.leaders().into_iter().find(|&i| i != first)
            });
            let Some(second) = second else {
                cluster.fail(format_args!("n{first} was paused; no one else was elected"));
            };
            let second_id = cluster.members[second].id.clone();
            let w2 = store.expect_json(
                format_args!("a write from the new leader {second_id}"),
                PROMPT,
                |v| {
                    v["event"] == "write"
                        && v["from"] == second_id.as_str()
                        && v["accepted"] == true
                },
            );
            let new_token = w2["token"].as_u64().unwrap_or(0);
            assert!(
                new_token > old_token,
                "the new leader's token {new_token} must exceed {old_token}"
            );
            cluster.resume(first);
            // What the deposed leader would send with its old term is refused.
            let late = json!({ "op": "write", "token": old_token, "key": "leader", "value": first_id, "from": first_id });
            let r = call(&mut store, store_addr, &peer, late.clone());
            if r["ok"] != false {
                store.fail(format_args!(
                    "sent {late} after token {new_token} was used and got {r}"
                ));
            }
            // And every write the store accepted carried a token at least the one before.
            let mut highest = 0;
            let until = Instant::now() + Duration::from_secs(1);
            while Instant::now() < until
                && let Some(line) = store.next_line(Duration::from_millis(200))
            {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if v["accepted"] == true {
                    let t = v["token"].as_u64().unwrap_or(0);
                    assert!(t >= highest, "the store accepted token {t} after {highest}");
                    highest = t;
                }
            }
            cluster.check_one_leader_per_term();
        });
    }

    #[test]
    fn a_new_key_past_max_keys_is_refused() {
        bounded(LIMIT, || {
            let mut program = Program::start(
                &bin(),
                &["resource", "--bind", "127.0.0.1:0", "--max-keys", "2"],
            );
            let addr = program.listening();
            let peer = UdpPeer::bind();
            let write = |key: &str| json!({ "op": "write", "token": 1, "key": key, "value": "v" });
            for key in ["k1", "k2"] {
                let r = call(&mut program, addr, &peer, write(key));
                assert!(r["ok"] == true, "sent {} and got {r}", write(key));
            }
            let r = call(&mut program, addr, &peer, write("k3"));
            if !(r["ok"] == false && r["error"] == "too many keys") {
                program.fail(format_args!(
                    "with --max-keys 2 and two keys written, sent {} and expected \
                     {{\"ok\":false,\"highest\":1,\"error\":\"too many keys\"}}, got {r}",
                    write("k3")
                ));
            }
            let r = call(&mut program, addr, &peer, write("k1"));
            assert!(
                r["ok"] == true,
                "a key already held may be written again: {r}"
            );
        });
    }
}

mod stage7_churn {
    use super::*;

    /// xorshift64: the faults are the same on every run.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    #[test]
    fn one_leader_per_term_through_a_hundred_random_faults() {
        bounded(Duration::from_secs(150), || {
            let mut cluster = Cluster::start(&[1, 2, 3, 4, 5], &["--hold-down", "300ms"]);
            cluster.one_leader(TIMEOUT * 5 / 2 + MARGIN, "after start");
            cluster.relay.set_loss(0.05);
            let mut rng = Rng(0x0008_c4a5_e5ee_d001);
            let mut log = Vec::new();
            for _ in 0..100 {
                let n = cluster.members.len();
                let who = rng.below(n as u64) as usize;
                match rng.below(6) {
                    0 if cluster.members[who].program.is_some() => {
                        cluster.kill(who);
                        log.push(format!("kill n{who}"));
                    }
                    0 | 1 if cluster.members[who].program.is_none() => {
                        cluster.start_member(who);
                        log.push(format!("start n{who}"));
                    }
                    1 if !cluster.members[who].paused => {
                        cluster.pause(who);
                        log.push(format!("pause n{who}"));
                    }
                    2 => {
                        for i in 0..n {
                            if cluster.members[i].paused {
                                cluster.resume(i);
                            }
                        }
                        log.push("resume all".to_owned());
                    }
                    3 | 4 => {
                        let cut = rng.below(n as u64) as usize;
                        let other = (cut + 1 + rng.below(n as u64 - 1) as usize) % n;
                        let rest: Vec<usize> =
                            (0..n).filter(|i| *i != cut && *i != other).collect();
                        cluster.relay.partition(&[&[cut, other], &rest]);
                        let rest: Vec<String> = rest.iter().map(|i| format!("n{i}")).collect();
                        log.push(format!("partition n{cut} n{other} | {}", rest.join(" ")));
                    }
                    _ => {
                        cluster.relay.heal();
                        log.push("heal".to_owned());
                    }
                }
                let pause = Duration::from_millis(50 + rng.below(250));
                let until = Instant::now() + pause;
                while Instant::now() < until {
                    cluster.pump();
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            cluster.relay.set_loss(0.0);
            cluster.relay.heal();
            for i in 0..cluster.members.len() {
                if cluster.members[i].paused {
                    cluster.resume(i);
                }
                if cluster.members[i].program.is_none() {
                    cluster.start_member(i);
                }
            }
            cluster.check_one_leader_per_term();
            cluster.one_leader(
                TIMEOUT * 4 + MARGIN,
                "after the faults stopped and everyone was back",
            );
            cluster.check_one_leader_per_term();
            let leaders = cluster
                .events
                .iter()
                .filter(|e| e["event"] == "leader")
                .count();
            assert!(
                leaders >= 2,
                "100 faults and only {leaders} elections: were faults applied? {}",
                log.join("; ")
            );
        });
    }
}

mod stage8_simulator {
    use super::*;

    /// Runs `leader-election cluster ARGS` to its end and checks its exit code and that its
    /// stdout holds every one of `wanted`.
    fn simulate(args: &[&str], code: i32, wanted: &[&str]) {
        let (heartbeat, timeout) = (ms(HEARTBEAT), ms(TIMEOUT));
        let mut all = vec!["cluster", "--heartbeat", &heartbeat, "--timeout", &timeout];
        all.extend_from_slice(args);
        let mut program = Program::start(&bin(), &all);
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            match program.next_line(Duration::from_millis(200)) {
                Some(line) => out.push(line),
                None if program.exited().is_some() => break,
                None => {}
            }
        }
        let status = program.wait_exit(PROMPT);
        let missing: Vec<&&str> = wanted
            .iter()
            .filter(|w| !out.iter().any(|l| l.contains(**w)))
            .collect();
        if status.and_then(|s| s.code()) != Some(code) || !missing.is_empty() {
            program.fail(format_args!(
                "ran `cluster {}`: expected exit code {code} and stdout lines with {wanted:?}; \
                 it {}, lines missing: {missing:?}, stdout:\n    {}",
                all[1..].join(" "),
                match status {
                    Some(s) => format!("exited ({s})"),
                    None => "was still running after 45s".to_owned(),
                },
                out.join("\n    ")
            ));
        }
    }

    #[test]
    fn the_simulator_finds_the_bully_split_brain() {
        bounded(LIMIT, || {
            simulate(
                &[
                    "--nodes",
                    "3",
                    "--algorithm",
                    "bully",
                    "--duration",
                    "6s",
                    "--at",
                    "3s partition n2|n0,n1",
                ],
                3,
                &["safety: VIOLATED", "both acted as leader"],
            );
        });
    }

    #[test]
    fn the_simulator_finds_the_safe_algorithm_safe_through_a_failover() {
        bounded(LIMIT, || {
            simulate(
                &[
                    "--nodes",
                    "3",
                    "--duration",
                    "8s",
                    "--at",
                    "3s kill leader",
                    "--at",
                    "6s partition n0|n1,n2",
                    "--loss",
                    "0.02",
                ],
                0,
                &["safety: ok", "failovers: 1"],
            );
        });
    }
}
