//! A Maelstrom client for tests: a node process spoken to over its stdin and stdout, one JSON
//! message per line, as Maelstrom's protocol defines it. Written from the protocol's
//! documentation, independent of the code under test.

use std::io::Write;
use std::path::Path;
use std::process::ChildStdin;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::Program;

/// The client id the tests speak as.
pub const CLIENT: &str = "c1";

/// A node under test.
pub struct Node {
    /// The running program (its stdout lines, its stderr, its diagnosis).
    pub program: Program,
    stdin: Option<ChildStdin>,
    /// The node's id once [`init`](Self::init) ran (`n1` before).
    pub id: String,
    next_msg_id: u64,
}

impl Node {
    /// Starts `binary node ARGS...`.
    pub fn start(binary: &Path, args: &[&str]) -> Node {
        let mut all = vec!["node"];
        all.extend_from_slice(args);
        let (program, stdin) = Program::start_with_stdin(binary, &all);
        Node {
            program,
            stdin: Some(stdin),
            id: "n1".to_owned(),
            next_msg_id: 1,
        }
    }

    /// Writes `line` and a newline to the node's stdin.
    #[track_caller]
    pub fn send_line(&mut self, line: &str) {
        let ok = match self.stdin.as_mut() {
            Some(stdin) => stdin
                .write_all(line.as_bytes())
                .and_then(|()| stdin.write_all(b"\n"))
                .and_then(|()| stdin.flush())
                .is_ok(),
            None => false,
        };
        if !ok {
            self.program.fail(format_args!(
                "could not write to the node's stdin (it has stopped reading) while sending {}",
                clip(line)
            ));
        }
    }

    /// Closes the node's stdin: its end of input.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends `body` from `src` to this node with a fresh `msg_id`, which it returns.
    #[track_caller]
    pub fn send_from(&mut self, src: &str, mut body: Value) -> u64 {
        let msg_id = self.next_msg_id;
        self.next_msg_id += 1;
        body["msg_id"] = json!(msg_id);
        let line = json!({ "src": src, "dest": self.id, "body": body }).to_string();
        self.send_line(&line);
        msg_id
    }

    /// Sends `body` as the client and waits up to `timeout` for the reply (the message to the
    /// client whose `in_reply_to` is the request's `msg_id`). Returns the whole reply.
    #[track_caller]
    pub fn request(&mut self, body: Value, timeout: Duration) -> Value {
        let sent = body.to_string();
        let msg_id = self.send_from(CLIENT, body);
        self.expect_reply(msg_id, &sent, timeout)
    }

    /// Waits for the reply to request `msg_id` (described as `sent` in a failure).
    #[track_caller]
    pub fn expect_reply(&mut self, msg_id: u64, sent: &str, timeout: Duration) -> Value {
        self.program.expect_json(
            format_args!(
                "a reply to {sent} (a message to {CLIENT} with \"in_reply_to\": {msg_id})"
            ),
            timeout,
            |v| v["dest"] == CLIENT && v["body"]["in_reply_to"] == msg_id,
        )
    }

    /// Sends `init` making this node `id` of `ids` and checks the `init_ok`.
    #[track_caller]
    pub fn init(&mut self, id: &str, ids: &[&str], timeout: Duration) {
        self.id = id.to_owned();
        let reply = self.request(
            json!({ "type": "init", "node_id": id, "node_ids": ids }),
            timeout,
        );
        if reply["body"]["type"] != "init_ok" {
            self.program
                .fail(format_args!("sent init, expected an init_ok, got {reply}"));
        }
    }

    /// Reads the node's values with `read`: the `messages` of its `read_ok`, sorted.
    #[track_caller]
    pub fn read(&mut self, timeout: Duration) -> Vec<i64> {
        let reply = self.request(json!({ "type": "read" }), timeout);
        let body = &reply["body"];
        let Some(items) = body["messages"]
            .as_array()
            .filter(|_| body["type"] == "read_ok")
        else {
            self.program.fail(format_args!(
                "sent {{\"type\":\"read\"}}, expected a read_ok with an array `messages`, \
                 got {reply}"
            ))
        };
        let mut values: Vec<i64> = items.iter().filter_map(Value::as_i64).collect();
        if values.len() != items.len() {
            self.program.fail(format_args!(
                "read_ok's messages must be integers, got {reply}"
            ));
        }
        values.sort_unstable();
        values
    }

    /// Every message the node prints within `within`, to anyone.
    pub fn drain(&mut self, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        while let Some(line) = self
            .program
            .next_line(deadline.saturating_duration_since(Instant::now()))
        {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                out.push(v);
            }
        }
        out
    }
}

/// A line cut to 200 bytes, for messages.
pub fn clip(line: &str) -> String {
    if line.len() <= 200 {
        return line.to_owned();
    }
    let mut end = 200;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &line[..end], line.len())
}
