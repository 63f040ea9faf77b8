//! `cargo xtask compare <project>`: a project's program and the real thing it imitates, measured
//! by the same load in one run, side by side. Each project has its own subcommand and flags.
//!
//! # Layout
//! - [`gossip`]: the gossip simulator beside the theory, `net` beside the Gossip Glomers
//!   targets, and UDP nodes beside serf ([`serf`]).
//! - [`kv_store`]: `redis-benchmark` against the kv-store and a real `redis-server`.
//! - [`log_aggregator`]: `bench` and syslog-ng's `loggen` into the aggregator and into rsyslog.
//! - [`metrics_collector`]: one StatsD load into the collector and the StatsD daemon, one
//!   Graphite load into the collector and carbon-cache.
//! - [`pubsub`]: the project's own load generator against the broker and a real `nats-server`.
//! - [`file_transfer`]: one fresh transfer by the file-transfer and by `rsync`.
//! - [`file_writer`]: one upload into the file-writer and into `@tus/server`, beside the
//!   loopback copy rate.
//! - [`service_registry`]: registrations, health reads and watchers against etcd.
//! - [`leader_election`]: the time to a new leader after a kill, against an etcd cluster.
//! - here: the subcommands, starting and stopping the programs compared, and `--svg`: each
//!   comparison returns its figures as a [`chart::Comparison`], drawn by [`chart::draw`].

mod file_transfer;
mod file_writer;
mod gossip;
mod kv_store;
mod leader_election;
mod log_aggregator;
mod metrics_collector;
mod pubsub;
mod serf;
mod service_registry;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use crate::tree::Tree;
use crate::{chart, projects};

/// Which project to compare, with that comparison's own workload flags.
#[derive(Debug, Subcommand)]
pub enum Comparison {
    /// The log aggregator against rsyslogd (imtcp to omfile), both loaded by `bench` and, where
    /// found, syslog-ng's `loggen`.
    #[command(name = "log-aggregator", visible_alias = "2")]
    LogAggregator(log_aggregator::Load),
    /// The metrics collector against Etsy's StatsD daemon (npm statsd, TCP and UDP) and
    /// carbon-cache (Graphite plaintext), all loaded by the same generator.
    #[command(name = "metrics-collector", visible_alias = "9")]
    MetricsCollector(metrics_collector::Load),
    /// The gossip simulator against the theory of epidemics, gossip net against the Gossip
    /// Glomers 3d and 3e targets, and UDP nodes against HashiCorp serf.
    #[command(name = "gossip", visible_alias = "4")]
    Gossip(gossip::Runs),
    /// The kv-store against redis-server, both loaded by redis-benchmark (SET and GET).
    #[command(name = "kv-store", visible_alias = "3")]
    KvStore(kv_store::Workload),
    /// The pubsub broker against nats-server, both loaded by `pubsub bench` (one publisher, N
    /// subscribers).
    #[command(name = "pubsub", visible_alias = "7")]
    Pubsub(pubsub::Load),
    /// The file-transfer against rsync: one fresh transfer of one file over loopback.
    #[command(name = "file-transfer", visible_alias = "10")]
    FileTransfer(file_transfer::Transfer),
    /// The file-writer against tus's reference Node server (@tus/server with @tus/file-store):
    /// one upload over loopback, one stream into each and parallel parts into ours, beside the
    /// loopback copy rate.
    #[command(name = "file-writer", visible_alias = "5")]
    FileWriter(file_writer::Upload),
    /// The service registry against etcd (leases as TTLs, watches as blocking queries):
    /// registrations/s, health reads/s, change-to-watcher latency, memory per watcher.
    #[command(name = "service-registry", visible_alias = "6")]
    ServiceRegistry(service_registry::Load),
    /// Leader election against etcd: the leader of a 3- and a 5-member cluster killed N times,
    /// the time to a new leader side by side.
    #[command(name = "leader-election", visible_alias = "8")]
    LeaderElection(leader_election::Failover),
}

/// Runs `comparison` against a release build of `tree`, and draws it into `svg` if given.
pub fn run(root: &Path, comparison: &Comparison, tree: &Tree, svg: Option<&Path>) -> Result<()> {
    let slug = match comparison {
        Comparison::LogAggregator(_) => "log-aggregator",
        Comparison::MetricsCollector(_) => "metrics-collector",
        Comparison::Gossip(_) => "gossip",
        Comparison::KvStore(_) => "kv-store",
        Comparison::Pubsub(_) => "pubsub",
        Comparison::FileTransfer(_) => "file-transfer",
        Comparison::FileWriter(_) => "file-writer",
        Comparison::ServiceRegistry(_) => "service-registry",
        Comparison::LeaderElection(_) => "leader-election",
    };
    let project = projects::find_existing(slug, root)?;
    let measured = match comparison {
        Comparison::LogAggregator(load) => log_aggregator::run(root, &project, tree, load)?,
        Comparison::MetricsCollector(load) => metrics_collector::run(root, &project, tree, load)?,
        Comparison::Gossip(runs) => {
            if svg.is_some() {
                bail!("gossip draws its charts itself: `gossip simulate --svg FILE`");
            }
            return gossip::run(root, &project, tree, runs);
        }
        Comparison::KvStore(workload) => kv_store::run(root, &project, tree, workload)?,
        Comparison::Pubsub(load) => pubsub::run(root, &project, tree, load)?,
        Comparison::FileTransfer(transfer) => file_transfer::run(root, &project, tree, transfer)?,
        Comparison::FileWriter(upload) => file_writer::run(root, &project, tree, upload)?,
        Comparison::ServiceRegistry(load) => service_registry::run(root, &project, tree, load)?,
        Comparison::LeaderElection(failover) => {
            if svg.is_some() {
                bail!(
                    "leader-election draws its timeline itself: `leader-election cluster --svg FILE`"
                );
            }
            return leader_election::run(root, &project, tree, failover);
        }
    };
    if let Some(path) = svg {
        let command = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
        let command = command.replace(&format!(" --svg {}", path.display()), "");
        let chart = chart::Comparison {
            note: format!("cargo xtask {command}, {} (UTC)", chart::today()),
            ..measured
        };
        chart::draw(&chart, path)?;
        eprintln!("drew the comparison into {}", path.display());
    }
    Ok(())
}

/// Fails with the package to install when `tool --version` cannot run.
fn require(tool: &str, debian_package: &str) -> Result<()> {
    if Command::new(tool).arg("--version").output().is_err() {
        bail!("{tool} is not installed (Debian: apt-get install {debian_package})");
    }
    Ok(())
}

/// A child process killed when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts one of our servers and reads its `listening on ADDR` line. The rest of its stdout is
/// read and dropped, so that a full pipe never stalls it.
fn start_ours(mut command: Command) -> Result<(Guard, SocketAddr)> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    let stdout = child.stdout.take().context("the server's stdout")?;
    let guard = Guard(child);
    let mut lines = BufReader::new(stdout);
    let mut first = String::new();
    lines.read_line(&mut first)?;
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .and_then(|addr| addr.parse().ok())
        .with_context(|| format!("expected `listening on ADDR` from the server, got {first:?}"))?;
    std::thread::spawn(move || for _ in lines.lines() {});
    Ok((guard, addr))
}

/// Starts a program of someone else's (`redis-server`, `nats-server`, ...) with stdout and
/// stderr closed.
fn start_theirs(command: &mut Command) -> Result<Guard> {
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    Ok(Guard(child))
}

/// A field of `/proc/PID/status` that the kernel gives in kB (`VmRSS`, `VmHWM`), in bytes.
fn proc_status_bytes(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("reading /proc/PID/status (the memory figures need Linux)")?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {field} in /proc/PID/status"))?;
    Ok(kib * 1024)
}

/// Clock ticks per second of `/proc/PID/stat` (`USER_HZ`, 100 on Linux).
const CLOCK_TICKS: f64 = 100.0;

/// The CPU time process `pid` has used so far, user and system, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    // utime and stime are fields 14 and 15 of the line: 11 and 12, counted from 0, after it.
    match (field(11), field(12)) {
        (Some(user), Some(system)) => Ok(user + system),
        _ => bail!("cannot read the CPU times in /proc/{pid}/stat"),
    }
}

/// A port free right now (the OS picks it; another program could take it before theirs binds
/// it, which would show as a failure to connect).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits up to 5 s for something to listen on `port`.
fn wait_for_port(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("nothing is listening on port {port} after 5s")
}
