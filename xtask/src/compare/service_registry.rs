//! `cargo xtask compare service-registry`: the same registration-and-watch load against a
//! release build of the chosen tree and against a one-member etcd (Debian's `etcd-server`),
//! both on loopback, through etcd's JSON gateway on its side.
//!
//! A registration is, in the registry, `PUT /v1/agent/service/register` with a TTL check; in
//! etcd, what its service-discovery clients do: a lease grant, then a put of the instance's key
//! under that lease (two round trips). A health read is `GET /v1/health/service/NAME?passing`
//! against a range read of the name's prefix (a key exists while its lease lives, so etcd's
//! range is its list of passing instances). A watcher is a blocking query (`?index=&wait=`)
//! against a watch on the prefix, each on its own connection. Durability is equal by default:
//! the registry runs with `--data` (an fsync per acknowledged change), etcd at its defaults
//! (its WAL synced before a put is acknowledged).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{Guard, free_port, require, start_ours, start_theirs, wait_for_port};
use crate::chart::{Comparison, Row};
use crate::projects::Project;
use crate::tree::Tree;

/// The load, the same for both.
#[derive(Debug, clap::Args)]
pub struct Load {
    /// Instances registered, each with a TTL (a check in the registry, a lease in etcd).
    #[arg(long, default_value_t = 4000)]
    instances: usize,
    /// Service names the instances are spread over.
    #[arg(long, default_value_t = 100)]
    services: usize,
    /// Concurrent clients, one keep-alive connection each.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Health reads (`?passing`) spread over the names.
    #[arg(long, default_value_t = 20_000)]
    reads: usize,
    /// Changes timed from the change's request to the waiting watcher's answer.
    #[arg(long, default_value_t = 40)]
    wakes: usize,
    /// Watchers held at once (one connection each) to measure memory per watcher.
    #[arg(long, default_value_t = 2000)]
    watchers: usize,
    /// Keep the registry in memory (no `--data`, no fsync): unequal durability.
    #[arg(long)]
    memory: bool,
}

/// One side's figures.
struct Figures {
    registrations: f64,
    reads: f64,
    wake_median_ms: f64,
    wake_max_ms: f64,
    watcher_bytes: f64,
    /// The size of one health read's answer.
    answer_bytes: usize,
}

/// Which server the load talks to.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    Ours,
    Etcd,
}

/// Runs the load against both and prints them side by side.
pub fn run(root: &Path, project: &Project, tree: &Tree, load: &Load) -> Result<Comparison> {
    require("etcd", "etcd-server")?;
    if load.instances == 0 || load.services == 0 || load.clients == 0 || load.wakes == 0 {
        bail!("--instances, --services, --clients and --wakes must be at least 1");
    }
    let binary = tree.build(root, project, true)?;
    let dir = std::env::temp_dir().join(format!("xtask-registry-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    let mut command = Command::new(&binary);
    command.args(["agent", "--bind", "127.0.0.1:0"]);
    if !load.memory {
        command.arg("--data").arg(dir.join("ours"));
    }
    let (ours, addr) = start_ours(command)?;
    eprintln!(
        "{} ({}{}): {} registrations, {} reads, {} wakes, {} watchers...",
        project.slug,
        tree.label(),
        if load.memory {
            ", in memory"
        } else {
            ", --data"
        },
        load.instances,
        load.reads,
        load.wakes,
        load.watchers
    );
    let ours_figures = runtime.block_on(measure(Side::Ours, addr.port(), pid(&ours), load))?;
    drop(ours);

    let (etcd, port) = start_etcd(&dir.join("etcd"))?;
    eprintln!("etcd (its defaults): the same load...");
    let etcd_figures = runtime.block_on(measure(Side::Etcd, port, pid(&etcd), load))?;
    drop(etcd);
    drop(runtime);
    let _ = std::fs::remove_dir_all(&dir);

    let (o, e) = (&ours_figures, &etcd_figures);
    println!(
        "{:<34} {:>16} {:>16} {:>8}",
        "", project.slug, "etcd", "ahead by"
    );
    let higher = |label: &str, ours: f64, theirs: f64, unit: &str| {
        println!(
            "{label:<34} {:>16} {:>16} {:>7.2}x",
            format!("{ours:.0} {unit}"),
            format!("{theirs:.0} {unit}"),
            ours / theirs.max(f64::MIN_POSITIVE)
        );
    };
    higher("registrations/s", o.registrations, e.registrations, "");
    higher("health reads/s (?passing)", o.reads, e.reads, "");
    let lower = |label: &str, ours: f64, theirs: f64, unit: &str| {
        println!(
            "{label:<34} {:>16} {:>16} {:>7.2}x",
            format!("{ours:.2} {unit}"),
            format!("{theirs:.2} {unit}"),
            theirs / ours.max(f64::MIN_POSITIVE)
        );
    };
    lower(
        "change to watcher, median",
        o.wake_median_ms,
        e.wake_median_ms,
        "ms",
    );
    lower("change to watcher, max", o.wake_max_ms, e.wake_max_ms, "ms");
    lower(
        "memory per watcher",
        o.watcher_bytes / 1024.0,
        e.watcher_bytes / 1024.0,
        "KiB",
    );
    println!(
        "(\"ahead by\": how many times better the registry does; above 1 it is ahead; one health \
         read answers {} bytes here, {} in etcd)",
        o.answer_bytes, e.answer_bytes
    );

    // Every row as "how many times better than etcd", so that one axis serves them all.
    let row = |label: &str, factor: f64| Row {
        label: label.to_owned(),
        ours: factor,
        theirs: 1.0,
    };
    Ok(Comparison {
        title: format!(
            "{} against etcd: {} instances, {} clients{}",
            project.slug,
            load.instances,
            load.clients,
            if load.memory {
                ", in memory"
            } else {
                ", both fsync"
            }
        ),
        unit: "times better than etcd".into(),
        ours: format!("{} ({})", project.slug, tree.label()),
        theirs: "etcd 3.4 = 1".into(),
        note: String::new(),
        rows: vec![
            row("registrations/s", o.registrations / e.registrations),
            row("health reads/s", o.reads / e.reads),
            row("wake latency", e.wake_median_ms / o.wake_median_ms),
            row("memory/watcher", e.watcher_bytes / o.watcher_bytes),
        ],
    })
}

fn pid(guard: &Guard) -> u32 {
    guard.0.id()
}

/// A one-member etcd at its defaults, its data in `data`; returns it and its client port.
fn start_etcd(data: &Path) -> Result<(Guard, u16)> {
    let client = free_port()?;
    let peer = free_port()?;
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let guard = start_theirs(
        Command::new("etcd")
            .args(["--name", "m0"])
            .arg("--data-dir")
            .arg(data)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("m0={peer_url}")])
            .args(["--logger", "zap", "--log-level", "error"]),
    )?;
    wait_for_port(client)?;
    Ok((guard, client))
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

/// An answer: status, `X-Consul-Index` if any, body.
struct Answer {
    status: u16,
    index: Option<u64>,
    body: Bytes,
}

impl Conn {
    async fn open(port: u16) -> Result<Conn> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake")?;
        tokio::spawn(connection);
        Ok(Conn { sender })
    }

    async fn call(&mut self, method: Method, path: &str, body: String) -> Result<Answer> {
        let request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header("Host", "127.0.0.1")
            .header("Content-Type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let index = response
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok()?.parse().ok());
        let body = response.into_body().collect().await?.to_bytes();
        if status != 200 {
            bail!(
                "{method} {path}: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(Answer {
            status,
            index,
            body,
        })
    }

    async fn json(&mut self, path: &str, body: Value) -> Result<Value> {
        let answer = self.call(Method::POST, path, body.to_string()).await?;
        Ok(serde_json::from_slice(&answer.body)?)
    }
}

fn key(name: &str) -> String {
    B64.encode(name)
}

/// The prefix of a service's keys in etcd and the end of its range.
fn prefix(service: usize) -> (String, String) {
    let p = format!("/services/svc-{service}/");
    let mut end = p.clone().into_bytes();
    *end.last_mut().expect("a prefix ends in /") += 1;
    (key(&p), B64.encode(end))
}

/// What must happen before the change a watcher sees (etcd: the lease grant).
async fn prepare(side: Side, conn: &mut Conn) -> Result<Option<String>> {
    match side {
        Side::Ours => Ok(None),
        Side::Etcd => {
            let lease = conn.json("/v3/lease/grant", json!({"TTL": 60})).await?;
            let id = lease["ID"].as_str().context("a lease ID")?.to_owned();
            Ok(Some(id))
        }
    }
}

/// The change itself: the registry's registration, or etcd's put under the lease.
async fn commit(
    side: Side,
    conn: &mut Conn,
    i: usize,
    service: usize,
    lease: Option<String>,
) -> Result<()> {
    let value = json!({"ID": format!("i-{i}"), "Address": "127.0.0.1", "Port": 8000 + i % 1000});
    match side {
        Side::Ours => {
            let body = json!({
                "ID": format!("i-{i}"), "Name": format!("svc-{service}"),
                "Address": "127.0.0.1", "Port": 8000 + i % 1000, "Check": {"TTL": "60s"},
            });
            conn.call(Method::PUT, "/v1/agent/service/register", body.to_string())
                .await?;
        }
        Side::Etcd => {
            let k = key(&format!("/services/svc-{service}/i-{i}"));
            let v = B64.encode(value.to_string());
            conn.json("/v3/kv/put", json!({"key": k, "value": v, "lease": lease}))
                .await?;
        }
    }
    Ok(())
}

/// Runs `work(conn, i)` for every i below `count` over `clients` connections; returns the
/// rate per second.
async fn spread<F, Fut>(port: u16, clients: usize, count: usize, work: F) -> Result<f64>
where
    F: Fn(Conn, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Conn>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let work = Arc::new(work);
    let mut conns = Vec::new();
    for _ in 0..clients {
        conns.push(Conn::open(port).await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for conn in conns {
        let (next, work) = (Arc::clone(&next), Arc::clone(&work));
        tasks.push(tokio::spawn(async move {
            let mut conn = conn;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(());
                }
                conn = work(conn, i).await?;
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

async fn measure(side: Side, port: u16, pid: u32, load: &Load) -> Result<Figures> {
    let services = load.services;
    let registrations = spread(
        port,
        load.clients,
        load.instances,
        move |mut conn, i| async move {
            let lease = prepare(side, &mut conn).await?;
            commit(side, &mut conn, i, i % services, lease).await?;
            Ok(conn)
        },
    )
    .await?;
    if side == Side::Ours {
        // A TTL check starts critical, as in Consul: pass each once so that ?passing has them.
        spread(
            port,
            load.clients,
            load.instances,
            |mut conn, i| async move {
                let path = format!("/v1/agent/check/pass/service:i-{i}");
                conn.call(Method::PUT, &path, String::new()).await?;
                Ok(conn)
            },
        )
        .await?;
    }
    let expected = load.instances.div_ceil(services);
    let mut conn = Conn::open(port).await?;
    let answer = read(side, &mut conn, 0).await?;
    let seen = instances(side, &answer)?;
    if seen != expected {
        bail!("a health read of svc-0 found {seen} instances, not {expected}");
    }
    let reads = spread(
        port,
        load.clients,
        load.reads,
        move |mut conn, i| async move {
            read(side, &mut conn, i % services).await?;
            Ok(conn)
        },
    )
    .await?;

    // A fresh connection: servers close one left idle (hyper after 30 s).
    let mut conn = Conn::open(port).await?;
    let mut wakes = Vec::new();
    for k in 0..load.wakes {
        let i = load.instances + k;
        let service = k % services;
        let watcher = watch(side, port, &mut conn, service)
            .await
            .context("starting a watcher")?;
        let lease = prepare(side, &mut conn).await?;
        // Let the watcher be held before the change (a measurement may sleep; a test may not).
        tokio::time::sleep(Duration::from_millis(20)).await;
        let sent = Instant::now();
        commit(side, &mut conn, i, service, lease).await?;
        let woke = tokio::time::timeout(Duration::from_secs(10), watcher)
            .await
            .context("the watcher was not woken within 10s")???;
        wakes.push(woke.duration_since(sent).as_secs_f64() * 1000.0);
    }
    wakes.sort_by(f64::total_cmp);

    let mut conn = Conn::open(port).await?;
    let watcher_bytes = hold(side, port, pid, load, &mut conn)
        .await
        .context("holding watchers")?;
    Ok(Figures {
        registrations,
        reads,
        wake_median_ms: wakes[wakes.len() / 2],
        wake_max_ms: wakes[wakes.len() - 1],
        watcher_bytes,
        answer_bytes: answer.len(),
    })
}

/// One health read of `service`; returns its body (left unparsed: the load generator must not
/// be what limits the rate).
async fn read(side: Side, conn: &mut Conn, service: usize) -> Result<Bytes> {
    let answer = match side {
        Side::Ours => {
            let path = format!("/v1/health/service/svc-{service}?passing");
            conn.call(Method::GET, &path, String::new()).await?
        }
        Side::Etcd => {
            let (k, end) = prefix(service);
            let body = json!({"key": k, "range_end": end}).to_string();
            conn.call(Method::POST, "/v3/kv/range", body).await?
        }
    };
    Ok(answer.body)
}

/// The instances a health read lists.
fn instances(side: Side, body: &[u8]) -> Result<usize> {
    let v: Value = serde_json::from_slice(body)?;
    let list = match side {
        Side::Ours => &v,
        Side::Etcd => &v["kvs"],
    };
    Ok(list.as_array().map_or(0, Vec::len))
}

/// Starts a watcher of `service` on a connection of its own; the task ends with the instant its
/// change arrived.
async fn watch(
    side: Side,
    port: u16,
    conn: &mut Conn,
    service: usize,
) -> Result<tokio::task::JoinHandle<Result<Instant>>> {
    let mut own = Conn::open(port).await?;
    match side {
        Side::Ours => {
            let path = format!("/v1/health/service/svc-{service}");
            let at = conn.call(Method::GET, &path, String::new()).await?;
            let index = at.index.context("no X-Consul-Index")?;
            let path = format!("{path}?index={index}&wait=30s");
            Ok(tokio::spawn(async move {
                let answer = own.call(Method::GET, &path, String::new()).await?;
                let woke = Instant::now();
                if answer.status != 200 || answer.index == Some(index) {
                    bail!("the blocking query returned without a change");
                }
                Ok(woke)
            }))
        }
        Side::Etcd => {
            let (k, end) = prefix(service);
            let body = json!({"create_request": {"key": k, "range_end": end}}).to_string();
            let request = Request::builder()
                .method(Method::POST)
                .uri("/v3/watch")
                .header("Host", "127.0.0.1")
                .body(Full::new(Bytes::from(body)))?;
            own.sender.ready().await?;
            let response = own.sender.send_request(request).await?;
            let mut body = response.into_body();
            // The first message confirms the watch; the next one carries the event.
            let mut seen = Vec::new();
            while !String::from_utf8_lossy(&seen).contains("\"created\"") {
                let frame = body.frame().await.context("the watch ended")??;
                if let Some(data) = frame.data_ref() {
                    seen.extend_from_slice(data);
                }
            }
            Ok(tokio::spawn(async move {
                let _own = own;
                let mut seen = Vec::new();
                loop {
                    let frame = body.frame().await.context("the watch ended")??;
                    if let Some(data) = frame.data_ref() {
                        seen.extend_from_slice(data);
                    }
                    if String::from_utf8_lossy(&seen).contains("\"events\"") {
                        return Ok(Instant::now());
                    }
                }
            }))
        }
    }
}

/// Holds `load.watchers` watchers at once, each on its own connection, spread over the names;
/// returns the server's resident memory they added, per watcher.
async fn hold(side: Side, port: u16, pid: u32, load: &Load, conn: &mut Conn) -> Result<f64> {
    if load.watchers == 0 {
        return Ok(0.0);
    }
    let mut requests = Vec::new();
    for service in 0..load.services {
        let request = match side {
            Side::Ours => {
                let path = format!("/v1/health/service/svc-{service}");
                let at = conn.call(Method::GET, &path, String::new()).await?;
                let index = at.index.context("no X-Consul-Index")?;
                format!("GET {path}?index={index}&wait=10m HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            }
            Side::Etcd => {
                let (k, end) = prefix(service);
                let body = json!({"create_request": {"key": k, "range_end": end}}).to_string();
                format!(
                    "POST /v3/watch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            }
        };
        requests.push(request);
    }
    settle(pid).await;
    let before = super::proc_status_bytes(pid, "VmRSS")?;
    let mut held = Vec::new();
    for w in 0..load.watchers {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(requests[w % requests.len()].as_bytes())
            .await?;
        held.push(stream);
    }
    let after = settle(pid).await;
    drop(held);
    Ok(after.saturating_sub(before) as f64 / load.watchers as f64)
}

/// Waits (up to 15 s) until the resident memory of `pid` stops moving for a second; returns it.
async fn settle(pid: u32) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = super::proc_status_bytes(pid, "VmRSS").unwrap_or(0);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = super::proc_status_bytes(pid, "VmRSS").unwrap_or(0);
        if now.abs_diff(last) < 64 * 1024 {
            return now;
        }
        last = now;
    }
    last
}
