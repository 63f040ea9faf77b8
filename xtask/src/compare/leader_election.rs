//! `cargo xtask compare leader-election`: the time to a new leader after the leader is killed,
//! in a cluster of the chosen tree (run by its own simulator) and in an etcd cluster on
//! loopback, at the same heartbeat and election timeout.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::handshake;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use super::{Guard, free_port, require};
use crate::projects::Project;
use crate::tree::Tree;

/// The failover workload.
#[derive(Debug, clap::Args)]
pub struct Failover {
    /// Cluster sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "3,5")]
    members: Vec<usize>,
    /// How many times the leader is killed in each cluster.
    #[arg(long, default_value_t = 20)]
    kills: u32,
    /// The heartbeat interval, in milliseconds (etcd's --heartbeat-interval).
    #[arg(long, default_value_t = 100)]
    heartbeat_ms: u64,
    /// The election timeout, in milliseconds (etcd's --election-timeout).
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// Run etcd with `--pre-vote` (off by default in etcd 3.4), the safety the solution has.
    #[arg(long)]
    pre_vote: bool,
}

/// Kills the leader of each cluster `kills` times and prints the failover times side by side.
pub fn run(root: &Path, project: &Project, tree: &Tree, f: &Failover) -> Result<()> {
    require("etcd", "etcd-server")?;
    let binary = tree.build(root, project, true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let etcd_label = if f.pre_vote {
        "etcd --pre-vote"
    } else {
        "etcd"
    };
    println!(
        "{:>7} {:>26} {:>22} {:>10} {:>22} {:>22}",
        "members",
        format!("{} median/max ms", project.slug),
        format!("{etcd_label} median/max ms"),
        "time ratio",
        format!("{} terms", project.slug),
        format!("{etcd_label} terms")
    );
    for &n in &f.members {
        eprintln!("{n} members: {} kills of {}...", f.kills, tree.label());
        let run = ours(&binary, n, f)?;
        eprintln!("{n} members: {} kills of {etcd_label}...", f.kills);
        let (mut theirs, (first, last)) = runtime.block_on(etcd(n, f))?;
        let (t50, tmax) = median_max(&mut theirs);
        println!(
            "{n:>7} {:>26} {:>22} {:>9.2}x {:>22} {:>22}",
            format!("{} / {} ({} msgs)", run.median, run.max, run.messages),
            format!("{t50} / {tmax}"),
            run.median as f64 / t50.max(1) as f64,
            format!(
                "{} to {} ({} elections)",
                run.first_term, run.last_term, run.elections
            ),
            format!("{first} to {last} ({} kills)", f.kills),
        );
    }
    println!(
        "(time ratio: the solution's median over etcd's, below 1 is faster; its runs elect twice \
         a kill, the failover and the hand-over back to the restarted node of highest priority, \
         so a term a election is no inflation)"
    );
    Ok(())
}

/// What a run of the simulator measured.
struct Run {
    median: u64,
    max: u64,
    messages: u64,
    first_term: u64,
    last_term: u64,
    /// `leader` events: one per election.
    elections: u64,
}

fn median_max(values: &mut [u64]) -> (u64, u64) {
    values.sort_unstable();
    (
        values.get(values.len() / 2).copied().unwrap_or(0),
        values.last().copied().unwrap_or(0),
    )
}

/// Runs the tree's simulator: the top-priority node is killed and restarted `kills` times (it
/// takes over again after a hold-down of one timeout).
fn ours(binary: &Path, n: usize, f: &Failover) -> Result<Run> {
    let t = f.timeout_ms;
    let cycle = 5 * t + 500;
    let mut scenario = String::new();
    for k in 0..u64::from(f.kills) {
        let at = 1500 + k * cycle;
        scenario.push_str(&format!(
            "{at}ms kill n{}\n{}ms restart n{}\n",
            n - 1,
            at + 2 * t,
            n - 1
        ));
    }
    let file = std::env::temp_dir().join(format!("xtask-le-scenario-{}", std::process::id()));
    std::fs::write(&file, scenario)?;
    let output = Command::new(binary)
        .args(["cluster", "--nodes", &n.to_string()])
        .args(["--heartbeat", &format!("{}ms", f.heartbeat_ms)])
        .args(["--timeout", &format!("{t}ms")])
        .args([
            "--duration",
            &format!("{}ms", 1500 + u64::from(f.kills) * cycle),
        ])
        .arg("--scenario")
        .arg(&file)
        .arg(format!("--node-arg=--hold-down={t}ms"))
        .stderr(Stdio::null())
        .output()
        .context("running the simulator")?;
    let _ = std::fs::remove_file(&file);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("failovers:"))
        .with_context(|| format!("the simulator printed no `failovers:` line:\n{stdout}"))?;
    if !stdout.contains("safety: ok") {
        bail!("the simulator found a safety violation:\n{stdout}");
    }
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    // The timeline's lines read `+   1244ms n2 leader term 1 leader n2 (elected)`.
    let terms: Vec<u64> = stdout
        .lines()
        .filter(|l| l.contains(" leader term "))
        .filter_map(|l| {
            l.split(" leader term ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    // failovers: K; time to a new leader: median A ms, max B ms; election messages: median C, max D
    match numbers[..] {
        [_, median, max, messages, _] => Ok(Run {
            median,
            max,
            messages,
            first_term: terms.first().copied().unwrap_or(0),
            last_term: terms.iter().copied().max().unwrap_or(0),
            elections: terms.len() as u64,
        }),
        _ => bail!("cannot read {line:?}"),
    }
}

struct Member {
    name: String,
    client: u16,
    peer: u16,
    data: PathBuf,
    process: Option<Guard>,
}

fn start_member(m: &Member, cluster: &str, state: &str, f: &Failover) -> Result<Guard> {
    let child: Child = Command::new("etcd")
        .args(["--name", &m.name])
        .arg("--data-dir")
        .arg(&m.data)
        .args([
            "--listen-client-urls",
            &format!("http://127.0.0.1:{}", m.client),
        ])
        .args([
            "--advertise-client-urls",
            &format!("http://127.0.0.1:{}", m.client),
        ])
        .args([
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{}", m.peer),
        ])
        .args([
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{}", m.peer),
        ])
        .args([
            "--initial-cluster",
            cluster,
            "--initial-cluster-state",
            state,
        ])
        .args(["--heartbeat-interval", &f.heartbeat_ms.to_string()])
        .args(["--election-timeout", &f.timeout_ms.to_string()])
        .arg(format!("--pre-vote={}", f.pre_vote))
        .args(["--logger", "zap", "--log-level", "error"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting etcd")?;
    Ok(Guard(child))
}

/// (member id, leader id, raft term) from a member's status, if it answers within 500 ms.
async fn status(client: u16) -> Option<(String, String, u64)> {
    let ask = async {
        let stream = TcpStream::connect(("127.0.0.1", client)).await.ok()?;
        let (mut sender, connection) = handshake(TokioIo::new(stream)).await.ok()?;
        tokio::spawn(connection);
        let request = Request::post("/v3/maintenance/status")
            .header("Host", "127.0.0.1")
            .body(Full::new(Bytes::from_static(b"{}")))
            .ok()?;
        let response = sender.send_request(request).await.ok()?;
        response
            .into_body()
            .collect()
            .await
            .ok()
            .map(|b| b.to_bytes())
    };
    let body = tokio::time::timeout(Duration::from_millis(500), ask)
        .await
        .ok()??;
    let v: Value = serde_json::from_slice(&body).ok()?;
    let id = v["header"]["member_id"].as_str()?.to_owned();
    let leader = v["leader"].as_str()?.to_owned();
    let term = v["raftTerm"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    Some((id, leader, term))
}

/// The index of the member that leads, by its own word (every live member asked at once).
async fn leader(members: &[Member]) -> Option<(usize, String)> {
    let mut asks = tokio::task::JoinSet::new();
    for (i, m) in members.iter().enumerate() {
        if m.process.is_some() {
            let client = m.client;
            asks.spawn(async move { (i, status(client).await) });
        }
    }
    let mut found = None;
    while let Some(Ok((i, answer))) = asks.join_next().await {
        if let Some((id, leader, _)) = answer
            && id == leader
        {
            found = Some((i, id));
        }
    }
    found
}

/// Polls `probe` every 5 ms until it gives a value, for at most `within`.
async fn wait<T, F, Fut>(within: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(v) = probe().await {
            return Ok(v);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bail!("etcd: nothing within {within:?}")
}

/// Kills the etcd leader `kills` times; returns the failover times (ms) and the first and last
/// terms seen.
async fn etcd(n: usize, f: &Failover) -> Result<(Vec<u64>, (u64, u64))> {
    let dir = std::env::temp_dir().join(format!("xtask-etcd-{}-{n}", std::process::id()));
    let mut members = Vec::new();
    for i in 0..n {
        members.push(Member {
            name: format!("m{i}"),
            client: free_port()?,
            peer: free_port()?,
            data: dir.join(format!("m{i}")),
            process: None,
        });
    }
    let cluster: Vec<String> = members
        .iter()
        .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
        .collect();
    let cluster = cluster.join(",");
    for m in &mut members {
        let process = start_member(m, &cluster, "new", f)?;
        m.process = Some(process);
    }
    let settle = Duration::from_millis(f.timeout_ms * 3);
    let mut times = Vec::new();
    wait(Duration::from_secs(20), || leader(&members)).await?;
    let first_term = status(members[0].client).await.map_or(0, |s| s.2);
    for _ in 0..f.kills {
        let (i, old) = wait(Duration::from_secs(20), || leader(&members)).await?;
        let killed = Instant::now();
        members[i].process = None;
        wait(Duration::from_secs(20), || async {
            leader(&members).await.filter(|(_, id)| *id != old)
        })
        .await?;
        times.push(killed.elapsed().as_millis() as u64);
        members[i].process = Some(start_member(&members[i], &cluster, "existing", f)?);
        let client = members[i].client;
        wait(Duration::from_secs(20), || async move {
            status(client)
                .await
                .filter(|s| s.1 != "0" && !s.1.is_empty())
        })
        .await?;
        tokio::time::sleep(settle).await;
    }
    let mut last_term = 0;
    for m in &members {
        last_term = last_term.max(status(m.client).await.map_or(0, |s| s.2));
    }
    drop(members);
    let _ = std::fs::remove_dir_all(&dir);
    Ok((times, (first_term, last_term)))
}
