//! Project 6, the service registry speaking Consul's HTTP API, graded from the outside.
//!
//! Every test starts the real `service-registry agent` (the binary `WORKBOOK_BIN_SERVICE_REGISTRY`
//! names, or the reference solution) and talks to it over HTTP with the suite's own client, and
//! over DNS with messages built by hickory-proto. The expectations follow Consul's documented
//! API (agent, catalog and health endpoints; blocking queries; the DNS interface); where Consul
//! itself cannot be run here, the comment on a test says which part of its documentation it
//! follows. The last stage drives the agent with Debian's python3-consul and with `dig`.

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use workbook_suite::json_http::{self as http, Answer};
use workbook_suite::{Program, binary, bounded, poll_until};

/// A check's status for a failure message, or that the check is not listed.
fn check_shown(status: &Option<String>) -> String {
    status
        .as_ref()
        .map_or_else(|| "no such check".to_owned(), |s| format!("{s:?}"))
}

/// What a command printed on stdout, quoted, or why it could not run.
fn printed(out: &std::io::Result<String>) -> String {
    match out {
        Ok(text) => format!("{text:?}"),
        Err(e) => format!("nothing: it could not run ({e})"),
    }
}

/// Every test's overall bound.
const LIMIT: Duration = Duration::from_secs(60);

/// How long an answer that should come at once may take.
const PROMPT: Duration = Duration::from_secs(5);

fn bin() -> PathBuf {
    binary("service-registry")
}

/// An agent under test.
struct Agent {
    program: Program,
    addr: SocketAddr,
    dns: Option<SocketAddr>,
}

impl Agent {
    /// `service-registry agent --bind 127.0.0.1:0 ARGS...`.
    fn start(args: &[&str]) -> Agent {
        let mut all = vec!["agent", "--bind", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut program = Program::start(&bin(), &all);
        let addr = program.listening();
        Agent {
            program,
            addr,
            dns: None,
        }
    }

    /// Like `start`, with `--dns-bind 127.0.0.1:0`, reading the `dns on ADDR` line.
    fn start_dns(args: &[&str]) -> Agent {
        let mut all = vec!["--dns-bind", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut agent = Agent::start(&all);
        let line = agent.program.next_line(PROMPT);
        let dns = line
            .as_deref()
            .and_then(|l| l.strip_prefix("dns on "))
            .and_then(|a| a.parse().ok());
        match dns {
            Some(dns) => agent.dns = Some(dns),
            None => agent.program.fail(format_args!(
                "expected the second stdout line to be `dns on ADDR`, got {}",
                line.as_ref()
                    .map_or_else(|| format!("none within {PROMPT:?}"), |l| format!("{l:?}"))
            )),
        }
        agent
    }

    #[track_caller]
    fn call(&mut self, method: &str, path: &str, body: &str) -> Answer {
        match http::request(self.addr, method, path, body.as_bytes(), PROMPT) {
            Ok(answer) => answer,
            Err(e) => {
                // A handler that panicked closed the connection just after writing its panic to
                // stderr: give the stderr reader a moment to catch up, so the diagnosis shows it.
                let _ = poll_until(
                    Duration::from_millis(500),
                    Duration::from_millis(10),
                    || {
                        self.program
                            .stderr()
                            .contains(" panicked at ")
                            .then_some(())
                    },
                );
                self.program
                    .fail(format_args!("sent {method} {path} {body}: {e}"))
            }
        }
    }

    /// Sends a request and checks the status; returns the answer.
    #[track_caller]
    fn expect(&mut self, method: &str, path: &str, body: &str, status: u16) -> Answer {
        let answer = self.call(method, path, body);
        if answer.status != status {
            self.program.fail(format_args!(
                "sent {method} {path} {body}\n  expected status {status}, got {answer}"
            ));
        }
        answer
    }

    /// GETs a read endpoint: its JSON and its `X-Consul-Index`.
    #[track_caller]
    fn read(&mut self, path: &str) -> (Value, u64) {
        let answer = self.expect("GET", path, "", 200);
        let index = self.index_of(path, &answer);
        match answer.json() {
            Some(json) => (json, index),
            None => self
                .program
                .fail(format_args!("GET {path}: expected JSON, got {answer}")),
        }
    }

    #[track_caller]
    fn index_of(&mut self, path: &str, answer: &Answer) -> u64 {
        match answer.header("X-Consul-Index").map(str::parse::<u64>) {
            Some(Ok(index)) if index > 0 => index,
            other => self.program.fail(format_args!(
                "GET {path}: expected an X-Consul-Index header holding a number above 0, got \
                 {} ({answer})",
                match (other, answer.header("X-Consul-Index")) {
                    (Some(Ok(index)), _) => index.to_string(),
                    (_, Some(text)) => format!("{text:?}"),
                    (_, None) => "no such header".to_owned(),
                }
            )),
        }
    }

    #[track_caller]
    fn register(&mut self, body: &Value) {
        self.expect("PUT", "/v1/agent/service/register", &body.to_string(), 200);
    }

    /// The status of check `id` as `/v1/health/checks/NAME` shows it.
    #[track_caller]
    fn check_status(&mut self, name: &str, id: &str) -> Option<String> {
        let (checks, _) = self.read(&format!("/v1/health/checks/{name}"));
        checks.as_array()?.iter().find_map(|c| {
            (c["CheckID"] == id).then(|| c["Status"].as_str().unwrap_or("").to_owned())
        })
    }
}

/// A registration body in Consul's field names.
fn service(name: &str, id: &str, port: u16, tags: &[&str]) -> Value {
    json!({"Name": name, "ID": id, "Port": port, "Tags": tags, "Address": "127.0.0.1"})
}

/// Like `service`, with a TTL check.
fn with_ttl(mut body: Value, ttl: &str) -> Value {
    body["Check"] = json!({"TTL": ttl});
    body
}

/// The service IDs of a `/v1/health/service` or `/v1/catalog/service` answer, sorted.
fn ids(rows: &Value) -> Vec<String> {
    let mut ids: Vec<String> = rows
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| {
                    r["Service"]["ID"]
                        .as_str()
                        .or_else(|| r["ServiceID"].as_str())
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

mod stage1_register {
    use super::*;

    #[test]
    fn registered_services_are_listed_by_the_agent_and_the_catalog() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&[]);
            a.register(&service("web", "web-1", 8080, &["v1", "primary"]));
            a.register(&service("web", "web-2", 8081, &["v1"]));
            a.register(&service("db", "db-1", 5432, &[]));
            let (services, _) = a.read("/v1/agent/services");
            let web1 = &services["web-1"];
            if web1["ID"] != "web-1" || web1["Service"] != "web" || web1["Port"] != 8080 {
                a.program.fail(format_args!(
                    "GET /v1/agent/services: expected web-1 with Service \"web\" and Port \
                     8080, got {services}"
                ));
            }
            let (catalog, _) = a.read("/v1/catalog/services");
            let mut tags: Vec<String> = catalog["web"]
                .as_array()
                .map(|t| {
                    t.iter()
                        .filter_map(|t| t.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            tags.sort();
            if tags != ["primary", "v1"] || catalog["db"] != json!([]) {
                a.program.fail(format_args!(
                    "GET /v1/catalog/services: expected web with tags [primary, v1] and db \
                     with [], got {catalog}"
                ));
            }
            let (rows, _) = a.read("/v1/catalog/service/web");
            assert_eq!(
                ids(&rows),
                ["web-1", "web-2"],
                "catalog/service/web: {rows}"
            );
            let (rows, _) = a.read("/v1/catalog/service/web?tag=primary");
            assert_eq!(
                ids(&rows),
                ["web-1"],
                "catalog/service/web?tag=primary: {rows}"
            );
            let row = &rows[0];
            assert!(
                row["ServicePort"] == 8080,
                "expected ServicePort 8080, got {row}"
            );
            assert!(
                row["ServiceAddress"] == "127.0.0.1",
                "expected ServiceAddress 127.0.0.1, got {row}"
            );
            let (one, _) = a.read("/v1/agent/service/db-1");
            assert!(one["Service"] == "db", "GET /v1/agent/service/db-1: {one}");
        });
    }

    #[test]
    fn deregistered_services_are_gone_and_unknown_ids_are_404() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&[]);
            a.register(&service("web", "web-1", 8080, &[]));
            a.expect("PUT", "/v1/agent/service/deregister/web-1", "", 200);
            let (services, _) = a.read("/v1/agent/services");
            assert!(
                services == json!({}),
                "after deregistering web-1, expected no services, got {services}"
            );
            let (rows, _) = a.read("/v1/catalog/service/web");
            assert!(
                rows == json!([]),
                "an unknown service name answers [], got {rows}"
            );
            let answer = a.expect("PUT", "/v1/agent/service/deregister/nope", "", 404);
            assert!(
                answer.text().contains("nope"),
                "the 404 should name the unknown ID: {answer}"
            );
            a.expect("GET", "/v1/agent/service/nope", "", 404);
        });
    }

    /// Consul's decoder matches field names whatever their case, and the ID defaults to the
    /// name; python3-consul sends lower-case names.
    #[test]
    fn field_names_match_case_insensitively_and_the_id_defaults_to_the_name() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&[]);
            a.register(&json!({"name": "cache", "port": 6379, "tags": ["lru"]}));
            let (one, _) = a.read("/v1/agent/service/cache");
            if one["ID"] != "cache" || one["Port"] != 6379 || one["Tags"] != json!(["lru"]) {
                a.program.fail(format_args!(
                    "registered {{\"name\":\"cache\",\"port\":6379,\"tags\":[\"lru\"]}}; \
                     expected ID cache, Port 6379, Tags [lru], got {one}"
                ));
            }
        });
    }

    #[test]
    fn the_cli_registers_lists_and_deregisters() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&[]);
            let http_addr = a.addr.to_string();
            let run = |args: &[&str]| {
                let mut all = args.to_vec();
                all.extend(["--http-addr", &http_addr]);
                std::process::Command::new(bin()).args(&all).output()
            };
            let out = run(&[
                "register", "web", "--id", "web-1", "--port", "80", "--tag", "v1",
            ]);
            match out {
                Ok(o) if o.status.success() => {}
                Ok(o) => a.program.fail(format_args!(
                    "`register web ...` failed: it exited ({}) with stderr {:?}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr)
                )),
                Err(e) => a
                    .program
                    .fail(format_args!("`register web ...` could not run: {e}")),
            }
            let out = run(&["services"]).map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
            match out {
                Ok(text) if text.lines().any(|l| l.starts_with("web")) => {}
                other => a.program.fail(format_args!(
                    "`services` should list web, printed {}",
                    printed(&other)
                )),
            }
            let out = run(&["deregister", "web-1"]);
            assert!(
                out.is_ok_and(|o| o.status.success()),
                "`deregister web-1` failed"
            );
            let (services, _) = a.read("/v1/agent/services");
            assert!(
                services == json!({}),
                "after `deregister web-1`, expected no services, got {services}"
            );
        });
    }

    #[test]
    fn an_instance_reads_back_with_its_meta() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&[]);
            let mut body = service("web", "web-1", 8080, &["v1"]);
            body["Meta"] = json!({"version": "1.2", "zone": "b"});
            a.register(&body);
            let mut bare = service("db", "db-1", 5432, &[]);
            bare["Meta"] = Value::Null;
            a.register(&bare);
            let (one, _) = a.read("/v1/agent/service/web-1");
            let (other, _) = a.read("/v1/agent/service/db-1");
            let ok = one["ID"] == "web-1"
                && one["Service"] == "web"
                && one["Port"] == 8080
                && one["Tags"] == json!(["v1"])
                && one["Meta"] == json!({"version": "1.2", "zone": "b"})
                && other["Meta"] == json!({});
            if !ok {
                a.program.fail(format_args!(
                    "registered web-1 (port 8080, tag v1, Meta {{version: 1.2, zone: b}}) and \
                     db-1 with \"Meta\": null; GET /v1/agent/service/:id expected them back, \
                     db-1's Meta as {{}}; got {one} and {other}"
                ));
            }
        });
    }

    #[test]
    fn status_leader_names_the_agent_itself() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&[]);
            a.register(&service("web", "web-1", 80, &[]));
            let answer = a.expect("GET", "/v1/status/leader", "", 200);
            let leader = answer.json();
            if leader
                .as_ref()
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                a.program.fail(format_args!(
                    "GET /v1/status/leader (clients probe it to see an agent is up): expected \
                     a JSON string naming the leader, got {answer}"
                ));
            }
        });
    }

    /// Consul's `?tag=` filter compares tags ignoring ASCII case.
    #[test]
    fn a_tag_filter_ignores_ascii_case() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&[]);
            a.register(&service("web", "web-1", 8080, &["Primary"]));
            a.register(&service("web", "web-2", 8081, &["v1"]));
            for path in [
                "/v1/catalog/service/web?tag=primary",
                "/v1/catalog/service/web?tag=PRIMARY",
            ] {
                let (rows, _) = a.read(path);
                if ids(&rows) != ["web-1"] {
                    a.program.fail(format_args!(
                        "registered web-1 with tag \"Primary\"; GET {path} expected [web-1] \
                         (tags compare ignoring ASCII case), got {rows}"
                    ));
                }
            }
        });
    }
}

mod stage2_ttl {
    use super::*;

    /// Consul names a service's only check `service:<id>` and starts a TTL check critical.
    #[test]
    fn a_ttl_check_starts_critical_and_passes_when_told() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&[]);
            a.register(&with_ttl(service("web", "web-1", 80, &[]), "30s"));
            let status = a.check_status("web", "service:web-1");
            assert!(
                status.as_deref() == Some("critical"),
                "a new TTL check: expected critical, got {}",
                check_shown(&status)
            );
            a.expect("PUT", "/v1/agent/check/pass/service:web-1", "", 200);
            let status = a.check_status("web", "service:web-1");
            assert!(
                status.as_deref() == Some("passing"),
                "after check/pass: expected passing, got {}",
                check_shown(&status)
            );
            a.expect(
                "PUT",
                "/v1/agent/check/warn/service:web-1?note=slow",
                "",
                200,
            );
            let (checks, _) = a.read("/v1/health/checks/web");
            let check = &checks[0];
            if check["Status"] != "warning" || check["Output"] != "slow" {
                a.program.fail(format_args!(
                    "after check/warn?note=slow expected Status warning, Output slow, got {checks}"
                ));
            }
            a.expect("PUT", "/v1/agent/check/fail/service:web-1", "", 200);
            let status = a.check_status("web", "service:web-1");
            assert!(
                status.as_deref() == Some("critical"),
                "after check/fail: expected critical, got {}",
                check_shown(&status)
            );
            let update = r#"{"Status":"passing","Output":"all good"}"#;
            a.expect("PUT", "/v1/agent/check/update/service:web-1", update, 200);
            let status = a.check_status("web", "service:web-1");
            assert!(
                status.as_deref() == Some("passing"),
                "after check/update: expected passing, got {}",
                check_shown(&status)
            );
            a.expect("PUT", "/v1/agent/check/pass/service:nope", "", 404);
            let bad = r#"{"Status":"fine"}"#;
            a.expect("PUT", "/v1/agent/check/update/service:web-1", bad, 400);
        });
    }

    /// python3-consul sends pass and deregister with GET.
    #[test]
    fn pass_and_deregister_accept_get_as_python_consul_sends_them() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&[]);
            a.register(&with_ttl(service("web", "web-1", 80, &[]), "30s"));
            a.expect("GET", "/v1/agent/check/pass/service:web-1", "", 200);
            let status = a.check_status("web", "service:web-1");
            assert!(
                status.as_deref() == Some("passing"),
                "after GET check/pass: expected passing, got {}",
                check_shown(&status)
            );
            a.expect("GET", "/v1/agent/service/deregister/web-1", "", 200);
            let (services, _) = a.read("/v1/agent/services");
            assert!(
                services == json!({}),
                "after GET deregister, expected no services, got {services}"
            );
        });
    }

    #[test]
    fn several_checks_are_numbered_from_one() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&[]);
            let mut body = service("web", "web-1", 80, &[]);
            body["Checks"] = json!([{"TTL": "30s"}, {"TTL": "30s"}]);
            a.register(&body);
            for id in ["service:web-1:1", "service:web-1:2"] {
                if a.check_status("web", id).is_none() {
                    let (checks, _) = a.read("/v1/health/checks/web");
                    a.program
                        .fail(format_args!("expected a check {id}, got {checks}"));
                }
            }
        });
    }

    #[test]
    fn a_check_not_refreshed_within_its_ttl_turns_critical() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&[]);
            a.register(&with_ttl(service("web", "web-1", 80, &[]), "1s"));
            a.expect("PUT", "/v1/agent/check/pass/service:web-1", "", 200);
            let (_, index_passing) = a.read("/v1/health/checks/web");
            let passed = Instant::now();
            let early = a.check_status("web", "service:web-1");
            assert!(
                early.as_deref() == Some("passing"),
                "right after a pass: expected passing, got {}",
                check_shown(&early)
            );
            let expired = poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
                (a.check_status("web", "service:web-1").as_deref() == Some("critical"))
                    .then(Instant::now)
            });
            let Some(at) = expired else {
                a.program
                    .fail("a check with TTL 1s was still passing 5s after its last pass");
            };
            let after = at - passed;
            assert!(
                after >= Duration::from_millis(900),
                "a check with TTL 1s turned critical {after:.2?} after its pass: too early"
            );
            let (checks, _) = a.read("/v1/health/checks/web");
            assert!(
                checks[0]["Output"] == "TTL expired",
                "expected the Output \"TTL expired\", got {checks}"
            );
            // The expiry is a change like any other: the index moves, so blocking queries wake.
            let (_, index_expired) = a.read("/v1/health/checks/web");
            assert!(
                index_expired > index_passing,
                "X-Consul-Index of /v1/health/checks/web was {index_passing} while the check \
                 passed and {index_expired} once its TTL expired: expected it to move up"
            );
            a.program.expect_json(
                "{\"event\":\"expired\",\"check\":\"service:web-1\"}",
                PROMPT,
                |v| v["event"] == "expired" && v["check"] == "service:web-1",
            );
        });
    }

    #[test]
    fn a_service_critical_past_deregister_critical_service_after_is_reaped() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&["--reap-interval", "100ms", "--min-deregister-after", "0s"]);
            let mut body = service("web", "web-1", 80, &[]);
            body["Check"] = json!({"TTL": "300ms", "DeregisterCriticalServiceAfter": "500ms"});
            a.register(&body);
            a.register(&with_ttl(service("web", "web-2", 81, &[]), "30s"));
            let gone = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
                let (services, _) = a.read("/v1/agent/services");
                services.get("web-1").is_none().then_some(services)
            });
            match gone {
                Some(services) if services.get("web-2").is_some() => {}
                Some(services) => a.program.fail(format_args!(
                    "web-2 (critical, no DeregisterCriticalServiceAfter) should stay: {services}"
                )),
                None => a.program.fail(
                    "web-1, critical with DeregisterCriticalServiceAfter 500ms and \
                     --reap-interval 100ms, was still registered after 10s",
                ),
            }
            a.program.expect_json(
                "{\"event\":\"reaped\",\"service\":\"web-1\"}",
                PROMPT,
                |v| v["event"] == "reaped" && v["service"] == "web-1",
            );
        });
    }

    /// Re-registering a service (as agents do on a timer) keeps the state and output of a
    /// check whose ID already existed, so that it does not flap back to critical.
    #[test]
    fn re_registering_keeps_a_checks_state_and_output() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&[]);
            let body = with_ttl(service("web", "web-1", 80, &[]), "30s");
            a.register(&body);
            a.expect(
                "PUT",
                "/v1/agent/check/pass/service:web-1?note=fine",
                "",
                200,
            );
            a.register(&body);
            let (checks, _) = a.read("/v1/health/checks/web");
            let check = &checks[0];
            if check["Status"] != "passing" || check["Output"] != "fine" {
                a.program.fail(format_args!(
                    "registered web-1 with a TTL check, passed it with note \"fine\", registered \
                     it again: expected the check still passing with Output \"fine\", got {checks}"
                ));
            }
        });
    }
}

mod stage3_health {
    use super::*;

    fn three_instances(a: &mut Agent) {
        for (id, tags) in [
            ("web-1", &["v1"][..]),
            ("web-2", &["v2"]),
            ("web-3", &["v1"]),
        ] {
            a.register(&with_ttl(service("web", id, 80, tags), "30s"));
        }
        a.expect("PUT", "/v1/agent/check/pass/service:web-1", "", 200);
        a.expect("PUT", "/v1/agent/check/pass/service:web-2", "", 200);
        a.expect("PUT", "/v1/agent/check/warn/service:web-3", "", 200);
    }

    #[test]
    fn the_cli_health_prints_one_line_per_instance() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&[]);
            three_instances(&mut a);
            let out = std::process::Command::new(bin())
                .args(["health", "web", "--http-addr", &a.addr.to_string()])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
            let line_for = |text: &str, id: &str, status: &str| {
                text.lines().any(|l| {
                    let cells: Vec<&str> = l.split('\t').collect();
                    cells.len() == 3
                        && cells[0] == id
                        && cells[1].ends_with(":80")
                        && cells[2] == status
                })
            };
            match out {
                Ok(text)
                    if line_for(&text, "web-1", "passing")
                        && line_for(&text, "web-3", "warning") => {}
                other => a.program.fail(format_args!(
                    "`health web` should print `ID<TAB>ADDRESS:PORT<TAB>STATUS` lines, among \
                     them `web-1<TAB>127.0.0.1:80<TAB>passing` and `web-3 ... warning`; printed \
                     {other:?}"
                )),
            }
        });
    }

    #[test]
    fn a_deregistered_instance_takes_its_checks_with_it() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&[]);
            three_instances(&mut a);
            a.expect("PUT", "/v1/agent/service/deregister/web-3", "", 200);
            let (checks, _) = a.read("/v1/health/state/any");
            let ids: Vec<&str> = checks
                .as_array()
                .map(|c| c.iter().filter_map(|c| c["CheckID"].as_str()).collect())
                .unwrap_or_default();
            if ids.contains(&"service:web-3") || !ids.contains(&"service:web-1") {
                a.program.fail(format_args!(
                    "registered web-1, web-2 and web-3 with a TTL check each, deregistered \
                     web-3; GET /v1/health/state/any expected service:web-1 and no \
                     service:web-3, got {checks}"
                ));
            }
        });
    }

    #[test]
    fn passing_keeps_only_instances_whose_checks_all_pass() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&[]);
            three_instances(&mut a);
            let (all, _) = a.read("/v1/health/service/web");
            assert_eq!(ids(&all), ["web-1", "web-2", "web-3"], "health/service/web");
            let (passing, _) = a.read("/v1/health/service/web?passing");
            assert_eq!(
                ids(&passing),
                ["web-1", "web-2"],
                "?passing drops warning: {passing}"
            );
            let (passing, _) = a.read("/v1/health/service/web?passing=true&tag=v1");
            assert_eq!(ids(&passing), ["web-1"], "?passing&tag=v1");
            let (all, _) = a.read("/v1/health/service/web?passing=false");
            assert_eq!(ids(&all).len(), 3, "?passing=false filters nothing");
            let row = &all[0];
            let checks = row["Checks"].as_array().map_or(0, Vec::len);
            if row["Node"]["Node"].is_null() || row["Service"]["Port"] != 80 || checks == 0 {
                a.program.fail(format_args!(
                    "each health/service row has Node, Service and Checks, got {row}"
                ));
            }
        });
    }

    #[test]
    fn health_state_lists_checks_in_a_state() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&[]);
            three_instances(&mut a);
            let (warning, _) = a.read("/v1/health/state/warning");
            let listed: Vec<&str> = warning
                .as_array()
                .map(|c| c.iter().filter_map(|c| c["CheckID"].as_str()).collect())
                .unwrap_or_default();
            assert_eq!(listed, ["service:web-3"], "health/state/warning: {warning}");
            let (any, _) = a.read("/v1/health/state/any");
            let ours = any.as_array().map_or(0, |c| {
                c.iter().filter(|c| c["ServiceName"] == "web").count()
            });
            assert_eq!(ours, 3, "health/state/any lists every check of web: {any}");
            a.expect("GET", "/v1/health/state/sleepy", "", 400);
        });
    }

    #[test]
    fn the_health_tag_filter_ignores_ascii_case() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&[]);
            a.register(&service("web", "web-1", 8080, &["Primary"]));
            a.register(&service("web", "web-2", 8081, &["v1"]));
            let path = "/v1/health/service/web?tag=PRIMARY";
            let (rows, _) = a.read(path);
            if ids(&rows) != ["web-1"] {
                a.program.fail(format_args!(
                    "registered web-1 with tag \"Primary\"; GET {path} expected [web-1] (tags \
                     compare ignoring ASCII case), got {rows}"
                ));
            }
        });
    }
}

mod stage4_blocking {
    use super::*;

    /// Sends a blocking GET on its own thread; returns what came and how long it took.
    fn blocking(
        addr: SocketAddr,
        path: String,
    ) -> std::thread::JoinHandle<(Result<Answer, String>, Duration)> {
        std::thread::spawn(move || {
            let start = Instant::now();
            let answer = http::request(addr, "GET", &path, b"", Duration::from_secs(30));
            (answer, start.elapsed())
        })
    }

    fn join(
        a: &mut Agent,
        what: &str,
        handle: std::thread::JoinHandle<(Result<Answer, String>, Duration)>,
    ) -> (Answer, Duration) {
        match handle.join() {
            Ok((Ok(answer), took)) => (answer, took),
            Ok((Err(e), _)) => a.program.fail(format_args!("{what}: {e}")),
            Err(_) => a
                .program
                .fail(format_args!("{what}: the query's thread panicked")),
        }
    }

    /// Consul: every read answer, a 404 included, carries X-Consul-Index.
    #[test]
    fn every_read_answer_carries_x_consul_index() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&[]);
            a.register(&service("web", "web-1", 80, &[]));
            for path in [
                "/v1/agent/services",
                "/v1/agent/service/web-1",
                "/v1/catalog/services",
                "/v1/catalog/service/web",
                "/v1/health/service/web",
                "/v1/health/checks/web",
                "/v1/health/state/any",
            ] {
                a.read(path);
            }
            let answer = a.expect("GET", "/v1/agent/service/nope", "", 404);
            a.index_of("/v1/agent/service/nope", &answer);
        });
    }

    #[test]
    fn a_blocking_query_returns_when_its_service_changes() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&[]);
            a.register(&with_ttl(service("web", "web-1", 80, &[]), "30s"));
            let (_, index) = a.read("/v1/health/service/web");
            let path = format!("/v1/health/service/web?index={index}&wait=20s");
            let query = blocking(a.addr, path.clone());
            a.expect("PUT", "/v1/agent/check/pass/service:web-1", "", 200);
            let (answer, took) = join(&mut a, &path, query);
            let after = a.index_of(&path, &answer);
            assert!(
                after > index && took < Duration::from_secs(10),
                "GET {path} should return soon after the check passed, with an index above \
                 {index}: came after {took:.2?} with index {after}"
            );
            let status = &answer.json().unwrap_or_default()[0]["Checks"][1]["Status"];
            assert!(
                status == "passing",
                "the answer shows the change: expected passing, got {answer}"
            );
        });
    }

    #[test]
    fn a_blocking_query_is_not_woken_by_other_services_and_times_out_after_wait() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&[]);
            a.register(&service("web", "web-1", 80, &[]));
            let (_, index) = a.read("/v1/health/service/web");
            let path = format!("/v1/health/service/web?index={index}&wait=1s");
            let query = blocking(a.addr, path.clone());
            a.register(&service("db", "db-1", 5432, &[]));
            a.expect("PUT", "/v1/agent/service/deregister/db-1", "", 200);
            let (answer, took) = join(&mut a, &path, query);
            let after = a.index_of(&path, &answer);
            assert_eq!(
                after, index,
                "GET {path}: changes to db must not move web's index"
            );
            // Consul adds up to wait/16 of jitter; allow the machine some slack beyond it.
            assert!(
                took >= Duration::from_millis(950) && took < Duration::from_secs(5),
                "GET {path} should answer after about 1s (plus up to 1/16 jitter), took {took:.2?}"
            );
        });
    }

    /// A heartbeat that changes nothing moves no index (Consul updates a check only when its
    /// status or output changes), so watchers are not woken by every pass.
    #[test]
    fn a_pass_that_changes_nothing_moves_no_index() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&[]);
            a.register(&with_ttl(service("web", "web-1", 80, &[]), "30s"));
            a.expect("PUT", "/v1/agent/check/pass/service:web-1", "", 200);
            let (_, index) = a.read("/v1/health/service/web");
            a.expect("PUT", "/v1/agent/check/pass/service:web-1", "", 200);
            let (_, again) = a.read("/v1/health/service/web");
            assert_eq!(again, index, "a second identical pass moved the index");
        });
    }

    /// Consul's reset rule: a client whose index is ahead of the server's (after a restart
    /// or a reset) gets an answer at once, with the server's index.
    #[test]
    fn an_index_ahead_of_the_agent_answers_at_once() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&[]);
            a.register(&service("web", "web-1", 80, &[]));
            let (_, index) = a.read("/v1/health/service/web");
            let path = format!("/v1/health/service/web?index={}&wait=20s", index + 1000);
            let start = Instant::now();
            let answer = a.expect("GET", &path, "", 200);
            let took = start.elapsed();
            let got = a.index_of(&path, &answer);
            assert!(
                took < Duration::from_secs(3) && got == index,
                "GET {path} should answer at once with index {index}; took {took:.2?}, index {got}"
            );
        });
    }

    #[test]
    fn watch_prints_each_change() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&[]);
            let http_addr = a.addr.to_string();
            let mut watch = Program::start(&bin(), &["watch", "web", "--http-addr", &http_addr]);
            watch.expect_json("a first line with an empty instances list", PROMPT, |v| {
                v["instances"] == json!([])
            });
            a.register(&service("web", "web-1", 80, &[]));
            watch.expect_json("a line listing web-1", PROMPT, |v| {
                v["instances"][0]["id"] == "web-1"
            });
        });
    }

    /// A name nobody registered has index 1, and other names' changes do not wake its query:
    /// the query must check its own index again after each wake-up, not answer on the first.
    #[test]
    fn a_query_on_a_never_registered_name_waits_through_other_changes() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&[]);
            a.register(&service("db", "db-0", 5432, &[]));
            let path = "/v1/health/service/ghost?index=1&wait=2s".to_owned();
            let query = blocking(a.addr, path.clone());
            // Change another name until the query answers: a query that answers on the first
            // wake-up comes back long before its 2 s.
            let mut n = 0;
            poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
                n += 1;
                a.register(&service("db", &format!("db-{n}"), 5432, &[]));
                query.is_finished().then_some(())
            });
            let (answer, took) = join(&mut a, &path, query);
            let after = a.index_of(&path, &answer);
            if after != 1 || took < Duration::from_millis(1900) {
                a.program.fail(format_args!(
                    "GET {path} while {n} instances of db were registered: expected the answer \
                     after the 2s wait with index 1 (ghost never changed), got index {after} \
                     after {took:.2?}"
                ));
            }
        });
    }
}

mod stage5_persistence {
    use super::*;

    #[test]
    fn registrations_and_check_states_survive_sigkill() {
        bounded(LIMIT, || {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let data = dir.path().to_str().expect("a UTF-8 path").to_owned();
            let mut a = Agent::start(&["--data", &data]);
            for n in 0..20 {
                let id = format!("web-{n}");
                a.register(&with_ttl(service("web", &id, 8000 + n, &["v1"]), "60s"));
                if n % 2 == 0 {
                    a.expect(
                        "PUT",
                        &format!("/v1/agent/check/pass/service:{id}"),
                        "",
                        200,
                    );
                }
            }
            a.expect("PUT", "/v1/agent/service/deregister/web-19", "", 200);
            let (before, index) = a.read("/v1/health/service/web?passing");
            // Dropping the program kills it with SIGKILL: nothing is flushed on the way out.
            drop(a);
            let mut b = Agent::start(&["--data", &data]);
            let (services, _) = b.read("/v1/agent/services");
            let count = services.as_object().map_or(0, serde_json::Map::len);
            assert_eq!(
                count, 19,
                "after SIGKILL and restart, the services: {services}"
            );
            let (after, index_after) = b.read("/v1/health/service/web?passing");
            assert_eq!(ids(&after), ids(&before), "passing instances after restart");
            assert!(
                index_after >= index,
                "the index went backwards across a restart: {index} then {index_after}"
            );
        });
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_the_rest_kept() {
        bounded(LIMIT, || {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let data = dir.path().to_str().expect("a UTF-8 path").to_owned();
            let mut a = Agent::start(&["--data", &data]);
            a.register(&service("web", "web-1", 80, &[]));
            drop(a);
            let files: Vec<PathBuf> = std::fs::read_dir(dir.path())
                .expect("the data directory")
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            for file in &files {
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(file)
                    .expect("a data file opens");
                std::io::Write::write_all(&mut f, b"{\"op\":\"regis").expect("append");
            }
            let mut b = Agent::start(&["--data", &data]);
            let (services, _) = b.read("/v1/agent/services");
            assert!(
                services.get("web-1").is_some(),
                "after a crash that left a half-written record, web-1 is gone: {services}"
            );
        });
    }

    /// A name's index never goes backwards, even once its last instance is gone and the
    /// journal was compacted (the agent compacts it at start): the snapshot keeps each name's
    /// index.
    #[test]
    fn a_names_index_survives_restarts_after_its_last_instance_is_gone() {
        bounded(LIMIT, || {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let data = dir.path().to_str().expect("a UTF-8 path").to_owned();
            let mut a = Agent::start(&["--data", &data]);
            for n in 0..5 {
                a.register(&service("web", &format!("web-{n}"), 80, &[]));
            }
            for n in 0..5 {
                a.expect(
                    "PUT",
                    &format!("/v1/agent/service/deregister/web-{n}"),
                    "",
                    200,
                );
            }
            let (_, index) = a.read("/v1/health/service/web");
            drop(a);
            // The first restart compacts; the second reads the compacted journal.
            let b = Agent::start(&["--data", &data]);
            drop(b);
            let mut c = Agent::start(&["--data", &data]);
            let (_, after) = c.read("/v1/health/service/web");
            if after < index {
                c.program.fail(format_args!(
                    "web's index was {index} after its five instances were deregistered; after \
                     two restarts GET /v1/health/service/web answered index {after}: a name's \
                     index must never go backwards"
                ));
            }
        });
    }
}

mod stage6_dns {
    use super::*;
    use hickory_proto::op::{Message, Query, ResponseCode};
    use hickory_proto::rr::{Name, RData, RecordType};
    use hickory_proto::serialize::binary::BinDecodable;

    fn ask(a: &mut Agent, name: &str, kind: RecordType) -> Message {
        let dns = a.dns.expect("started with DNS");
        let mut query = Message::new();
        query.set_id(4242);
        query.set_recursion_desired(true);
        let qname = Name::from_ascii(name).expect("a valid name");
        query.add_query(Query::query(qname, kind));
        let bytes = query.to_vec().expect("encodes");
        let socket = UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
        socket.set_read_timeout(Some(PROMPT)).expect("a timeout");
        let _ = socket.send_to(&bytes, dns);
        let mut buf = [0u8; 4096];
        match socket.recv_from(&mut buf) {
            Ok((n, _)) => match Message::from_bytes(&buf[..n]) {
                Ok(reply) if reply.id() == 4242 => reply,
                Ok(reply) => a.program.fail(format_args!(
                    "asked {name} {kind} with id 4242, got an answer with id {}: {}",
                    reply.id(),
                    dug(&reply)
                )),
                Err(e) => a.program.fail(format_args!(
                    "asked {name} {kind}, got {n} bytes that are not a DNS message ({e})"
                )),
            },
            Err(e) => a.program.fail(format_args!(
                "asked {name} {kind} on {dns}, got {}",
                no_answer(&e)
            )),
        }
    }

    fn setup() -> Agent {
        let mut a = Agent::start_dns(&[]);
        let mut body = with_ttl(service("web", "web-1", 8080, &["v1"]), "30s");
        body["Address"] = json!("10.0.0.1");
        a.register(&body);
        let mut body = with_ttl(service("web", "web-2", 8081, &["v2"]), "30s");
        body["Address"] = json!("10.0.0.2");
        a.register(&body);
        a.register(&with_ttl(service("web", "web-3", 8082, &["v1"]), "30s"));
        a.expect("PUT", "/v1/agent/check/pass/service:web-1", "", 200);
        a.expect("PUT", "/v1/agent/check/pass/service:web-2", "", 200);
        a
    }

    /// A DNS answer as dig would show it: its status, then each section's records.
    fn dug(reply: &Message) -> String {
        let mut out = format!("status {}", rcode(reply.response_code()));
        let sections = [
            ("answer", reply.answers()),
            ("authority", reply.name_servers()),
            ("additional", reply.additionals()),
        ];
        for (section, records) in sections {
            if records.is_empty() {
                out.push_str(&format!(", no {section} records"));
            } else {
                out.push_str(&format!("\n    {section}:"));
                for record in records {
                    out.push_str(&format!("\n      {record}"));
                }
            }
        }
        out
    }

    /// Why no DNS answer came: a timeout is "no answer within 5s", anything else says what.
    fn no_answer(e: &std::io::Error) -> String {
        match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                format!("no answer within {PROMPT:?}")
            }
            std::io::ErrorKind::UnexpectedEof => {
                "no whole answer: the server closed the connection".to_owned()
            }
            _ => format!("no answer: {e}"),
        }
    }

    /// A response code as dig names it: `NOERROR`, `NXDOMAIN`.
    fn rcode(code: ResponseCode) -> String {
        match code {
            ResponseCode::NoError => "NOERROR".to_owned(),
            ResponseCode::FormErr => "FORMERR".to_owned(),
            ResponseCode::ServFail => "SERVFAIL".to_owned(),
            ResponseCode::NXDomain => "NXDOMAIN".to_owned(),
            ResponseCode::NotImp => "NOTIMP".to_owned(),
            ResponseCode::Refused => "REFUSED".to_owned(),
            other => format!("{} ({other})", u16::from(other)),
        }
    }

    /// Fails unless `reply` has the response code `want`.
    #[track_caller]
    fn expect_rcode(a: &mut Agent, reply: &Message, want: ResponseCode, asked: &str) {
        if reply.response_code() != want {
            a.program.fail(format_args!(
                "asked {asked}: expected {}, got {}",
                rcode(want),
                dug(reply)
            ));
        }
    }

    fn addresses(reply: &Message) -> Vec<String> {
        let mut out: Vec<String> = reply
            .answers()
            .iter()
            .filter_map(|r| match r.data() {
                RData::A(a) => Some(a.0.to_string()),
                _ => None,
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_records_list_passing_instances_only() {
        bounded(LIMIT, || {
            let mut a = setup();
            let reply = ask(&mut a, "web.service.consul.", RecordType::A);
            expect_rcode(
                &mut a,
                &reply,
                ResponseCode::NoError,
                "web.service.consul. A",
            );
            if addresses(&reply) != ["10.0.0.1", "10.0.0.2"] {
                a.program.fail(format_args!(
                    "asked web.service.consul. A: expected 10.0.0.1 and 10.0.0.2 (web-3 is \
                     critical), got {}",
                    dug(&reply)
                ));
            }
            let reply = ask(&mut a, "v1.web.service.consul.", RecordType::A);
            if addresses(&reply) != ["10.0.0.1"] {
                a.program.fail(format_args!(
                    "asked v1.web.service.consul. A: expected 10.0.0.1 only, got {}",
                    dug(&reply)
                ));
            }
        });
    }

    #[test]
    fn srv_records_give_ports_and_targets_with_addresses() {
        bounded(LIMIT, || {
            let mut a = setup();
            let reply = ask(&mut a, "web.service.consul.", RecordType::SRV);
            let mut ports: Vec<u16> = reply
                .answers()
                .iter()
                .filter_map(|r| match r.data() {
                    RData::SRV(srv) => Some(srv.port()),
                    _ => None,
                })
                .collect();
            ports.sort_unstable();
            if ports != [8080, 8081] {
                a.program.fail(format_args!(
                    "asked web.service.consul. SRV: expected the ports 8080 and 8081, got {}",
                    dug(&reply)
                ));
            }
            let extra = reply
                .additionals()
                .iter()
                .filter(|r| matches!(r.data(), RData::A(_)))
                .count();
            if extra != 2 {
                a.program.fail(format_args!(
                    "asked web.service.consul. SRV: expected each of the 2 targets' A record in \
                     the additional section, got {}",
                    dug(&reply)
                ));
            }
        });
    }

    #[test]
    fn unknown_or_unhealthy_names_are_nxdomain() {
        bounded(LIMIT, || {
            let mut a = setup();
            for name in ["nope.service.consul.", "v3.web.service.consul."] {
                let reply = ask(&mut a, name, RecordType::A);
                expect_rcode(&mut a, &reply, ResponseCode::NXDomain, &format!("{name} A"));
            }
            a.expect("PUT", "/v1/agent/check/fail/service:web-1", "", 200);
            a.expect("PUT", "/v1/agent/check/fail/service:web-2", "", 200);
            let reply = ask(&mut a, "web.service.consul.", RecordType::A);
            expect_rcode(
                &mut a,
                &reply,
                ResponseCode::NXDomain,
                "web.service.consul. A with no passing instance left",
            );
        });
    }

    /// Asks over DNS-over-TCP (a two-byte length prefix).
    fn ask_tcp(a: &mut Agent, name: &str, kind: RecordType) -> Message {
        use std::io::{Read, Write};
        let dns = a.dns.expect("started with DNS");
        let mut query = Message::new();
        query.set_id(4343);
        query.add_query(Query::query(Name::from_ascii(name).expect("a name"), kind));
        let bytes = query.to_vec().expect("encodes");
        let got = (|| -> std::io::Result<Vec<u8>> {
            let mut stream = TcpStream::connect(dns)?;
            stream.set_read_timeout(Some(PROMPT))?;
            let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
            stream.write_all(&len.to_be_bytes())?;
            stream.write_all(&bytes)?;
            let mut head = [0u8; 2];
            stream.read_exact(&mut head)?;
            let mut body = vec![0u8; usize::from(u16::from_be_bytes(head))];
            stream.read_exact(&mut body)?;
            Ok(body)
        })();
        match got.map(|b| Message::from_bytes(&b)) {
            Ok(Ok(reply)) if reply.id() == 4343 => reply,
            Ok(Ok(reply)) => a.program.fail(format_args!(
                "asked {name} {kind} over TCP on {dns} with id 4343, got an answer with id {}: {}",
                reply.id(),
                dug(&reply)
            )),
            Ok(Err(e)) => a.program.fail(format_args!(
                "asked {name} {kind} over TCP on {dns}, got bytes that are not a DNS message ({e})"
            )),
            Err(e) => a.program.fail(format_args!(
                "asked {name} {kind} over TCP on {dns}, got {}",
                no_answer(&e)
            )),
        }
    }

    /// Consul answers a name with nothing to give NXDOMAIN with the zone's SOA in the
    /// authority section (resolvers cache the negative answer by it); another type of a
    /// passing name is NOERROR with no answer, and the SOA too.
    #[test]
    fn nxdomain_and_empty_answers_carry_an_soa() {
        bounded(LIMIT, || {
            let mut a = setup();
            let has_soa = |m: &Message| {
                m.name_servers()
                    .iter()
                    .any(|r| matches!(r.data(), RData::SOA(_)))
            };
            let reply = ask(&mut a, "nope.service.consul.", RecordType::A);
            if reply.response_code() != ResponseCode::NXDomain || !has_soa(&reply) {
                a.program.fail(format_args!(
                    "asked nope.service.consul. A: expected NXDOMAIN with an SOA in the \
                     authority section, got {}",
                    dug(&reply)
                ));
            }
            let reply = ask(&mut a, "web.service.consul.", RecordType::AAAA);
            if reply.response_code() != ResponseCode::NoError
                || !reply.answers().is_empty()
                || !has_soa(&reply)
            {
                a.program.fail(format_args!(
                    "asked web.service.consul. AAAA (web has passing IPv4 instances): expected \
                     NOERROR, no answer and an SOA in the authority section, got {}",
                    dug(&reply)
                ));
            }
        });
    }

    /// Consul's `udp_answer_limit`: a UDP answer holds at most 3 records; TCP holds them all.
    #[test]
    fn udp_answers_hold_three_records_and_tcp_answers_all() {
        bounded(LIMIT, || {
            let mut a = Agent::start_dns(&[]);
            for n in 1..=5u16 {
                let id = format!("api-{n}");
                let mut body = with_ttl(service("api", &id, 9000 + n, &[]), "30s");
                body["Address"] = json!(format!("10.0.1.{n}"));
                a.register(&body);
                a.expect(
                    "PUT",
                    &format!("/v1/agent/check/pass/service:{id}"),
                    "",
                    200,
                );
            }
            let reply = ask(&mut a, "api.service.consul.", RecordType::A);
            let udp = addresses(&reply);
            if udp.len() != 3 {
                a.program.fail(format_args!(
                    "5 passing instances of api; asked api.service.consul. A over UDP: expected \
                     3 A records (the UDP answer limit), got {}",
                    dug(&reply)
                ));
            }
            let reply = ask_tcp(&mut a, "api.service.consul.", RecordType::A);
            let tcp = addresses(&reply);
            if tcp.len() != 5 {
                a.program.fail(format_args!(
                    "5 passing instances of api; asked api.service.consul. A over TCP: expected \
                     all 5 A records, got {}",
                    dug(&reply)
                ));
            }
        });
    }
}

mod stage7_limits {
    use super::*;

    #[test]
    fn bad_registrations_are_400_with_a_reason() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&[]);
            for body in [
                "{not json",
                "[]",
                r#"{"Port": 80}"#,
                r#"{"Name": "web", "Port": "eighty"}"#,
                r#"{"Name": "web", "Port": 70000}"#,
                r#"{"Name": "web", "Tags": "v1"}"#,
                r#"{"Name": "web", "Colour": "blue"}"#,
                r#"{"Name": "web", "Check": {"TTL": "ten seconds"}}"#,
                r#"{"Name": "web", "Check": {"HTTP": "http://localhost/health"}}"#,
            ] {
                let answer = a.expect("PUT", "/v1/agent/service/register", body, 400);
                assert!(
                    !answer.text().trim().is_empty(),
                    "sent {body}: a 400 should say why, got an empty body"
                );
            }
            let (services, _) = a.read("/v1/agent/services");
            assert!(
                services == json!({}),
                "nothing bad was registered; got {services}"
            );
        });
    }

    #[test]
    fn bad_query_parameters_and_methods_are_refused() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&[]);
            a.expect("GET", "/v1/health/service/web?index=abc", "", 400);
            a.expect("GET", "/v1/health/service/web?index=1&wait=10", "", 400);
            a.expect("GET", "/v1/health/service/web?passing=maybe", "", 400);
            a.expect("DELETE", "/v1/agent/services", "", 405);
            a.expect("GET", "/v1/agent/service/register", "", 405);
            a.expect("GET", "/v1/nothing/here", "", 404);
        });
    }

    #[test]
    fn a_body_past_the_limit_is_413() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&["--max-body", "1KiB"]);
            let big = json!({"Name": "web", "Meta": {"blob": "x".repeat(4000)}}).to_string();
            a.expect("PUT", "/v1/agent/service/register", &big, 413);
            a.register(&service("web", "web-1", 80, &[]));
        });
    }

    #[test]
    fn connections_past_the_limit_are_429_and_the_rest_still_served() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&["--max-connections", "2"]);
            let _idle: Vec<TcpStream> = (0..2)
                .map(|_| TcpStream::connect(a.addr).expect("connect"))
                .collect();
            let addr = a.addr;
            // Until a 429, or the agent has exited or panicked (no answer will ever come).
            let refused = a
                .program
                .poll_while_healthy(PROMPT, Duration::from_millis(50), |_| {
                    http::request(addr, "GET", "/v1/agent/services", b"", PROMPT)
                        .ok()
                        .filter(|answer| answer.status == 429)
                });
            if refused.is_none() {
                a.program
                    .fail("with --max-connections 2 and two idle connections, a third got no 429");
            }
            drop(_idle);
            let served = a
                .program
                .poll_while_healthy(PROMPT, Duration::from_millis(50), |_| {
                    let answer =
                        http::request(addr, "GET", "/v1/agent/services", b"", PROMPT).ok()?;
                    (answer.status == 200).then_some(())
                });
            if served.is_none() {
                a.program
                    .fail("after the idle connections closed, requests were still refused");
            }
        });
    }

    #[test]
    fn blocking_queries_past_the_limit_are_429() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&["--max-waiting", "1"]);
            a.register(&service("web", "web-1", 80, &[]));
            let (_, index) = a.read("/v1/health/service/web");
            let addr = a.addr;
            let path = format!("/v1/health/service/web?index={index}&wait=20s");
            // The holder tries again if a probe held the only permit when it came.
            let _holder = std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(30);
                while Instant::now() < deadline {
                    match http::request(addr, "GET", &path, b"", Duration::from_secs(30)) {
                        Ok(answer) if answer.status == 429 => continue,
                        _ => return,
                    }
                }
            });
            let short = format!("/v1/health/service/web?index={index}&wait=1ms");
            let refused = poll_until(PROMPT, Duration::from_millis(20), || {
                let answer = http::request(addr, "GET", &short, b"", PROMPT).ok()?;
                (answer.status == 429).then_some(())
            });
            if refused.is_none() {
                a.program
                    .fail("with --max-waiting 1 and one query waiting, another got no 429");
            }
            a.read("/v1/health/service/web");
        });
    }

    #[test]
    fn garbage_and_huge_headers_do_not_hurt_the_agent() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&[]);
            a.register(&service("web", "web-1", 80, &[]));
            let _ = http::raw_request(a.addr, b"\x00\x01\x02 garbage\r\n\r\n", PROMPT);
            let huge = format!(
                "GET /v1/agent/services HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "y".repeat(256 * 1024)
            );
            if let Ok(answer) = http::raw_request(a.addr, huge.as_bytes(), PROMPT) {
                assert!(
                    answer.status == 431 || answer.status == 400,
                    "a 256KiB header should be refused (431), got {answer}"
                );
            }
            a.program.assert_running("after garbage and a huge header");
            let (services, _) = a.read("/v1/agent/services");
            assert!(
                services.get("web-1").is_some(),
                "web-1 survived: {services}"
            );
        });
    }

    #[test]
    fn registrations_past_max_services_are_429() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&["--max-services", "2"]);
            a.register(&service("web", "web-1", 80, &[]));
            a.register(&service("web", "web-2", 81, &[]));
            let body = service("web", "web-3", 82, &[]).to_string();
            let answer = a.expect("PUT", "/v1/agent/service/register", &body, 429);
            if !answer.text().starts_with("Too many services registered") {
                a.program.fail(format_args!(
                    "with --max-services 2, sent a third registration {body}: expected 429 \
                     `Too many services registered (limit: 2)`, got {answer}"
                ));
            }
            // Replacing a registered instance is not a new one.
            a.register(&service("web", "web-2", 8081, &[]));
            let (services, _) = a.read("/v1/agent/services");
            let count = services.as_object().map_or(0, serde_json::Map::len);
            assert_eq!(count, 2, "with --max-services 2: {services}");
        });
    }

    #[test]
    fn bad_service_meta_is_400() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&[]);
            let many: serde_json::Map<String, Value> =
                (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
            for meta in [
                json!({"bad key": "v"}),
                json!({"consul-version": "1"}),
                json!({"k".repeat(129): "v"}),
                json!({"k": "v".repeat(513)}),
                Value::Object(many),
            ] {
                let body = json!({"Name": "web", "Meta": meta}).to_string();
                let answer = a.expect("PUT", "/v1/agent/service/register", &body, 400);
                if !answer.text().starts_with("Invalid Service Meta:") {
                    a.program.fail(format_args!(
                        "sent {body}: expected 400 `Invalid Service Meta: ...`, got {answer}"
                    ));
                }
            }
            let (services, _) = a.read("/v1/agent/services");
            assert!(
                services == json!({}),
                "nothing with bad metadata was registered; got {services}"
            );
        });
    }

    #[test]
    fn a_check_id_of_another_service_is_refused() {
        bounded(LIMIT, || {
            let mut a = Agent::start(&[]);
            let mut body = service("web", "web-1", 80, &[]);
            body["Check"] = json!({"CheckID": "shared", "TTL": "30s"});
            a.register(&body);
            let mut other = service("db", "db-1", 5432, &[]);
            other["Check"] = json!({"CheckID": "shared", "TTL": "30s"});
            let text = other.to_string();
            let answer = a.expect("PUT", "/v1/agent/service/register", &text, 400);
            if !answer
                .text()
                .starts_with("Check ID \"shared\" belongs to another service")
            {
                a.program.fail(format_args!(
                    "web-1 owns check \"shared\"; sent {text}: expected 400 `Check ID \
                     \"shared\" belongs to another service`, got {answer}"
                ));
            }
            let (services, _) = a.read("/v1/agent/services");
            assert!(
                services.get("db-1").is_none(),
                "db-1 was registered: {services}"
            );
        });
    }
}

mod stage8_real_clients {
    use super::*;

    /// Debian's python3-consul 0.7 lives in the system Python.
    const DEBIAN_PYTHON: &str = "/usr/bin/python3";

    /// PyPI's py-consul (1.8) is installed by `.ci/run` into a virtualenv in the build folder.
    fn pypi_python() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/py-consul/bin/python")
    }

    fn has_consul_module(python: &std::path::Path) -> bool {
        std::process::Command::new(python)
            .args(["-c", "import consul"])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Registers with a TTL check, passes it, reads catalog and health, and blocks until a
    /// change, with the client library `python` has, the way an application would.
    fn drive_with_python(python: &std::path::Path, what: &str, install: &str) {
        // The agent is started and used first, so that a missing client skips only the
        // client's part.
        let mut a = Agent::start(&[]);
        a.read("/v1/agent/services");
        if !has_consul_module(python) {
            eprintln!("skipping: {what} is not installed ({install})");
            return;
        }
        let script = format!(
            r#"
import threading, consul
c = consul.Consul(host="127.0.0.1", port={port})
c.agent.service.register("web", service_id="web-1", port=8080, tags=["v1"],
                         check=consul.Check.ttl("30s"))
c.agent.check.ttl_pass("service:web-1")
index, nodes = c.health.service("web", passing=True)
assert [n["Service"]["ID"] for n in nodes] == ["web-1"], nodes
assert "web" in c.catalog.services()[1]
got = {{}}
def wait():
    got["answer"] = c.health.service("web", index=index, wait="20s")
t = threading.Thread(target=wait); t.start()
c.agent.service.register("web", service_id="web-2", port=8081)
t.join(25)
new_index, nodes = got["answer"]
assert int(new_index) > int(index), (index, new_index)
assert sorted(n["Service"]["ID"] for n in nodes) == ["web-1", "web-2"], nodes
c.agent.service.deregister("web-1")
assert "web-1" not in c.agent.services()
print("ok")
"#,
            port = a.addr.port()
        );
        let out = std::process::Command::new(python)
            .args(["-c", &script])
            .output();
        match out {
            Ok(o) if o.status.success() && String::from_utf8_lossy(&o.stdout).contains("ok") => {}
            Ok(o) => a.program.fail(format_args!(
                "the {what} script failed:\n{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )),
            Err(e) => a
                .program
                .fail(format_args!("cannot run {}: {e}", python.display())),
        }
    }

    #[test]
    fn python3_consul_from_debian_registers_passes_reads_and_blocks() {
        bounded(LIMIT, || {
            drive_with_python(
                std::path::Path::new(DEBIAN_PYTHON),
                "Debian's python3-consul",
                "apt-get install python3-consul",
            );
        });
    }

    #[test]
    fn py_consul_from_pypi_registers_passes_reads_and_blocks() {
        bounded(LIMIT, || {
            drive_with_python(
                &pypi_python(),
                "PyPI's py-consul",
                "python3 -m venv target/py-consul && target/py-consul/bin/pip install py-consul",
            );
        });
    }

    #[test]
    fn dig_reads_srv_and_a_records() {
        bounded(LIMIT, || {
            if std::process::Command::new("dig")
                .arg("-v")
                .output()
                .is_err()
            {
                eprintln!("skipping: dig is not installed (apt-get install bind9-dnsutils)");
                return;
            }
            let mut a = Agent::start_dns(&[]);
            let mut body = with_ttl(service("web", "web-1", 8080, &[]), "30s");
            body["Address"] = json!("10.1.2.3");
            a.register(&body);
            a.expect("PUT", "/v1/agent/check/pass/service:web-1", "", 200);
            let dns = a.dns.expect("started with DNS");
            let dig = |kind: &str, transport: &str| {
                std::process::Command::new("dig")
                    .args([
                        transport,
                        &format!("@{}", dns.ip()),
                        "-p",
                        &dns.port().to_string(),
                        "+short",
                        "+time=3",
                        "+tries=1",
                        "web.service.consul",
                        kind,
                    ])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            };
            for transport in ["+notcp", "+tcp"] {
                match dig("A", transport) {
                    Ok(out) if out.trim() == "10.1.2.3" => {}
                    other => a.program.fail(format_args!(
                        "dig {transport} web.service.consul A printed {}",
                        printed(&other)
                    )),
                }
            }
            match dig("SRV", "+notcp") {
                Ok(out) if out.split_whitespace().nth(2) == Some("8080") => {}
                other => a.program.fail(format_args!(
                    "dig web.service.consul SRV should print `1 1 8080 TARGET`, printed {}",
                    printed(&other)
                )),
            }
        });
    }
}
