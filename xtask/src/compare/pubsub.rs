//! `cargo xtask compare pubsub`: the project's own load generator (`pubsub bench`: one publisher,
//! N subscribers) against a release build of the chosen tree's broker and against a real
//! `nats-server`, both on loopback, with the same workload, side by side.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::{free_port, require, start_ours, start_theirs, wait_for_port};
use crate::chart::{Comparison, Row};
use crate::projects::Project;
use crate::tree::Tree;

/// The workloads: every number of subscribers with every payload size.
#[derive(Debug, clap::Args)]
pub struct Load {
    /// Subscribers per run, a comma-separated list (e.g. `1,10,100`).
    #[arg(long, value_delimiter = ',', default_value = "10")]
    subscribers: Vec<usize>,
    /// Payload sizes in bytes, a comma-separated list (e.g. `16,1024`).
    #[arg(long, value_delimiter = ',', default_value = "16")]
    sizes: Vec<usize>,
    /// Messages published per run.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Extra arguments for the project's broker (after `--`).
    #[arg(last = true)]
    server_args: Vec<String>,
}

/// Runs every workload against both brokers.
pub fn run(root: &Path, project: &Project, tree: &Tree, load: &Load) -> Result<Comparison> {
    require("nats-server", "nats-server")?;
    let binary = tree.build(root, project, true)?;
    let mut ours = Command::new(&binary);
    ours.args(["broker", "--bind", "127.0.0.1:0"])
        .args(&load.server_args);
    let (_ours, our_addr) = start_ours(ours)?;
    let our_port = our_addr.port();
    let nats_port = free_port()?;
    let _nats = start_theirs(Command::new("nats-server").args([
        "-a",
        "127.0.0.1",
        "-p",
        &nats_port.to_string(),
    ]))?;
    wait_for_port(nats_port)?;
    eprintln!(
        "pubsub bench --messages {} against {} (port {our_port}) and nats-server (port {nats_port})...",
        load.messages,
        tree.label()
    );
    println!(
        "{:<12} {:>8} {:>18} {:>18} {:>8}",
        "subscribers",
        "size",
        format!("{} msg/s", project.slug),
        "nats-server msg/s",
        "ratio"
    );
    let mut rows = Vec::new();
    for &subscribers in &load.subscribers {
        for &size in &load.sizes {
            let bench =
                |port: u16| delivered_per_sec(&binary, port, subscribers, size, load.messages);
            let (mine, theirs) = (bench(our_port)?, bench(nats_port)?);
            println!(
                "{subscribers:<12} {:>8} {mine:>18.0} {theirs:>18.0} {:>7.2}x",
                format!("{size} B"),
                mine / theirs
            );
            rows.push(Row {
                label: format!(
                    "{subscribers} {}, {size} B",
                    if subscribers == 1 { "sub" } else { "subs" }
                ),
                ours: mine,
                theirs,
            });
        }
    }
    Ok(Comparison {
        title: format!(
            "{} against nats-server: one publisher, {} messages",
            project.slug, load.messages
        ),
        unit: "messages delivered per second".into(),
        ours: format!("{} ({})", project.slug, tree.label()),
        theirs: "nats-server".into(),
        note: String::new(),
        rows,
    })
}

/// Runs `pubsub bench` against `port` and reads `delivered_per_sec` from its JSON line.
fn delivered_per_sec(
    binary: &Path,
    port: u16,
    subscribers: usize,
    size: usize,
    messages: u64,
) -> Result<f64> {
    let output = Command::new(binary)
        .args(["bench", "--server", &format!("127.0.0.1:{port}")])
        .args(["--subscribers", &subscribers.to_string()])
        .args(["--size", &size.to_string()])
        .args(["--messages", &messages.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .context("running pubsub bench")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "pubsub bench against port {port} failed ({})",
            output.status
        );
    }
    parse_rate(&stdout)
        .with_context(|| format!("pubsub bench printed no delivered_per_sec: {stdout:?}"))
}

/// `delivered_per_sec` from the bench's JSON line.
fn parse_rate(json: &str) -> Option<f64> {
    serde_json::from_str::<serde_json::Value>(json.trim()).ok()?["delivered_per_sec"].as_f64()
}

#[cfg(test)]
mod tests {
    use super::parse_rate;

    #[test]
    fn reads_the_bench_line() {
        let line = "{\"delivered\":10,\"delivered_per_sec\":1234567.0,\"seconds\":0.5}\n";
        assert_eq!(parse_rate(line), Some(1_234_567.0));
        assert_eq!(parse_rate("nothing"), None);
    }
}
