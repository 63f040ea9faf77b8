//! `cargo xtask compare kv-store`: `redis-benchmark` against a release build of the chosen tree
//! and against a real `redis-server`, both on loopback, with the same workload.

use std::io::{Read, Write};
use std::net::TcpStream;
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
    /// Requests per test (at half a million a second, 500,000 would be over in a second, too
    /// short for a ratio that means anything on a shared machine).
    #[arg(long, default_value_t = 2_000_000)]
    requests: u32,
    /// Parallel connections.
    #[arg(long, default_value_t = 50)]
    clients: u32,
    /// Requests pipelined per connection.
    #[arg(long, default_value_t = 16)]
    pipeline: u32,
    /// Requests per test of the unpipelined rows (`SET -P 1`, `GET -P 1`), which `compare` adds
    /// when `--pipeline` is not 1; 0 leaves them out.
    #[arg(long, default_value_t = 100_000)]
    unpipelined_requests: u32,
    /// Keys (of 100-byte values) loaded into each server for the memory row; 0 leaves it out.
    #[arg(long, default_value_t = 1_000_000)]
    memory_keys: u32,
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
    let mut measured = vec![(
        String::new(),
        benchmark(our_port, workload, workload.requests, workload.pipeline)?,
        benchmark(redis_port, workload, workload.requests, workload.pipeline)?,
    )];
    if workload.pipeline != 1 && workload.unpipelined_requests > 0 {
        let n = workload.unpipelined_requests;
        measured.push((
            " -P 1".to_owned(),
            benchmark(our_port, workload, n, 1)?,
            benchmark(redis_port, workload, n, 1)?,
        ));
    }
    println!(
        "{:<10} {:>16} {:>16} {:>8}",
        "test",
        format!("{} rps", project.slug),
        "redis-server rps",
        "ratio"
    );
    let mut rows = Vec::new();
    for (suffix, ours, theirs) in &measured {
        for (test, rps) in ours {
            let Some((_, redis)) = theirs.iter().find(|(t, _)| t == test) else {
                continue;
            };
            let label = format!("{test}{suffix}");
            println!(
                "{label:<10} {rps:>16.0} {redis:>16.0} {:>7.2}x",
                rps / redis
            );
            rows.push(Row {
                label,
                ours: *rps,
                theirs: *redis,
            });
        }
    }
    let mut note = String::new();
    if workload.memory_keys > 0 {
        let keys = workload.memory_keys;
        let ours_grew = load_keys(our_port, keys, || {
            super::proc_status_bytes(_ours.0.id(), "VmRSS")
        })?;
        let redis_grew = load_keys(redis_port, keys, || used_memory(redis_port))?;
        let (ours_per_key, redis_per_key) = (
            ours_grew as f64 / f64::from(keys),
            redis_grew as f64 / f64::from(keys),
        );
        println!(
            "{:<10} {ours_per_key:>16.0} {redis_per_key:>16.0} {:>7.2}x  (bytes per key after {keys} SETs of 100-byte values: our resident memory, redis-server's INFO used_memory; lower is better)",
            "memory",
            ours_per_key / redis_per_key
        );
        note = format!(
            "memory, bytes per key after {keys} keys of 100 B: {ours_per_key:.0} ({}) against {redis_per_key:.0} (redis-server)",
            project.slug
        );
    }
    Ok(Comparison {
        title: format!(
            "{} against redis-server: redis-benchmark, {} clients, pipeline {}",
            project.slug, workload.clients, workload.pipeline
        ),
        unit: "requests per second".into(),
        ours: format!("{} ({})", project.slug, tree.label()),
        theirs: "redis-server".into(),
        note,
        rows,
    })
}

/// Loads `keys` keys of 100-byte values into the server at `port` (pipelined, 10,000 at a time)
/// and returns how much `memory` (read before and after) grew, in bytes.
fn load_keys(port: u16, keys: u32, memory: impl Fn() -> Result<u64>) -> Result<u64> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .with_context(|| format!("connecting to port {port}"))?;
    stream.write_all(b"*1\r\n$7\r\nFLUSHDB\r\n")?;
    expect_oks(&mut stream, 1)?;
    let before = memory()?;
    let value = [b'x'; 100];
    let mut batch = Vec::new();
    let mut start = 0;
    while start < keys {
        let end = (start + 10_000).min(keys);
        batch.clear();
        for i in start..end {
            let key = format!("key:{i:012}");
            let _ = write!(
                batch,
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$100\r\n",
                key.len()
            );
            batch.extend_from_slice(&value);
            batch.extend_from_slice(b"\r\n");
        }
        stream.write_all(&batch)?;
        expect_oks(&mut stream, end - start)?;
        start = end;
    }
    Ok(memory()?.saturating_sub(before))
}

/// Reads replies until `count` `+OK`s have come.
fn expect_oks(stream: &mut TcpStream, count: u32) -> Result<()> {
    let mut seen = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let mut tail = Vec::new();
    while seen < count {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            bail!("the server closed the connection while keys were being loaded");
        }
        tail.extend_from_slice(&buf[..n]);
        let lines = tail.iter().filter(|&&b| b == b'\n').count();
        seen += u32::try_from(lines).unwrap_or(u32::MAX);
        if tail.starts_with(b"-") {
            bail!(
                "the server refused a SET: {}",
                String::from_utf8_lossy(&tail)
            );
        }
        let keep = tail
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |at| at + 1);
        tail.drain(..keep);
    }
    Ok(())
}

/// redis-server's `used_memory`, from `INFO memory`.
fn used_memory(port: u16) -> Result<u64> {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "INFO", "memory"])
        .output()
        .context("running redis-cli INFO memory")?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("used_memory:")?.parse().ok())
        .context("no used_memory in redis-cli INFO memory")
}

/// Runs redis-benchmark against `port`; returns (test, requests per second) from its CSV.
fn benchmark(
    port: u16,
    workload: &Workload,
    requests: u32,
    pipeline: u32,
) -> Result<Vec<(String, f64)>> {
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
        .args(["-n", &requests.to_string()])
        .args(["-c", &workload.clients.to_string()])
        .args(["-P", &pipeline.to_string()])
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
