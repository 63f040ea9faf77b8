//! Project 9, the fan-out metrics collector, graded from the outside.
//!
//! Every test starts the real `metrics-collector` binary (the one `WORKBOOK_BIN_METRICS_COLLECTOR`
//! names, or the reference solution) and speaks its real protocols: StatsD over TCP and UDP,
//! Graphite plaintext, the agent protocol, HTTP for `/metrics`; it reads the JSON-lines batches
//! the collector appends to its `--out` file. The modules are the stages, in the order the grader
//! reports them; the book's page "The contract" is what they check.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tempfile::TempDir;
use workbook_suite::metrics::{AgentConn, Output, http_get};
use workbook_suite::shown::outcome;
use workbook_suite::{Program, binary, bounded, poll_until};

/// What [`spooled`] found, in words: `3 files of 7000 bytes`.
fn files_and_bytes((files, bytes): (usize, u64)) -> String {
    format!("{files} files of {bytes} bytes")
}

/// Every test's overall bound.
const LIMIT: Duration = Duration::from_secs(60);

/// How long a test waits for something that should come within a few flushes.
const PROMPT: Duration = Duration::from_secs(10);

/// The flush interval the tests run the collector with.
const FLUSH: &str = "200ms";

fn bin() -> PathBuf {
    binary("metrics-collector")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn addr_of(event: &Value, field: &str) -> Option<SocketAddr> {
    event[field].as_str().and_then(|s| s.parse().ok())
}

/// A collector under test, with every listener bound on port 0.
struct Collector {
    program: Program,
    dir: TempDir,
    out: PathBuf,
    tcp: SocketAddr,
    udp: SocketAddr,
    graphite: SocketAddr,
    agent: SocketAddr,
    http: SocketAddr,
}

impl Collector {
    fn start(extra: &[&str]) -> Collector {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let out = dir.path().join("metrics.jsonl");
        Collector::start_at(dir, out, "127.0.0.1:0", extra)
    }

    /// Starts `collector` appending to `out`, its agent listener on `agent_bind`.
    fn start_at(dir: TempDir, out: PathBuf, agent_bind: &str, extra: &[&str]) -> Collector {
        let out_arg = out.to_string_lossy().into_owned();
        let mut args = vec![
            "collector",
            "--bind",
            "127.0.0.1:0",
            "--udp-bind",
            "127.0.0.1:0",
            "--graphite-bind",
            "127.0.0.1:0",
            "--agent-bind",
            agent_bind,
            "--http-bind",
            "127.0.0.1:0",
            "--out",
            &out_arg,
        ];
        if !extra.contains(&"--flush") {
            args.extend_from_slice(&["--flush", FLUSH]);
        }
        args.extend_from_slice(extra);
        let mut program = Program::start(&bin(), &args);
        let tcp = program.listening();
        let event = program.expect_json(
            "{\"event\":\"listening\",\"statsd\":..,\"udp\":..,\"graphite\":..,\"agent\":..,\"http\":..}",
            PROMPT,
            |v| v["event"] == "listening",
        );
        let mut get = |field: &str| match addr_of(&event, field) {
            Some(addr) => addr,
            None => program.fail(format_args!(
                "the listening event {event} has no address in {field:?}"
            )),
        };
        let (udp, graphite, agent, http) = (get("udp"), get("graphite"), get("agent"), get("http"));
        Collector {
            program,
            dir,
            out,
            tcp,
            udp,
            graphite,
            agent,
            http,
        }
    }

    fn output(&self) -> Output {
        Output::read(&self.out)
    }

    /// Polls the output file until `done` holds of it.
    #[track_caller]
    fn wait_for(&mut self, what: &str, done: impl Fn(&Output) -> bool) -> Output {
        let deadline = Instant::now() + PROMPT;
        loop {
            let output = Output::read(&self.out);
            if done(&output) {
                return output;
            }
            // A collector that died will write nothing more: say so at once.
            if Instant::now() >= deadline || self.program.exited().is_some() {
                self.program.fail(format_args!(
                    "waited for the output file to show {what}\n  it holds {}",
                    output.describe()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends StatsD `lines` over one TCP connection and closes it.
    fn send_tcp(&mut self, lines: &str) {
        self.send_to(self.tcp, lines);
    }

    fn send_to(&mut self, addr: SocketAddr, lines: &str) {
        let sent = TcpStream::connect(addr).and_then(|mut s| s.write_all(lines.as_bytes()));
        if let Err(e) = sent {
            // A long line is shown by its start and its length.
            let shown: String = lines.chars().take(80).collect();
            let more = if shown.len() < lines.len() {
                format!("... ({} bytes in all)", lines.len())
            } else {
                String::new()
            };
            self.program
                .fail(format_args!("cannot send {shown:?}{more} to {addr}: {e}"));
        }
    }

    /// A TCP connection to `addr`, or a failure with the collector's diagnosis.
    fn connect(&mut self, addr: SocketAddr) -> TcpStream {
        match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => self
                .program
                .fail(format_args!("cannot connect to {addr}: {e}")),
        }
    }

    /// An agent-protocol connection to `--agent-bind`.
    fn agent_conn(&mut self) -> AgentConn {
        match AgentConn::connect(self.agent) {
            Ok(c) => c,
            Err(e) => self.program.fail(format_args!(
                "cannot connect to --agent-bind {}: {e}",
                self.agent
            )),
        }
    }

    /// Sends `frame` on `conn` and expects the reply line `want`.
    #[track_caller]
    fn exchange(&mut self, conn: &mut AgentConn, frame: &str, want: Option<&str>) {
        if let Err(e) = conn.send(frame.as_bytes()) {
            self.program
                .fail(format_args!("cannot send {frame:?}: {e}"));
        }
        let got = conn.reply(PROMPT);
        if got.as_deref() != want {
            self.program.fail(format_args!(
                "sent {frame:?} and expected {}, got {}",
                match want {
                    Some(line) => format!("the reply {line:?}"),
                    None => "no reply".to_owned(),
                },
                AgentConn::shown(&got, PROMPT)
            ));
        }
    }

    /// Fails with the collector's diagnosis unless `ok`.
    #[track_caller]
    fn check(&mut self, ok: bool, message: impl std::fmt::Display) {
        if !ok {
            self.program.fail(message);
        }
    }

    fn send_udp(&mut self, datagram: &str) {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
        socket
            .send_to(datagram.as_bytes(), self.udp)
            .expect("send a datagram");
    }
}

#[track_caller]
fn assert_near(what: &str, got: Option<f64>, want: f64, tolerance: f64, output: &Output) {
    let ok = got.is_some_and(|g| (g - want).abs() <= tolerance);
    assert!(
        ok,
        "{what}: expected {want} (within {tolerance}), got {}\n  the output holds {}",
        got.map_or_else(|| "no value".to_owned(), |g| g.to_string()),
        output.describe()
    );
}

mod stage1_ingest {
    use super::*;

    #[test]
    fn answers_on_every_address_it_prints() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&[]);
            c.wait_for("a first closed batch", |o| !o.batches.is_empty());
            for addr in [c.tcp, c.graphite, c.agent] {
                drop(c.connect(addr));
            }
            match http_get(c.http, "/metrics", PROMPT) {
                Ok(r) if r.status == 200 => {}
                other => c.program.fail(format_args!(
                    "GET /metrics: expected 200, got {}",
                    outcome(&other)
                )),
            }
        });
    }

    #[test]
    fn a_counter_over_tcp_is_written_with_a_timestamped_batch() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&[]);
            let before = now_ms();
            c.send_tcp("hits:1|c\nhits:2|c\n");
            let out = c.wait_for("stats_counts.hits adding up to 3", |o| {
                o.sum("stats_counts.hits") == 3.0
            });
            let after = now_ms();
            let stat = out.last("stats_counts.hits").expect("found above").clone();
            for field in ["flush_ms", "first_ms", "last_ms"] {
                let at = stat.line[field].as_u64();
                assert!(
                    at.is_some_and(|t| t >= before && t <= after + 1000),
                    "sent hits:1|c at {before} ms; expected {field} between it and {after} ms, \
                     got {stat}",
                    stat = stat.line
                );
            }
            let closing = out
                .batches
                .iter()
                .find(|b| b["batch"].as_u64() == Some(stat.batch))
                .expect("a stat line is only read once its batch is closed");
            assert!(
                closing["flush_ms"] == stat.line["flush_ms"],
                "a batch's closing line and its stat lines share flush_ms: {closing}"
            );
        });
    }

    #[test]
    fn every_flush_closes_a_batch_even_when_empty() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&[]);
            let out = c.wait_for("three closed batches", |o| o.batches.len() >= 3);
            let numbers: Vec<u64> = out
                .batches
                .iter()
                .filter_map(|b| b["batch"].as_u64())
                .collect();
            assert_eq!(
                numbers[..3],
                [1, 2, 3],
                "batches are numbered from 1: {}",
                out.describe()
            );
            assert!(
                out.batches[0]["series"] == 0,
                "expected the first batch's closing line to say \"series\": 0, got {}\n  {}",
                out.batches[0]["series"],
                out.describe()
            );
        });
    }

    #[test]
    fn a_counter_is_the_intervals_count_not_a_running_total() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&[]);
            c.send_tcp("once:5|c\n");
            c.wait_for("stats_counts.once", |o| o.sum("stats_counts.once") == 5.0);
            c.send_tcp("once:1|c\n");
            let out = c.wait_for("stats_counts.once adding up to 6", |o| {
                o.sum("stats_counts.once") == 6.0
            });
            let values: Vec<Option<f64>> = out
                .named("stats_counts.once", &[])
                .map(|s| s.value)
                .collect();
            assert!(
                values == [Some(5.0), Some(1.0)],
                "sent 5 then, in a later interval, 1: expected each interval to report its own count, 5 then 1; got {}",
                values
                    .iter()
                    .map(|v| v.map_or_else(|| "null".to_owned(), |v| v.to_string()))
                    .collect::<Vec<_>>()
                    .join(" then ")
            );
        });
    }

    #[test]
    fn sigterm_writes_what_was_received_before_exiting() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&["--flush", "1h"]);
            c.send_tcp("late:7|c\n");
            let tcp = c.tcp;
            c.send_to(tcp, "late:1|c\n");
            // With a 1h flush only the shutdown flush can write them; /metrics tells when both
            // lines have been read.
            let http = c.http;
            c.program
                .poll_while_running(PROMPT, Duration::from_millis(20), |_| {
                    http_get(http, "/metrics", PROMPT)
                        .is_ok_and(|r| r.body.contains("metrics_collector_samples_total 2"))
                        .then_some(())
                });
            c.program.terminate();
            if c.program.wait_exit(PROMPT).is_none() {
                c.program
                    .fail("sent SIGTERM and expected the collector to exit within 10s");
            }
            let out = c.output();
            let message = format!(
                "sent late:7|c and late:1|c, then SIGTERM: the last batch must hold them\n  {}",
                out.describe()
            );
            c.check(out.sum("stats_counts.late") == 8.0, message);
        });
    }
}

mod stage2_statsd {
    use super::*;

    #[test]
    fn sample_rates_scale_counters() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&[]);
            c.send_tcp("sampled:1|c|@0.1\nsampled:2|c|@0.5\n");
            let out = c.wait_for("stats_counts.sampled", |o| {
                o.last("stats_counts.sampled").is_some()
            });
            assert_near(
                "sampled:1|c|@0.1 and sampled:2|c|@0.5 count as 1/0.1 + 2/0.5",
                Some(out.sum("stats_counts.sampled")),
                14.0,
                1e-9,
                &out,
            );
            let batch = out.last("stats_counts.sampled").expect("found above").batch;
            let closing = out
                .batches
                .iter()
                .find(|b| b["batch"].as_u64() == Some(batch));
            let interval = closing
                .and_then(|b| b["interval_ms"].as_f64())
                .unwrap_or(0.0);
            let rate = out
                .named("stats.sampled", &[])
                .find(|s| s.batch == batch)
                .and_then(|s| s.value);
            assert_near(
                "stats.sampled is the count per second of the batch's interval_ms",
                rate,
                14.0 / (interval / 1000.0),
                0.01 * 14.0 / (interval / 1000.0).max(0.001),
                &out,
            );
        });
    }

    #[test]
    fn gauges_take_values_and_deltas_and_keep_them() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&[]);
            c.send_tcp("fuel:10|g\nfuel:-3|g\nfuel:+1|g\n");
            let out = c.wait_for("stats.gauges.fuel", |o| {
                o.last("stats.gauges.fuel").is_some()
            });
            assert_near(
                "fuel:10|g, fuel:-3|g, fuel:+1|g",
                out.last("stats.gauges.fuel").and_then(|s| s.value),
                8.0,
                1e-9,
                &out,
            );
            c.send_tcp("fuel:+2|g\n");
            let out = c.wait_for("stats.gauges.fuel at 10", |o| {
                o.last("stats.gauges.fuel").and_then(|s| s.value) == Some(10.0)
            });
            assert!(out.last("stats.gauges.fuel").is_some());
        });
    }

    #[test]
    fn sets_count_distinct_members() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&[]);
            c.send_tcp("users:ann|s\nusers:bob|s\nusers:ann|s\nusers:cy|s\n");
            let out = c.wait_for("stats.sets.users.count", |o| {
                o.last("stats.sets.users.count").is_some()
            });
            assert_near(
                "members ann, bob, ann, cy",
                out.last("stats.sets.users.count").and_then(|s| s.value),
                3.0,
                0.0,
                &out,
            );
        });
    }

    #[test]
    fn timers_report_count_lower_upper_mean_and_sum() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&[]);
            c.send_tcp("glork:320|ms\nglork:100|ms\nglork:30|h\nglork:50|ms|@0.5\n");
            let out = c.wait_for("stats.timers.glork.count", |o| {
                o.last("stats.timers.glork.count").is_some()
            });
            let get = |f: &str| {
                out.last(&format!("stats.timers.glork.{f}"))
                    .and_then(|s| s.value)
            };
            assert_near(
                "count (50|ms|@0.5 counts twice)",
                get("count"),
                5.0,
                1e-9,
                &out,
            );
            assert_near("lower", get("lower"), 30.0, 1e-9, &out);
            assert_near("upper", get("upper"), 320.0, 1e-9, &out);
            assert_near("sum", get("sum"), 500.0, 1e-9, &out);
            assert_near("mean", get("mean"), 125.0, 1e-9, &out);
        });
    }

    #[test]
    fn a_datagram_carries_several_metrics() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&[]);
            c.send_udp("u.a:1|c\nu.b:2|c\nu.g:4|g");
            let out = c.wait_for("u.a, u.b and u.g", |o| {
                o.last("stats_counts.u.a").is_some()
                    && o.last("stats_counts.u.b").is_some()
                    && o.last("stats.gauges.u.g").is_some()
            });
            assert_eq!(out.sum("stats_counts.u.b"), 2.0, "{}", out.describe());
        });
    }

    #[test]
    fn dogstatsd_tags_make_separate_series() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&[]);
            c.send_tcp("req:1|c|#region:eu,canary\nreq:1|c|#canary,region:eu\nreq:5|c|#region:us\nreq:1|c\n");
            let out = c.wait_for("three req series", |o| {
                o.named("stats_counts.req", &[]).count() > 0
                    && o.named("stats_counts.req", &["canary", "region:eu"])
                        .count()
                        > 0
                    && o.named("stats_counts.req", &["region:us"]).count() > 0
            });
            let total = |tags: &[&str]| -> f64 {
                out.named("stats_counts.req", tags)
                    .filter_map(|s| s.value)
                    .sum()
            };
            assert_eq!(
                (
                    total(&["canary", "region:eu"]),
                    total(&["region:us"]),
                    total(&[])
                ),
                (2.0, 5.0, 1.0),
                "tags are a set (order does not matter) and listed sorted\n  {}",
                out.describe()
            );
        });
    }

    #[test]
    fn graphite_points_keep_the_senders_timestamp_and_nan() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&[]);
            let graphite = c.graphite;
            c.send_to(
                graphite,
                "servers.a.load 1.5 1700000000\nservers.a.load 2.5 1700000010\ncpu.idle nan 1700000005\n",
            );
            let out = c.wait_for("servers.a.load and cpu.idle", |o| {
                o.last("servers.a.load").is_some() && o.last("cpu.idle").is_some()
            });
            let load = out.last("servers.a.load").expect("found above");
            assert!(
                (load.value, load.line["sent_ms"].as_u64()) == (Some(2.5), Some(1_700_000_010_000)),
                "the latest point by the sender's clock, its timestamp in ms: {}",
                load.line
            );
            let idle = out.last("cpu.idle").expect("found above");
            assert!(
                idle.line["value"].is_null(),
                "a nan value is written as null: {}",
                idle.line
            );
        });
    }
}

mod stage3_fan_in {
    use super::*;

    #[test]
    fn many_connections_at_once_count_exactly() {
        bounded(LIMIT, || {
            const CONNS: usize = 32;
            const EACH: usize = 2_000;
            let mut c = Collector::start(&[]);
            let tcp = c.tcp;
            let senders: Vec<_> = (0..CONNS)
                .map(|i| {
                    std::thread::spawn(move || -> std::io::Result<()> {
                        let mut s = TcpStream::connect(tcp)?;
                        let mut text = String::new();
                        for n in 0..EACH {
                            text.push_str("edge.total:1|c\n");
                            text.push_str(&format!("edge.node{}:1|c\n", i % 8));
                            if n % 500 == 499 {
                                s.write_all(text.as_bytes())?;
                                text.clear();
                            }
                        }
                        s.write_all(text.as_bytes())
                    })
                })
                .collect();
            for s in senders {
                if let Ok(Err(e)) = s.join() {
                    c.program.fail(format_args!("a sender failed: {e}"));
                }
            }
            let want = (CONNS * EACH) as f64;
            let out = c.wait_for("stats_counts.edge.total adding up to 64000", |o| {
                o.sum("stats_counts.edge.total") >= want
            });
            assert_eq!(
                out.sum("stats_counts.edge.total"),
                want,
                "{}",
                out.describe()
            );
            for node in 0..8 {
                let name = format!("stats_counts.edge.node{node}");
                assert_eq!(out.sum(&name), want / 8.0, "{name}: {}", out.describe());
            }
        });
    }

    #[test]
    fn a_series_split_across_connections_is_one_line_per_batch() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&["--flush", "1s"]);
            let tcp = c.tcp;
            let mut conns: Vec<TcpStream> = (0..4).map(|_| c.connect(tcp)).collect();
            for conn in &mut conns {
                if let Err(e) = conn.write_all(b"shared:1|c\n") {
                    c.program.fail(format_args!("cannot send shared:1|c: {e}"));
                }
            }
            let out = c.wait_for("stats_counts.shared adding up to 4", |o| {
                o.sum("stats_counts.shared") == 4.0
            });
            let mut batches: Vec<u64> = out
                .named("stats_counts.shared", &[])
                .map(|s| s.batch)
                .collect();
            let lines = batches.len();
            batches.dedup();
            assert_eq!(
                lines,
                batches.len(),
                "one series has at most one line per batch, however many connections fed it\n  {}",
                out.describe()
            );
        });
    }
}

mod stage4_percentiles {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution_are_within_one_percent() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&["--flush", "2s"]);
            // 1..=2000 ms, shuffled with a fixed seed: the order must not matter.
            let mut values: Vec<u32> = (1..=2000).collect();
            let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
            for i in (1..values.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                values.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let text: String = values.iter().map(|v| format!("lat:{v}|ms\n")).collect();
            c.send_tcp(&text);
            let out = c.wait_for("stats.timers.lat.count of 2000", |o| {
                o.sum("stats.timers.lat.count") >= 2000.0
            });
            let batches: Vec<u64> = out
                .named("stats.timers.lat.count", &[])
                .map(|s| s.batch)
                .collect();
            assert_eq!(
                batches.len(),
                1,
                "sent 2000 timings at once with --flush 2s and expected them in one batch\n  {}",
                out.describe()
            );
            let get = |f: &str| {
                out.last(&format!("stats.timers.lat.{f}"))
                    .and_then(|s| s.value)
            };
            for (field, want) in [
                ("median", 1000.0),
                ("upper_90", 1800.0),
                ("upper_99", 1980.0),
            ] {
                assert_near(
                    &format!("{field} of 1..=2000 ms"),
                    get(field),
                    want,
                    want * 0.01 + 1.0,
                    &out,
                );
            }
        });
    }

    #[test]
    fn percentiles_are_per_interval_and_per_series() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&[]);
            let fast: String = (0..100).map(|_| "svc:2|ms|#path:/fast\n").collect();
            let slow: String = (0..100).map(|_| "svc:900|ms|#path:/slow\n").collect();
            c.send_tcp(&format!("{fast}{slow}"));
            let out = c.wait_for("both svc series", |o| {
                o.named("stats.timers.svc.upper_99", &["path:/fast"])
                    .count()
                    > 0
                    && o.named("stats.timers.svc.upper_99", &["path:/slow"])
                        .count()
                        > 0
            });
            let p99 = |tags: &[&str]| {
                out.named("stats.timers.svc.upper_99", tags)
                    .last()
                    .and_then(|s| s.value)
            };
            assert_near("p99 of /fast", p99(&["path:/fast"]), 2.0, 0.03, &out);
            assert_near("p99 of /slow", p99(&["path:/slow"]), 900.0, 9.0, &out);
        });
    }
}

/// Starts `agent --listen 127.0.0.1:0 --to TO` with a short `--batch-wait` and `--max-backoff`
/// and then `extra` flags; returns it and its UDP address.
fn start_agent(to: SocketAddr, extra: &[&str]) -> (Program, SocketAddr) {
    let mut args = vec!["--batch-wait", "50ms", "--max-backoff", "200ms"];
    args.extend_from_slice(extra);
    start_agent_with(to, &args)
}

/// Sends `count` StatsD lines `name:1|c` to `addr` in datagrams of 50 lines.
fn udp_counts(addr: SocketAddr, name: &str, count: usize) {
    udp_counts_by(addr, name, count, 50);
}

/// Sends `count` StatsD lines `name:1|c` to `addr` in datagrams of `per` lines.
fn udp_counts_by(addr: SocketAddr, name: &str, count: usize, per: usize) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
    let line = format!("{name}:1|c\n");
    let mut left = count;
    while left > 0 {
        let n = left.min(per);
        socket
            .send_to(line.repeat(n).as_bytes(), addr)
            .expect("send a datagram");
        left -= n;
    }
}

/// The suite playing the collector for an agent: it speaks the agent protocol's collector side
/// by hand, so that a test can see each batch as the agent sealed it and choose what to
/// acknowledge.
struct FakeCollector {
    listener: std::net::TcpListener,
}

/// One connection from the agent to the [`FakeCollector`].
struct Session {
    reader: std::io::BufReader<TcpStream>,
    writer: TcpStream,
}

/// A batch as the agent sent it.
struct SentBatch {
    seq: u64,
    received_ms: u64,
    lines: Vec<String>,
    bytes: usize,
}

impl FakeCollector {
    fn start() -> FakeCollector {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a listener");
        FakeCollector { listener }
    }

    fn addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("the listener's address")
    }

    /// Waits for the agent to connect and answers its `HELLO` with `OK taken`.
    #[track_caller]
    fn session(&self, agent: &mut Program, taken: u64) -> Session {
        let Some(stream) = agent.accept_while_running(&self.listener, PROMPT) else {
            agent.fail("the agent never connected to the suite's collector");
        };
        stream
            .set_read_timeout(Some(PROMPT))
            .expect("a read timeout");
        let writer = stream.try_clone().expect("clone the stream");
        let mut session = Session {
            reader: std::io::BufReader::new(stream),
            writer,
        };
        let hello = session.line();
        if !hello.as_deref().is_some_and(|l| l.starts_with("HELLO ")) {
            agent.fail(format_args!(
                "expected the agent's first line to be HELLO <id>, got {}",
                workbook_suite::shown::or(&hello, "nothing")
            ));
        }
        session.send(&format!("OK {taken}\n"));
        session
    }
}

impl Session {
    fn line(&mut self) -> Option<String> {
        use std::io::BufRead;
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(n) if n > 0 && line.ends_with('\n') => Some(line.trim_end().to_owned()),
            _ => None,
        }
    }

    fn send(&mut self, text: &str) {
        // The agent may have gone: what it did then is the test's to judge.
        let _ = self.writer.write_all(text.as_bytes());
    }

    /// The next `BATCH` the agent sends, failing the test with `doing` if none comes in time.
    #[track_caller]
    fn batch(&mut self, agent: &mut Program, doing: &str) -> SentBatch {
        use std::io::Read;
        let header = self.line();
        let parsed = header.as_deref().and_then(|h| {
            let mut words = h.strip_prefix("BATCH ")?.split(' ');
            let seq = words.next()?.parse::<u64>().ok()?;
            let received_ms = words.next()?.parse::<u64>().ok()?;
            let bytes = words.next()?.parse::<usize>().ok()?;
            Some((seq, received_ms, bytes))
        });
        let Some((seq, received_ms, bytes)) = parsed.filter(|p| p.2 <= 1 << 20) else {
            agent.fail(format_args!(
                "{doing}: expected a `BATCH <seq> <received-ms> <bytes>` header within {PROMPT:?}, got {}",
                workbook_suite::shown::or(&header, "nothing")
            ));
        };
        let mut body = vec![0; bytes];
        if self.reader.read_exact(&mut body).is_err() {
            agent.fail(format_args!(
                "{doing}: the agent sent `BATCH {seq} {received_ms} {bytes}` but not its {bytes} bytes"
            ));
        }
        let lines = String::from_utf8_lossy(&body)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        SentBatch {
            seq,
            received_ms,
            lines,
            bytes,
        }
    }
}

/// Starts an agent with exactly `args` (and `--listen 127.0.0.1:0 --to to`).
fn start_agent_with(to: SocketAddr, args: &[&str]) -> (Program, SocketAddr) {
    let to = to.to_string();
    let mut all = vec!["agent", "--listen", "127.0.0.1:0", "--to", &to];
    all.extend_from_slice(args);
    let mut program = Program::start(&bin(), &all);
    let addr = program.listening();
    (program, addr)
}

mod stage5_agent {
    use super::*;
    use workbook_suite::{Fault, FaultProxy};

    #[test]
    fn a_batch_is_sealed_at_batch_lines_or_after_batch_wait() {
        bounded(LIMIT, || {
            let collector = FakeCollector::start();
            let (mut agent, local) =
                start_agent_with(collector.addr(), &["--batch", "50", "--batch-wait", "2s"]);
            let mut session = collector.session(&mut agent, 0);
            let before = now_ms();
            // 120 lines in twelve datagrams of ten: two full batches at once, then 20 lines
            // that wait out --batch-wait.
            udp_counts_by(local, "sealed", 120, 10);
            let sent = Instant::now();
            let expected = [(1, 50), (2, 50), (3, 20)];
            for (seq, lines) in expected {
                let doing = format!(
                    "120 lines sent in datagrams of 10 to an agent with --batch 50 --batch-wait 2s \
                     (batches of 50, 50 and 20 expected); batch {seq}"
                );
                let batch = session.batch(&mut agent, &doing);
                if batch.seq != seq || batch.lines.len() != lines {
                    agent.fail(format_args!(
                        "{doing}: expected BATCH {seq} with {lines} lines, got BATCH {} with {} \
                         lines",
                        batch.seq,
                        batch.lines.len()
                    ));
                }
                if batch.received_ms + 5_000 < before || batch.received_ms > now_ms() + 5_000 {
                    agent.fail(format_args!(
                        "{doing}: its received-ms {} is not the agent's clock (now {})",
                        batch.received_ms,
                        now_ms()
                    ));
                }
                if let Some(line) = batch.lines.iter().find(|l| *l != "sealed:1|c") {
                    agent.fail(format_args!(
                        "{doing}: expected the lines as sent, `sealed:1|c`, got `{line}`"
                    ));
                }
                // Its first line came after the datagrams were sent, so its wait ends 2 s later
                // at the earliest (load can only make it later).
                if seq == 3 && sent.elapsed() < Duration::from_millis(1_900) {
                    agent.fail(format_args!(
                        "{doing}: the last 20 lines should wait out --batch-wait 2s; they came \
                         {:.2} s after they were sent",
                        sent.elapsed().as_secs_f64()
                    ));
                }
                session.send(&format!("ACK {seq}\n"));
            }
        });
    }

    #[test]
    fn sigterm_waits_for_the_collector_to_acknowledge() {
        bounded(LIMIT, || {
            let collector = FakeCollector::start();
            let (mut agent, local) =
                start_agent_with(collector.addr(), &["--batch", "10", "--batch-wait", "10s"]);
            let mut session = collector.session(&mut agent, 0);
            udp_counts(local, "held", 10);
            let batch = session.batch(&mut agent, "10 lines to an agent with --batch 10");
            // Unacknowledged, batch 1 keeps the agent up after SIGTERM (for up to 5 s).
            agent.terminate();
            if let Some(status) = agent.wait_exit(Duration::from_millis(300)) {
                agent.fail(format_args!(
                    "sent SIGTERM while batch {} was unacknowledged; the agent exited ({status}) \
                     at once instead of waiting up to 5 s for the ACK",
                    batch.seq
                ));
            }
            let acked = Instant::now();
            session.send(&format!("ACK {}\n", batch.seq));
            let stopped =
                agent.expect_json("the stopped event", PROMPT, |v| v["event"] == "stopped");
            // Waiting out the whole 5 s would put the event about 4.7 s after the ACK.
            let after_ack = acked.elapsed();
            let exited = agent.wait_exit(Duration::from_secs(3)).is_some();
            if after_ack > Duration::from_secs(3) || !exited || stopped["unacked"] != 0 {
                agent.fail(format_args!(
                    "after SIGTERM, the ACK of its only batch should let the agent exit at once \
                     with {{\"event\":\"stopped\",\"unacked\":0}}; it printed {stopped} \
                     {:.1} s after the ACK, and had {} exited {:.1} s after it",
                    after_ack.as_secs_f64(),
                    if exited { "" } else { "not " },
                    acked.elapsed().as_secs_f64()
                ));
            }
        });
    }

    #[test]
    fn past_max_buffer_the_oldest_unacknowledged_batches_are_dropped() {
        bounded(LIMIT, || {
            let collector = FakeCollector::start();
            let (mut agent, local) = start_agent_with(
                collector.addr(),
                &[
                    "--batch",
                    "10",
                    "--batch-wait",
                    "10s",
                    "--max-buffer",
                    "1KiB",
                    "--max-backoff",
                    "200ms",
                ],
            );
            // A collector that takes every batch and acknowledges none.
            let mut session = collector.session(&mut agent, 0);
            let socket = UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
            for i in 0..30 {
                let lines = format!("buffered.{i:02}:1|c\n").repeat(10);
                socket
                    .send_to(lines.as_bytes(), local)
                    .expect("send a datagram");
            }
            let doing =
                "30 batches of 10 lines, none acknowledged, to an agent with --max-buffer 1KiB";
            let mut seq = 0;
            while seq < 30 {
                seq = session.batch(&mut agent, doing).seq;
            }
            agent.expect_json("a dropped event", PROMPT, |v| {
                v["event"] == "dropped" && v["batches"].as_u64().is_some_and(|n| n > 0)
            });
            // The next session gets only what the agent still holds: the newest, within 1 KiB.
            drop(session);
            let mut again = collector.session(&mut agent, 0);
            let mut resent = Vec::new();
            while resent.last().is_none_or(|b: &SentBatch| b.seq < 30) {
                resent.push(again.batch(&mut agent, "the resend after a reconnection"));
            }
            let seqs: Vec<u64> = resent.iter().map(|b| b.seq).collect();
            let bytes: usize = resent.iter().map(|b| b.bytes).sum();
            let contiguous = seqs.windows(2).all(|w| w[1] == w[0] + 1);
            if seqs[0] == 1 || !contiguous || bytes > 1024 {
                agent.fail(format_args!(
                    "{doing}: after a reconnection expected only the newest batches, in order and \
                     within 1024 bytes, ending with 30; it resent {} ({bytes} bytes)",
                    workbook_suite::shown::listed(&seqs, "none")
                ));
            }
        });
    }

    #[test]
    fn the_agent_forwards_batches_to_the_collector() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&[]);
            let (_agent, local) = start_agent(c.agent, &["--batch", "100"]);
            udp_counts(local, "via.agent", 1000);
            let out = c.wait_for("stats_counts.via.agent adding up to 1000", |o| {
                o.sum("stats_counts.via.agent") >= 1000.0
            });
            assert_eq!(
                out.sum("stats_counts.via.agent"),
                1000.0,
                "{}",
                out.describe()
            );
        });
    }

    #[test]
    fn the_collector_acks_each_batch_and_drops_a_resent_one() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&[]);
            let mut conn = c.agent_conn();
            c.exchange(&mut conn, "HELLO edge-7\n", Some("OK 0"));
            let t = now_ms();
            let batch = |seq: u64| format!("BATCH {seq} {t} 16\ndup:1|c\ndup:1|c\n");
            for seq in 1..=3 {
                c.exchange(&mut conn, &batch(seq), Some(&format!("ACK {seq}")));
            }
            // A reconnect that resends batches 2 and 3, then sends 4: OK names the highest taken.
            let mut again = c.agent_conn();
            c.exchange(&mut again, "HELLO edge-7\n", Some("OK 3"));
            for seq in 2..=4 {
                c.exchange(&mut again, &batch(seq), Some(&format!("ACK {seq}")));
            }
            let out = c.wait_for("stats_counts.dup adding up to 8", |o| {
                o.sum("stats_counts.dup") >= 8.0 && o.batch_total("duplicates") >= 2
            });
            assert_eq!(
                (out.sum("stats_counts.dup"), out.batch_total("duplicates")),
                (8.0, 2),
                "four distinct batches of 2, two resent: 8 counted, 2 duplicates\n  {}",
                out.describe()
            );
        });
    }

    #[test]
    fn a_batch_split_across_reads_is_taken_whole() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&[]);
            let mut conn = c.agent_conn();
            c.exchange(&mut conn, "HELLO edge-split\n", Some("OK 0"));
            let t = now_ms();
            // `half:1|c\nwhole:1|c\n` (19 bytes): the header and the body up to `wh`, then the
            // rest. The collector must wait for the whole body before it takes the batch.
            let first = format!("BATCH 1 {t} 19\nhalf:1|c\nwh");
            if let Err(e) = conn.send(first.as_bytes()) {
                c.program.fail(format_args!("cannot send {first:?}: {e}"));
            }
            // Pacing, not synchronisation: the two parts should reach the collector apart.
            std::thread::sleep(Duration::from_millis(100));
            c.exchange(&mut conn, "ole:1|c\n", Some("ACK 1"));
            let out = c.wait_for("half and whole", |o| {
                o.sum("stats_counts.half") >= 1.0 && o.sum("stats_counts.whole") >= 1.0
            });
            c.check(
                out.sum("stats_counts.half") == 1.0 && out.sum("stats_counts.whole") == 1.0,
                format_args!(
                    "a batch of `half:1|c` and `whole:1|c` sent in two writes 100 ms apart, \
                     split inside `whole`: expected each counted once\n  {}",
                    out.describe()
                ),
            );
        });
    }

    #[test]
    fn the_agents_receive_time_stamps_its_samples() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&[]);
            let mut conn = c.agent_conn();
            c.exchange(&mut conn, "HELLO clocked\n", Some("OK 0"));
            c.exchange(
                &mut conn,
                "BATCH 1 1600000000000 8\nold:1|c\n",
                Some("ACK 1"),
            );
            let out = c.wait_for("stats_counts.old", |o| o.last("stats_counts.old").is_some());
            let stat = out.last("stats_counts.old").expect("found above");
            assert!(
                stat.line["first_ms"].as_u64() == Some(1_600_000_000_000),
                "a batch received by the agent at 1600000000000 ms keeps that time: {}",
                stat.line
            );
        });
    }

    #[test]
    fn a_cut_connection_loses_and_doubles_nothing() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&[]);
            // The first connection is cut after 3000 bytes, mid-batch; the agent reconnects.
            let proxy = FaultProxy::start(c.agent, Fault::CutAfter(3000)).expect("a proxy");
            let (mut agent, local) = start_agent(proxy.addr(), &["--batch", "50"]);
            udp_counts(local, "cut", 2000);
            agent.expect_json("a reconnection", PROMPT * 2, |v| {
                v["event"] == "connected" && v["taken"].as_u64().is_some_and(|t| t > 0)
            });
            let out = c.wait_for("stats_counts.cut adding up to 2000", |o| {
                o.sum("stats_counts.cut") >= 2000.0
            });
            assert_eq!(out.sum("stats_counts.cut"), 2000.0, "{}", out.describe());
        });
    }

    #[test]
    fn a_collector_restart_loses_nothing_the_agent_holds() {
        bounded(LIMIT, || {
            let mut first = Collector::start(&[]);
            let agent_addr = first.agent.to_string();
            let (mut agent, local) = start_agent(first.agent, &["--batch", "100"]);
            udp_counts(local, "restart", 500);
            first.wait_for("the first 500", |o| o.sum("stats_counts.restart") >= 500.0);
            first.program.terminate();
            if first.program.wait_exit(PROMPT).is_none() {
                first
                    .program
                    .fail("sent SIGTERM; the collector did not exit");
            }
            agent.expect_json("a disconnection", PROMPT, |v| v["event"] == "disconnected");
            // While the collector is away the agent keeps what it receives.
            udp_counts(local, "restart", 500);
            let Collector { dir, out, .. } = first;
            let mut second = Collector::start_at(dir, out, &agent_addr, &[]);
            let out = second.wait_for("1000 in all, across both collectors' batches", |o| {
                o.sum("stats_counts.restart") >= 1000.0
            });
            assert_eq!(
                out.sum("stats_counts.restart"),
                1000.0,
                "{}",
                out.describe()
            );
        });
    }
}

/// The `*.batch` files under `dir` (one level of subdirectories) and their bytes in all.
fn spooled(dir: &Path) -> (usize, u64) {
    let files: Vec<u64> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|sub| std::fs::read_dir(sub.path()).ok())
        .flatten()
        .flatten()
        .filter(|f| f.path().extension().is_some_and(|e| e == "batch"))
        .filter_map(|f| f.metadata().ok().map(|m| m.len()))
        .collect();
    (files.len(), files.iter().sum())
}

mod stage5_spool {
    use super::*;

    #[test]
    fn the_spool_keeps_what_comes_while_the_collector_is_killed() {
        bounded(LIMIT, || {
            let spool = tempfile::tempdir().expect("a temporary directory");
            let spool_dir = spool.path().to_str().expect("a UTF-8 temporary path");
            let mut first = Collector::start(&[]);
            let agent_addr = first.agent.to_string();
            let (mut agent, local) =
                start_agent(first.agent, &["--batch", "100", "--spool", spool_dir]);
            udp_counts(local, "spool", 500);
            first.wait_for("the first 500", |o| o.sum("stats_counts.spool") >= 500.0);
            first.program.signal("KILL");
            if first.program.wait_exit(PROMPT).is_none() {
                first
                    .program
                    .fail("sent SIGKILL; the collector did not exit");
            }
            agent.expect_json("a disconnection", PROMPT, |v| v["event"] == "disconnected");
            // 700 lines of 10 bytes while the collector is away: they go to the spool.
            udp_counts(local, "spool", 700);
            let written = poll_until(PROMPT, Duration::from_millis(20), || {
                let (files, bytes) = spooled(spool.path());
                (files > 0 && bytes == 7000).then_some(files)
            });
            if written.is_none() {
                agent.fail(format_args!(
                    "with --spool {spool_dir} and the collector killed, sent 700 lines of \
                     `spool:1|c` (7000 bytes); expected them in *.batch files under \
                     {spool_dir}/ID/, found {}",
                    files_and_bytes(spooled(spool.path()))
                ));
            }
            let Collector { dir, out, .. } = first;
            let mut second = Collector::start_at(dir, out, &agent_addr, &[]);
            let out = second.wait_for("1200 in all, across both collectors' batches", |o| {
                o.sum("stats_counts.spool") >= 1200.0
            });
            assert_eq!(out.sum("stats_counts.spool"), 1200.0, "{}", out.describe());
            let emptied = poll_until(PROMPT, Duration::from_millis(20), || {
                (spooled(spool.path()).0 == 0).then_some(())
            });
            if emptied.is_none() {
                agent.fail(format_args!(
                    "the collector acknowledged every spooled batch; expected their files \
                     removed, found {}",
                    files_and_bytes(spooled(spool.path()))
                ));
            }
        });
    }
}

/// One sample line of an exposition: `name{labels} value`.
/// A sample's value for a failure message, or that there is none.
fn sample(value: Option<f64>) -> String {
    value.map_or_else(|| "no such sample".to_owned(), |v| v.to_string())
}

fn exposed(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

mod stage6_prometheus {
    use super::*;

    fn scrape(c: &mut Collector) -> String {
        match http_get(c.http, "/metrics", PROMPT) {
            Ok(r) if r.status == 200 => {
                let ct = r.headers.get("content-type").cloned().unwrap_or_default();
                assert!(
                    ct.starts_with("text/plain") && ct.contains("version=0.0.4"),
                    "GET /metrics must answer Content-Type text/plain; version=0.0.4, got {ct:?}"
                );
                r.body
            }
            Ok(r) => c.program.fail(format_args!(
                "GET /metrics answered {} {:?}",
                r.status, r.body
            )),
            Err(e) => c.program.fail(format_args!("GET /metrics failed: {e}")),
        }
    }

    #[test]
    fn metrics_are_exposed_with_help_and_type() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&[]);
            c.send_tcp("api.hits:3|c|#code:200\napi.temp:21.5|g\napi.lat:100|ms\n5xx-errors:2|c\n");
            c.wait_for("api.hits", |o| o.last("stats.gauges.api.temp").is_some());
            let body = scrape(&mut c);
            for (family, kind) in [
                ("api_hits_total", "counter"),
                ("api_temp", "gauge"),
                ("api_lat_seconds", "summary"),
            ] {
                assert!(
                    body.contains(&format!("# TYPE {family} {kind}\n"))
                        && body.contains(&format!("# HELP {family} ")),
                    "expected # HELP and # TYPE {family} {kind} in:\n{body}"
                );
            }
            for (series, want) in [
                ("api_hits_total{code=\"200\"}", 3.0),
                ("api_temp", 21.5),
                ("api_lat_seconds_count", 1.0),
                ("api_lat_seconds_sum", 0.1),
                // A leading digit is not allowed in a Prometheus name: it gets a `_`.
                ("_5xx_errors_total", 2.0),
            ] {
                let got = exposed(&body, series);
                assert!(
                    got == Some(want),
                    "expected the sample {series} {want}, got {}:\n{body}",
                    sample(got)
                );
            }
            // One timing of 100 ms: every quantile is 0.1 s, within the sketch's 1%.
            for q in ["0.5", "0.9", "0.99"] {
                let series = format!("api_lat_seconds{{quantile=\"{q}\"}}");
                let got = exposed(&body, &series);
                assert!(
                    got.is_some_and(|v| (v - 0.1).abs() <= 0.001),
                    "one timing of 100ms: expected the sample {series} 0.1 (seconds), got {}:\n{body}",
                    sample(got)
                );
            }
        });
    }

    #[test]
    fn exposed_counters_are_running_totals() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&[]);
            c.send_tcp("runs:2|c\n");
            c.wait_for("runs", |o| o.sum("stats_counts.runs") == 2.0);
            c.send_tcp("runs:3|c\n");
            c.wait_for("runs again", |o| o.sum("stats_counts.runs") == 5.0);
            let body = scrape(&mut c);
            assert!(
                exposed(&body, "runs_total") == Some(5.0),
                "2 then 3 in two intervals: a Prometheus counter never resets; expected runs_total 5, got {}\n{body}",
                sample(exposed(&body, "runs_total"))
            );
        });
    }

    #[test]
    fn unknown_paths_are_404() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&[]);
            c.wait_for("a first closed batch", |o| !o.batches.is_empty());
            let r = http_get(c.http, "/nope", PROMPT);
            let status = r.as_ref().map(|r| r.status).ok();
            c.check(
                status == Some(404),
                format_args!("GET /nope: expected 404, got {}", outcome(&r)),
            );
        });
    }
}

mod stage7_hostile {
    use super::*;

    #[test]
    fn malformed_lines_are_counted_by_reason_and_spare_the_rest() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&[]);
            c.send_tcp(
                "good:1|c\nnocolon\ngood:x|c\ngood:1|zz\ngood:1|c|@7\n:1|c\ngood:1|c|#\ngood:1|c\n",
            );
            let graphite = c.graphite;
            c.send_to(graphite, "only.two 1\nbad.ts 1 yesterday\n");
            let out = c.wait_for("the malformed counts", |o| {
                o.sum("stats_counts.good") == 2.0 && o.malformed("bad_timestamp") == 1
            });
            for (reason, n) in [
                ("syntax", 1),
                ("bad_value", 1),
                ("bad_type", 1),
                ("bad_rate", 1),
                ("bad_name", 1),
                ("bad_tags", 1),
                ("graphite_syntax", 1),
                ("bad_timestamp", 1),
            ] {
                assert_eq!(
                    out.malformed(reason),
                    n,
                    "malformed.{reason}\n  {}",
                    out.describe()
                );
            }
        });
    }

    #[test]
    fn a_line_past_the_limit_is_skipped_to_its_newline() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&["--max-line", "1KiB"]);
            let long = format!("huge:{}|c\n", "9".repeat(100_000));
            c.send_tcp(&format!("before:1|c\n{long}after:1|c\n"));
            let out = c.wait_for("before and after", |o| {
                o.sum("stats_counts.before") == 1.0 && o.sum("stats_counts.after") == 1.0
            });
            assert_eq!(out.malformed("line_too_long"), 1, "{}", out.describe());
            c.program.assert_running("after a 100 kB line");
        });
    }

    #[test]
    fn a_line_past_the_limit_in_one_read_is_refused_too() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&["--max-line", "1KiB"]);
            // Both lines arrive whole in one write: one of 1,009 bytes and one of 1,109, with
            // its newline in the same read, which no skipping-to-the-newline ever sees.
            let under = format!("u{}:1|c", "n".repeat(1_004));
            let over = format!("o{}:1|c", "v".repeat(1_104));
            c.send_tcp(&format!("{under}\n{over}\nlast:1|c\n"));
            let out = c.wait_for("last", |o| o.sum("stats_counts.last") == 1.0);
            let (kept, taken) = (
                out.sum(&format!("stats_counts.{}", &under[..under.len() - 4])),
                out.sum(&format!("stats_counts.{}", &over[..over.len() - 4])),
            );
            if kept != 1.0 || taken != 0.0 || out.malformed("line_too_long") != 1 {
                c.program.fail(format_args!(
                    "with --max-line 1KiB, sent a counter line of {} bytes, one of {} and `last:1|c` \
                     in one write; expected the first counted, the second refused as \
                     line_too_long; got {kept} and {taken}, line_too_long {}",
                    under.len(),
                    over.len(),
                    out.malformed("line_too_long")
                ));
            }
        });
    }

    /// A line that never ends must not be held whole: past `--max-line` the collector drops
    /// what it read of it and skips to the next newline (or cuts the connection), so a sender
    /// cannot grow its memory without bound.
    #[test]
    fn a_huge_line_without_a_newline_keeps_memory_bounded() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&["--max-line", "1KiB"]);
            c.send_tcp("warm:1|c\n");
            c.wait_for("warm", |o| o.sum("stats_counts.warm") == 1.0);
            let pid = c.program.id();
            let peak = |pid: u32| -> Option<u64> {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
                let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            };
            let Some(before) = peak(pid) else {
                eprintln!("skipping: /proc/{pid}/status has no VmHWM (not Linux?)");
                return;
            };
            let tcp = c.tcp;
            let mut stream = c.connect(tcp);
            let _ = stream.set_write_timeout(Some(PROMPT));
            let chunk = vec![b'9'; 1 << 20];
            let mut sent = 0;
            while sent < 64 && stream.write_all(&chunk).is_ok() {
                sent += 1;
            }
            // Still open: end the line and send one more on it; cut: send it on a new one.
            if sent < 64 || stream.write_all(b"\nafter:1|c\n").is_err() {
                c.send_tcp("after:1|c\n");
            }
            drop(stream);
            let out = c.wait_for("after, once the huge line was read", |o| {
                o.sum("stats_counts.after") == 1.0
            });
            let grown = peak(pid).unwrap_or(before).saturating_sub(before);
            c.check(
                grown < 32 * 1024,
                format_args!(
                    "sent {sent} MiB of one line with no newline (--max-line 1KiB): the \
                     collector's peak memory (VmHWM) grew by {grown} KiB; it must drop what it \
                     read of a line past --max-line\n  {}",
                    out.describe()
                ),
            );
            c.program
                .assert_running("after a 64 MiB line with no newline");
        });
    }

    #[test]
    fn series_past_max_series_are_counted_as_overflow() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&["--max-series", "10", "--flush", "1s"]);
            let text: String = (0..25).map(|i| format!("card.s{i}:1|c\n")).collect();
            c.send_tcp(&text);
            let out = c.wait_for("a batch with the overflow", |o| {
                o.batch_total("overflow") > 0
            });
            let counted = out
                .stats
                .iter()
                .filter(|s| s.name.starts_with("stats_counts.card."))
                .count();
            assert_eq!(
                (counted, out.batch_total("overflow")),
                (10, 15),
                "25 series with --max-series 10: 10 kept, 15 samples overflow\n  {}",
                out.describe()
            );
            // Next interval, the slots are free again.
            c.send_tcp("card.late:1|c\n");
            c.wait_for("card.late", |o| o.sum("stats_counts.card.late") == 1.0);
        });
    }

    #[test]
    fn random_bytes_never_stop_the_collector() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&[]);
            let mut state: u64 = 42;
            let mut garbage = Vec::with_capacity(200_000);
            for _ in 0..200_000 {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                garbage.push((state >> 56) as u8);
            }
            for addr in [c.tcp, c.graphite, c.agent] {
                if let Ok(mut s) = TcpStream::connect(addr) {
                    let _ = s.write_all(&garbage);
                }
            }
            let socket = UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
            for chunk in garbage.chunks(1400).take(20) {
                let _ = socket.send_to(chunk, c.udp);
            }
            c.send_tcp("alive:1|c\n");
            c.wait_for("alive after the garbage", |o| {
                o.sum("stats_counts.alive") == 1.0
            });
            c.program.assert_running("after random bytes on every port");
        });
    }

    #[test]
    fn a_bad_agent_frame_gets_err_and_a_close() {
        bounded(LIMIT, || {
            let mut c = Collector::start(&["--max-frame", "1KiB"]);
            let mut conn = c.agent_conn();
            c.exchange(&mut conn, "HELLO big\n", Some("OK 0"));
            let _ = conn.send(b"BATCH 1 0 5000\n");
            let err = conn.reply(PROMPT);
            c.check(
                err.as_deref().is_some_and(|e| e.starts_with("ERR ")),
                format_args!(
                    "sent BATCH of 5000 bytes with --max-frame 1KiB and expected ERR ..., got {}",
                    AgentConn::shown(&err, PROMPT)
                ),
            );
            let closed = conn.reply(PROMPT);
            c.check(
                closed.is_none(),
                format_args!(
                    "after ERR the collector closes; got {}",
                    AgentConn::shown(&closed, PROMPT)
                ),
            );
            let mut conn = c.agent_conn();
            let _ = conn.send(b"BATCH 1 0 2\nx\n");
            let err = conn.reply(PROMPT);
            c.check(
                err.as_deref().is_some_and(|e| e.starts_with("ERR ")),
                format_args!(
                    "sent BATCH before HELLO and expected ERR ..., got {}",
                    AgentConn::shown(&err, PROMPT)
                ),
            );
            c.program.assert_running("after bad agent frames");
        });
    }
}

/// `/usr/bin/python3` (Debian's, where `python3-statsd` is installed), if it has the module.
fn python_statsd() -> Option<PathBuf> {
    let python = Path::new("/usr/bin/python3");
    let ok = std::process::Command::new(python)
        .args(["-c", "import statsd"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then(|| python.to_owned())
}

mod stage8_real_clients {
    use super::*;

    fn run_python(c: &mut Collector, python: &Path, script: &str) {
        let out = std::process::Command::new(python)
            .args(["-c", script])
            .output()
            .expect("run python3");
        if !out.status.success() {
            c.program.fail(format_args!(
                "the python statsd client failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }

    #[test]
    fn python_statsd_over_udp() {
        bounded(LIMIT, || {
            let Some(python) = python_statsd() else {
                eprintln!("skipping: python3-statsd not installed");
                return;
            };
            let mut c = Collector::start(&[]);
            let script = format!(
                "import statsd\n\
                 c = statsd.StatsClient('127.0.0.1', {port}, prefix='py')\n\
                 for _ in range(10): c.incr('hits')\n\
                 c.incr('sampled', 5, rate=1)\n\
                 c.gauge('level', 40); c.gauge('level', -5, delta=True)\n\
                 c.timing('work', 12.5)\n\
                 c.set('users', 'ann'); c.set('users', 'bob')\n\
                 with c.pipeline() as p:\n    p.incr('piped'); p.incr('piped')\n",
                port = c.udp.port()
            );
            run_python(&mut c, &python, &script);
            let out = c.wait_for("the python client's metrics", |o| {
                o.sum("stats_counts.py.hits") == 10.0
                    && o.sum("stats_counts.py.piped") == 2.0
                    && o.last("stats.sets.py.users.count").is_some()
            });
            assert!(
                out.last("stats.gauges.py.level").and_then(|s| s.value) == Some(35.0),
                "expected the gauge py.level at 35, got {}\n  {}",
                sample(out.last("stats.gauges.py.level").and_then(|s| s.value)),
                out.describe()
            );
            assert!(
                out.last("stats.timers.py.work.upper").and_then(|s| s.value) == Some(12.5),
                "expected the timer py.work's upper at 12.5, got {}\n  {}",
                sample(out.last("stats.timers.py.work.upper").and_then(|s| s.value)),
                out.describe()
            );
        });
    }

    #[test]
    fn python_statsd_over_tcp() {
        bounded(LIMIT, || {
            let Some(python) = python_statsd() else {
                eprintln!("skipping: python3-statsd not installed");
                return;
            };
            let mut c = Collector::start(&[]);
            let script = format!(
                "import statsd\n\
                 c = statsd.TCPStatsClient('127.0.0.1', {port}, prefix='tcp')\n\
                 for _ in range(500): c.incr('hits')\n\
                 c.timing('work', 7)\n\
                 c.close()\n",
                port = c.tcp.port()
            );
            run_python(&mut c, &python, &script);
            let out = c.wait_for("500 tcp.hits", |o| o.sum("stats_counts.tcp.hits") >= 500.0);
            assert_eq!(
                out.sum("stats_counts.tcp.hits"),
                500.0,
                "{}",
                out.describe()
            );
        });
    }

    #[test]
    fn collectd_write_graphite_feeds_the_collector() {
        bounded(LIMIT, || {
            let collectd = Path::new("/usr/sbin/collectd");
            let plugins = Path::new("/usr/lib/collectd");
            if !collectd.is_file() || !plugins.join("write_graphite.so").is_file() {
                eprintln!("skipping: collectd (collectd-core) not installed");
                return;
            }
            let mut c = Collector::start(&[]);
            let dir = c.dir.path().to_owned();
            let conf = dir.join("collectd.conf");
            let config = format!(
                "Hostname \"edge1\"\nFQDNLookup false\nInterval 1\nBaseDir \"{base}\"\n\
                 PIDFile \"{base}/collectd.pid\"\nPluginDir \"{plugins}\"\nTypesDB \"/usr/share/collectd/types.db\"\n\
                 LoadPlugin load\nLoadPlugin memory\nLoadPlugin write_graphite\n\
                 <Plugin write_graphite>\n  <Node \"collector\">\n    Host \"127.0.0.1\"\n    Port \"{port}\"\n    Protocol \"tcp\"\n    Prefix \"collectd.\"\n  </Node>\n</Plugin>\n",
                base = dir.display(),
                plugins = plugins.display(),
                port = c.graphite.port()
            );
            std::fs::write(&conf, config).expect("write collectd.conf");
            let conf_arg = conf.to_string_lossy().into_owned();
            // -f: stay in the foreground, so the Program owns it and kills it at the end.
            let mut collectd = Program::start(collectd, &["-f", "-C", &conf_arg]);
            let out = c.out.clone();
            let found = c.program.poll_while_running(
                Duration::from_secs(20),
                Duration::from_millis(100),
                |_| {
                    Output::read(&out)
                        .stats
                        .iter()
                        .find(|s| {
                            s.name.starts_with("collectd.edge1.load.load.")
                                && s.line["sent_ms"].is_u64()
                        })
                        .cloned()
                },
            );
            let Some(stat) = found else {
                let seen = c.output().describe();
                let why = collectd.diagnosis();
                c.program.fail(format_args!(
                    "collectd's write_graphite sent no collectd.edge1.load.* within 20s\n  output: {seen}\n  collectd: {why}"
                ));
            };
            let sent = stat.line["sent_ms"].as_u64().unwrap_or(0);
            assert!(
                sent % 1000 == 0 && sent.abs_diff(now_ms()) < 60_000,
                "Graphite timestamps are seconds: sent_ms {sent} should be a recent whole second"
            );
        });
    }

    #[test]
    fn promtool_accepts_the_exposition() {
        bounded(LIMIT, || {
            let promtool = Path::new("/usr/bin/promtool");
            if !promtool.is_file() {
                eprintln!("skipping: promtool (prometheus) not installed");
                return;
            }
            let mut c = Collector::start(&[]);
            c.send_tcp(
                "web.requests:3|c|#code:200,method:get\nweb.requests:1|c|#code:500\n\
                 web.inflight:4|g\nweb.latency:12|ms|#route:/a\nweb.visitors:x|s\n",
            );
            let graphite = c.graphite;
            c.send_to(graphite, "host.cpu.idle nan 1700000000\n");
            c.wait_for("the web metrics", |o| {
                o.last("stats.gauges.web.inflight").is_some() && o.last("host.cpu.idle").is_some()
            });
            let body = match http_get(c.http, "/metrics", PROMPT) {
                Ok(r) => r.body,
                Err(e) => c.program.fail(format_args!("GET /metrics failed: {e}")),
            };
            let mut child = std::process::Command::new(promtool)
                .args(["check", "metrics"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("run promtool");
            child
                .stdin
                .take()
                .expect("piped")
                .write_all(body.as_bytes())
                .expect("write to promtool");
            let result = child.wait_with_output().expect("promtool finished");
            assert!(
                result.status.success(),
                "promtool check metrics exited ({}): {}{}\n  on:\n{body}",
                result.status,
                String::from_utf8_lossy(&result.stdout),
                String::from_utf8_lossy(&result.stderr)
            );
        });
    }
}
