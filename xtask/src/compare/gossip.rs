//! `cargo xtask compare gossip`: the chosen tree's `gossip` against what it imitates, the
//! mathematics of epidemics and the Gossip Glomers targets.
//!
//! - `simulate` at 10^4, 10^5 and 10^6 nodes, push on the complete graph: the measured mean
//!   rounds beside Pittel's log2 N + ln N and the Doerr-Kuennemann bounds on the mean; push,
//!   pull and push-pull side by side (Karp et al.); the mean milliseconds per round.
//! - `net` with 25 nodes, 100 ms latency, 100 ops/s: msgs-per-op and stable latency beside the
//!   3d and 3e targets, for the default node flags and for `--node-flags`.
//! - HashiCorp's serf, the production peer (Debian's `serf`): one user event across 10 and 25
//!   agents on loopback beside one broadcast across as many `gossip node --udp` processes at
//!   serf's gossip interval and fanout: time until every member has it, and messages sent (see
//!   [`super::serf`]). Skipped, saying so, where serf is not installed.
//!
//! Maelstrom itself cannot be installed on these machines, which is why `net` exists.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::projects::Project;
use crate::tree::Tree;

/// What to run.
#[derive(Debug, clap::Args)]
pub struct Runs {
    /// Simulator runs per size (10^6 gets a fifth of them, at least one).
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Seconds of each `net` workload.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Extra node flags for a second `net` run (e.g. "--interval 200ms").
    #[arg(long, default_value = "--interval 200ms")]
    node_flags: String,
    /// Cluster sizes of the serf comparison, comma-separated (none: `--serf-agents ''`).
    #[arg(long, value_delimiter = ',', default_value = "10,25")]
    serf_agents: Vec<String>,
    /// Events sent in each serf and UDP cluster.
    #[arg(long, default_value_t = 5)]
    events: u32,
    /// Flags of our UDP nodes beside serf: serf's LAN gossip interval is 200 ms, its fanout 3.
    #[arg(long, default_value = "--overlay random --fanout 3 --interval 200ms")]
    udp_flags: String,
}

/// Runs the simulator and the network, and prints the tables.
pub fn run(root: &Path, project: &Project, tree: &Tree, runs: &Runs) -> Result<()> {
    let binary = tree.build(root, project, true)?;
    println!("simulate, push on the complete graph (release build, seeds 1..):");
    println!(
        "  {:>9}  {:>6}  {:>11}  {:>8}  {:>15}  {:>9}",
        "N", "runs", "mean rounds", "Pittel", "Doerr-Kuennemann", "ms/round"
    );
    for k in [4u32, 5, 6] {
        let n = 10u64.pow(k);
        let count = if k == 6 {
            (runs.runs / 5).max(1)
        } else {
            runs.runs.max(1)
        };
        let doc = simulate(&binary, n, "push", count)?;
        let s = &doc["summary"];
        let t = &doc["theory"];
        println!(
            "  {:>9}  {:>6}  {:>11.2}  {:>8.2}  [{:>6.2}, {:>6.2}]  {:>9.2}",
            n,
            count,
            s["mean_rounds"].as_f64().unwrap_or(f64::NAN),
            t["pittel_rounds"].as_f64().unwrap_or(f64::NAN),
            t["dk_lower"].as_f64().unwrap_or(f64::NAN),
            t["dk_upper"].as_f64().unwrap_or(f64::NAN),
            s["ms_per_round"].as_f64().unwrap_or(f64::NAN),
        );
    }
    println!("\nsimulate, 10^5 nodes, {} runs each:", runs.runs.max(1));
    for mode in ["push", "pull", "push-pull"] {
        let doc = simulate(&binary, 100_000, mode, runs.runs.max(1))?;
        println!(
            "  {:>9}: {:.2} rounds, {:.0} calls",
            mode,
            doc["summary"]["mean_rounds"].as_f64().unwrap_or(f64::NAN),
            doc["summary"]["mean_messages"].as_f64().unwrap_or(f64::NAN),
        );
    }
    println!(
        "\nnet, 25 nodes, 100ms latency, 100 ops/s, {}s:",
        runs.seconds
    );
    println!("  targets: 3d msgs-per-op < 30, p50 < 400 ms, max < 600 ms;");
    println!("           3e msgs-per-op < 20, p50 < 1 s,    max < 2 s");
    let extra: Vec<&str> = runs.node_flags.split_whitespace().collect();
    for flags in [Vec::new(), extra] {
        let report = net(&binary, runs.seconds, &flags)?;
        let q = &report["stable_latency_ms"];
        println!(
            "  node {:<24} valid {:<5}  msgs-per-op {:>6.2}  p50 {:>5.0} ms  max {:>5.0} ms",
            if flags.is_empty() {
                "(defaults)".to_owned()
            } else {
                flags.join(" ")
            },
            report["valid"],
            report["msgs_per_op"].as_f64().unwrap_or(f64::NAN),
            q["p50"].as_f64().unwrap_or(f64::NAN),
            q["max"].as_f64().unwrap_or(f64::NAN),
        );
    }
    let sizes: Vec<usize> = runs
        .serf_agents
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().context("--serf-agents takes numbers"))
        .collect::<Result<_>>()?;
    if sizes.is_empty() {
        return Ok(());
    }
    if super::serf::installed().is_none() {
        println!(
            "\nserf is not installed (Debian: apt-get install serf): its comparison is skipped"
        );
        return Ok(());
    }
    let flags: Vec<&str> = runs.udp_flags.split_whitespace().collect();
    println!(
        "\none event across a cluster on loopback, {} events each: serf agents (user event, \
         -coalesce=false) and `node --udp {}`;",
        runs.events,
        flags.join(" ")
    );
    println!("  messages: sent in 3 s from the event, less 3 s with none");
    println!(
        "  {:>7}  {:>22}  {:>12}  {:>22}  {:>12}  {:>12}",
        "members",
        "serf ms median/max",
        "serf msgs",
        "ours ms median/max",
        "ours msgs",
        "time ratio"
    );
    for n in sizes {
        eprintln!("{n} serf agents...");
        let theirs = super::serf::serf(n, runs.events)?;
        eprintln!("{n} UDP nodes of {}...", tree.label());
        let ours = super::serf::ours(&binary, n, runs.events, &flags)?;
        let (t50, tmax) = super::serf::median_max(&theirs.ms);
        let (o50, omax) = super::serf::median_max(&ours.ms);
        println!(
            "  {n:>7}  {:>22}  {:>12}  {:>22}  {:>12}  {:>11.2}x",
            format!("{t50} / {tmax}"),
            super::serf::median_max(&theirs.messages).0,
            format!("{o50} / {omax}"),
            super::serf::median_max(&ours.messages).0,
            o50 as f64 / t50.max(1) as f64
        );
    }
    Ok(())
}

fn simulate(binary: &Path, nodes: u64, mode: &str, runs: usize) -> Result<Value> {
    let n = nodes.to_string();
    let r = runs.to_string();
    let args = [
        "simulate",
        "--nodes",
        &n,
        "--mode",
        mode,
        "--runs",
        &r,
        "--no-curves",
    ];
    last_json(Command::new(binary).args(args))
}

fn net(binary: &Path, seconds: u64, flags: &[&str]) -> Result<Value> {
    let limit = format!("{seconds}s");
    let mut command = Command::new(binary);
    command.args([
        "net",
        "--nodes",
        "25",
        "--latency",
        "100ms",
        "--rate",
        "100",
    ]);
    command.args(["--time-limit", &limit, "--"]).args(flags);
    last_json(&mut command)
}

/// Runs `command` and parses its last stdout line as JSON.
fn last_json(command: &mut Command) -> Result<Value> {
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {command:?}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some(line) = stdout.lines().last() else {
        bail!("{command:?} printed nothing ({})", output.status);
    };
    serde_json::from_str(line).with_context(|| format!("{command:?} printed {line:?}"))
}
