//! Project 3, the actor-based KV store speaking RESP2, graded from the outside.
//!
//! Every test starts the real `kv-store server` (the binary `WORKBOOK_BIN_KV_STORE` names, or the
//! reference solution) and talks to it over TCP in the Redis protocol, with the suite's own RESP
//! client; the last stage also drives it with the real `redis-cli` where that is installed.

use std::fmt::Display;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use predicates::prelude::*;
use workbook_suite::resp::{NoReply, Resp, RespConn};
use workbook_suite::{LIMIT, PROMPT, Program, Server, bounded, command, poll_until};

/// What these tests do with a server: RESP requests and their replies.
trait Kv {
    fn connect(&mut self) -> RespConn;
    fn call(&mut self, conn: &mut RespConn, args: &[&str]) -> Resp;
    fn expect(&mut self, conn: &mut RespConn, args: &[&str], expected: &Resp);
    fn expect_error(&mut self, conn: &mut RespConn, args: &[&str], prefix: &str);
    fn expect_reply(&mut self, conn: &mut RespConn, sent: impl Display, expected: &Resp);
}

/// A command as one would type it into `redis-cli`: `SET k "a b"`.
fn words(args: &[&str]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty() && a.bytes().all(|b| b.is_ascii_graphic() && b != b'"') {
                (*a).to_owned()
            } else {
                format!("\"{}\"", a.escape_default())
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What came back: a reply as `redis-cli` prints it, or what came instead.
fn shown(got: &Result<Resp, NoReply>) -> String {
    workbook_suite::framed::describe(got, PROMPT)
}

/// `kv-store server --bind 127.0.0.1:0 ARGS...`.
fn start(args: &[&str]) -> Server {
    Server::start("kv-store", args)
}

impl Kv for Server {
    fn connect(&mut self) -> RespConn {
        self.connect_with(RespConn::connect)
    }

    /// Sends a command on `conn` and returns its reply, failing with a diagnosis otherwise.
    fn call(&mut self, conn: &mut RespConn, args: &[&str]) -> Resp {
        if let Err(e) = conn.send(args) {
            self.program
                .fail(format_args!("sending {}: {e}", words(args)));
        }
        match conn.read(PROMPT) {
            Ok(reply) => reply,
            Err(no) => self.program.fail(format_args!(
                "sent {}, expected a reply, got {}",
                words(args),
                no.after(PROMPT)
            )),
        }
    }

    /// Like `call`, and checks the reply.
    fn expect(&mut self, conn: &mut RespConn, args: &[&str], expected: &Resp) {
        let got = self.call(conn, args);
        if &got != expected {
            self.program.fail(format_args!(
                "sent {}, expected {expected}, got {got}",
                words(args)
            ));
        }
    }

    /// Like `call`, and checks that the reply is an error starting with `prefix`.
    fn expect_error(&mut self, conn: &mut RespConn, args: &[&str], prefix: &str) {
        match self.call(conn, args) {
            Resp::Error(e) if e.starts_with(prefix) => {}
            other => self.program.fail(format_args!(
                "sent {}, expected an error starting with {prefix:?}, got {other}",
                words(args)
            )),
        }
    }

    /// Reads the next reply on `conn`, to a request sent raw (`sent` says what it was), and
    /// checks it.
    fn expect_reply(&mut self, conn: &mut RespConn, sent: impl Display, expected: &Resp) {
        match conn.read(PROMPT) {
            Ok(got) if &got == expected => {}
            other => self.program.fail(format_args!(
                "sent {sent}: expected {expected}, got {}",
                shown(&other)
            )),
        }
    }
}

fn ok() -> Resp {
    Resp::Simple("OK".into())
}

fn int(n: i64) -> Resp {
    Resp::Integer(n)
}

fn bulk(s: &str) -> Resp {
    Resp::bulk(s)
}

fn nil() -> Resp {
    Resp::Bulk(None)
}

/// Sends `SET key key OPTIONS...` for every key in one pipeline, and expects OK to each.
fn pipelined_sets(s: &mut Server, c: &mut RespConn, keys: &[String], options: &[&str]) {
    let mut batch = Vec::new();
    for key in keys {
        let mut args = vec!["SET", key, key];
        args.extend(options);
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        batch.extend(workbook_suite::resp::encode(&args));
    }
    if let Err(e) = c.send_raw(&batch) {
        s.program
            .fail(format_args!("sending {} pipelined SETs: {e}", keys.len()));
    }
    for key in keys {
        let set = words(&[&["SET", key, key][..], options].concat());
        s.expect_reply(
            c,
            format_args!("{set} (one of {} pipelined)", keys.len()),
            &ok(),
        );
    }
}

/// Keys as a list: `"a", "b"`, or `(empty array)`.
fn listed<S: AsRef<str>>(keys: &[S]) -> String {
    if keys.is_empty() {
        return "(empty array)".to_owned();
    }
    keys.iter()
        .map(|k| format!("\"{}\"", k.as_ref().escape_default()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `KEYS pattern`, sorted (Redis returns keys in no particular order).
fn sorted_keys(s: &mut Server, c: &mut RespConn, pattern: &str) -> Vec<String> {
    match s.call(c, &["KEYS", pattern]) {
        Resp::Array(items) => {
            let mut keys: Vec<String> = items
                .iter()
                .map(|k| match k {
                    Resp::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
                    other => other.to_string(),
                })
                .collect();
            keys.sort();
            keys
        }
        other => s.program.fail(format_args!(
            "sent KEYS {pattern}, expected an array, got {other}"
        )),
    }
}

/// The server's peak resident memory so far, in bytes (`VmHWM`), or `None` where `/proc` cannot
/// tell (not Linux).
fn peak_memory(s: &Server) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.program.id())).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Sends `wire` on a raw connection that reads nothing back, and waits until the server has
/// started writing its replies (at least 32 KiB of them wait in the socket): by then a server
/// that builds a whole reply before writing it has built it.
fn send_unread(s: &mut Server, wire: &[u8], what: &str) -> std::net::TcpStream {
    use std::io::Write;
    let mut stuck = s.connect_with(std::net::TcpStream::connect);
    if let Err(e) = stuck.write_all(wire) {
        s.program.fail(format_args!("sending {what}: {e}"));
    }
    let mut window = vec![0u8; 32 * 1024];
    let writing = poll_until(LIMIT / 2, Duration::from_millis(10), || {
        matches!(stuck.peek(&mut window), Ok(n) if n == window.len()).then_some(())
    });
    if writing.is_none() {
        s.program.fail(format_args!(
            "sent {what} without reading: expected the replies to start coming within 20s; they did not"
        ));
    }
    stuck
}

/// Fails unless the server's peak memory grew by less than `most` bytes since `before`.
fn assert_peak_below(s: &mut Server, before: u64, most: u64, what: &str) {
    let Some(after) = peak_memory(s) else { return };
    let grown = after.saturating_sub(before);
    if grown >= most {
        s.program.fail(format_args!(
            "{what}: the server's peak memory grew by {} MiB, expected less than {} MiB (a value must be shared by the replies that name it, not copied into each, and a connection must stop building replies while it cannot write them)",
            grown >> 20,
            most >> 20
        ));
    }
}

mod stage1_framing {
    use super::*;

    #[test]
    fn ping_echo_and_pong() {
        bounded(LIMIT, || {
            let mut s = start(&[]);
            let mut c = s.connect();
            s.expect(&mut c, &["PING"], &Resp::Simple("PONG".into()));
            s.expect(&mut c, &["PING", "hello"], &bulk("hello"));
            s.expect(&mut c, &["ECHO", "a b\r\nc"], &bulk("a b\r\nc"));
        });
    }

    #[test]
    fn inline_commands_work_like_nc() {
        bounded(LIMIT, || {
            let mut s = start(&[]);
            let mut c = s.connect();
            // One line at a time, each answered before the next is sent: pipelining is stage 5.
            let lines: [(&str, Resp); 4] = [
                ("PING\r\n", Resp::Simple("PONG".into())),
                ("ECHO \"hello world\"\r\n", bulk("hello world")),
                ("ECHO 'single quotes' \r\n", bulk("single quotes")),
                ("PING\n", Resp::Simple("PONG".into())),
            ];
            for (line, expected) in lines {
                let _ = c.send_raw(line.as_bytes());
                let got = c.read(PROMPT);
                if got.as_ref() != Ok(&expected) {
                    s.program.fail(format_args!(
                        "sent the inline command {:?} (as nc sends it), expected {expected}, got {}",
                        line,
                        shown(&got)
                    ));
                }
            }
        });
    }

    #[test]
    fn unknown_commands_and_wrong_arity_are_errors_not_disconnects() {
        bounded(LIMIT, || {
            let mut s = start(&[]);
            let mut c = s.connect();
            s.expect_error(&mut c, &["FLY", "away"], "ERR unknown command 'FLY'");
            // A line break in the name is sent back as spaces: the error stays one line.
            s.expect_error(&mut c, &["FL\r\nY"], "ERR unknown command 'FL  Y'");
            s.expect_error(
                &mut c,
                &["ECHO"],
                "ERR wrong number of arguments for 'echo' command",
            );
            s.expect(&mut c, &["PING"], &Resp::Simple("PONG".into()));
        });
    }

    #[test]
    fn command_answers_so_redis_cli_starts_quietly() {
        bounded(LIMIT, || {
            let mut s = start(&[]);
            let mut c = s.connect();
            match s.call(&mut c, &["COMMAND", "DOCS"]) {
                Resp::Array(_) => {}
                other => s.program.fail(format_args!(
                    "sent COMMAND DOCS, expected an array, got {other}"
                )),
            }
        });
    }

    #[test]
    fn quit_says_ok_and_closes() {
        bounded(LIMIT, || {
            let mut s = start(&[]);
            let mut c = s.connect();
            s.expect(&mut c, &["QUIT"], &ok());
            if !c.is_closed(PROMPT) {
                s.program
                    .fail("expected the connection closed after QUIT's OK");
            }
        });
    }
}

mod stage1_shutdown {
    use super::*;

    #[test]
    fn sigterm_shuts_the_server_down_cleanly() {
        bounded(LIMIT, || {
            let mut s = start(&[]);
            let mut idle = s.connect();
            s.expect(&mut idle, &["PING"], &Resp::Simple("PONG".into()));
            s.program.terminate();
            match s.program.wait_exit(PROMPT) {
                Some(status) if status.success() => {}
                Some(status) => s.program.fail(format_args!("expected exit status 0 after SIGTERM, got {status}")),
                None => s.program.fail("expected the server to exit after SIGTERM, even with a client connected; it is still running"),
            }
            if !idle.is_closed(PROMPT) {
                s.program
                    .fail("expected the connected client's connection closed at shutdown");
            }
        });
    }
}

mod stage2_commands {
    use super::*;

    #[test]
    fn an_expiry_option_without_its_amount_is_a_syntax_error() {
        bounded(LIMIT, || {
            let mut s = start(&[]);
            let mut c = s.connect();
            for option in ["EX", "PX"] {
                s.expect_error(&mut c, &["SET", "k", "v", option], "ERR syntax error");
                s.expect_error(&mut c, &["SET", "k", "v", "NX", option], "ERR syntax error");
            }
            s.expect(&mut c, &["GET", "k"], &nil());
            s.expect(&mut c, &["SET", "k", "v"], &ok());
        });
    }

    #[test]
    fn set_get_del_exists() {
        bounded(LIMIT, || {
            let mut s = start(&[]);
            let mut c = s.connect();
            s.expect(&mut c, &["GET", "k"], &nil());
            s.expect(&mut c, &["SET", "k", "v1"], &ok());
            s.expect(&mut c, &["GET", "k"], &bulk("v1"));
            s.expect(&mut c, &["SET", "k", "v2"], &ok());
            s.expect(&mut c, &["GET", "k"], &bulk("v2"));
            s.expect(&mut c, &["EXISTS", "k", "k", "nope"], &int(2));
            s.expect(&mut c, &["DEL", "k", "nope"], &int(1));
            s.expect(&mut c, &["GET", "k"], &nil());
        });
    }

    #[test]
    fn two_thousand_keys_are_all_kept() {
        bounded(LIMIT, || {
            let mut s = start(&[]);
            let mut c = s.connect();
            let keys: Vec<String> = (0..2_000).map(|i| format!("key:{i}")).collect();
            pipelined_sets(&mut s, &mut c, &keys, &[]);
            s.expect(&mut c, &["DBSIZE"], &int(2_000));
            let mut mget = vec!["MGET"];
            mget.extend(keys.iter().map(String::as_str));
            let values = Resp::Array(keys.iter().map(|k| bulk(k)).collect());
            if s.call(&mut c, &mget) != values {
                s.program.fail(
                    "set key:0 ... key:1999 each to its own name, then MGET all 2,000: expected \
                     each key's own name back, in order",
                );
            }
        });
    }

    #[test]
    fn values_are_binary_safe() {
        bounded(LIMIT, || {
            let mut s = start(&[]);
            let mut c = s.connect();
            let value = "line one\r\nline two\0 and a NUL, \u{e9}t\u{e9}";
            s.expect(&mut c, &["SET", "bin", value], &ok());
            s.expect(&mut c, &["GET", "bin"], &bulk(value));
        });
    }

    #[test]
    fn set_nx_and_xx() {
        bounded(LIMIT, || {
            let mut s = start(&[]);
            let mut c = s.connect();
            s.expect(&mut c, &["SET", "k", "a", "XX"], &nil());
            s.expect(&mut c, &["SET", "k", "a", "NX"], &ok());
            s.expect(&mut c, &["SET", "k", "b", "NX"], &nil());
            s.expect(&mut c, &["SET", "k", "c", "XX"], &ok());
            s.expect(&mut c, &["GET", "k"], &bulk("c"));
            s.expect_error(&mut c, &["SET", "k", "d", "NX", "XX"], "ERR syntax error");
            // One expiry unit, given once or again, as Redis allows; never both.
            s.expect(&mut c, &["SET", "t", "v", "EX", "100", "EX", "200"], &ok());
            s.expect(&mut c, &["GET", "t"], &bulk("v"));
            s.expect(
                &mut c,
                &["SET", "t", "v", "PX", "5000", "PX", "9000"],
                &ok(),
            );
            for (a, b) in [("EX", "PX"), ("PX", "EX")] {
                s.expect_error(
                    &mut c,
                    &["SET", "t", "w", a, "100", b, "100"],
                    "ERR syntax error",
                );
            }
        });
    }

    #[test]
    fn counters() {
        bounded(LIMIT, || {
            let mut s = start(&[]);
            let mut c = s.connect();
            s.expect(&mut c, &["INCR", "n"], &int(1));
            s.expect(&mut c, &["INCRBY", "n", "41"], &int(42));
            s.expect(&mut c, &["DECR", "n"], &int(41));
            s.expect(&mut c, &["GET", "n"], &bulk("41"));
            s.expect(&mut c, &["SET", "word", "hello"], &ok());
            s.expect_error(
                &mut c,
                &["INCR", "word"],
                "ERR value is not an integer or out of range",
            );
            s.expect_error(
                &mut c,
                &["INCRBY", "n", "many"],
                "ERR value is not an integer or out of range",
            );
            s.expect(&mut c, &["SET", "big", "9223372036854775807"], &ok());
            s.expect_error(
                &mut c,
                &["INCR", "big"],
                "ERR increment or decrement would overflow",
            );
        });
    }

    #[test]
    fn multi_key_commands() {
        bounded(LIMIT, || multi_key(&[]));
    }
}

/// MSET, MGET, DBSIZE, KEYS and FLUSHDB on a server started with `args`.
fn multi_key(args: &[&str]) {
    let mut s = start(args);
    let mut c = s.connect();
    s.expect(&mut c, &["MSET", "a", "1", "b", "2", "c", "3"], &ok());
    s.expect(
        &mut c,
        &["MGET", "c", "nope", "a", "b"],
        &Resp::Array(vec![bulk("3"), nil(), bulk("1"), bulk("2")]),
    );
    s.expect(&mut c, &["DBSIZE"], &int(3));
    // Keys set one at a time, then read, counted and deleted together: with several shards,
    // the single-key path and the multi-key path must agree on which shard owns a key.
    let singles = ["d", "e", "f", "g", "h", "i", "j", "k"];
    for key in singles {
        s.expect(&mut c, &["SET", key, key], &ok());
    }
    let mut mget = vec!["MGET"];
    mget.extend(singles);
    s.expect(
        &mut c,
        &mget,
        &Resp::Array(singles.iter().map(|k| bulk(k)).collect()),
    );
    let mut exists = vec!["EXISTS", "nope"];
    exists.extend(singles);
    s.expect(&mut c, &exists, &int(singles.len() as i64));
    // The same keys written again in one pipeline with a KEYS after each SET (a batch that
    // spans shards), then read one at a time (a batch that does not): the two must agree too.
    let mut batch = Vec::new();
    for key in singles {
        batch.extend(workbook_suite::resp::encode(&[
            b"SET",
            key.as_bytes(),
            b"again",
        ]));
        batch.extend(workbook_suite::resp::encode(&[b"KEYS", b"nomatch*"]));
    }
    if let Err(e) = c.send_raw(&batch) {
        s.program
            .fail(format_args!("sending a pipeline of SET and KEYS: {e}"));
    }
    for key in singles {
        for (what, expected) in [("SET", ok()), ("KEYS nomatch*", Resp::Array(vec![]))] {
            let sent = format_args!(
                "SET {key} again, each SET followed by KEYS nomatch*, pipelined (the {what})"
            );
            s.expect_reply(&mut c, sent, &expected);
        }
    }
    for key in singles {
        s.expect(&mut c, &["GET", key], &bulk("again"));
    }
    let mut del = vec!["DEL", "nope"];
    del.extend(singles);
    s.expect(&mut c, &del, &int(singles.len() as i64));
    s.expect(&mut c, &["DBSIZE"], &int(3));
    for (pattern, expected) in [
        ("*", vec!["a", "b", "c"]),
        ("[ab]", vec!["a", "b"]),
        ("?", vec!["a", "b", "c"]),
        ("x*", vec![]),
    ] {
        let keys = sorted_keys(&mut s, &mut c, pattern);
        if keys != expected {
            s.program.fail(format_args!(
                "sent KEYS {pattern}, expected {} (in any order), got {}",
                listed(&expected),
                listed(&keys)
            ));
        }
    }
    s.expect(&mut c, &["FLUSHDB"], &ok());
    s.expect(&mut c, &["DBSIZE"], &int(0));
    for odd in [&["MSET", "a"][..], &["MSET", "a", "1", "b"]] {
        s.expect_error(
            &mut c,
            odd,
            "ERR wrong number of arguments for 'mset' command",
        );
    }
}

/// Redis's glob rules, as `KEYS` applies them to a set of keys.
mod stage2_patterns {
    use super::*;

    /// Classes at their edges, where Redis's rules are its own: an escape inside a class, a
    /// class that runs to the end of the pattern, a range that ends in `]`. Every expected
    /// answer is redis-server 7.0's.
    #[test]
    fn classes_at_their_edges_match_as_redis_does() {
        bounded(LIMIT, || {
            let mut s = start(&[]);
            let mut c = s.connect();
            let k63z = format!("{}z", "k".repeat(63));
            let (a70z, a71z) = (
                format!("{}z", "a".repeat(70)),
                format!("{}z", "a".repeat(71)),
            );
            let keys = [
                "c-", "ca", "c^", "c[", "c]", "c\\", "cb", "c[ab", "c[\\", &k63z, &a70z, &a71z,
            ];
            for key in keys {
                s.expect(&mut c, &["SET", key, "1"], &ok());
            }
            let two = ["c-", "c[", "c\\", "c]", "c^", "ca", "cb"];
            let star_63 = format!("{}*z", "k".repeat(63));
            // Positions 63 and 64 live at once, one moving into the other's word.
            let across = format!("*{}*z", "?".repeat(63));
            let mut long = [a70z.as_str(), &a71z, &k63z];
            long.sort_unstable();
            let cases: [(&str, &[&str]); 14] = [
                // `\` makes the next byte a member, so `-` here is no range.
                ("c[\\-a]", &["c-", "ca"]),
                ("c[\\a-c]", &["c-", "ca"]),
                ("c[\\]]", &["c]"]),
                ("c[^a]", &["c-", "c[", "c\\", "c]", "c^", "cb"]),
                // Unterminated, a class runs to the end of the pattern; empty, it matches nothing.
                ("c[ab", &["ca", "cb"]),
                ("c[", &[]),
                ("c[^", &two),
                ("c[\\", &["c\\"]),
                ("c[a-", &["c-", "ca"]),
                // `a-]` is the range from `]` to `a`, and the class goes on past it.
                ("c[a-]", &["c]", "c^", "ca"]),
                ("c[a-]b", &["c]", "c^", "ca", "cb"]),
                // A star after a token that moved: both positions stay live.
                (
                    "c*?*",
                    &["c-", "c[", "c[\\", "c[ab", "c\\", "c]", "c^", "ca", "cb"],
                ),
                // A star at position 63, the last of the first 64-position word.
                (&star_63, &[&k63z]),
                (&across, &long),
            ];
            for (pattern, expected) in cases {
                let got = sorted_keys(&mut s, &mut c, pattern);
                if got != expected {
                    s.program.fail(format_args!(
                        "with the keys {}, sent KEYS {pattern}: expected {} (in any order, as \
                         redis-server 7.0 answers), got {}",
                        listed(&keys),
                        listed(expected),
                        listed(&got)
                    ));
                }
            }
        });
    }

    #[test]
    fn keys_patterns_match_as_redis_does() {
        bounded(LIMIT, || {
            let mut s = start(&[]);
            let mut c = s.connect();
            let long = "k".repeat(100);
            let keys = [
                "hello", "hallo", "hxllo", "hllo", "heeeello", "h-llo", "a*", "ab", "b\\", &long,
            ];
            for key in keys {
                s.expect(&mut c, &["SET", key, "1"], &ok());
            }
            let (k99, k101) = ("k".repeat(99), "k".repeat(101));
            let (long_q, star_long) = (format!("{k99}?"), format!("*{k99}"));
            let cases: [(&str, &[&str]); 17] = [
                ("h?llo", &["h-llo", "hallo", "hello", "hxllo"]),
                (
                    "h*llo",
                    &["h-llo", "hallo", "heeeello", "hello", "hllo", "hxllo"],
                ),
                ("h[ae]llo", &["hallo", "hello"]),
                ("h[^e]llo", &["h-llo", "hallo", "hxllo"]),
                ("h[a-b]llo", &["hallo"]),
                // A range, then a member after it in the same class.
                ("h[a-ex]llo", &["hallo", "hello", "hxllo"]),
                ("h[^a-cx]llo", &["h-llo", "hello"]),
                // A reversed range is read low to high.
                ("h[e-a]llo", &["hallo", "hello"]),
                // `\` makes the next character literal, in and out of a class.
                ("a\\*", &["a*"]),
                ("h\\-llo", &["h-llo"]),
                // A `\` that ends the pattern has nothing to escape: it is itself.
                ("b\\", &["b\\"]),
                ("a*", &["a*", "ab"]),
                // Patterns of more than 64 positions: 100 literal characters, and stars.
                (&long, &[&long]),
                (&long_q, &[&long]),
                (&star_long, &[&long]),
                (&k101, &[]),
                (
                    "*llo*",
                    &["h-llo", "hallo", "heeeello", "hello", "hllo", "hxllo"],
                ),
            ];
            // A 100-byte key is shown as `k x 100`.
            let short = |k: &str| {
                if k.len() > 20 {
                    format!("{} x {}", &k[..1], k.len())
                } else {
                    k.to_owned()
                }
            };
            let all: Vec<String> = keys.iter().map(|k| short(k)).collect();
            for (pattern, expected) in cases {
                let got = sorted_keys(&mut s, &mut c, pattern);
                if got != expected {
                    let expected: Vec<String> = expected.iter().map(|k| short(k)).collect();
                    let got: Vec<String> = got.iter().map(|k| short(k)).collect();
                    s.program.fail(format_args!(
                        "with the keys {}, sent KEYS {}: expected {} (in any order), got {}",
                        listed(&all),
                        short(pattern),
                        listed(&expected),
                        listed(&got)
                    ));
                }
            }
            // MAX_PATTERN (64 KiB) is the longest pattern accepted.
            const MAX_PATTERN: usize = 64 * 1024;
            let longest = "p".repeat(MAX_PATTERN);
            s.expect(&mut c, &["KEYS", &longest], &Resp::Array(Vec::new()));
            let over = "p".repeat(MAX_PATTERN + 1);
            s.expect_error(&mut c, &["KEYS", &over], "ERR pattern too long");
        });
    }
}

mod stage2_client {
    use super::*;

    #[test]
    fn the_client_subcommand_prints_like_redis_cli() {
        bounded(LIMIT, || {
            let mut s = start(&[]);
            let addr = s.addr.to_string();
            let long = "l".repeat(100_000);
            let long_quoted = format!("\"{long}\"");
            let checks: [(&[&str], &str); 9] = [
                (&["SET", "a", "1"], "OK"),
                // 100,000 bytes reach the client in several reads.
                (&["SET", "long", &long], "OK"),
                (&["GET", "long"], &long_quoted),
                (&["GET", "a"], "\"1\""),
                (&["INCR", "a"], "(integer) 2"),
                (&["GET", "nope"], "(nil)"),
                (&["MGET", "a", "nope"], "1) \"2\"\n2) (nil)"),
                (&["KEYS", "x*"], "(empty array)"),
                (
                    &["GET"],
                    "(error) ERR wrong number of arguments for 'get' command",
                ),
            ];
            for (args, expected) in checks {
                command("kv-store")
                    .args(["client", "--server", addr.as_str()])
                    .args(args)
                    .assert()
                    .success()
                    .stdout(predicate::eq(format!("{expected}\n")));
            }
            s.program.assert_running("serving the client subcommand");
        });
    }

    /// Plays a server that answers the first request with `pieces`, written one by one a few
    /// milliseconds apart (so that they are likely read apart), and then waits for the client
    /// to go. Returns its address.
    fn play_server(pieces: Vec<Vec<u8>>) -> (String, std::thread::JoinHandle<std::io::Result<()>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let addr = listener.local_addr().expect("its address").to_string();
        let server = std::thread::spawn(move || {
            let (mut c, _) = listener.accept()?;
            c.set_read_timeout(Some(LIMIT))?;
            c.set_nodelay(true)?;
            let mut request = [0u8; 64];
            let _ = c.read(&mut request)?;
            for piece in pieces {
                c.write_all(&piece)?;
                std::thread::sleep(Duration::from_millis(2));
            }
            while c.read(&mut request)? > 0 {}
            Ok(())
        });
        (addr, server)
    }

    #[test]
    fn the_client_reads_a_reply_line_of_max_line_and_refuses_a_longer_one() {
        bounded(LIMIT, || {
            // MAX_LINE (64 KiB) counts a line's bytes before its `\n`, `\r` included.
            const MAX_LINE: usize = 64 * 1024;
            let status = |len: usize| {
                let mut line = vec![b'+'];
                line.extend(std::iter::repeat_n(b'a', len - 2));
                line
            };
            let (addr, server) = play_server(vec![[status(MAX_LINE), b"\r\n".to_vec()].concat()]);
            command("kv-store")
                .args(["client", "--server", &addr, "PING"])
                .timeout(PROMPT)
                .assert()
                .append_context("the server's reply", "a status line of MAX_LINE bytes")
                .success()
                .stdout(predicate::eq(format!("{}\n", "a".repeat(MAX_LINE - 2))));
            let _ = server.join();
            // A bulk string cut two bytes before the end of its value.
            let (addr, server) = play_server(vec![b"$10\r\nabcdefgh".to_vec(), b"ij\r\n".to_vec()]);
            command("kv-store")
                .args(["client", "--server", &addr, "PING"])
                .timeout(PROMPT)
                .assert()
                .append_context(
                    "the server's reply",
                    "$10 abcdefghij, cut before its last 4 bytes",
                )
                .success()
                .stdout(predicate::eq("\"abcdefghij\"\n"));
            let _ = server.join();
            // Longer, ended at once; and never ended, arriving in pieces of 1,000 bytes.
            let ended = vec![[status(70_000), b"\r\n".to_vec()].concat()];
            let pieces = status(70_000).chunks(1_000).map(<[u8]>::to_vec).collect();
            for (what, reply) in [
                ("a status line of 70,000 bytes", ended),
                ("70,000 bytes of a status line that never ends", pieces),
            ] {
                let (addr, server) = play_server(reply);
                command("kv-store")
                    .args(["client", "--server", &addr, "PING"])
                    .timeout(PROMPT)
                    .assert()
                    .append_context("the server's reply", what)
                    .failure()
                    .stderr(predicate::str::contains("too big"));
                let _ = server.join();
            }
        });
    }
}

mod stage3_concurrency {
    use super::*;

    #[test]
    fn multi_key_commands_across_shards() {
        bounded(LIMIT, || multi_key(&["--shards", "4"]));
    }

    #[test]
    fn multi_key_commands_with_a_mutex() {
        bounded(LIMIT, || multi_key(&["--backend", "mutex"]));
    }

    /// 50 clients, each incrementing 5 shared counters 100 times: every update must count.
    fn no_lost_updates(args: &[&str]) {
        let mut s = start(args);
        let addr = s.addr;
        let workers: Vec<_> = (0..50)
            .map(|w| {
                std::thread::spawn(move || -> Result<(), String> {
                    let mut c =
                        RespConn::connect(addr).map_err(|e| format!("client {w}: connect: {e}"))?;
                    for i in 0..100 {
                        let key = format!("counter-{}", (w + i) % 5);
                        c.send(&["INCR", &key])
                            .map_err(|e| format!("client {w}: send: {e}"))?;
                        match c.read(PROMPT) {
                            Ok(Resp::Integer(_)) => {}
                            other => {
                                return Err(format!(
                                    "client {w}: INCR {key} answered {}",
                                    shown(&other)
                                ));
                            }
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            match worker.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => s.program.fail(e),
                Err(_) => s.program.fail("a client thread panicked"),
            }
        }
        let mut c = s.connect();
        let values = s.call(
            &mut c,
            &[
                "MGET",
                "counter-0",
                "counter-1",
                "counter-2",
                "counter-3",
                "counter-4",
            ],
        );
        let expected = Resp::Array(vec![bulk("1000"); 5]);
        if values != expected {
            s.program.fail(format_args!(
                "50 clients each sent 100 INCRs spread over counter-0..4: each should be 1000, got {values}"
            ));
        }
    }

    #[test]
    fn fifty_clients_lose_no_update() {
        bounded(LIMIT, || no_lost_updates(&[]));
    }

    #[test]
    fn fifty_clients_lose_no_update_across_shards() {
        bounded(LIMIT, || {
            no_lost_updates(&["--shards", "4", "--threads", "2"])
        });
    }

    #[test]
    fn fifty_clients_lose_no_update_with_a_mutex_and_two_threads() {
        bounded(LIMIT, || {
            no_lost_updates(&["--backend", "mutex", "--threads", "2"])
        });
    }

    #[test]
    fn clients_see_each_other_at_once() {
        bounded(LIMIT, || {
            let mut s = start(&["--shards", "3"]);
            let (mut a, mut b) = (s.connect(), s.connect());
            for i in 0..50 {
                let key = format!("k{i}");
                let value = format!("v{i}");
                s.expect(&mut a, &["SET", &key, &value], &ok());
                s.expect(&mut b, &["GET", &key], &bulk(&value));
            }
        });
    }
}

mod stage4_expiry {
    use super::*;

    #[test]
    fn ttl_reports_the_time_left() {
        bounded(LIMIT, || {
            let mut s = start(&[]);
            let mut c = s.connect();
            s.expect(&mut c, &["SET", "k", "v", "EX", "100"], &ok());
            match s.call(&mut c, &["TTL", "k"]) {
                Resp::Integer(t) if (95..=100).contains(&t) => {}
                other => s.program.fail(format_args!(
                    "SET k v EX 100 then TTL k: expected about 100, got {other}"
                )),
            }
            s.expect(&mut c, &["SET", "plain", "v"], &ok());
            s.expect(&mut c, &["TTL", "plain"], &int(-1));
            s.expect(&mut c, &["TTL", "missing"], &int(-2));
            s.expect(&mut c, &["EXPIRE", "plain", "50"], &int(1));
            s.expect(&mut c, &["EXPIRE", "missing", "50"], &int(0));
            s.expect_error(
                &mut c,
                &["SET", "k", "v", "EX", "0"],
                "ERR invalid expire time in 'set' command",
            );
        });
    }

    #[test]
    fn ttl_rounds_to_the_nearest_second() {
        bounded(LIMIT, || {
            let mut s = start(&[]);
            let mut c = s.connect();
            let set_at = std::time::Instant::now();
            s.expect(&mut c, &["SET", "soon", "v", "PX", "400"], &ok());
            s.expect(&mut c, &["SET", "later", "v", "PX", "1800"], &ok());
            let soon = s.call(&mut c, &["TTL", "soon"]);
            let later = s.call(&mut c, &["TTL", "later"]);
            // 400 ms left is 0 s, rounded (or -2 once it expired); 1,800 ms is 2 s, for as long
            // as at least 1,500 ms are left (a test stalled longer cannot tell).
            if !matches!(soon, Resp::Integer(0 | -2)) {
                s.program.fail(format_args!(
                    "SET soon v PX 400, then TTL soon: expected 0 (seconds, rounded), got {soon}"
                ));
            }
            if set_at.elapsed() < Duration::from_millis(300) && later != int(2) {
                s.program.fail(format_args!(
                    "SET later v PX 1800, then at once TTL later: expected 2 (seconds, \
                     rounded), got {later}"
                ));
            }
        });
    }

    #[test]
    fn a_new_value_or_a_deleted_key_forgets_the_expiry() {
        bounded(LIMIT, || {
            let mut s = start(&[]);
            let mut c = s.connect();
            // SET without EX or PX clears the expiry, as in Redis.
            s.expect(&mut c, &["SET", "k", "v", "EX", "100"], &ok());
            s.expect(&mut c, &["SET", "k", "v2"], &ok());
            s.expect(&mut c, &["TTL", "k"], &int(-1));
            // A key deleted and made again by INCR has no expiry.
            s.expect(&mut c, &["SET", "n", "1", "EX", "100"], &ok());
            s.expect(&mut c, &["DEL", "n"], &int(1));
            s.expect(&mut c, &["INCR", "n"], &int(1));
            s.expect(&mut c, &["TTL", "n"], &int(-1));
        });
    }

    #[test]
    fn keys_past_their_deadline_are_never_returned_even_unswept() {
        bounded(LIMIT, || {
            let mut s = start(&[]);
            let mut c = s.connect();
            // 3,000 keys expiring together: one sweep removes at most SWEEP_LIMIT (1,000), so
            // when they are read just after their deadline, most are still held.
            let keys: Vec<String> = (0..3_000).map(|i| format!("t{i}")).collect();
            pipelined_sets(&mut s, &mut c, &keys, &["PX", "300"]);
            // Every deadline is at most 300 ms after the last reply: wait that out (the time
            // itself is what is tested here, not a server's progress).
            std::thread::sleep(Duration::from_millis(310));
            let mut mget = vec!["MGET"];
            mget.extend(keys.iter().map(String::as_str));
            let held = match s.call(&mut c, &mget) {
                Resp::Array(values) => values.iter().filter(|v| **v != nil()).count(),
                other => s.program.fail(format_args!(
                    "MGET of 3,000 keys: expected an array, got {other}"
                )),
            };
            if held > 0 {
                s.program.fail(format_args!(
                    "set 3,000 keys with PX 300, then read them all 310 ms after the last OK: \
                     expected every one nil (past its deadline, swept or not), got {held} values"
                ));
            }
            s.expect(&mut c, &["TTL", "t0"], &int(-2));
        });
    }

    #[test]
    fn an_expired_key_is_gone() {
        bounded(LIMIT, || {
            let mut s = start(&[]);
            let mut c = s.connect();
            s.expect(&mut c, &["SET", "long", "v", "EX", "100"], &ok());
            let set_at = std::time::Instant::now();
            s.expect(&mut c, &["SET", "short", "v", "PX", "300"], &ok());
            let got = s.call(&mut c, &["GET", "short"]);
            // Before its deadline the key must be there; a test stalled past 300 ms (a loaded
            // machine) cannot tell, and goes on to the check that it disappears.
            if set_at.elapsed() < Duration::from_millis(300) && got != bulk("v") {
                s.program.fail(format_args!(
                    "SET short v PX 300, then at once GET short: expected \"v\", got {got}"
                ));
            }
            let gone = poll_until(PROMPT, Duration::from_millis(20), || {
                (s.call(&mut c, &["GET", "short"]) == nil()).then_some(())
            });
            if gone.is_none() {
                s.program
                    .fail("SET short v PX 300: expected GET short to return nil within 5s");
            }
            s.expect(&mut c, &["GET", "long"], &bulk("v"));
            s.expect(&mut c, &["EXPIRE", "long", "0"], &int(1));
            s.expect(&mut c, &["GET", "long"], &nil());
        });
    }

    #[test]
    fn expired_keys_are_swept_without_being_read() {
        bounded(LIMIT, || {
            let mut s = start(&["--shards", "2"]);
            let mut c = s.connect();
            for i in 0..200 {
                s.expect(&mut c, &["SET", &format!("t{i}"), "v", "PX", "200"], &ok());
            }
            s.expect(&mut c, &["SET", "keeper", "v"], &ok());
            // DBSIZE counts keys still held, read or not: only an active sweep brings it down.
            let swept = poll_until(PROMPT, Duration::from_millis(50), || {
                (s.call(&mut c, &["DBSIZE"]) == int(1)).then_some(())
            });
            if swept.is_none() {
                let size = s.call(&mut c, &["DBSIZE"]);
                s.program.fail(format_args!(
                    "200 keys set with PX 200 and never read: expected a background sweep to remove them (DBSIZE 1 within 5s), DBSIZE is {size}"
                ));
            }
        });
    }

    #[test]
    fn a_huge_expire_time_is_refused_and_harms_nothing() {
        bounded(LIMIT, || {
            let mut s = start(&[]);
            let mut c = s.connect();
            s.expect(&mut c, &["SET", "a", "1"], &ok());
            // `now + 9223372036854775807 s` overflows a clock: computed unchecked, it panics.
            s.expect_error(
                &mut c,
                &["EXPIRE", "a", "9223372036854775807"],
                "ERR invalid expire time in 'expire' command",
            );
            s.expect_error(
                &mut c,
                &["SET", "b", "1", "EX", "9223372036854775807"],
                "ERR invalid expire time in 'set' command",
            );
            s.expect(&mut c, &["GET", "a"], &bulk("1"));
            s.expect(&mut c, &["TTL", "a"], &int(-1));
            s.expect(&mut c, &["EXPIRE", "a", "9223372036854775"], &int(1));
            s.expect(&mut c, &["GET", "a"], &bulk("1"));
            // SET's EX has the same bound as EXPIRE, and the bound itself is allowed.
            s.expect(&mut c, &["SET", "b", "1", "EX", "9223372036854775"], &ok());
            s.expect(&mut c, &["GET", "b"], &bulk("1"));
            s.expect_error(
                &mut c,
                &["SET", "c", "1", "EX", "9223372036854776"],
                "ERR invalid expire time in 'set' command",
            );
            s.expect(&mut c, &["GET", "c"], &nil());
        });
    }
}

mod stage5_pipelining {
    use super::*;

    #[test]
    fn a_client_that_stops_reading_does_not_hold_up_shutdown() {
        use std::io::Write;
        bounded(LIMIT, || {
            let mut s = start(&[]);
            // 64 replies of 1 MiB each: far more than the kernel's socket buffers hold, so the
            // server's writes block for as long as this client reads nothing.
            let value = "v".repeat(1 << 20);
            let mut wire = workbook_suite::resp::encode(&[b"SET", b"big", value.as_bytes()]);
            for _ in 0..64 {
                wire.extend_from_slice(&workbook_suite::resp::encode(&[b"GET", b"big"]));
            }
            let mut stuck = s.connect_with(std::net::TcpStream::connect);
            if let Err(e) = stuck.write_all(&wire) {
                s.program
                    .fail(format_args!("sending SET big (1 MiB) and 64 GET big: {e}"));
            }
            let _ = stuck.set_read_timeout(Some(Duration::from_millis(100)));
            let mut window = vec![0u8; 32 * 1024];
            let writing = poll_until(PROMPT, Duration::from_millis(10), || {
                matches!(stuck.peek(&mut window), Ok(n) if n == window.len()).then_some(())
            });
            if writing.is_none() {
                s.program.fail("sent SET big (1 MiB) and 64 GET big, expected the replies to start coming; they did not");
            }
            s.program.terminate();
            match s.program.wait_exit(Duration::from_secs(15)) {
                Some(status) if status.success() => {}
                Some(status) => s.program.fail(format_args!("expected exit status 0 after SIGTERM, got {status}")),
                None => s.program.fail("a client stopped reading its replies (the server's writes to it block), then SIGTERM: expected the server to give up on that client after a grace period and exit within 15s; it is still running"),
            }
        });
    }

    #[test]
    fn a_thousand_pipelined_commands_are_answered_in_order() {
        bounded(LIMIT, || {
            let mut s = start(&[]);
            let mut c = s.connect();
            let mut batch = Vec::new();
            for i in 0..1000 {
                let args: [&[u8]; 2] = [b"INCR", b"p"];
                batch.extend(workbook_suite::resp::encode(&args));
                if i % 100 == 0 {
                    batch.extend(workbook_suite::resp::encode(&[
                        b"ECHO",
                        format!("mark {i}").as_bytes(),
                    ]));
                }
            }
            if let Err(e) = c.send_raw(&batch) {
                s.program
                    .fail(format_args!("sending a pipeline of 1,010 commands: {e}"));
            }
            for i in 0..1000 {
                let expected = int(i + 1);
                match c.read(PROMPT) {
                    Ok(got) if got == expected => {}
                    other => s.program.fail(format_args!(
                        "pipelined INCR number {}: expected {expected}, got {}",
                        i + 1,
                        shown(&other)
                    )),
                }
                if i % 100 == 0 {
                    let mark = bulk(&format!("mark {i}"));
                    match c.read(PROMPT) {
                        Ok(got) if got == mark => {}
                        other => s.program.fail(format_args!(
                            "expected the ECHO after INCR {} ({mark}), got {}",
                            i + 1,
                            shown(&other)
                        )),
                    }
                }
            }
        });
    }

    #[test]
    fn a_pipeline_split_at_every_byte_still_works() {
        bounded(LIMIT, || {
            let mut s = start(&[]);
            let mut c = s.connect();
            let mut wire = workbook_suite::resp::encode(&[b"SET", b"split", b"value"]);
            wire.extend(workbook_suite::resp::encode(&[b"GET", b"split"]));
            for byte in &wire {
                if let Err(e) = c.send_raw(std::slice::from_ref(byte)) {
                    s.program
                        .fail(format_args!("sending one byte at a time: {e}"));
                }
            }
            for expected in [ok(), bulk("value")] {
                match c.read(PROMPT) {
                    Ok(got) if got == expected => {}
                    other => s.program.fail(format_args!(
                        "sent SET then GET one byte at a time: expected {expected}, got {}",
                        shown(&other)
                    )),
                }
            }
        });
    }

    #[test]
    fn a_request_in_many_pieces_costs_time_linear_in_its_size() {
        bounded(LIMIT, || {
            let mut s = start(&[]);
            let mut other = s.connect();
            s.expect(&mut other, &["PING"], &Resp::Simple("PONG".into()));
            // PING with a million one-byte arguments (7 MiB): cheap to answer (wrong arity), so
            // whatever it costs is the parsing. Parsed again from its first byte on every read,
            // it costs the square of its size, and the server stalls for everyone.
            let n = 1_000_000;
            let mut wire = format!("*{}\r\n$4\r\nPING\r\n", n + 1).into_bytes();
            for _ in 0..n {
                wire.extend_from_slice(b"$1\r\na\r\n");
            }
            let mut big = s.connect();
            let sender = std::thread::spawn(move || -> std::io::Result<RespConn> {
                for piece in wire.chunks(8 * 1024) {
                    big.send_raw(piece)?;
                }
                Ok(big)
            });
            let mut worst = Duration::ZERO;
            while !sender.is_finished() {
                let asked = std::time::Instant::now();
                s.expect(&mut other, &["PING"], &Resp::Simple("PONG".into()));
                worst = worst.max(asked.elapsed());
            }
            let mut big = match sender.join() {
                Ok(Ok(big)) => big,
                Ok(Err(e)) => s.program.fail(format_args!(
                    "sending PING with a million arguments in 8 KiB pieces: {e}"
                )),
                Err(_) => s.program.fail("the sending thread panicked"),
            };
            match big.read(Duration::from_secs(15)) {
                Ok(Resp::Error(e)) if e.starts_with("ERR wrong number of arguments") => {}
                Ok(other) => s.program.fail(format_args!(
                    "sent PING with a million arguments: expected (error) ERR wrong number of arguments for 'ping' command, got {other}"
                )),
                Err(no) => s.program.fail(format_args!(
                    "sent PING with a million arguments (7 MiB in 8 KiB pieces): expected (error) ERR wrong number of arguments for 'ping' command, got {}",
                    no.after(Duration::from_secs(15))
                )),
            }
            if worst > Duration::from_secs(1) {
                s.program.fail(format_args!(
                    "while one client sent a 7 MiB request in 8 KiB pieces, another's PING waited up to {worst:.1?} (expected under 1s): parse a request incrementally, keeping what is parsed, instead of again from its first byte on every read"
                ));
            }
        });
    }
}

mod stage6_hostile {
    use super::*;

    /// Sends `wire`, expects an error reply starting with `prefix`, then a closed connection, and
    /// checks that another client's data is intact and the server still answers.
    fn refused(wire: &[u8], prefix: &str) {
        let mut s = start(&[]);
        let mut other = s.connect();
        s.expect(&mut other, &["SET", "safe", "data"], &ok());
        let mut c = s.connect();
        let _ = c.send_raw(wire);
        let shown = String::from_utf8_lossy(&wire[..wire.len().min(60)]).into_owned();
        match c.read(PROMPT) {
            Ok(Resp::Error(e)) if e.starts_with(prefix) => {}
            got => s.program.fail(format_args!(
                "sent {shown:?}: expected an error starting with {prefix:?}, got {}",
                self::shown(&got)
            )),
        }
        if !c.is_closed(PROMPT) {
            s.program.fail(format_args!(
                "sent {shown:?}: expected the connection closed after the protocol error"
            ));
        }
        s.expect(&mut other, &["GET", "safe"], &bulk("data"));
        s.program
            .assert_running("after a protocol error on another connection");
    }

    #[test]
    fn a_huge_declared_length_is_refused() {
        bounded(LIMIT, || {
            refused(b"*1\r\n$999999999999\r\n", "ERR Protocol error")
        });
    }

    #[test]
    fn an_empty_length_is_refused() {
        bounded(LIMIT, || refused(b"*1\r\n$\r\n\r\n", "ERR Protocol error"));
    }

    #[test]
    fn a_bad_array_length_is_refused() {
        bounded(LIMIT, || refused(b"*many\r\n", "ERR Protocol error"));
    }

    #[test]
    fn a_non_bulk_argument_is_refused() {
        bounded(LIMIT, || refused(b"*1\r\n+PING\r\n", "ERR Protocol error"));
    }

    #[test]
    fn an_endless_inline_line_is_refused() {
        bounded(LIMIT, || {
            refused(&vec![b'a'; 100 * 1024], "ERR Protocol error")
        });
    }

    #[test]
    fn an_endless_line_arriving_in_odd_pieces_is_refused() {
        bounded(LIMIT, || {
            // Behind a request, and then in pieces of 1,000 bytes: however the reads fall, the
            // server holds no more than MAX_LINE of a line before refusing it.
            let mut s = start(&[]);
            let mut c = s.connect();
            let _ = c.send_raw(b"PING\r\naaaaaaa");
            let pong = Resp::Simple("PONG".into());
            s.expect_reply(&mut c, "PING and the start of a line", &pong);
            for _ in 0..100 {
                if c.send_raw(&[b'a'; 1_000]).is_err() {
                    break;
                }
            }
            match c.read(PROMPT) {
                Ok(Resp::Error(e)) if e.starts_with("ERR Protocol error: too big inline") => {}
                other => s.program.fail(format_args!(
                    "sent a line of 100,007 bytes with no end, after a PING: expected (error) \
                     ERR Protocol error: too big inline request, got {}",
                    shown(&other)
                )),
            }
        });
    }

    #[test]
    fn a_long_inline_line_behind_a_large_request_is_refused() {
        bounded(LIMIT, || {
            // One write: a SET of a 300 KiB value, then a 70 KiB inline line with its end. The
            // buffer that grew for the value may hold the whole line at once.
            let value = vec![b'v'; 300 * 1024];
            let mut wire =
                format!("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${}\r\n", value.len()).into_bytes();
            wire.extend_from_slice(&value);
            wire.extend_from_slice(b"\r\n");
            wire.extend(std::iter::repeat_n(b'a', 70 * 1024));
            wire.extend_from_slice(b"\r\n");
            let mut s = start(&[]);
            let mut c = s.connect();
            let _ = c.send_raw(&wire);
            let first = c.read(PROMPT);
            let second = c.read(PROMPT);
            let refused =
                matches!(&second, Ok(Resp::Error(e)) if e.starts_with("ERR Protocol error"));
            if first != Ok(ok()) || !refused {
                s.program.fail(format_args!(
                    "sent SET big <300 KiB> and a 70 KiB inline line in one write: expected OK, \
                     then an error starting with \"ERR Protocol error\" (the line is over 64 KiB), \
                     got {} and {}",
                    shown(&first),
                    shown(&second)
                ));
            }
        });
    }

    /// The contract's MAX_BULK and MAX_REQUEST.
    const MAX_BULK: usize = 8 * 1024 * 1024;
    const MAX_REQUEST: usize = 16 * 1024 * 1024;

    /// `MSET a <MAX_BULK bytes> b <the rest>`: a request of `total` bytes in all.
    fn mset_of(total: usize) -> Vec<u8> {
        let head = |n: usize| format!("${n}\r\n");
        let mut wire = b"*5\r\n$4\r\nMSET\r\n$1\r\na\r\n".to_vec();
        wire.extend(head(MAX_BULK).bytes());
        wire.extend(std::iter::repeat_n(b'x', MAX_BULK));
        wire.extend(b"\r\n$1\r\nb\r\n");
        // The second value's header has as many digits as the first's.
        let second = total - wire.len() - head(MAX_BULK).len() - 2;
        wire.extend(head(second).bytes());
        wire.extend(std::iter::repeat_n(b'y', second));
        wire.extend(b"\r\n");
        assert_eq!(wire.len(), total, "the suite's own MSET arithmetic");
        wire
    }

    #[test]
    fn requests_at_the_limits_are_served() {
        bounded(LIMIT, || {
            let mut s = start(&[]);
            let mut c = s.connect();
            // An inline command of 60,000 bytes: under MAX_LINE (64 KiB).
            let inline = format!("SET inline {}\r\n", "i".repeat(60_000 - 13));
            let _ = c.send_raw(inline.as_bytes());
            // A value of MAX_BULK bytes, and a request of MAX_REQUEST bytes.
            let bulk = vec![b'x'; MAX_BULK];
            let _ = c.send_raw(&workbook_suite::resp::encode(&[b"SET", b"bulk", &bulk]));
            let _ = c.send_raw(&mset_of(MAX_REQUEST));
            for what in [
                "a 60,000-byte inline SET (MAX_LINE is 64 KiB)",
                "a SET of an 8 MiB value (MAX_BULK)",
                "an MSET of 16 MiB in all (MAX_REQUEST)",
            ] {
                s.expect_reply(&mut c, what, &ok());
            }
            s.expect(&mut c, &["EXISTS", "inline", "bulk", "a", "b"], &int(4));
        });
    }

    #[test]
    fn a_bulk_string_past_max_bulk_is_refused() {
        bounded(LIMIT, || {
            // The header is enough to refuse it.
            let wire = unfinished_set("bulk", MAX_BULK + 1, 0);
            refused(&wire, "ERR Protocol error: invalid bulk length");
        });
    }

    #[test]
    fn an_unfinished_request_is_refused_once_it_passes_max_request() {
        bounded(LIMIT, || {
            // MSET a <MAX_BULK> b <MAX_BULK>, 52 bytes over MAX_REQUEST, sent but for its last
            // 12: already 40 bytes over, and refused without waiting for the rest. A PING goes
            // first, so that no read of the request is likely to end at MAX_REQUEST exactly.
            let mut wire = mset_of(MAX_REQUEST + 52);
            wire.truncate(wire.len() - 12);
            let mut s = start(&[]);
            let mut c = s.connect();
            let _ = c.send_raw(&[b"PING\r\n".as_slice(), &wire].concat());
            let pong = c.read(PROMPT);
            let refusal = c.read(PROMPT);
            let refused = matches!(&refusal, Ok(Resp::Error(e))
                if e.starts_with("ERR Protocol error: request larger than"));
            if pong != Ok(Resp::Simple("PONG".into())) || !refused {
                s.program.fail(format_args!(
                    "sent PING, then all but the last 12 bytes of an MSET 52 bytes over \
                     MAX_REQUEST (16 MiB): expected PONG, then (error) ERR Protocol error: \
                     request larger than ..., without waiting for the rest; got {} and {}",
                    shown(&pong),
                    shown(&refusal)
                ));
            }
            s.program
                .assert_running("after refusing a request past MAX_REQUEST");
        });
    }

    #[test]
    fn a_line_of_max_line_bytes_is_served_and_one_more_is_refused() {
        bounded(LIMIT, || {
            // MAX_LINE (64 KiB) counts a line's bytes before its `\n`, `\r` included.
            const MAX_LINE: usize = 64 * 1024;
            let line = |len: usize| format!("SET k {}\r\n", "l".repeat(len - "SET k \r".len()));
            let mut s = start(&[]);
            let mut c = s.connect();
            let _ = c.send_raw(line(MAX_LINE).as_bytes());
            let sent = "an inline SET whose line is MAX_LINE (65,536) bytes before its \\n";
            s.expect_reply(&mut c, sent, &ok());
            refused(
                line(MAX_LINE + 1).as_bytes(),
                "ERR Protocol error: too big inline",
            );
        });
    }

    #[test]
    fn a_request_past_max_request_is_refused() {
        bounded(LIMIT, || {
            refused(
                &mset_of(MAX_REQUEST + 1),
                "ERR Protocol error: request larger than",
            );
        });
    }

    #[test]
    fn seeded_garbage_never_kills_the_server() {
        bounded(LIMIT, || {
            let mut s = start(&[]);
            let mut keep = s.connect();
            s.expect(&mut keep, &["SET", "safe", "data"], &ok());
            // Seeded: the same garbage on every run.
            let mut rng = workbook_suite::seeded::rng(0x2545_F491_4F6C_DD1D);
            for round in 0..30 {
                let mut junk = Vec::with_capacity(512);
                for _ in 0..512 {
                    let byte: u8 = rand::RngExt::random(&mut rng);
                    // Mostly protocol characters, so the parser sees plausible prefixes.
                    junk.push(match byte % 8 {
                        0 => b'*',
                        1 => b'$',
                        2 => b'\r',
                        3 => b'\n',
                        4 => b'0' + byte % 10,
                        _ => byte,
                    });
                }
                let mut c = s.connect();
                let _ = c.send_raw(&junk);
                // Whatever it answers, it must answer or close, and not take long about it.
                let _ = c.read(Duration::from_millis(200));
                s.program
                    .assert_running(format_args!("receiving garbage (round {round})"));
            }
            s.expect(&mut keep, &["GET", "safe"], &bulk("data"));
        });
    }

    #[test]
    fn the_connection_limit_is_enforced() {
        bounded(LIMIT, || {
            let mut s = start(&["--max-connections", "3"]);
            let mut held: Vec<RespConn> = (0..3).map(|_| s.connect()).collect();
            for c in &mut held {
                s.expect(c, &["PING"], &Resp::Simple("PONG".into()));
            }
            let mut extra = s.connect();
            match extra.read(PROMPT) {
                Ok(Resp::Error(e)) if e.starts_with("ERR max number of clients reached") => {}
                other => s.program.fail(format_args!(
                    "with --max-connections 3 and 3 clients connected, expected a 4th to get (error) ERR max number of clients reached, got {}",
                    shown(&other)
                )),
            }
            drop(held.pop());
            let room = poll_until(PROMPT, Duration::from_millis(20), || {
                let mut c = RespConn::connect(s.addr).ok()?;
                c.send(&["PING"]).ok()?;
                (c.read(Duration::from_millis(500)).ok()? == Resp::Simple("PONG".into()))
                    .then_some(())
            });
            if room.is_none() {
                s.program
                    .fail("after one of 3 clients left, expected a new client to be served");
            }
        });
    }

    #[test]
    fn a_huge_declared_array_count_is_refused() {
        // Trusted, `Vec::with_capacity(99999999999)` aborts the whole server.
        bounded(LIMIT, || refused(b"*99999999999\r\n", "ERR Protocol error"));
    }

    /// Sets `big` to a 256 KiB value, sends `wire` (requests naming it) on a connection that
    /// reads nothing, and checks that the server's peak memory grew by less than 64 MiB.
    fn unread_replies_stay_bounded(wire: &[u8], what: &str) {
        let mut s = start(&[]);
        let mut c = s.connect();
        let value = "v".repeat(256 * 1024);
        s.expect(&mut c, &["SET", "big", &value], &ok());
        let Some(before) = peak_memory(&s) else {
            eprintln!("skipping: /proc/PID/status is not readable here (not Linux)");
            return;
        };
        let _stuck = send_unread(&mut s, wire, what);
        assert_peak_below(&mut s, before, 64 << 20, &format!("{what}, not read"));
        s.expect(&mut c, &["GET", "missing"], &nil());
    }

    #[test]
    fn an_mget_naming_one_large_value_a_thousand_times_shares_it() {
        bounded(LIMIT, || {
            let mut args: Vec<&[u8]> = vec![b"MGET"];
            args.extend(std::iter::repeat_n(&b"big"[..], 1000));
            unread_replies_stay_bounded(
                &workbook_suite::resp::encode(&args),
                "MGET naming the 256 KiB value big 1,000 times (a 250 MiB reply)",
            );
        });
    }

    #[test]
    fn unread_pipelined_gets_of_a_large_value_stay_bounded() {
        bounded(LIMIT, || {
            let mut wire = Vec::new();
            for _ in 0..2048 {
                wire.extend(workbook_suite::resp::encode(&[b"GET", b"big"]));
            }
            unread_replies_stay_bounded(
                &wire,
                "2,048 pipelined GET big, a 256 KiB value (512 MiB of replies)",
            );
        });
    }

    #[test]
    fn a_long_keys_match_stalls_no_other_client() {
        bounded(LIMIT, || {
            let mut s = start(&[]);
            let mut c = s.connect();
            let key = "a".repeat(256 * 1024);
            s.expect(&mut c, &["SET", &key, "v"], &ok());
            s.expect(&mut c, &["SET", "small", "v"], &ok());
            // Against `*aaa...ab`, a matcher that backtracks to its last star tries every start:
            // 256 Ki key bytes times a 4 KiB pattern.
            let pattern = format!("*{}b", "a".repeat(4095));
            let mut slow = s.connect();
            if let Err(e) = slow.send(&["KEYS", &pattern]) {
                s.program
                    .fail(format_args!("sending KEYS *aaa...ab (4 KiB): {e}"));
            }
            let mut other = s.connect();
            for _ in 0..3 {
                let asked = std::time::Instant::now();
                s.expect(&mut other, &["PING"], &Resp::Simple("PONG".into()));
                s.expect(&mut other, &["GET", "small"], &bulk("v"));
                let waited = asked.elapsed();
                if waited > Duration::from_secs(1) {
                    s.program.fail(format_args!(
                        "while KEYS *aaa...ab (a 4 KiB pattern) matched a 256 KiB key, another client's PING and GET took {waited:.1?} (expected under 1s): match without backtracking, away from the shard and the runtime's threads"
                    ));
                }
            }
            match slow.read(Duration::from_secs(30)) {
                Ok(Resp::Array(keys)) if keys.is_empty() => {}
                Ok(other) => s.program.fail(format_args!(
                    "sent KEYS *aaa...ab (4 KiB) with no matching key: expected (empty array), got {other}"
                )),
                Err(no) => s.program.fail(format_args!(
                    "sent KEYS *aaa...ab (4 KiB) against a 256 KiB key: expected (empty array), got {}",
                    no.after(Duration::from_secs(30))
                )),
            }
        });
    }

    #[test]
    fn idle_connections_are_closed() {
        bounded(LIMIT, || {
            let mut s = start(&["--idle-timeout", "300ms", "--max-connections", "2"]);
            let mut idle: Vec<RespConn> = (0..2).map(|_| s.connect()).collect();
            for c in &mut idle {
                s.expect(c, &["PING"], &Resp::Simple("PONG".into()));
            }
            for (i, c) in idle.iter_mut().enumerate() {
                if !c.is_closed(PROMPT) {
                    s.program.fail(format_args!(
                        "with --idle-timeout 300ms, client {} sent PING then nothing: expected its connection closed within 5s; it is still open",
                        i + 1
                    ));
                }
            }
            let served = poll_until(PROMPT, Duration::from_millis(20), || {
                let mut c = RespConn::connect(s.addr).ok()?;
                c.send(&["PING"]).ok()?;
                (c.read(Duration::from_millis(500)).ok()? == Resp::Simple("PONG".into()))
                    .then_some(())
            });
            if served.is_none() {
                s.program.fail(
                    "with --max-connections 2, after both idle clients were closed, expected a new client to be served",
                );
            }
        });
    }

    const KIB: usize = 1024;

    /// The first `sent` bytes of the value of `SET key <value of declared bytes>`, after the
    /// request's head: a request the server must hold, unfinished, until the rest comes.
    fn unfinished_set(key: &str, declared: usize, sent: usize) -> Vec<u8> {
        let mut wire = format!(
            "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${declared}\r\n",
            key.len()
        )
        .into_bytes();
        wire.extend(std::iter::repeat_n(b'x', sent));
        wire
    }

    /// Connects with a plain socket (replies of megabytes are counted, not parsed) and sends
    /// `args` as one request.
    fn raw_request(s: &mut Server, args: &[&str]) -> TcpStream {
        let sent = TcpStream::connect(s.addr).and_then(|mut c| {
            c.set_read_timeout(Some(PROMPT))?;
            let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
            c.write_all(&workbook_suite::resp::encode(&args))?;
            Ok(c)
        });
        sent.unwrap_or_else(|e| s.program.fail(format_args!("sending {}: {e}", args[0])))
    }

    /// The length of `v` in [`a_mebibyte_and_v`]: shorter than WRITE_DIRECT, so a server
    /// copies it into a connection's output.
    const V_LEN: usize = 15_000;

    /// How many times [`mget_v`] asks for `v`: 4.5 MB of reply.
    const V_COUNT: usize = 300;

    /// A server with `--max-buffered 1MiB` and `v` set to [`V_LEN`] bytes, and a client.
    fn a_mebibyte_and_v() -> (Server, RespConn) {
        let mut s = start(&["--max-buffered", "1MiB"]);
        let mut c = s.connect();
        s.expect(&mut c, &["SET", "v", &"v".repeat(V_LEN)], &ok());
        (s, c)
    }

    /// `MGET` of `v` [`V_COUNT`] times, then of `missing`.
    fn mget_v(missing: &str) -> Vec<&str> {
        let mut mget = vec!["MGET"];
        mget.extend(std::iter::repeat_n("v", V_COUNT));
        mget.push(missing);
        mget
    }

    /// The bytes of an `MGET` reply: `values` bulk strings of `len` bytes, then one nil.
    fn mget_reply_len(values: usize, len: usize) -> usize {
        let array = format!("*{}\r\n", values + 1).len();
        let bulk = format!("${len}\r\n").len() + len + 2;
        array + values * bulk + "$-1\r\n".len()
    }

    #[test]
    fn a_reader_that_stalls_holds_no_more_than_max_pending_output() {
        bounded(LIMIT, || {
            let (mut s, mut c) = a_mebibyte_and_v();
            // A client asks for 4.5 MB of replies, takes their first bytes (the server has
            // begun writing them) and no more: the server may hold at most MAX_PENDING_OUTPUT
            // of them (64 KiB) and the value it is copying.
            let mut stalled = raw_request(&mut s, &mget_v("missing"));
            let mut first = [0u8; 16];
            if !matches!(stalled.read(&mut first), Ok(n) if n > 0) {
                s.program
                    .fail("sent MGET of 300 keys of 15,000 bytes: expected the reply to begin");
            }
            // So 900 KiB of the 1 MiB budget are still free for another client.
            let big = "b".repeat(900 * KIB);
            match s.call(&mut c, &["SET", "big", &big]) {
                reply if reply == ok() => {}
                other => s.program.fail(format_args!(
                    "with --max-buffered 1MiB, while a client reads none of a 4.5 MB MGET \
                     reply, expected SET big <900 KiB> to be answered OK (that client may hold \
                     64 KiB of replies, MAX_PENDING_OUTPUT, and a value), got {other}"
                )),
            }
            drop(stalled);
            s.program
                .assert_running("after a client stalled reading its replies");
        });
    }

    #[test]
    fn a_client_mid_request_holds_what_it_sent() {
        bounded(LIMIT, || {
            let mut s = start(&["--max-buffered", "1MiB"]);
            let mut c = s.connect();
            // A PING, then an MSET with one 10 KiB value complete and 5 KiB of the next: once
            // PONG is back, that client holds 15 KiB and a little, whatever it holds it in.
            let mut mid = s.connect();
            let (ten, hundred) = (vec![b'x'; 10 * KIB], vec![b'y'; 100 * KIB]);
            let mset = workbook_suite::resp::encode(&[b"MSET", b"k", &ten, b"j", &hundred]);
            let cut = mset.len() - 95 * KIB - 2;
            let _ = mid.send_raw(&[b"PING\r\n".as_slice(), &mset[..cut]].concat());
            let pong = Resp::Simple("PONG".into());
            s.expect_reply(&mut mid, "PING and the start of an MSET", &pong);
            let big = "b".repeat(900 * KIB);
            match s.call(&mut c, &["SET", "big", &big]) {
                reply if reply == ok() => {}
                other => s.program.fail(format_args!(
                    "with --max-buffered 1MiB, while a client holds 15 KiB of an unfinished MSET, \
                     expected SET big <900 KiB> to be answered OK, got {other}"
                )),
            }
        });
    }

    #[test]
    fn the_whole_budget_comes_back_once_clients_go() {
        bounded(LIMIT, || {
            let (mut s, mut c) = a_mebibyte_and_v();
            // One client holds most of the budget with an unfinished SET...
            let mut holder = s.connect();
            if let Err(e) = holder.send_raw(&unfinished_set("held", 1000 * KIB, 980 * KIB)) {
                s.program
                    .fail(format_args!("sending 980 KiB of an unfinished SET: {e}"));
            }
            s.expect(&mut c, &["PING"], &Resp::Simple("PONG".into()));
            // ...while another, with a 22 KB request, reads 4.5 MB of replies: far more than
            // the budget has left, but replies already computed are counted, never refused.
            let missing = "m".repeat(20_000);
            let mut reader = raw_request(&mut s, &mget_v(&missing));
            let expected = mget_reply_len(V_COUNT, V_LEN);
            let mut got = Vec::with_capacity(expected);
            let mut chunk = vec![0u8; 256 * KIB];
            while got.len() < expected {
                match reader.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&chunk[..n]),
                }
            }
            if got.len() != expected || !got.starts_with(b"*301\r\n") || !got.ends_with(b"$-1\r\n")
            {
                s.program.fail(format_args!(
                    "with --max-buffered 1MiB and 980 KiB of it held by an unfinished SET, sent \
                     MGET of 300 keys of 15,000 bytes and one missing: expected its {expected} \
                     bytes of reply, got {} bytes starting {:?}",
                    got.len(),
                    String::from_utf8_lossy(&got[..got.len().min(40)])
                ));
            }
            drop((holder, reader));
            // Everything they held is given back: a SET of nearly the whole budget gets in.
            let nearly = "n".repeat(1024 * KIB - 32 * KIB);
            let admitted = poll_until(PROMPT, Duration::from_millis(20), || {
                let mut d = RespConn::connect(s.addr).ok()?;
                d.send(&["SET", "nearly", &nearly]).ok()?;
                (d.read(PROMPT).ok()? == ok()).then_some(())
            });
            if admitted.is_none() {
                s.program.fail(
                    "with --max-buffered 1MiB, once a client holding 980 KiB and one that had \
                     read a large reply had both gone, expected SET nearly <992 KiB> answered \
                     OK: every try for 5s was refused, so what they held was not all given back",
                );
            }
        });
    }

    #[test]
    fn a_client_that_keeps_sending_requests_is_not_idle() {
        bounded(LIMIT, || {
            let mut s = start(&["--idle-timeout", "1s"]);
            let mut c = s.connect();
            let began = std::time::Instant::now();
            // A request every 100 ms for 3 s: never a second without one.
            while began.elapsed() < Duration::from_secs(3) {
                let reply = s.call(&mut c, &["PING"]);
                if reply != Resp::Simple("PONG".into()) {
                    s.program.fail(format_args!(
                        "with --idle-timeout 1s, sent PING every 100 ms: expected PONG each \
                         time, got {reply} after {:?}",
                        began.elapsed()
                    ));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
    }

    #[test]
    fn a_request_trickled_in_and_never_finished_is_idle() {
        bounded(LIMIT, || {
            let mut s = start(&["--idle-timeout", "300ms"]);
            let mut c = s.connect();
            s.expect(&mut c, &["PING"], &Resp::Simple("PONG".into()));
            let _ = c.send_raw(b"*2\r\n$4\r\nECHO\r\n$100000\r\n");
            // One byte of the argument every 50 ms: the server reads, but no request completes.
            let deadline = std::time::Instant::now() + PROMPT;
            while !c.is_closed(Duration::from_millis(50)) {
                if std::time::Instant::now() > deadline {
                    s.program.fail(
                        "with --idle-timeout 300ms, sent the head of ECHO <100,000 bytes> and \
                         then one byte of it every 50 ms: expected the connection closed within \
                         5s, since no request completed; it is still open",
                    );
                }
                let _ = c.send_raw(b"x");
            }
            s.program.assert_running("after closing an idle client");
        });
    }

    /// Two clients each send the request `args(key)` but for its last 100 KiB (the last
    /// argument, all `x`, and its `\r\n`), over 700 KiB of it, and wait: together they hold
    /// more than a 1 MiB budget, although each is far below any per-connection limit. One is
    /// refused; the other, sent the rest, is served. The first client sends all but the last
    /// argument's head, and that head between round trips on another connection: a server that
    /// has taken the finished arguments out of its read buffer by then must still count them.
    fn over_the_budget(what: &str, args: fn(&str) -> Vec<Vec<u8>>) {
        let unfinished = |key: &str| {
            let args = args(key);
            let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let mut wire = workbook_suite::resp::encode(&args);
            wire.truncate(wire.len() - 100 * KIB - 2);
            wire
        };
        let mut s = start(&["--max-buffered", "1MiB"]);
        let mut watcher = s.connect();
        let mut clients = Vec::new();
        for key in ["first", "second"] {
            let mut c = s.connect();
            let wire = unfinished(key);
            let head = format!("${}\r\n", 100 * KIB).len();
            let split = if key == "first" {
                wire.len() - head
            } else {
                wire.len()
            };
            let mut sent = c.send_raw(&wire[..split]);
            if split < wire.len() {
                s.expect(&mut watcher, &["PING"], &Resp::Simple("PONG".into()));
                sent = sent.and_then(|()| c.send_raw(&wire[split..]));
                // And a round trip more, so that the head is likely read before the second
                // client's bytes.
                s.expect(&mut watcher, &["PING"], &Resp::Simple("PONG".into()));
            }
            if let Err(e) = sent {
                s.program
                    .fail(format_args!("sending 700 KiB of {what} ({key}): {e}"));
            }
            clients.push((key, c));
        }
        let refused = poll_until(PROMPT, Duration::from_millis(10), || {
            clients.iter_mut().position(|(_, c)| {
                matches!(c.read(Duration::from_millis(20)), Ok(Resp::Error(e)) if e.starts_with("ERR max buffered bytes reached"))
            })
        });
        let Some(refused) = refused else {
            s.program.fail(format_args!(
                "with --max-buffered 1MiB, two clients each sent 700 KiB of {what}: expected \
                 one of them to get (error) ERR max buffered bytes reached; neither did"
            ));
        };
        let (key, mut c) = clients.remove(refused);
        if !c.is_closed(PROMPT) {
            s.program.fail(format_args!(
                "client {key} got (error) ERR max buffered bytes reached: expected its connection closed after it"
            ));
        }
        let (key, mut survivor) = clients.remove(0);
        let _ = survivor.send_raw(&vec![b'x'; 100 * KIB]);
        let _ = survivor.send_raw(b"\r\n");
        let sent = format_args!(
            "with --max-buffered 1MiB, once the other client was refused, the last 100 KiB of \
             {what} ({key})"
        );
        s.expect_reply(&mut survivor, sent, &ok());
        s.expect(&mut watcher, &["EXISTS", key], &int(1));
        s.program
            .assert_running("after refusing a client over the buffer budget");
    }

    #[test]
    fn the_buffer_budget_is_process_wide_and_refused_clearly() {
        bounded(LIMIT, || {
            over_the_budget("an unfinished SET of 800 KiB", |key| {
                vec![b"SET".to_vec(), key.into(), vec![b'x'; 800 * KIB]]
            });
        });
    }

    #[test]
    fn the_budget_counts_the_finished_arguments_of_an_unfinished_request() {
        bounded(LIMIT, || {
            // A 700 KiB value complete, the next one not begun: a server may have taken the
            // first out of its read buffer already, and must still count it.
            over_the_budget("an MSET with its first 700 KiB value complete", |key| {
                let (first, rest) = (vec![b'v'; 700 * KIB], vec![b'x'; 100 * KIB]);
                vec![b"MSET".to_vec(), key.into(), first, b"rest".to_vec(), rest]
            });
        });
    }
}

mod stage7_redis_cli {
    use super::*;

    /// The real `redis-cli`, if this machine has it (CI installs Debian's redis-tools).
    fn redis_cli() -> Option<PathBuf> {
        std::env::var_os("PATH")?
            .to_str()?
            .split(':')
            .map(|dir| PathBuf::from(dir).join("redis-cli"))
            .find(|p| p.is_file())
    }

    #[test]
    fn redis_cli_works_unchanged() {
        bounded(LIMIT, || {
            let mut s = start(&[]);
            let mut c = s.connect();
            s.expect(&mut c, &["SET", "from-suite", "hello"], &ok());
            let Some(cli) = redis_cli() else {
                eprintln!(
                    "redis-cli is not installed: skipping the checks with the real client (apt-get install redis-tools)"
                );
                return;
            };
            let port = s.addr.port().to_string();
            let run = |args: &[&str]| -> String {
                let mut all = vec!["-h", "127.0.0.1", "-p", port.as_str()];
                all.extend_from_slice(args);
                let mut p = Program::start(&cli, &all);
                if p.wait_exit(PROMPT).is_none() {
                    p.fail(format_args!(
                        "redis-cli {} did not finish within 5s",
                        words(args)
                    ));
                }
                let mut out = String::new();
                while let Some(line) = p.next_line(Duration::from_millis(200)) {
                    out.push_str(&line);
                    out.push('\n');
                }
                out
            };
            let checks: [(&[&str], &str); 5] = [
                (&["GET", "from-suite"], "hello\n"),
                (&["SET", "from-cli", "world"], "OK\n"),
                (&["INCRBY", "n", "5"], "5\n"),
                (
                    &["MGET", "from-suite", "from-cli", "nope"],
                    "hello\nworld\n\n",
                ),
                (&["PING"], "PONG\n"),
            ];
            for (args, expected) in checks {
                let got = run(args);
                if got != expected {
                    s.program.fail(format_args!(
                        "redis-cli {}: expected {expected:?}, got {got:?} (its output, lines quoted)",
                        words(args)
                    ));
                }
            }
            s.expect(&mut c, &["GET", "from-cli"], &bulk("world"));
        });
    }
}
