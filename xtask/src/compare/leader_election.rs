//! `cargo xtask compare leader-election`: the time to a new leader after the leader is killed,
//! in a cluster of the chosen tree (run by its own simulator) and in an etcd cluster on
//! loopback, at the same heartbeat and election timeout.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

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
}

/// Kills the leader of each cluster `kills` times and prints the failover times side by side.
pub fn run(root: &Path, project: &Project, tree: &Tree, f: &Failover) -> Result<()> {
    require("etcd", "etcd-server")?;
    let binary = tree.build(root, project, true)?;
    println!(
        "{:>7} {:>26} {:>26} {:>14} {:>14}",
        "members",
        format!("{} median/max ms", project.slug),
        "etcd median/max ms",
        "ratio (median)",
        "etcd terms"
    );
    for &n in &f.members {
        eprintln!("{n} members: {} kills of {}...", f.kills, tree.label());
        let (ours, messages) = ours(&binary, n, f)?;
        eprintln!("{n} members: {} kills of etcd...", f.kills);
        let (mut theirs, terms) = etcd(n, f)?;
        let (t50, tmax) = median_max(&mut theirs);
        println!(
            "{n:>7} {:>26} {:>26} {:>13.2}x {:>14}",
            format!("{} / {} ({messages} msgs)", ours.0, ours.1),
            format!("{t50} / {tmax}"),
            ours.0 as f64 / t50.max(1) as f64,
            terms
        );
    }
    Ok(())
}

fn median_max(values: &mut [u64]) -> (u64, u64) {
    values.sort_unstable();
    (
        values.get(values.len() / 2).copied().unwrap_or(0),
        values.last().copied().unwrap_or(0),
    )
}

/// Runs the tree's simulator: the top-priority node is killed and restarted `kills` times (it
/// takes over again after a hold-down of one timeout). Returns (median, max) ms and the median
/// election messages per failover.
fn ours(binary: &Path, n: usize, f: &Failover) -> Result<((u64, u64), u64)> {
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
    // failovers: K; time to a new leader: median A ms, max B ms; election messages: median C, max D
    match numbers[..] {
        [_, a, b, c, _] => Ok(((a, b), c)),
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
        .args(["--logger", "zap", "--log-level", "error"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting etcd")?;
    Ok(Guard(child))
}

/// (member id, leader id, raft term) from a member's status, if it answers.
fn status(client: u16) -> Option<(String, String, u64)> {
    let out = Command::new("curl")
        .args(["-s", "-m", "0.5", "-X", "POST", "-d", "{}"])
        .arg(format!("http://127.0.0.1:{client}/v3/maintenance/status"))
        .output()
        .ok()?;
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    let id = v["header"]["member_id"].as_str()?.to_owned();
    let leader = v["leader"].as_str()?.to_owned();
    let term = v["raftTerm"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    Some((id, leader, term))
}

/// The index of the member that leads, by its own word.
fn leader(members: &[Member]) -> Option<(usize, String)> {
    members.iter().enumerate().find_map(|(i, m)| {
        m.process.as_ref()?;
        let (id, leader, _) = status(m.client)?;
        (id == leader).then_some((i, id))
    })
}

fn wait<T>(within: Duration, mut probe: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(v) = probe() {
            return Ok(v);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    bail!("etcd: nothing within {within:?}")
}

/// Kills the etcd leader `kills` times; returns the failover times (ms) and the terms seen.
fn etcd(n: usize, f: &Failover) -> Result<(Vec<u64>, String)> {
    require("curl", "curl")?;
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
    let first_term = wait(Duration::from_secs(20), || leader(&members))
        .map(|_| status(members[0].client).map_or(0, |s| s.2))?;
    for _ in 0..f.kills {
        let (i, old) = wait(Duration::from_secs(20), || leader(&members))?;
        let killed = Instant::now();
        members[i].process = None;
        wait(Duration::from_secs(20), || {
            leader(&members).filter(|(_, id)| *id != old)
        })?;
        times.push(killed.elapsed().as_millis() as u64);
        members[i].process = Some(start_member(&members[i], &cluster, "existing", f)?);
        let client = members[i].client;
        wait(Duration::from_secs(20), || {
            status(client).filter(|s| s.1 != "0" && !s.1.is_empty())
        })?;
        std::thread::sleep(settle);
    }
    let last_term = members
        .iter()
        .filter_map(|m| status(m.client))
        .map(|s| s.2)
        .max();
    drop(members);
    let _ = std::fs::remove_dir_all(&dir);
    Ok((times, format!("{first_term} to {}", last_term.unwrap_or(0))))
}
