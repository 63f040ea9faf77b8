//! `cargo xtask compare kv-store`: `redis-benchmark` against a release build of the chosen tree
//! and against a real `redis-server`, both on loopback, with the same workload.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::{free_port, require, start_ours, start_theirs, wait_for_port};
use crate::chart::{Comparison, Row};
use crate::projects::Project;
use crate::tree::Tree;

/// The workload, as `redis-benchmark` flags.
#[derive(Debug, clap::Args)]
pub struct Workload {
    /// Requests per test.
    #[arg(long, default_value_t = 500_000)]
    requests: u32,
    /// Parallel connections.
    #[arg(long, default_value_t = 50)]
    clients: u32,
    /// Requests pipelined per connection.
    #[arg(long, default_value_t = 16)]
    pipeline: u32,
    /// Extra arguments for the kv-store server (after `--`), e.g. `-- --shards 2`.
    #[arg(last = true)]
    server_args: Vec<String>,
}

/// Runs redis-benchmark's SET and GET tests against both servers.
pub fn run(root: &Path, project: &Project, tree: &Tree, workload: &Workload) -> Result<Comparison> {
    require("redis-benchmark", "redis-tools")?;
    require("redis-server", "redis-server")?;
    let binary = tree.build(root, project, true)?;
    let mut ours = Command::new(&binary);
    ours.args(["server", "--bind", "127.0.0.1:0"])
        .args(&workload.server_args);
    let (_ours, our_addr) = start_ours(ours)?;
    let our_port = our_addr.port();
    let redis_port = free_port()?;
    let _redis = start_theirs(
        Command::new("redis-server")
            .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"]),
    )?;
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
    let mut rows = Vec::new();
    for (test, rps) in &ours {
        let Some((_, redis)) = theirs.iter().find(|(t, _)| t == test) else {
            continue;
        };
        println!("{test:<6} {rps:>16.0} {redis:>16.0} {:>7.2}x", rps / redis);
        rows.push(Row {
            label: test.clone(),
            ours: *rps,
            theirs: *redis,
        });
    }
    Ok(Comparison {
        title: format!(
            "{} against redis-server: redis-benchmark, {} clients, pipeline {}",
            project.slug, workload.clients, workload.pipeline
        ),
        unit: "requests per second".into(),
        ours: format!("{} ({})", project.slug, tree.label()),
        theirs: "redis-server".into(),
        note: String::new(),
        rows,
    })
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
