//! `cargo xtask compare`: a project's server and the real thing it imitates, measured by the same
//! load generator in one run, side by side.
//!
//! For the kv-store: `redis-benchmark` against a release build of the chosen tree and against a
//! real `redis-server`, both on loopback, with the same workload.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::projects;
use crate::tree::Tree;

/// The workload, as `redis-benchmark` flags.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Requests per test.
    pub requests: u32,
    /// Parallel connections.
    pub clients: u32,
    /// Requests pipelined per connection.
    pub pipeline: u32,
    /// Extra arguments for the project's server (e.g. `--shards 2`).
    pub server_args: Vec<String>,
    /// For the file-transfer: the file's size in MiB.
    pub size_mib: u64,
    /// For the file-transfer: how many times each tool sends the file.
    pub rounds: u32,
}

/// A child process killed when dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the comparison for `name` (the kv-store against redis-server, the file-transfer against
/// rsync).
pub fn run(root: &Path, name: &str, tree: &Tree, workload: &Workload) -> Result<()> {
    let project = projects::find_existing(name, root)?;
    if project.slug == "file-transfer" {
        let size = workload.size_mib << 20;
        return crate::compare_transfer::run(root, &project, tree, size, workload.rounds);
    }
    if project.slug != "kv-store" {
        bail!("only the kv-store and the file-transfer have a comparison so far");
    }
    for tool in ["redis-benchmark", "redis-server"] {
        if Command::new(tool).arg("--version").output().is_err() {
            bail!("{tool} is not installed (Debian: apt-get install redis-server redis-tools)");
        }
    }
    let binary = tree.build(root, &project, true)?;
    let mut ours = Command::new(&binary);
    ours.args(["server", "--bind", "127.0.0.1:0"])
        .args(&workload.server_args);
    let (_ours, our_port) = start_ours(ours)?;
    let redis_port = free_port()?;
    let _redis = Guard(
        Command::new("redis-server")
            .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server")?,
    );
    wait_for_port(redis_port)?;
    eprintln!(
        "redis-benchmark -t set,get -n {} -c {} -P {} against {} (port {our_port}) and redis-server (port {redis_port})...",
        workload.requests,
        workload.clients,
        workload.pipeline,
        tree.label()
    );
    let ours = benchmark(our_port, workload)?;
    let theirs = benchmark(redis_port, workload)?;
    println!(
        "{:<6} {:>16} {:>16} {:>8}",
        "test",
        format!("{} rps", project.slug),
        "redis-server rps",
        "ratio"
    );
    for (test, rps) in &ours {
        let Some((_, redis)) = theirs.iter().find(|(t, _)| t == test) else {
            continue;
        };
        println!("{test:<6} {rps:>16.0} {redis:>16.0} {:>7.2}x", rps / redis);
    }
    Ok(())
}

/// Starts our server and reads its `listening on ADDR` line.
pub(crate) fn start_ours(mut command: Command) -> Result<(Guard, u16)> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the server")?;
    let stdout = child.stdout.take().context("the server's stdout")?;
    let guard = Guard(child);
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first)?;
    let port = first
        .trim()
        .strip_prefix("listening on ")
        .and_then(|addr| addr.rsplit(':').next())
        .and_then(|port| port.parse().ok())
        .with_context(|| format!("expected `listening on ADDR` from the server, got {first:?}"))?;
    Ok((guard, port))
}

/// A port free right now (the OS picks it; another program could take it before redis-server
/// binds it, which would show as a failure to connect).
pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits up to 5 s for something to listen on `port`.
pub fn wait_for_port(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("nothing is listening on port {port} after 5s")
}

/// Runs redis-benchmark against `port`; returns (test, requests per second) from its CSV.
fn benchmark(port: u16, workload: &Workload) -> Result<Vec<(String, f64)>> {
    let output = Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "set,get",
            "--csv",
            "-q",
        ])
        .args(["-n", &workload.requests.to_string()])
        .args(["-c", &workload.clients.to_string()])
        .args(["-P", &workload.pipeline.to_string()])
        .stderr(Stdio::null())
        .output()
        .context("running redis-benchmark")?;
    let rows = parse_csv(&String::from_utf8_lossy(&output.stdout));
    if rows.is_empty() {
        bail!(
            "redis-benchmark printed no results for port {port} ({})",
            output.status
        );
    }
    Ok(rows)
}

/// `"SET","1234567.88",...` rows to (test, rps); the header and anything else are skipped.
fn parse_csv(csv: &str) -> Vec<(String, f64)> {
    csv.lines()
        .filter_map(|line| {
            let mut fields = line.split(',').map(|f| f.trim_matches('"'));
            let test = fields.next()?.to_owned();
            let rps = fields.next()?.parse().ok()?;
            Some((test, rps))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_csv;

    #[test]
    fn reads_redis_benchmark_csv() {
        let csv = "\"test\",\"rps\",\"avg_latency_ms\"\n\"SET\",\"1234567.88\",\"0.568\"\n\"GET\",\"1818181.88\",\"0.258\"\n";
        assert_eq!(
            parse_csv(csv),
            [
                ("SET".to_owned(), 1_234_567.88),
                ("GET".to_owned(), 1_818_181.88)
            ]
        );
    }
}
