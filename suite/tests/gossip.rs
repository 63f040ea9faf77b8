//! Project 4, gossip, graded from the outside.
//!
//! Every test starts the real `gossip` binary (the one `WORKBOOK_BIN_GOSSIP` names, or the
//! reference solution). `gossip node` is spoken to as Maelstrom speaks to it, JSON lines on its
//! stdin and stdout; several nodes are wired together by the test itself or by `gossip net`
//! (given complete in the exercise); `gossip simulate` is run with fixed seeds and its JSON is
//! held against the published mathematics. The modules are the stages, in the order the
//! grader reports them; the book's page "The contract" is what they check.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use workbook_suite::maelstrom::{CLIENT, Node};
use workbook_suite::{Program, binary, bounded};

/// JSON values for a failure message, written as JSON, one a line.
fn json_lines<'a>(items: impl IntoIterator<Item = &'a Value>) -> String {
    let lines: Vec<String> = items.into_iter().map(Value::to_string).collect();
    if lines.is_empty() {
        "nothing".to_owned()
    } else {
        format!("\n    {}", lines.join("\n    "))
    }
}

/// A UDP node's answer body, or that none came within `waited`.
fn answer(body: &Option<Value>, waited: Duration) -> String {
    body.as_ref().map_or_else(
        || format!("no answer within {waited:?}"),
        |b| format!("the body {b}"),
    )
}

/// Every test's overall bound.
const LIMIT: Duration = Duration::from_secs(90);

/// The bound of a simulator test: many seeded runs, on a machine that may be busy.
const SIM_LIMIT: Duration = Duration::from_secs(240);

/// How long a test waits for a reply that should come at once.
const PROMPT: Duration = Duration::from_secs(5);

fn bin() -> PathBuf {
    binary("gossip")
}

/// A node started and initialised as `n1` of `n1`, `n2`, `n3`.
fn node_one_of_three(args: &[&str]) -> Node {
    let mut node = Node::start(&bin(), args);
    node.init("n1", &["n1", "n2", "n3"], PROMPT);
    node
}

/// Runs `gossip ARGS...` to its end (within `limit`) and returns its last stdout line as JSON,
/// with the program for diagnoses.
fn run_json(args: &[&str], limit: Duration) -> (Value, Program) {
    let mut program = Program::start(&bin(), args);
    let Some(_) = program.wait_exit(limit) else {
        program.fail(format_args!(
            "expected the command to finish within {limit:?}"
        ));
    };
    // The program has ended: its stdout ends as soon as the reader thread has read it all,
    // and `next_line` returns `None` at once then; the timeout only bounds a stuck pipe.
    let mut last = None;
    while let Some(line) = program.next_line(Duration::from_secs(10)) {
        last = Some(line);
    }
    let Some(line) = last else {
        program.fail("expected a JSON document on stdout, got nothing");
    };
    match serde_json::from_str::<Value>(&line) {
        Ok(v) => (v, program),
        Err(e) => program.fail(format_args!(
            "expected the last stdout line to be JSON ({e}), got {}",
            workbook_suite::maelstrom::clip(&line)
        )),
    }
}

mod stage1_init_echo {
    use super::*;

    #[test]
    fn init_is_answered_with_init_ok() {
        bounded(LIMIT, || {
            let mut node = Node::start(&bin(), &[]);
            let reply = node.request(
                json!({ "type": "init", "node_id": "n3", "node_ids": ["n1", "n2", "n3"] }),
                PROMPT,
            );
            assert!(reply["body"]["type"] == "init_ok", "sent init, got {reply}");
            assert!(
                reply["src"] == "n3",
                "the reply's src must be the node's id: {reply}"
            );
            assert!(
                reply["dest"] == CLIENT,
                "the reply goes to its requester: {reply}"
            );
        });
    }

    #[test]
    fn echo_returns_the_same_value() {
        bounded(LIMIT, || {
            let mut node = node_one_of_three(&[]);
            for echo in [
                json!("please echo 35"),
                json!({ "nested": [1, 2, { "x": null }] }),
            ] {
                let reply = node.request(json!({ "type": "echo", "echo": echo }), PROMPT);
                let body = &reply["body"];
                assert!(body["type"] == "echo_ok", "sent an echo, got {reply}");
                assert!(
                    body["echo"] == echo,
                    "echo_ok must carry the same echo: {reply}"
                );
                assert!(
                    reply["src"] == "n1",
                    "sent an echo to n1: expected the reply from n1, got {reply}"
                );
            }
        });
    }

    #[test]
    fn replies_carry_their_own_distinct_msg_ids() {
        bounded(LIMIT, || {
            let mut node = node_one_of_three(&[]);
            let mut ids = Vec::new();
            for i in 0..5 {
                let reply = node.request(json!({ "type": "echo", "echo": i }), PROMPT);
                let Some(id) = reply["body"]["msg_id"].as_u64() else {
                    panic!("every reply needs an integer msg_id of its own, got {reply}");
                };
                ids.push(id);
            }
            let mut unique = ids.clone();
            unique.dedup();
            assert_eq!(
                unique.len(),
                ids.len(),
                "msg_ids must be unique per node: {ids:?}"
            );
        });
    }

    #[test]
    fn a_request_before_init_gets_error_11() {
        bounded(LIMIT, || {
            let mut node = Node::start(&bin(), &[]);
            let reply = node.request(json!({ "type": "read" }), PROMPT);
            assert!(
                reply["body"]["type"] == "error",
                "sent read before init, got {reply}"
            );
            assert!(
                reply["body"]["code"] == 11,
                "temporarily-unavailable is 11: {reply}"
            );
            node.init("n1", &["n1"], PROMPT);
        });
    }

    #[test]
    fn an_unknown_type_gets_error_10_and_the_node_lives_on() {
        bounded(LIMIT, || {
            let mut node = node_one_of_three(&[]);
            let reply = node.request(json!({ "type": "cas", "key": 1 }), PROMPT);
            assert!(
                reply["body"]["type"] == "error",
                "sent type cas, got {reply}"
            );
            assert!(reply["body"]["code"] == 10, "not-supported is 10: {reply}");
            let reply = node.request(json!({ "type": "echo", "echo": "still here" }), PROMPT);
            assert!(
                reply["body"]["echo"] == "still here",
                "after the unsupported request, sent an echo of \"still here\": got {reply}"
            );
        });
    }

    #[test]
    fn the_node_ends_cleanly_when_its_input_ends() {
        bounded(LIMIT, || {
            let mut node = node_one_of_three(&[]);
            node.close_stdin();
            match node.program.wait_exit(PROMPT) {
                Some(status) if status.success() => {}
                Some(status) => node.program.fail(format_args!(
                    "after stdin closed, expected exit status 0, got {status}"
                )),
                None => node
                    .program
                    .fail("after stdin closed, expected the node to exit within 5s"),
            }
        });
    }
    #[test]
    fn a_request_without_msg_id_gets_no_reply() {
        bounded(LIMIT, || {
            let mut node = node_one_of_three(&[]);
            let silent = json!({ "src": CLIENT, "dest": "n1",
                "body": { "type": "echo", "echo": "no msg_id" } });
            node.send_line(&silent.to_string());
            let msg_id = node.send_from(CLIENT, json!({ "type": "echo", "echo": "with msg_id" }));
            // Lines are handled in order: a reply to the first comes before the second's.
            let deadline = Instant::now() + PROMPT;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let Some(line) = node.program.next_line(left) else {
                    node.program.fail(format_args!(
                        "sent {silent}, then an echo with msg_id {msg_id}; expected the \
                         second's echo_ok within {PROMPT:?}, nothing came"
                    ));
                };
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if v["dest"] != CLIENT {
                    continue;
                }
                if v["body"]["in_reply_to"] == msg_id {
                    break;
                }
                node.program.fail(format_args!(
                    "sent {silent} (no msg_id: it gets no reply), then an echo with msg_id \
                     {msg_id}; before the second's reply came {line}"
                ));
            }
        });
    }

    #[test]
    fn error_11_comes_from_the_requests_dest() {
        bounded(LIMIT, || {
            let mut node = Node::start(&bin(), &[]);
            node.id = "n7".to_owned();
            let reply = node.request(json!({ "type": "echo", "echo": 1 }), PROMPT);
            assert!(
                reply["body"]["code"] == 11,
                "sent an echo to n7 before init, expected error 11, got {reply}"
            );
            assert!(
                reply["src"] == "n7",
                "sent an echo to n7 before init: a node without an id answers from the \
                 request's dest, got {reply}"
            );
        });
    }
}

mod stage2_one_node {
    use super::*;

    #[test]
    fn broadcast_is_acknowledged_and_read_returns_it() {
        bounded(LIMIT, || {
            let mut node = node_one_of_three(&[]);
            for v in [1000, 7, 42] {
                let reply = node.request(json!({ "type": "broadcast", "message": v }), PROMPT);
                assert!(
                    reply["body"]["type"] == "broadcast_ok",
                    "broadcast {v}: {reply}"
                );
            }
            let read = node.read(PROMPT);
            assert!(
                read == vec![7, 42, 1000],
                "broadcast 1000, 7 and 42: expected read to give [7, 42, 1000] (sorted), got {read:?}"
            );
        });
    }

    #[test]
    fn read_lists_each_value_once() {
        bounded(LIMIT, || {
            let mut node = node_one_of_three(&[]);
            for _ in 0..3 {
                node.request(json!({ "type": "broadcast", "message": 5 }), PROMPT);
            }
            let read = node.read(PROMPT);
            assert!(
                read == vec![5],
                "a value broadcast three times: expected read to give [5] (sorted), got {read:?}"
            );
        });
    }

    #[test]
    fn topology_is_acknowledged_and_keeps_the_values() {
        bounded(LIMIT, || {
            let mut node = node_one_of_three(&[]);
            node.request(json!({ "type": "broadcast", "message": 1 }), PROMPT);
            let topology = json!({ "n1": ["n2", "n3"], "n2": ["n1"], "n3": ["n1"] });
            let reply = node.request(json!({ "type": "topology", "topology": topology }), PROMPT);
            assert!(
                reply["body"]["type"] == "topology_ok",
                "sent a topology, got {reply}"
            );
            node.request(json!({ "type": "broadcast", "message": 2 }), PROMPT);
            let read = node.read(PROMPT);
            assert!(
                read == vec![1, 2],
                "broadcast 1, a topology, then 2: expected read to give [1, 2] (sorted), got {read:?}"
            );
        });
    }

    #[test]
    fn a_single_node_cluster_works_alone() {
        bounded(LIMIT, || {
            let mut node = Node::start(&bin(), &[]);
            node.init("n0", &["n0"], PROMPT);
            let topology = json!({ "n0": [] });
            node.request(json!({ "type": "topology", "topology": topology }), PROMPT);
            for v in 0..20 {
                node.request(json!({ "type": "broadcast", "message": v }), PROMPT);
            }
            let read = node.read(PROMPT);
            assert!(
                read == (0..20).collect::<Vec<i64>>(),
                "a single-node cluster, broadcast 0 to 19: expected read to give 0 to 19 (sorted), got {read:?}"
            );
        });
    }

    #[test]
    fn malformed_requests_get_error_12() {
        bounded(LIMIT, || {
            let mut node = node_one_of_three(&[]);
            let bad = [
                json!({ "type": "broadcast" }),
                json!({ "type": "broadcast", "message": "seven" }),
                json!({ "type": "broadcast", "message": 1.5 }),
                json!({ "type": "topology", "topology": ["n2"] }),
                json!({ "type": "echo" }),
            ];
            for body in bad {
                let reply = node.request(body.clone(), PROMPT);
                assert!(reply["body"]["type"] == "error", "sent {body}, got {reply}");
                assert!(
                    reply["body"]["code"] == 12,
                    "malformed-request is 12: sent {body}, got {reply}"
                );
            }
            let read = node.read(PROMPT);
            assert!(
                read == Vec::<i64>::new(),
                "nothing bad was stored: expected read to give [] (sorted), got {read:?}"
            );
        });
    }

    #[test]
    fn garbage_lines_are_survived() {
        bounded(LIMIT, || {
            let mut node = node_one_of_three(&[]);
            for line in [
                "not json at all",
                "",
                "[1,2,3]",
                "{\"src\":\"c1\"}",
                "{\"src\":\"c1\",\"dest\":\"n1\",\"body\":\"read\"}",
                "{\"src\":\"c1\",\"dest\":\"n1\",\"body\":{\"type\":\"bro",
                "\u{0}\u{1}\u{2}",
            ] {
                node.send_line(line);
            }
            node.request(json!({ "type": "broadcast", "message": 9 }), PROMPT);
            let read = node.read(PROMPT);
            assert!(
                read == vec![9],
                "the node must survive every bad line: expected read to give [9] (sorted), got {read:?}"
            );
        });
    }

    #[test]
    fn a_huge_line_is_discarded_and_the_node_lives_on() {
        bounded(LIMIT, || {
            let mut node = node_one_of_three(&["--max-line", "64KiB"]);
            let huge = format!(
                "{{\"src\":\"c1\",\"dest\":\"n1\",\"body\":{{\"type\":\"echo\",\"msg_id\":999,\"echo\":\"{}\"}}}}",
                "x".repeat(4 << 20)
            );
            node.send_line(&huge);
            node.request(json!({ "type": "broadcast", "message": 3 }), PROMPT);
            let read = node.read(PROMPT);
            assert!(
                read == vec![3],
                "after a 4 MiB line, with --max-line 64KiB: expected read to give [3] (sorted), got {read:?}"
            );
            let echoed = node
                .program
                .seen()
                .iter()
                .any(|l| l.contains("\"in_reply_to\":999"));
            assert!(
                !echoed,
                "a line over --max-line must be discarded, not answered"
            );
        });
    }

    #[test]
    fn a_flood_of_requests_is_answered_in_full() {
        bounded(LIMIT, || {
            let mut node = node_one_of_three(&[]);
            let n = 5000;
            let first = node.send_from(CLIENT, json!({ "type": "broadcast", "message": 0 }));
            for v in 1..n {
                node.send_from(CLIENT, json!({ "type": "broadcast", "message": v }));
            }
            let last = first + n as u64 - 1;
            node.expect_reply(
                last,
                "the last of 5000 broadcasts sent without waiting",
                PROMPT * 4,
            );
            let answered = node
                .program
                .seen()
                .iter()
                .filter(|l| l.contains("broadcast_ok"))
                .count();
            assert_eq!(
                answered, n as usize,
                "5000 broadcasts, every one acknowledged"
            );
            let read = node.read(PROMPT);
            assert!(
                read == (0..n).collect::<Vec<i64>>(),
                "5000 broadcasts: expected read to give 0 to 4999, got {} values, missing {:?}",
                read.len(),
                (0..n)
                    .filter(|v| !read.contains(v))
                    .take(10)
                    .collect::<Vec<i64>>()
            );
        });
    }

    #[test]
    fn seeded_random_lines_do_not_kill_the_node() {
        bounded(LIMIT, || {
            let mut node = node_one_of_three(&[]);
            node.request(json!({ "type": "broadcast", "message": 77 }), PROMPT);
            // A fixed-seed LCG over the bytes JSON is made of, so that failures reproduce.
            let alphabet = b"{}[]\":,0123456789.-eE truefalsnul\\srcdestbodytypemsg_id";
            let mut x: u64 = 0x2545_f491_4f6c_dd1d;
            for _ in 0..500 {
                let mut line = String::new();
                for _ in 0..(x % 120) {
                    x = x
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    line.push(alphabet[(x >> 33) as usize % alphabet.len()] as char);
                }
                node.send_line(&line);
                node.send_line(&format!(
                    "{{\"src\":\"c1\",\"dest\":\"n1\",\"body\":{line}}}"
                ));
            }
            let read = node.read(PROMPT);
            assert!(
                read == vec![77],
                "after 1000 random lines: expected read to give [77] (sorted), got {read:?}"
            );
        });
    }
}

mod stage3_many_nodes {
    use super::*;

    /// Moves every line any node prints to the node it is addressed to, and reads every node
    /// every 200ms, until every node reads `want` or `within` passes. Returns what each node
    /// read last.
    fn relay_until(nodes: &mut [Node], want: &[i64], within: Duration) -> Vec<Option<Vec<i64>>> {
        let deadline = Instant::now() + within;
        let mut next_read = Instant::now();
        let mut asked: Vec<Option<u64>> = vec![None; nodes.len()];
        let mut last: Vec<Option<Vec<i64>>> = vec![None; nodes.len()];
        while Instant::now() < deadline {
            if last.iter().all(|l| l.as_deref() == Some(want)) {
                break;
            }
            if Instant::now() >= next_read {
                next_read = Instant::now() + Duration::from_millis(200);
                for (n, a) in nodes.iter_mut().zip(&mut asked) {
                    *a = Some(n.send_from(CLIENT, json!({ "type": "read" })));
                }
            }
            for i in 0..nodes.len() {
                while let Some(line) = nodes[i].program.next_line(Duration::from_millis(2)) {
                    let Ok(v) = serde_json::from_str::<Value>(&line) else {
                        continue;
                    };
                    let dest = v["dest"].as_str().unwrap_or("").to_owned();
                    if let Some(j) = nodes.iter().position(|n| n.id == dest) {
                        nodes[j].send_line(&line);
                    } else if dest == CLIENT
                        && v["body"]["type"] == "read_ok"
                        && v["body"]["in_reply_to"].as_u64() == asked[i]
                    {
                        let mut values: Vec<i64> = v["body"]["messages"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_i64)
                            .collect();
                        values.sort_unstable();
                        last[i] = Some(values);
                    }
                }
            }
        }
        last
    }

    #[test]
    fn a_value_broadcast_to_one_node_reaches_the_others() {
        bounded(LIMIT, || {
            let ids = ["n1", "n2", "n3"];
            let mut nodes: Vec<Node> = ids
                .iter()
                .map(|id| {
                    let mut n = Node::start(&bin(), &[]);
                    n.init(id, &ids, PROMPT);
                    n
                })
                .collect();
            let topology = json!({ "n1": ["n2"], "n2": ["n1", "n3"], "n3": ["n2"] });
            for n in &mut nodes {
                n.request(json!({ "type": "topology", "topology": topology }), PROMPT);
            }
            nodes[0].request(json!({ "type": "broadcast", "message": 11 }), PROMPT);
            nodes[2].request(json!({ "type": "broadcast", "message": 33 }), PROMPT);
            let last = relay_until(&mut nodes, &[11, 33], Duration::from_secs(10));
            if !last.iter().all(|l| l.as_deref() == Some(&[11, 33][..])) {
                nodes[0].program.fail(format_args!(
                    "broadcast 11 to n1 and 33 to n3, relayed every node-to-node message for \
                     10s; expected every node to read [11, 33], they read {}",
                    last.iter()
                        .enumerate()
                        .map(|(i, read)| match read {
                            Some(values) => format!("n{} {values:?}", i + 1),
                            None => format!("n{} nothing (no read_ok)", i + 1),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        });
    }

    #[test]
    fn nodes_gossip_to_peers_not_to_the_client() {
        bounded(LIMIT, || {
            let mut node = node_one_of_three(&[]);
            node.request(json!({ "type": "broadcast", "message": 8 }), PROMPT);
            let out = node.drain(Duration::from_secs(3));
            let to_peers = out
                .iter()
                .filter(|v| v["dest"] == "n2" || v["dest"] == "n3")
                .count();
            assert!(
                to_peers > 0,
                "after a broadcast, expected messages to n2 or n3 within 3s, got {}",
                json_lines(&out)
            );
            let stray = out.iter().find(|v| {
                !["n2", "n3"].contains(&v["dest"].as_str().unwrap_or("")) || v["src"] != "n1"
            });
            assert!(
                stray.is_none(),
                "a node sends only to the cluster, as itself; it sent {}",
                json_lines(stray)
            );
        });
    }

    /// Addresses on 127.0.0.1 that were free a moment ago (each from port 0), for UDP nodes
    /// that must know each other's addresses before they start.
    fn free_udp_addrs(n: usize) -> Vec<std::net::SocketAddr> {
        let sockets: Vec<std::net::UdpSocket> = (0..n)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("a free UDP port"))
            .collect();
        sockets
            .iter()
            .map(|s| s.local_addr().expect("a bound address"))
            .collect()
    }

    /// Asks `node` over UDP with `body` (from client `c1`) and returns the reply's body.
    fn ask_udp(
        client: &workbook_suite::udp::UdpPeer,
        node: std::net::SocketAddr,
        msg_id: u64,
        body: Value,
    ) -> Option<Value> {
        let mut body = body;
        body["msg_id"] = json!(msg_id);
        let dest = node.to_string();
        client.send_json(node, &json!({ "src": CLIENT, "dest": dest, "body": body }));
        let deadline = Instant::now() + Duration::from_millis(500);
        while let Some((bytes, _)) = client.recv(deadline.saturating_duration_since(Instant::now()))
        {
            let Ok(reply) = serde_json::from_slice::<Value>(&bytes) else {
                continue;
            };
            if reply["body"]["in_reply_to"].as_u64() == Some(msg_id) {
                return Some(reply["body"].clone());
            }
        }
        None
    }

    #[test]
    fn three_nodes_over_udp_spread_a_broadcast() {
        bounded(LIMIT, || {
            let addrs = free_udp_addrs(3);
            let mut programs: Vec<Program> = Vec::new();
            for (i, addr) in addrs.iter().enumerate() {
                let bind = addr.to_string();
                let peers: Vec<String> = addrs
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, a)| a.to_string())
                    .collect();
                let peers = peers.join(",");
                let args = [
                    "node",
                    "--udp",
                    "--bind",
                    &bind,
                    "--peers",
                    &peers,
                    "--overlay",
                    "random",
                    "--interval",
                    "50ms",
                ];
                let mut program = Program::start(&bin(), &args);
                let said = program.listening();
                if said != *addr {
                    program.fail(format_args!(
                        "started `gossip {}`; expected `listening on {addr}`, got {said}",
                        args.join(" ")
                    ));
                }
                programs.push(program);
            }
            let client = workbook_suite::udp::UdpPeer::bind();
            let sent = json!({ "type": "broadcast", "message": 77 });
            let ok = programs[0].poll_while_running(
                Duration::from_secs(5),
                Duration::from_millis(50),
                |_| ask_udp(&client, addrs[0], 1, sent.clone()),
            );
            if ok.as_ref().map(|b| b["type"].clone()) != Some(json!("broadcast_ok")) {
                programs[0].fail(format_args!(
                    "sent the datagram {{\"src\":\"c1\",\"dest\":\"{}\",\"body\":{sent}}} to \
                     the first UDP node; expected a broadcast_ok datagram back, got {}",
                    addrs[0],
                    answer(&ok, Duration::from_secs(5))
                ));
            }
            let mut msg_id = 10;
            for (i, addr) in addrs.iter().enumerate().skip(1) {
                let read = programs[i].poll_while_running(
                    Duration::from_secs(10),
                    Duration::from_millis(50),
                    |_| {
                        msg_id += 1;
                        let body = ask_udp(&client, *addr, msg_id, json!({ "type": "read" }))?;
                        (body["messages"] == json!([77])).then_some(body)
                    },
                );
                if read.is_none() {
                    programs[i].fail(format_args!(
                        "broadcast 77 to the UDP node {}; expected `read` of the UDP node {addr} \
                         to return [77] within 10s",
                        addrs[0]
                    ));
                }
            }
            client.send(addrs[1], b"{ not json");
            client.send(addrs[1], &[0xff; 100]);
            let stats = ask_udp(&client, addrs[0], 99, json!({ "type": "stats" }));
            let peers_sent = stats.as_ref().and_then(|b| b["sent"].as_u64()).unwrap_or(0);
            if peers_sent == 0 {
                programs[0].fail(format_args!(
                    "after its broadcast spread, expected `stats` of the UDP node {} to answer \
                     stats_ok with sent > 0, got {}",
                    addrs[0],
                    answer(&stats, Duration::from_millis(500))
                ));
            }
            msg_id += 1;
            let echo = ask_udp(
                &client,
                addrs[1],
                msg_id,
                json!({ "type": "echo", "echo": 5 }),
            );
            if echo.as_ref().map(|b| b["echo"].clone()) != Some(json!(5)) {
                programs[1].fail(format_args!(
                    "sent two garbage datagrams to the UDP node {}, then an echo; expected \
                     echo_ok with echo 5, got {}",
                    addrs[1],
                    answer(&echo, Duration::from_millis(500))
                ));
            }
        });
    }

    #[test]
    fn no_message_carries_more_than_max_batch_values() {
        bounded(LIMIT, || {
            let mut node = node_one_of_three(&["--max-batch", "3"]);
            let want: Vec<i64> = (101..=110).collect();
            let mut asked = Vec::new();
            for &v in &want {
                asked.push(node.send_from(CLIENT, json!({ "type": "broadcast", "message": v })));
            }
            // Nothing is acknowledged, so every value is sent to n2 and n3 again and again.
            let mut seen: [std::collections::BTreeSet<i64>; 2] = Default::default();
            let mut acked = 0;
            let deadline = Instant::now() + Duration::from_secs(10);
            while acked < asked.len() || seen.iter().any(|s| s.len() < want.len()) {
                let left = deadline.saturating_duration_since(Instant::now());
                let Some(line) = node.program.next_line(left) else {
                    node.program.fail(format_args!(
                        "a node run with --max-batch 3 (n1 of n1, n2, n3): broadcast 101..=110 \
                         without waiting; expected 10 broadcast_ok and every value sent to \
                         both n2 and n3 within 10s; got {acked} broadcast_ok, n2 was sent \
                         {:?}, n3 {:?}",
                        seen[0], seen[1]
                    ));
                };
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let peer = match v["dest"].as_str() {
                    Some("n2") => 0,
                    Some("n3") => 1,
                    _ => {
                        if v["body"]["type"] == "broadcast_ok" {
                            acked += 1;
                        }
                        continue;
                    }
                };
                let body = v["body"].as_object().cloned().unwrap_or_default();
                for (field, value) in &body {
                    let Some(items) = value.as_array() else {
                        continue;
                    };
                    if items.len() > 3 {
                        node.program.fail(format_args!(
                            "a node run with --max-batch 3 sent an array of {} items (`{field}`) \
                             in {line}: no message carries more than --max-batch values",
                            items.len()
                        ));
                    }
                    seen[peer].extend(items.iter().filter_map(Value::as_i64));
                }
            }
        });
    }

    #[test]
    fn five_nodes_under_net_without_faults() {
        bounded(LIMIT, || {
            let (report, mut program) = run_json(
                &[
                    "net",
                    "--nodes",
                    "5",
                    "--latency",
                    "10ms",
                    "--rate",
                    "50",
                    "--time-limit",
                    "2s",
                    "--seed",
                    "3",
                ],
                Duration::from_secs(60),
            );
            if report["valid"] != true {
                program.fail(format_args!(
                    "gossip net found an invalid history: {report}"
                ));
            }
            assert!(
                report["acknowledged"].as_u64().unwrap_or(0) > 20,
                "{report}"
            );
            // The report's figures hold together: 50 operations a second for 2 s, each a
            // broadcast or a read, and on a network without faults nothing dropped.
            let n = |field: &str| report[field].as_u64();
            let (ops, broadcasts, reads) = (n("ops"), n("broadcasts"), n("reads"));
            let consistent = ops.is_some_and(|ops| (80..=120).contains(&ops))
                && broadcasts.zip(reads).map(|(b, r)| b + r) == ops
                && n("acknowledged") <= broadcasts
                && n("errors") == Some(0)
                && n("dropped") == Some(0)
                && report["msgs_per_op"].as_f64().is_some_and(|per| {
                    let want = n("server_msgs").unwrap_or(0) as f64 / ops.unwrap_or(1) as f64;
                    (per - want).abs() < 0.01
                })
                && report["converged_after_ms"].is_number();
            if !consistent {
                program.fail(format_args!(
                    "gossip net --nodes 5 --rate 50 --time-limit 2s without faults: expected about \
                     100 ops, ops = broadcasts + reads, acknowledged <= broadcasts, no errors, \
                     nothing dropped, msgs_per_op = server_msgs / ops and a convergence time; \
                     got {report}"
                ));
            }
        });
    }

    #[test]
    fn twenty_five_nodes_under_net_with_latency() {
        bounded(LIMIT, || {
            let (report, mut program) = run_json(
                &[
                    "net",
                    "--nodes",
                    "25",
                    "--latency",
                    "100ms",
                    "--rate",
                    "100",
                    "--time-limit",
                    "3s",
                    "--seed",
                    "5",
                ],
                Duration::from_secs(60),
            );
            if report["valid"] != true {
                program.fail(format_args!(
                    "gossip net found an invalid history: {report}"
                ));
            }
        });
    }
}

mod stage4_faults {
    use super::*;

    #[test]
    fn values_survive_message_loss() {
        bounded(LIMIT, || {
            let (report, mut program) = run_json(
                &[
                    "net",
                    "--nodes",
                    "10",
                    "--latency",
                    "20ms",
                    "--loss",
                    "0.3",
                    "--rate",
                    "50",
                    "--time-limit",
                    "3s",
                    "--seed",
                    "7",
                ],
                Duration::from_secs(60),
            );
            if report["valid"] != true {
                program.fail(format_args!(
                    "with 30% of node-to-node messages lost: {report}"
                ));
            }
            assert!(
                report["dropped"].as_u64().unwrap_or(0) > 0,
                "net dropped nothing: {report}"
            );
        });
    }

    #[test]
    fn values_survive_a_healed_partition() {
        bounded(LIMIT, || {
            let (report, mut program) = run_json(
                &[
                    "net",
                    "--nodes",
                    "10",
                    "--latency",
                    "20ms",
                    "--partition",
                    "0s..3s",
                    "--rate",
                    "50",
                    "--time-limit",
                    "3s",
                    "--seed",
                    "9",
                ],
                Duration::from_secs(60),
            );
            if report["valid"] != true {
                program.fail(format_args!(
                    "partitioned for the whole workload, then healed: {report}"
                ));
            }
        });
    }

    #[test]
    fn values_survive_loss_and_partitions_together() {
        bounded(LIMIT, || {
            let (report, mut program) = run_json(
                &[
                    "net",
                    "--nodes",
                    "25",
                    "--latency",
                    "50ms",
                    "--loss",
                    "0.2",
                    "--partition",
                    "0s..1500ms",
                    "--partition",
                    "2s..3s",
                    "--rate",
                    "100",
                    "--time-limit",
                    "3s",
                    "--seed",
                    "11",
                ],
                Duration::from_secs(60),
            );
            if report["valid"] != true {
                program.fail(format_args!("20% loss and two partitions: {report}"));
            }
        });
    }

    #[test]
    fn anti_entropy_alone_repairs_what_was_lost() {
        bounded(LIMIT, || {
            // `--retry 1h`: a lost `gossip` is never sent again within the test, so only the
            // digests (`--anti-entropy`) can bring the values it carried.
            let (report, mut program) = run_json(
                &[
                    "net",
                    "--nodes",
                    "10",
                    "--latency",
                    "20ms",
                    "--loss",
                    "0.3",
                    "--partition",
                    "0s..1s",
                    "--rate",
                    "50",
                    "--time-limit",
                    "3s",
                    "--settle",
                    "15s",
                    "--seed",
                    "13",
                    "--",
                    "--retry",
                    "1h",
                    "--anti-entropy",
                    "300ms",
                ],
                Duration::from_secs(60),
            );
            if report["valid"] != true || report["converged_after_ms"].is_null() {
                program.fail(format_args!(
                    "30% loss and a partition, nodes run with `--retry 1h --anti-entropy 300ms` \
                     (no retries: only anti-entropy can repair); expected every acknowledged \
                     value on every node within the 15s settle, got: {report}"
                ));
            }
            assert!(
                report["dropped"].as_u64().unwrap_or(0) > 0,
                "net dropped nothing: {report}"
            );
        });
    }
}

mod stage5_efficiency {
    use super::*;

    /// The 3d/3e workload. The settle is long because a busy machine can leave the nodes
    /// seconds behind (then the run is slow, not wrong); it ends as soon as every node has
    /// every value, so a healthy run never waits it out.
    fn efficiency_run(seed: &str) -> Value {
        let (report, mut program) = run_json(
            &[
                "net",
                "--nodes",
                "25",
                "--latency",
                "100ms",
                "--rate",
                "100",
                "--time-limit",
                "5s",
                "--settle",
                "30s",
                "--seed",
                seed,
            ],
            Duration::from_secs(75),
        );
        if report["valid"] != true {
            program.fail(format_args!(
                "the efficiency run's history is invalid: {report}"
            ));
        }
        report
    }

    #[test]
    fn fewer_than_20_messages_per_operation() {
        bounded(LIMIT, || {
            let report = efficiency_run("13");
            let per_op = report["msgs_per_op"].as_f64().unwrap_or(f64::INFINITY);
            // Shown with `--nocapture`, for flake checks that look at the spread.
            eprintln!("msgs-per-op {per_op:.2}, behind_ms {}", report["behind_ms"]);
            assert!(
                per_op < 20.0,
                "25 nodes, 100ms latency, 100 ops/s: expected msgs-per-op below 20 (challenge 3e; \
                 3d asks below 30), got {per_op:.2}: {report}"
            );
        });
    }

    #[test]
    fn values_become_visible_everywhere_within_a_generous_bound() {
        bounded(LIMIT, || {
            let report = efficiency_run("17");
            let q = &report["stable_latency_ms"];
            let (p50, max) = (
                q["p50"].as_f64().unwrap_or(f64::INFINITY),
                q["max"].as_f64().unwrap_or(f64::INFINITY),
            );
            eprintln!(
                "stable latency p50 {p50} max {max}, msgs-per-op {}, behind_ms {}",
                report["msgs_per_op"], report["behind_ms"]
            );
            // The targets are 400ms/600ms (3d) and 1s/2s (3e); on a loaded machine, in a
            // debug build, the test only asks for the looser with room to spare.
            assert!(
                p50 < 1500.0 && max < 4000.0,
                "expected stable latency p50 below 1500ms and max below 4000ms, got p50 {p50} \
                 max {max}: {report}"
            );
        });
    }
}

mod stage6_simulator {
    use super::*;

    /// `gossip simulate ARGS --no-curves` (unless `curves`), its JSON.
    fn sim(args: &[&str], curves: bool) -> Value {
        let mut all = vec!["simulate"];
        all.extend_from_slice(args);
        if !curves {
            all.push("--no-curves");
        }
        run_json(&all, Duration::from_secs(200)).0
    }

    fn rounds(doc: &Value) -> Vec<f64> {
        doc["runs"]
            .as_array()
            .map(|runs| runs.iter().filter_map(|r| r["rounds"].as_f64()).collect())
            .unwrap_or_default()
    }

    fn mean(xs: &[f64]) -> f64 {
        xs.iter().sum::<f64>() / xs.len().max(1) as f64
    }

    #[test]
    fn arguments_out_of_range_are_refused() {
        bounded(SIM_LIMIT, || {
            let doc = sim(&["--nodes", "100", "--runs", "2", "--seed", "1"], false);
            assert!(
                doc["summary"]["runs"] == 2,
                "simulate --nodes 100 --runs 2: expected a summary of 2 runs, got {doc}"
            );
            for (args, flag) in [
                (&["--nodes", "1"][..], "--nodes"),
                (&["--nodes", "100", "--loss", "1"][..], "--loss"),
                (&["--nodes", "100", "--crashed", "1"][..], "--crashed"),
                (
                    &["--nodes", "100", "--mode", "pull", "--stop", "blind-coin"][..],
                    "--mode push",
                ),
            ] {
                let mut all = vec!["simulate", "--no-curves"];
                all.extend_from_slice(args);
                let mut program = Program::start(&bin(), &all);
                let status = program.wait_exit(Duration::from_secs(30));
                let stderr = program.final_stderr();
                if status.is_none_or(|s| s.success()) || !stderr.contains(flag) {
                    program.fail(format_args!(
                        "gossip {}: expected a refusal naming `{flag}` on stderr and a \
                         non-zero exit status; got {status:?}",
                        all.join(" ")
                    ));
                }
            }
        });
    }

    #[test]
    fn the_theory_block_holds_the_closed_forms() {
        bounded(SIM_LIMIT, || {
            let n = 10_000.0f64;
            let args = [
                "--nodes",
                "10000",
                "--runs",
                "1",
                "--seed",
                "1",
                "--stop",
                "feedback-coin",
            ];
            let doc = sim(&args, true);
            let theory = &doc["theory"];
            let close = |field: &str, want: f64| {
                theory[field]
                    .as_f64()
                    .is_some_and(|got| (got - want).abs() < 1e-6 * want.abs().max(1.0))
            };
            // Demers et al.: the residue s of feedback-coin with k = 1 solves s = e^(-2(1-s)).
            let mut residue = 0.0f64;
            for _ in 0..200 {
                residue = (-2.0 * (1.0 - residue)).exp();
            }
            // The expected informed fraction of push, round by round: p' = p (1 - 1/N)^(N(1-p)).
            let mut p = 1.0 - 1.0 / n;
            let mut want_curve = vec![1.0 - p];
            while 1.0 - p < 0.999 {
                p *= (1.0 - 1.0 / n).powf(n * (1.0 - p));
                want_curve.push(1.0 - p);
            }
            let curve: Vec<f64> = theory["curve"]
                .as_array()
                .map(|c| c.iter().filter_map(Value::as_f64).collect())
                .unwrap_or_default();
            let curve_ok = curve.len() >= want_curve.len()
                && want_curve
                    .iter()
                    .zip(&curve)
                    .all(|(want, got)| (want - got).abs() < 1e-6);
            let ok = close("pittel_rounds", n.log2() + n.ln())
                && close("dk_lower", n.log2().floor() + n.ln() - 1.116)
                && close("dk_upper", n.log2().ceil() + n.ln() + 2.765)
                && close("rumor_residue", residue)
                && curve_ok;
            assert!(
                ok,
                "simulate {}: expected theory.pittel_rounds log2 N + ln N, dk_lower and \
                 dk_upper from Doerr and Kuennemann, rumor_residue {residue:.5} and the push \
                 curve starting {:?}; got {theory}",
                args.join(" "),
                &want_curve[..4]
            );
        });
    }

    #[test]
    fn push_on_the_complete_graph_meets_doerr_kuennemann() {
        bounded(SIM_LIMIT, || {
            for (n, runs) in [(10_000.0f64, "200"), (100_000.0, "20")] {
                let doc = sim(
                    &["--nodes", &n.to_string(), "--runs", runs, "--seed", "1"],
                    false,
                );
                let r = rounds(&doc);
                assert_eq!(
                    r.len().to_string(),
                    runs,
                    "every run must inform every node: {doc}"
                );
                let m = mean(&r);
                // E[S_N] bounds (Doerr and Kuennemann 2014). The sample mean's standard error
                // is sd/sqrt(runs) with sd about 1.2 rounds; 4 standard errors of slack.
                let (lo, hi) = (
                    n.log2().floor() + n.ln() - 1.116,
                    n.log2().ceil() + n.ln() + 2.765,
                );
                let slack = 4.0 * 1.2 / (r.len() as f64).sqrt();
                assert!(
                    m >= lo - slack && m <= hi + slack,
                    "push, N = {n}: mean rounds {m:.2} over {runs} runs, expected within \
                     [{lo:.2}, {hi:.2}] (± {slack:.2})"
                );
            }
        });
    }

    #[test]
    fn push_rounds_are_log2_n_plus_ln_n_plus_a_constant() {
        bounded(SIM_LIMIT, || {
            let n = 10_000.0f64;
            let doc = sim(
                &["--nodes", "10000", "--runs", "200", "--seed", "1000"],
                false,
            );
            let pittel = n.log2() + n.ln();
            // Pittel (1987): S_N - (log2 N + ln N) is O(1) in probability. Its law has a thin
            // spread below and an exponential tail above (the last node is missed with
            // probability about 1/e per round), so the test holds quantiles, not extremes:
            // over 200 seeded runs the median lies within 2 rounds and the 95th percentile
            // within 5.
            let mut r = rounds(&doc);
            assert_eq!(r.len(), 200, "every run must inform every node");
            r.sort_by(f64::total_cmp);
            let (median, p95) = (r[100], r[190]);
            assert!(
                (median - pittel).abs() <= 2.0 && p95 - pittel <= 5.0 && r[0] >= pittel - 4.0,
                "push, N = 10^4: median {median} rounds, 95th percentile {p95}, least {}; \
                 Pittel predicts {pittel:.1} + O(1)",
                r[0]
            );
        });
    }

    /// Checks that the uninformed fraction follows `next(p)` round by round, within 6
    /// binomial standard deviations, where at least 1000 nodes are uninformed.
    fn follows(doc: &Value, n: f64, what: &str, next: impl Fn(f64) -> f64) {
        let mut checked = 0;
        for run in doc["runs"].as_array().into_iter().flatten() {
            let curve: Vec<f64> = run["curve"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_f64)
                .collect();
            for w in curve.windows(2) {
                let (p, p2) = (1.0 - w[0], 1.0 - w[1]);
                if p * n < 1000.0 || p > 0.99 {
                    continue;
                }
                let want = next(p);
                let q = want / p;
                let sd = (n * p * q * (1.0 - q)).sqrt() / n;
                assert!(
                    (p2 - want).abs() <= 6.0 * sd + 1e-9,
                    "{what}: uninformed fraction {p:.5} became {p2:.5}, theory says {want:.5} \
                     (± {:.5})",
                    6.0 * sd
                );
                checked += 1;
            }
        }
        assert!(
            checked >= 5,
            "{what}: too few rounds in range to check ({checked})"
        );
    }

    #[test]
    fn anti_entropy_pull_squares_the_uninformed_fraction() {
        bounded(SIM_LIMIT, || {
            let doc = sim(
                &[
                    "--nodes", "200000", "--mode", "pull", "--runs", "3", "--seed", "21",
                ],
                true,
            );
            follows(
                &doc,
                200_000.0,
                "pull (Demers et al. 1987: p' = p^2)",
                |p| p * p,
            );
        });
    }

    #[test]
    fn anti_entropy_push_shrinks_it_by_about_e() {
        bounded(SIM_LIMIT, || {
            let n = 200_000.0f64;
            let doc = sim(
                &[
                    "--nodes", "200000", "--mode", "push", "--runs", "3", "--seed", "31",
                ],
                true,
            );
            follows(
                &doc,
                n,
                "push (Demers et al. 1987: p' = p (1 - 1/N)^(N(1-p)))",
                |p| p * (1.0 - 1.0 / n).powf(n * (1.0 - p)),
            );
        });
    }

    #[test]
    fn rumor_mongering_leaves_the_predicted_residue() {
        bounded(SIM_LIMIT, || {
            for k in [1u32, 2] {
                let doc = sim(
                    &[
                        "--nodes",
                        "100000",
                        "--stop",
                        "feedback-coin",
                        "--k",
                        &k.to_string(),
                        "--runs",
                        "4",
                        "--seed",
                        "41",
                    ],
                    false,
                );
                let k = f64::from(k);
                let mut s = 0.0f64;
                for _ in 0..1000 {
                    s = (-(k + 1.0) * (1.0 - s)).exp();
                }
                let got = doc["summary"]["mean_residue"].as_f64().unwrap_or(f64::NAN);
                // The residue of one run at N = 10^5 varies by well under 0.005; 0.01 is
                // several standard deviations.
                assert!(
                    (got - s).abs() < 0.01,
                    "feedback coin k = {k}: mean residue {got:.4}, expected s = e^-(k+1)(1-s) = \
                     {s:.4} (Demers et al. 1987)"
                );
            }
        });
    }

    #[test]
    fn push_pull_is_faster_than_push_or_pull() {
        bounded(SIM_LIMIT, || {
            let m = |mode: &str| {
                mean(&rounds(&sim(
                    &[
                        "--nodes", "10000", "--mode", mode, "--runs", "60", "--seed", "51",
                    ],
                    false,
                )))
            };
            let (push, pull, both) = (m("push"), m("pull"), m("push-pull"));
            assert!(
                both + 2.0 < pull && both + 2.0 < push,
                "N = 10^4, 60 runs each: push-pull took {both:.2} rounds on average, push \
                 {push:.2}, pull {pull:.2}; Karp et al. (2000): push-pull is clearly faster"
            );
        });
    }

    #[test]
    fn a_million_nodes_are_all_informed() {
        bounded(SIM_LIMIT, || {
            let doc = sim(&["--nodes", "1000000", "--seed", "61"], false);
            let r = rounds(&doc);
            let n = 1e6f64;
            assert!(
                r.len() == 1 && (r[0] - (n.log2() + n.ln())).abs() <= 6.0,
                "push over 10^6 nodes: expected about {:.1} rounds, got {doc}",
                n.log2() + n.ln()
            );
        });
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        bounded(SIM_LIMIT, || {
            let a = sim(
                &[
                    "--nodes", "5000", "--runs", "3", "--seed", "77", "--loss", "0.1",
                ],
                true,
            );
            let b = sim(
                &[
                    "--nodes", "5000", "--runs", "3", "--seed", "77", "--loss", "0.1",
                ],
                true,
            );
            let c = sim(
                &[
                    "--nodes", "5000", "--runs", "3", "--seed", "78", "--loss", "0.1",
                ],
                true,
            );
            assert!(
                a["runs"][0]["curve"] == b["runs"][0]["curve"],
                "seed 77 twice differed: the first run's curve was {} then {}",
                a["runs"][0]["curve"],
                b["runs"][0]["curve"]
            );
            assert!(
                a["runs"][2]["messages"] == b["runs"][2]["messages"],
                "seed 77 twice differed: run 3 sent {} then {} messages",
                a["runs"][2]["messages"],
                b["runs"][2]["messages"]
            );
            assert!(a["runs"] != c["runs"], "seeds 77 and 78 gave the same runs");
        });
    }

    #[test]
    fn topologies_loss_and_crashes_change_the_spread() {
        bounded(SIM_LIMIT, || {
            let base = mean(&rounds(&sim(
                &["--nodes", "2000", "--runs", "20", "--seed", "81"],
                false,
            )));
            let ring = mean(&rounds(&sim(
                &[
                    "--nodes",
                    "2000",
                    "--topology",
                    "ring",
                    "--runs",
                    "3",
                    "--seed",
                    "81",
                    "--max-rounds",
                    "100000",
                ],
                false,
            )));
            let regular = rounds(&sim(
                &[
                    "--nodes",
                    "2000",
                    "--topology",
                    "regular",
                    "--degree",
                    "6",
                    "--runs",
                    "20",
                    "--seed",
                    "81",
                ],
                false,
            ));
            let lossy = mean(&rounds(&sim(
                &[
                    "--nodes", "2000", "--loss", "0.5", "--runs", "20", "--seed", "81",
                ],
                false,
            )));
            let crashed = sim(
                &[
                    "--nodes",
                    "2000",
                    "--crashed",
                    "0.2",
                    "--runs",
                    "5",
                    "--seed",
                    "81",
                ],
                false,
            );
            assert!(
                ring > 500.0,
                "push on a ring of 2000 must crawl (about N rounds): {ring} vs complete {base}"
            );
            assert_eq!(
                regular.len(),
                20,
                "a random 6-regular graph is connected: every run completes"
            );
            assert!(
                mean(&regular) < 3.0 * base,
                "6-regular: {} rounds vs complete {base}",
                mean(&regular)
            );
            assert!(
                lossy > base + 3.0,
                "50% loss must slow push: {lossy} vs {base}"
            );
            assert_eq!(
                rounds(&crashed).len(),
                5,
                "crashed nodes do not stop the live ones: {crashed}"
            );
        });
    }

    #[test]
    fn crashed_nodes_make_no_calls_in_push_pull() {
        bounded(SIM_LIMIT, || {
            let args = [
                "--nodes",
                "2000",
                "--mode",
                "push-pull",
                "--crashed",
                "0.5",
                "--runs",
                "3",
                "--seed",
                "7",
            ];
            let doc = sim(&args, false);
            let runs = doc["runs"].as_array().cloned().unwrap_or_default();
            // Half the nodes are crashed, so at most about 1000 calls a round.
            let too_many = runs.iter().any(|run| {
                let messages = run["messages"].as_f64().unwrap_or(f64::MAX);
                let rounds = run["rounds_run"].as_f64().unwrap_or(0.0);
                messages > rounds * 2000.0 * 0.6
            });
            if runs.len() != 3 || too_many {
                panic!(
                    "simulate {}: expected 3 runs, each with at most 60% of 2000 calls a round \
                     (a crashed node calls nobody); got {doc}",
                    args.join(" ")
                );
            }
        });
    }

    #[test]
    fn a_2_regular_graph_is_a_union_of_cycles() {
        bounded(SIM_LIMIT, || {
            // One random permutation and its inverse: the cycle holding node 0 has a length
            // uniform in 1..=N, so a run rarely informs everyone and half stay uninformed.
            let args = [
                "--nodes",
                "2000",
                "--mode",
                "push-pull",
                "--topology",
                "regular",
                "--degree",
                "2",
                "--runs",
                "20",
                "--seed",
                "3",
                "--max-rounds",
                "5000",
            ];
            let doc = sim(&args, false);
            let completed = doc["summary"]["completed"].as_u64().unwrap_or(u64::MAX);
            let residue = doc["summary"]["mean_residue"].as_f64().unwrap_or(0.0);
            assert!(
                completed <= 2 && residue > 0.25,
                "simulate {}: a 2-regular graph is a union of cycles, so expected at most 2 of \
                 20 runs to complete and a mean residue above 0.25; got completed {completed}, \
                 mean_residue {residue}",
                args.join(" ")
            );
        });
    }

    #[test]
    fn a_small_world_is_between_the_ring_and_the_random_graph() {
        bounded(SIM_LIMIT, || {
            let world = |rewire: &str, max: &str| {
                sim(
                    &[
                        "--nodes",
                        "2000",
                        "--topology",
                        "small-world",
                        "--degree",
                        "4",
                        "--rewire",
                        rewire,
                        "--runs",
                        "5",
                        "--seed",
                        "91",
                        "--max-rounds",
                        max,
                    ],
                    false,
                )
            };
            let lattice = world("0", "100000");
            let small = world("0.2", "1000");
            let lattice_rounds = rounds(&lattice);
            let small_rounds = rounds(&small);
            assert_eq!(
                small_rounds.len(),
                5,
                "--topology small-world --rewire 0.2 over 2000 nodes: every run completes: {small}"
            );
            // The lattice (no rewiring) spreads like a ring, about N / degree rounds at best;
            // a fifth of the edges rewired makes the diameter logarithmic.
            assert!(
                lattice_rounds.len() == 5 && mean(&lattice_rounds) > 200.0,
                "--rewire 0: the ring lattice of degree 4 must crawl (hundreds of rounds over \
                 2000 nodes): {lattice_rounds:?}"
            );
            assert!(
                mean(&small_rounds) < 80.0,
                "--rewire 0.2: a small world spreads in tens of rounds over 2000 nodes, got \
                 {small_rounds:?} (the lattice took {lattice_rounds:?})"
            );
        });
    }

    #[test]
    fn csv_has_one_row_per_round() {
        bounded(SIM_LIMIT, || {
            let mut program = Program::start(
                &bin(),
                &[
                    "simulate", "--nodes", "1000", "--runs", "2", "--format", "csv",
                ],
            );
            program.wait_exit(Duration::from_secs(60));
            let mut lines = Vec::new();
            while let Some(line) = program.next_line(Duration::from_millis(200)) {
                lines.push(line);
            }
            if lines.is_empty() {
                program.fail("expected CSV on stdout, got nothing");
            }
            assert!(
                lines.first().map(String::as_str) == Some("run,seed,round,informed_fraction"),
                "expected the CSV header `run,seed,round,informed_fraction` first, got the lines {lines:?}"
            );
            let last: Vec<&str> = lines
                .last()
                .map(|l| l.split(',').collect())
                .unwrap_or_default();
            assert_eq!(last.len(), 4, "{lines:?}");
            assert_eq!(
                last[3], "1",
                "the last row of a finished run is fully informed: {lines:?}"
            );
            assert!(
                lines.iter().skip(1).any(|l| l.starts_with("1,")),
                "both runs are there: {lines:?}"
            );
        });
    }

    #[test]
    fn svg_draws_the_curve_beside_the_theory() {
        bounded(SIM_LIMIT, || {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let path = dir.path().join("curve.svg");
            let p = path.to_string_lossy().into_owned();
            sim(&["--nodes", "10000", "--svg", &p], false);
            let svg = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                svg.contains("<svg"),
                "expected an SVG at {p}, got {} bytes",
                svg.len()
            );
            assert!(
                svg.matches("<polyline").count() + svg.matches("<path").count() >= 2,
                "two curves"
            );
        });
    }
}
