//! Part of `cargo xtask compare gossip`: one user event across a cluster of HashiCorp serf
//! agents on loopback (gossip over memberlist, SWIM), beside one broadcast across as many
//! `gossip node --udp` processes at serf's own gossip interval (200 ms) and fanout (3), both
//! timed and counted the same way.
//!
//! - Time: from the moment the first member has the event (the agent `serf event
//!   -coalesce=false` gave it to, the node that answered `broadcast_ok`) until the last member
//!   has it, so that the start of the `serf event` process is not counted. Serf agents say so
//!   in their log (`Received event: user-event: NAME`, read from their stdout as it comes); our
//!   nodes are asked `read` every 10 ms.
//! - Messages: the datagrams and TCP messages all members send in a window of 3 s from the
//!   event, less what they send in 3 s with no event at all (serf's SWIM probes, our
//!   anti-entropy digests). Serf counts them itself: each `memberlist.udp.sent` and
//!   `memberlist.tcp.sent` it reports to a statsd address (ours, a UDP socket) is one packet.
//!   Our nodes answer `stats` with the datagrams they sent to peers.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::{Guard, free_port, start_ours, wait_for_port};

/// The window in which messages are counted, after the event and with none.
const WINDOW: Duration = Duration::from_secs(3);

/// One cluster size's figures: spread times in ms and messages, per event.
pub struct Spread {
    /// Milliseconds until the last member had the event, one per event.
    pub ms: Vec<u64>,
    /// Messages sent for one event (its window less an idle window), one per event.
    pub messages: Vec<u64>,
}

/// Runs `events` user events across `n` serf agents.
pub fn serf(n: usize, events: u32) -> Result<Spread> {
    let statsd = UdpSocket::bind("127.0.0.1:0")?;
    let statsd_addr = statsd.local_addr()?;
    let packets = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&packets);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        while let Ok(len) = statsd.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..len]);
            let sent = text
                .lines()
                .filter(|l| l.contains("memberlist.udp.sent") || l.contains("memberlist.tcp.sent"))
                .count();
            counter.fetch_add(sent as u64, Ordering::Relaxed);
        }
    });
    let work = std::env::temp_dir().join(format!("xtask-serf-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let config = work.join("serf.json");
    std::fs::write(&config, json!({ "statsd_addr": statsd_addr }).to_string())?;
    let (seen_tx, seen) = mpsc::channel::<(usize, String, Instant)>();
    let mut agents = Vec::new();
    let mut rpc = Vec::new();
    let first_bind = free_port()?;
    for i in 0..n {
        let bind = if i == 0 { first_bind } else { free_port()? };
        let rpc_port = free_port()?;
        let mut command = Command::new("serf");
        command
            .arg("agent")
            .arg(format!("-node=agent{i}"))
            .arg(format!("-bind=127.0.0.1:{bind}"))
            .arg(format!("-rpc-addr=127.0.0.1:{rpc_port}"))
            .arg(format!("-config-file={}", config.display()));
        if i > 0 {
            // Retried: on a busy machine the first agent may not listen yet.
            command
                .arg(format!("-retry-join=127.0.0.1:{first_bind}"))
                .arg("-retry-interval=1s");
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting serf agent")?;
        let stdout = child.stdout.take().context("serf's stdout")?;
        agents.push(Guard(child));
        if i == 0 {
            wait_for_port(first_bind)?;
        }
        rpc.push(format!("127.0.0.1:{rpc_port}"));
        let tx = seen_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(at) = line.find("Received event: user-event: ") {
                    let name = line[at + "Received event: user-event: ".len()..].trim();
                    let _ = tx.send((i, name.to_owned(), Instant::now()));
                }
            }
        });
    }
    wait_members(&rpc[0], n)?;
    // Let the joins' own gossip die down before anything is counted.
    std::thread::sleep(Duration::from_secs(3));
    let mut spread = Spread {
        ms: Vec::new(),
        messages: Vec::new(),
    };
    for k in 0..events {
        let before = packets.load(Ordering::Relaxed);
        std::thread::sleep(WINDOW);
        let idle = packets.load(Ordering::Relaxed) - before;
        while seen.try_recv().is_ok() {}
        let name = format!("compare{k}");
        let start = Instant::now();
        let at_start = packets.load(Ordering::Relaxed);
        let status = Command::new("serf")
            .args(["event", &format!("-rpc-addr={}", rpc[0]), "-coalesce=false"])
            .args([&name, "payload"])
            .stdout(Stdio::null())
            .status()
            .context("running serf event")?;
        if !status.success() {
            bail!("serf event failed ({status})");
        }
        let mut have = vec![None; n];
        let deadline = start + Duration::from_secs(10);
        while have.iter().any(Option::is_none) {
            let left = deadline.saturating_duration_since(Instant::now());
            match seen.recv_timeout(left) {
                Ok((i, got, at)) if got == name => have[i] = have[i].or(Some(at)),
                Ok(_) => {}
                Err(_) => bail!(
                    "serf: after 10s only {} of {n} agents had event {name}",
                    have.iter().flatten().count()
                ),
            }
        }
        let first = have.iter().flatten().min().copied().unwrap_or(start);
        let last = have.iter().flatten().max().copied().unwrap_or(start);
        spread
            .ms
            .push(last.duration_since(first).as_millis() as u64);
        std::thread::sleep(WINDOW.saturating_sub(start.elapsed()));
        let during = packets.load(Ordering::Relaxed) - at_start;
        spread.messages.push(during.saturating_sub(idle));
    }
    drop(agents);
    let _ = std::fs::remove_dir_all(&work);
    Ok(spread)
}

/// Waits up to 60 s until `serf members` lists `n` alive members.
fn wait_members(rpc: &str, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut alive = 0;
    while Instant::now() < deadline {
        let output = Command::new("serf")
            .args(["members", &format!("-rpc-addr={rpc}"), "-status=alive"])
            .output();
        if let Ok(output) = output {
            alive = String::from_utf8_lossy(&output.stdout).lines().count();
            if alive >= n {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("serf: only {alive} of {n} agents alive after 60s")
}

/// Runs `events` broadcasts across `n` UDP nodes of `binary` with `flags`.
pub fn ours(binary: &Path, n: usize, events: u32, flags: &[&str]) -> Result<Spread> {
    let addrs: Vec<SocketAddr> = {
        let sockets = (0..n)
            .map(|_| UdpSocket::bind("127.0.0.1:0"))
            .collect::<std::io::Result<Vec<_>>>()?;
        sockets
            .iter()
            .map(UdpSocket::local_addr)
            .collect::<std::io::Result<_>>()?
    };
    let mut nodes = Vec::new();
    for addr in &addrs {
        let peers: Vec<String> = addrs
            .iter()
            .filter(|a| *a != addr)
            .map(ToString::to_string)
            .collect();
        let mut command = Command::new(binary);
        command
            .args(["node", "--udp", "--bind", &addr.to_string()])
            .args(["--peers", &peers.join(",")])
            .args(flags);
        nodes.push(start_ours(command)?.0);
    }
    let client = Client::new()?;
    let mut spread = Spread {
        ms: Vec::new(),
        messages: Vec::new(),
    };
    for k in 0..events {
        let before = client.sent(&addrs)?;
        std::thread::sleep(WINDOW);
        let idle = client.sent(&addrs)? - before;
        let value = i64::from(k) + 1;
        let start = Instant::now();
        let at_start = client.sent(&addrs)?;
        let ok = client.ask(addrs[0], json!({ "type": "broadcast", "message": value }))?;
        if ok["type"] != "broadcast_ok" {
            bail!("broadcast to {}: {ok}", addrs[0]);
        }
        let mut have: Vec<Option<Instant>> = vec![None; n];
        let first = Instant::now();
        have[0] = Some(first);
        let deadline = start + Duration::from_secs(10);
        while have.iter().any(Option::is_none) {
            if Instant::now() > deadline {
                bail!("ours: after 10s not every node had value {value}");
            }
            for (i, addr) in addrs.iter().enumerate() {
                if have[i].is_some() {
                    continue;
                }
                let read = client.ask(*addr, json!({ "type": "read" }))?;
                let values = read["messages"].as_array().cloned().unwrap_or_default();
                if values.iter().any(|v| v.as_i64() == Some(value)) {
                    have[i] = Some(Instant::now());
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let last = have.iter().flatten().max().copied().unwrap_or(first);
        spread
            .ms
            .push(last.duration_since(first).as_millis() as u64);
        std::thread::sleep(WINDOW.saturating_sub(start.elapsed()));
        let during = client.sent(&addrs)? - at_start;
        spread.messages.push(during.saturating_sub(idle));
    }
    drop(nodes);
    Ok(spread)
}

/// A Maelstrom client over UDP.
struct Client {
    socket: UdpSocket,
    next: std::cell::Cell<u64>,
}

impl Client {
    fn new() -> Result<Client> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        Ok(Client {
            socket,
            next: std::cell::Cell::new(1),
        })
    }

    /// Sends `body` to `node` and returns the reply's body (three tries).
    fn ask(&self, node: SocketAddr, body: Value) -> Result<Value> {
        for _ in 0..3 {
            let id = self.next.get();
            self.next.set(id + 1);
            let mut body = body.clone();
            body["msg_id"] = json!(id);
            let message = json!({ "src": "c1", "dest": node.to_string(), "body": body });
            self.socket.send_to(message.to_string().as_bytes(), node)?;
            let mut buf = vec![0u8; 65_536];
            while let Ok((len, _)) = self.socket.recv_from(&mut buf) {
                let Ok(reply) = serde_json::from_slice::<Value>(&buf[..len]) else {
                    continue;
                };
                if reply["body"]["in_reply_to"] == json!(id) {
                    return Ok(reply["body"].clone());
                }
            }
        }
        bail!("{node} did not answer {body}")
    }

    /// The datagrams every node has sent to its peers so far.
    fn sent(&self, nodes: &[SocketAddr]) -> Result<u64> {
        nodes.iter().try_fold(0, |sum, node| {
            let stats = self.ask(*node, json!({ "type": "stats" }))?;
            Ok(sum + stats["sent"].as_u64().unwrap_or(0))
        })
    }
}

/// `(median, max)` of `values`.
pub fn median_max(values: &[u64]) -> (u64, u64) {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    (
        sorted.get(sorted.len() / 2).copied().unwrap_or(0),
        sorted.last().copied().unwrap_or(0),
    )
}

/// Where serf is, if it is installed.
pub fn installed() -> Option<PathBuf> {
    let output = Command::new("serf").arg("version").output().ok()?;
    output.status.success().then(|| PathBuf::from("serf"))
}
