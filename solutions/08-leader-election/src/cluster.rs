//! The simulator: N node processes behind the [`Relay`], a scenario of faults at given times,
//! a timeline, and the safety check from every node's events.
//!
//! The nodes are this very binary run as `node`, so the simulator always runs the tree it was
//! built from. A scenario step reads `AT ACTION`: `2s kill leader`, `4s restart n2`,
//! `5s pause n0`, `6s resume n0`, `7s partition n0,n1|n2,n3,n4`, `9s heal`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::protocol::{Event, Role};
use crate::relay::{Faults, Relay};
use crate::server::now_ms;

/// The node a step acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Node `n<i>`.
    Node(usize),
    /// Whichever node leads when the step runs.
    Leader,
}

/// One fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// SIGKILL.
    Kill(Target),
    /// Start a killed node again, on its data directory.
    Restart(Target),
    /// SIGSTOP.
    Pause(Target),
    /// SIGCONT.
    Resume(Target),
    /// Cut the links between groups.
    Partition(Vec<Vec<usize>>),
    /// Restore every link.
    Heal,
}

/// A fault at a time after the start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// When, from the moment every node is up.
    pub at: Duration,
    /// What.
    pub action: Action,
}

fn node_index(s: &str) -> Result<usize, String> {
    s.strip_prefix('n')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("expected a node such as n0, got {s:?}"))
}

fn target(s: Option<&str>) -> Result<Target, String> {
    match s {
        Some("leader") => Ok(Target::Leader),
        Some(s) => node_index(s).map(Target::Node),
        None => Err("expected a node (n0, n1, ...) or `leader`".into()),
    }
}

/// Parses `AT ACTION [ARG]`, e.g. `2s kill leader` or `5s partition n0|n1,n2`.
///
/// # Errors
/// When the line is not a step.
pub fn parse_step(line: &str) -> Result<Step, String> {
    let mut words = line.split_whitespace();
    let at = plumbing::parse::duration(words.next().unwrap_or(""))?;
    let verb = words.next().ok_or("expected an action after the time")?;
    let arg = words.next();
    let action = match verb {
        "kill" => Action::Kill(target(arg)?),
        "restart" => Action::Restart(target(arg)?),
        "pause" => Action::Pause(target(arg)?),
        "resume" => Action::Resume(target(arg)?),
        "heal" => Action::Heal,
        "partition" => {
            let groups = arg.ok_or("expected groups such as n0,n1|n2")?;
            let groups = groups
                .split('|')
                .map(|g| g.split(',').map(node_index).collect::<Result<Vec<_>, _>>())
                .collect::<Result<Vec<_>, _>>()?;
            Action::Partition(groups)
        }
        other => {
            return Err(format!(
                "unknown action {other:?} (kill, restart, pause, resume, partition, heal)"
            ));
        }
    };
    Ok(Step { at, action })
}

/// The simulation to run.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// How many nodes; node `n<i>` has priority `i + 1`.
    pub nodes: usize,
    /// Flags passed to every node (`--algorithm bully`, `--heartbeat 50ms`, ...).
    pub node_args: Vec<String>,
    /// The faults on working links.
    pub faults: Faults,
    /// The scenario.
    pub steps: Vec<Step>,
    /// How long to run after every node is up.
    pub duration: Duration,
    /// The seed of the relay's random faults.
    pub seed: u64,
    /// Where the nodes keep their term and vote.
    pub data: PathBuf,
}

/// What happened, for the summary and the SVG.
#[derive(Debug, Default)]
pub struct Report {
    /// When the nodes were all up, in Unix ms.
    pub start_ms: u64,
    /// When the run ended, in Unix ms.
    pub end_ms: u64,
    /// Every event of every node, in the order read.
    pub events: Vec<Event>,
    /// The faults applied, with their time in Unix ms.
    pub faults: Vec<(u64, String)>,
    /// Per node, the spans (from, to, Unix ms) in which it was down or paused.
    pub down: BTreeMap<String, Vec<(u64, u64)>>,
    /// Broken safety properties, one line each.
    pub violations: Vec<String>,
    /// Per election after a leader's loss: time to the next leader (ms) and election messages.
    pub failovers: Vec<(u64, u64)>,
    /// The time to the first leader, from the start (ms).
    pub first_leader_ms: Option<u64>,
    /// Nodes that ended on their own (a panic, an error), not by a step: one line each.
    pub exits: Vec<String>,
}

struct Member {
    id: String,
    child: Option<Child>,
    paused: bool,
    last: Option<Event>,
}

/// The messages of an election.
const ELECTION_TYPES: [&str; 4] = ["prevote", "prevote_reply", "vote", "vote_reply"];

fn election_messages(relay: &Relay) -> u64 {
    let counts = relay.counts();
    ELECTION_TYPES
        .iter()
        .map(|t| counts.get(*t).copied().unwrap_or(0))
        .sum()
}

/// Runs the simulation, printing the timeline as it goes, and returns the report.
///
/// # Errors
/// When a node cannot be started or does not print `listening on ADDR`.
pub async fn run(config: ClusterConfig, shutdown: CancellationToken) -> Result<Report> {
    let n = config.nodes;
    if n == 0 {
        bail!("--nodes must be at least 1");
    }
    let exe = std::env::current_exe().context("finding this program to run its nodes")?;
    let relay = Relay::start(n, config.faults, config.seed, shutdown.clone()).await?;
    // Each node's stdout lines, tagged with its process id; `None` when the stdout closed.
    let (tx, mut rx) = mpsc::channel::<(usize, Option<u32>, Option<String>)>(10_000);
    let mut members: Vec<Member> = (0..n)
        .map(|i| Member {
            id: format!("n{i}"),
            child: None,
            paused: false,
            last: None,
        })
        .collect();
    let mut report = Report::default();
    for i in 0..n {
        start_node(i, &config, &exe, &relay, &mut members, &tx).await?;
    }
    report.start_ms = now_ms();
    let started = Instant::now();
    let mut steps = config.steps.clone();
    steps.sort_by_key(|s| s.at);
    let mut steps = steps.into_iter().peekable();
    // A leader lost: when, and the election messages counted until then.
    let mut lost: Option<(u64, u64)> = None;
    let end = started + config.duration;
    loop {
        let next = steps.peek().map_or(end, |s| (started + s.at).min(end));
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep_until(next.into()) => {
                let Some(step) = steps.next_if(|s| started + s.at <= Instant::now()) else {
                    if Instant::now() >= end { break }
                    continue;
                };
                let leader = current_leader(&members);
                let what = apply(&step.action, leader, &config, &exe, &relay, &mut members, &tx)
                    .await?;
                let at = now_ms();
                println!("+{:>6}ms ! {what}", at - report.start_ms);
                if lost.is_none() && leader.is_some() && current_leader(&members).is_none() {
                    lost = Some((at, election_messages(&relay)));
                }
                report.faults.push((at, what));
            }
            Some((i, pid, line)) = rx.recv() => {
                let Some(line) = line else {
                    // A node that closed its stdout while still ours (not killed by a step, not
                    // a replaced one) ended on its own.
                    let ours = members[i].child.as_ref().and_then(Child::id);
                    if shutdown.is_cancelled() || pid.is_none() || ours != pid {
                        continue;
                    }
                    let leader = current_leader(&members);
                    let Some(mut child) = members[i].child.take() else { continue };
                    let waited = tokio::time::timeout(Duration::from_secs(2), child.wait());
                    let status = match waited.await {
                        Ok(Ok(status)) => status.to_string(),
                        _ => "no exit status".to_owned(),
                    };
                    let at = now_ms();
                    let what = format!("exit n{i} (on its own, {status})");
                    println!("+{:>6}ms ! {what}", at - report.start_ms);
                    if lost.is_none() && leader == Some(i) {
                        lost = Some((at, election_messages(&relay)));
                    }
                    report.exits.push(what.clone());
                    report.faults.push((at, what));
                    continue;
                };
                let Ok(event) = serde_json::from_str::<Event>(&line) else { continue };
                println!(
                    "+{:>6}ms {} {} term {} leader {} ({})",
                    event.time_ms.saturating_sub(report.start_ms),
                    event.node,
                    format!("{:?}", event.event).to_lowercase(),
                    event.term,
                    event.leader.as_deref().unwrap_or("-"),
                    event.reason
                );
                if event.event == Role::Leader {
                    if report.first_leader_ms.is_none() {
                        report.first_leader_ms = Some(event.time_ms.saturating_sub(report.start_ms));
                    }
                    if let Some((at, count)) = lost.take() {
                        let took = event.time_ms.saturating_sub(at);
                        report.failovers.push((took, election_messages(&relay) - count));
                    }
                }
                members[i].last = Some(event.clone());
                report.events.push(event);
            }
        }
    }
    report.end_ms = now_ms();
    for m in &mut members {
        if let Some(mut child) = m.child.take() {
            let _ = child.kill().await;
        }
    }
    for (at, what) in &report.faults {
        record_down(&mut report.down, *at, what);
    }
    for spans in report.down.values_mut() {
        for span in spans.iter_mut().filter(|s| s.1 == u64::MAX) {
            span.1 = report.end_ms;
        }
    }
    report.violations = check_safety(&report);
    Ok(report)
}

/// The spans in which each node was down or paused, from the fault log.
fn record_down(down: &mut BTreeMap<String, Vec<(u64, u64)>>, at: u64, what: &str) {
    let mut words = what.split_whitespace();
    let (Some(verb), Some(node)) = (words.next(), words.next()) else {
        return;
    };
    let spans = down.entry(node.to_owned()).or_default();
    match verb {
        "kill" | "pause" | "exit" => spans.push((at, u64::MAX)),
        "restart" | "resume" => {
            if let Some(open) = spans.iter_mut().rev().find(|s| s.1 == u64::MAX) {
                open.1 = at;
            }
        }
        _ => {}
    }
}

fn current_leader(members: &[Member]) -> Option<usize> {
    members.iter().position(|m| {
        m.child.is_some() && !m.paused && m.last.as_ref().is_some_and(|e| e.event == Role::Leader)
    })
}

async fn start_node(
    i: usize,
    config: &ClusterConfig,
    exe: &PathBuf,
    relay: &Relay,
    members: &mut [Member],
    tx: &mpsc::Sender<(usize, Option<u32>, Option<String>)>,
) -> Result<()> {
    let id = members[i].id.clone();
    let mut command = Command::new(exe);
    command
        .args(["node", "--id", &id, "--priority", &(i + 1).to_string()])
        .args(["--bind", "127.0.0.1:0", "--data"])
        .arg(config.data.join(&id));
    for j in (0..members.len()).filter(|&j| j != i) {
        command
            .arg("--peer")
            .arg(format!("n{j}={}", relay.link(i, j)));
    }
    let mut child = command
        .args(&config.node_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting node {id}"))?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .with_context(|| format!("node {id} printed nothing for 10s"))??
        .unwrap_or_default();
    let addr = first
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| anyhow!("node {id} printed {first:?}, not `listening on ADDR`"))?;
    relay.set_member(i, addr);
    let tx = tx.clone();
    let pid = child.id();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send((i, pid, Some(line))).await.is_err() {
                return;
            }
        }
        let _ = tx.send((i, pid, None)).await;
    });
    let m = &mut members[i];
    m.child = Some(child);
    m.paused = false;
    m.last = None;
    Ok(())
}

fn signal(child: &Child, name: &str) {
    if let Some(pid) = child.id() {
        // The `kill` command keeps this crate free of unsafe code and of a libc binding.
        let _ = std::process::Command::new("kill")
            .args([format!("-{name}"), pid.to_string()])
            .status();
    }
}

async fn apply(
    action: &Action,
    leader: Option<usize>,
    config: &ClusterConfig,
    exe: &PathBuf,
    relay: &Relay,
    members: &mut [Member],
    tx: &mpsc::Sender<(usize, Option<u32>, Option<String>)>,
) -> Result<String> {
    let pick = |t: &Target| match t {
        Target::Node(i) => Some(*i).filter(|i| *i < members.len()),
        Target::Leader => leader,
    };
    let describe = |verb: &str, i: usize, t: &Target| {
        let role = if *t == Target::Leader {
            " (the leader)"
        } else {
            ""
        };
        format!("{verb} n{i}{role}")
    };
    Ok(match action {
        Action::Kill(t) | Action::Pause(t) | Action::Resume(t) | Action::Restart(t) => {
            let Some(i) = pick(t) else {
                return Ok(format!("skipped {action:?}: no such node now"));
            };
            let m = &mut members[i];
            match action {
                Action::Kill(_) => {
                    if let Some(mut child) = m.child.take() {
                        let _ = child.kill().await;
                    }
                    m.last = None;
                    describe("kill", i, t)
                }
                Action::Pause(_) => {
                    if let Some(child) = &m.child {
                        signal(child, "STOP");
                        m.paused = true;
                    }
                    describe("pause", i, t)
                }
                Action::Resume(_) => {
                    if let Some(child) = &m.child {
                        signal(child, "CONT");
                        m.paused = false;
                    }
                    describe("resume", i, t)
                }
                _ => {
                    if m.child.is_none() {
                        start_node(i, config, exe, relay, members, tx).await?;
                    }
                    describe("restart", i, t)
                }
            }
        }
        Action::Partition(groups) => {
            relay.partition(groups);
            let text: Vec<String> = groups
                .iter()
                .map(|g| {
                    g.iter()
                        .map(|i| format!("n{i}"))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .collect();
            format!("partition {}", text.join(" | "))
        }
        Action::Heal => {
            relay.heal();
            "heal".to_owned()
        }
    })
}

/// The spans (node, from, to) in which each node acted as leader: from its `leader` event to
/// its next event, or until it was killed or paused.
pub fn leader_spans(report: &Report) -> Vec<(String, u64, u64)> {
    let mut open: BTreeMap<&str, u64> = BTreeMap::new();
    let mut spans = Vec::new();
    for e in &report.events {
        if let Some(from) = open.remove(e.node.as_str()) {
            spans.push((e.node.clone(), from, e.time_ms));
        }
        if e.event == Role::Leader {
            open.insert(&e.node, e.time_ms);
        }
    }
    for (node, from) in open {
        spans.push((node.to_owned(), from, report.end_ms));
    }
    // A node down or paused acts on nothing: cut its spans there.
    let mut cut = Vec::new();
    for (node, from, to) in spans {
        let mut to = to;
        for &(d0, _) in report.down.get(&node).into_iter().flatten() {
            if d0 >= from && d0 < to {
                to = d0;
            }
        }
        cut.push((node, from, to));
    }
    cut
}

/// Never two leaders in one term; never two nodes acting as leader at one instant.
pub fn check_safety(report: &Report) -> Vec<String> {
    let mut out = Vec::new();
    let mut by_term: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for e in report.events.iter().filter(|e| e.event == Role::Leader) {
        let nodes = by_term.entry(e.term).or_default();
        if !nodes.contains(&e.node.as_str()) {
            nodes.push(&e.node);
        }
    }
    for (term, nodes) in by_term.iter().filter(|(_, n)| n.len() > 1) {
        out.push(format!("term {term} had two leaders: {}", nodes.join(", ")));
    }
    let spans = leader_spans(report);
    for (k, a) in spans.iter().enumerate() {
        for b in &spans[k + 1..] {
            let (from, to) = (a.1.max(b.1), a.2.min(b.2));
            if a.0 != b.0 && from < to {
                out.push(format!(
                    "{} and {} both acted as leader for {} ms (+{}ms to +{}ms)",
                    a.0,
                    b.0,
                    to - from,
                    from.saturating_sub(report.start_ms),
                    to.saturating_sub(report.start_ms)
                ));
            }
        }
    }
    out
}

/// The median and the maximum of `values`, or `None` when there are none.
pub fn median_max(values: &mut [u64]) -> Option<(u64, u64)> {
    values.sort_unstable();
    Some((*values.get(values.len() / 2)?, *values.last()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_steps() {
        assert_eq!(
            parse_step("2s kill leader"),
            Ok(Step {
                at: Duration::from_secs(2),
                action: Action::Kill(Target::Leader)
            })
        );
        assert_eq!(
            parse_step("1500ms partition n0,n1|n2").map(|s| s.action),
            Ok(Action::Partition(vec![vec![0, 1], vec![2]]))
        );
        assert!(parse_step("3s explode n1").is_err());
        assert!(parse_step("soon kill n1").is_err());
    }
}
