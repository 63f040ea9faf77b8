//! `cargo xtask compare file-transfer`: a fresh transfer of one file over loopback by the chosen
//! tree's `file-transfer` and by `rsync` (to an rsync daemon), timed the same way, side by side.
//!
//! Both receivers write into `/dev/shm` where it exists, so that the disk is not what is measured.
//! Each tool sends the file several times, the destination file deleted before each run (a fresh
//! transfer, no basis file for rsync's delta algorithm); the best time of each is reported.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{free_port, require, start_ours, start_theirs, wait_for_port};
use crate::chart::{Comparison, Row};
use crate::projects::Project;
use crate::tree::Tree;

/// The file sent, and how often.
#[derive(Debug, clap::Args)]
pub struct Transfer {
    /// The size of the file sent, in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// How many times each tool sends it (the best time counts).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
}

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sends one file of the chosen size with each tool, the chosen number of times.
pub fn run(root: &Path, project: &Project, tree: &Tree, transfer: &Transfer) -> Result<Comparison> {
    require("rsync", "rsync")?;
    let (size, rounds) = (transfer.size_mib << 20, transfer.rounds);
    let binary = tree.build(root, project, true)?;
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let work = Scratch(base.join(format!("workbook-compare-{}", std::process::id())));
    let (src, ours_dir, rsync_dir) = (
        work.0.as_path().join("src"),
        work.0.as_path().join("ours"),
        work.0.as_path().join("rsync"),
    );
    for dir in [&src, &ours_dir, &rsync_dir] {
        std::fs::create_dir_all(dir)?;
    }
    let file = src.join("compare.bin");
    write_file(&file, size)?;

    let mut receiver = Command::new(&binary);
    receiver
        .args(["recv", "--bind", "127.0.0.1:0", "--dir"])
        .arg(&ours_dir);
    let (_receiver, addr) = start_ours(receiver)?;
    let addr = addr.to_string();
    let port = free_port()?;
    let config = work.0.as_path().join("rsyncd.conf");
    std::fs::write(
        &config,
        format!(
            "use chroot = no\nuid = {uid}\ngid = {gid}\n[dst]\npath = {}\nread only = no\n",
            rsync_dir.display(),
            uid = id("-u")?,
            gid = id("-g")?
        ),
    )?;
    let _daemon = start_theirs(
        Command::new("rsync")
            .args(["--daemon", "--no-detach", "--address=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--config={}", config.display())),
    )?;
    wait_for_port(port)?;

    eprintln!(
        "sending {} MiB over loopback, {rounds} times each: {} `send` and `rsync` to an rsync daemon...",
        size >> 20,
        tree.label()
    );
    // rsync's default whole-file checksum is xxh128, far cheaper than SHA-256; with sha1 it does
    // cryptographic work comparable to ours. By default it leaves the file in the page cache,
    // where ours is fsynced before COMPLETE: `--fsync` gives rsync the same durability.
    let rsyncs: [(&str, &[&str]); 3] = [
        ("rsync", &[]),
        ("rsync --cc=sha1", &["--checksum-choice=sha1"]),
        ("rsync --fsync", &["--fsync"]),
    ];
    let mut ours = Vec::new();
    let mut theirs = vec![Vec::new(); rsyncs.len()];
    for _ in 0..rounds {
        let _ = std::fs::remove_file(ours_dir.join("compare.bin"));
        let mut send = Command::new(&binary);
        send.args(["send", "--to", &addr]).arg(&file);
        ours.push(timed(send, "file-transfer send")?);
        for ((label, flags), times) in rsyncs.iter().zip(&mut theirs) {
            let _ = std::fs::remove_file(rsync_dir.join("compare.bin"));
            let mut rsync = Command::new("rsync");
            rsync
                .args(*flags)
                .arg(&file)
                .arg(format!("rsync://127.0.0.1:{port}/dst/"));
            times.push(timed(rsync, label)?);
        }
    }
    let rate = |d: Duration| size as f64 / d.as_secs_f64() / (1 << 20) as f64;
    let best_ours = best(&ours);
    println!(
        "{:<16} {:>10} {:>10} {:>14}",
        "tool", "best time", "MiB/s", "ours / theirs"
    );
    println!(
        "{:<16} {:>9.3}s {:>10.0}",
        project.slug,
        best_ours.as_secs_f64(),
        rate(best_ours)
    );
    let mut rows = Vec::new();
    for ((label, _), times) in rsyncs.iter().zip(&theirs) {
        let best_theirs = best(times);
        rows.push(Row {
            label: format!("against {label}"),
            ours: rate(best_ours),
            theirs: rate(best_theirs),
        });
        println!(
            "{label:<16} {:>9.3}s {:>10.0} {:>13.2}x",
            best_theirs.as_secs_f64(),
            rate(best_theirs),
            rate(best_ours) / rate(best_theirs)
        );
    }
    Ok(Comparison {
        title: format!(
            "{} against rsync: a fresh {} MiB file over loopback, best of {rounds}",
            project.slug,
            size >> 20
        ),
        unit: "MiB per second".into(),
        ours: format!("{} ({})", project.slug, tree.label()),
        theirs: "rsync".into(),
        note: String::new(),
        rows,
    })
}

fn best(times: &[Duration]) -> Duration {
    times.iter().copied().min().unwrap_or_default()
}

/// Runs `command` to its end and returns how long it took.
fn timed(mut command: Command, what: &str) -> Result<Duration> {
    let start = Instant::now();
    let output = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running {what}"))?;
    let elapsed = start.elapsed();
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(elapsed)
}

/// `size` bytes that no compression or delta could shrink.
fn write_file(path: &Path, size: u64) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        out.write_all(&block[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    Ok(())
}

/// The output of `id FLAG` (`-u` or `-g`): the daemon runs as whoever runs this, so that it can
/// write into our scratch directory.
fn id(flag: &str) -> Result<String> {
    let output = Command::new("id")
        .arg(flag)
        .output()
        .context("running id")?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
