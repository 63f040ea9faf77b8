//! `cargo xtask compare file-writer`: one upload of the same file over loopback into the
//! protocol's reference Node server (`@tus/server` with `@tus/file-store`, one stream: it offers
//! no concatenation) and into the chosen tree's `file-writer server`, with one stream and with
//! parallel parts, all sent by the chosen tree's `file-writer upload`, so that only the server
//! differs. Those uploads carry no checksum (`upload --checksum none`): `@tus/server` has no
//! checksum extension, so it would skip the work ours does. Ours is then timed again with the
//! client's default, SHA-256 on every chunk, to show what checksums cost.
//!
//! Two limits are measured in the same run: the loopback copy rate, plain bytes through one TCP
//! socket (two copies of each byte), and a file>socket>file pipeline, the least an upload must
//! do (read the file, send, receive, write: four copies), with nothing of HTTP. No upload over
//! loopback can beat either.
//!
//! Every server writes into `/dev/shm` where it exists, so that the disk is not what is measured
//! (fsync there costs nothing). Each upload is deleted once timed. `@tus/server` is installed
//! into `target/npm/file-writer` beside tus-js-client when it is missing (npm, about 5 s).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{CLOCK_TICKS, cpu_ticks, start_ours};
use crate::chart::{Comparison, Row};
use crate::projects::Project;
use crate::tree::Tree;

/// The upload.
#[derive(Debug, clap::Args)]
pub struct Upload {
    /// The size of the file uploaded, in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// How many times each server receives it (the best time counts).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// The bytes of one PATCH, as `file-writer upload --chunk-size` reads them.
    #[arg(long, default_value = "8MiB")]
    chunk_size: String,
    /// The parts of the parallel upload into ours (`upload --parallel`).
    #[arg(long, default_value_t = 4)]
    parallel: usize,
}

/// The packages of the reference server, as npm names them.
const TUS_NODE: [&str; 2] = ["@tus/server@2", "@tus/file-store@2"];

/// The suite's own tus client, which `.ci/run` installs into the same folder.
const SUITE_CLIENT: &str = "tus-js-client@4";

/// The reference server: `node SCRIPT DIR` listens on a port of its own and prints `listening on
/// ADDR`. Written into the npm folder, where its imports resolve.
const TUS_NODE_SCRIPT: &str = r#"import { Server } from '@tus/server';
import { FileStore } from '@tus/file-store';
const dir = process.argv[2];
const server = new Server({ path: '/files', datastore: new FileStore({ directory: dir }) });
const http = server.listen({ host: '127.0.0.1', port: 0 }, () => {
  console.log(`listening on 127.0.0.1:${http.address().port}`);
});
"#;

/// A scratch directory, removed with everything in it when dropped.
struct Work(PathBuf);

impl Drop for Work {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Uploads one file into each server `rounds` times and prints the rates side by side.
pub fn run(root: &Path, project: &Project, tree: &Tree, upload: &Upload) -> Result<Comparison> {
    let npm = root.join("target/npm/file-writer");
    install_tus_node(&npm)?;
    let size = upload.size_mib << 20;
    let binary = tree.build(root, project, true)?;
    let base = Some(Path::new("/dev/shm"))
        .filter(|shm| shm.is_dir())
        .map_or_else(std::env::temp_dir, Path::to_path_buf);
    let work = Work(base.join(format!("workbook-compare-fw-{}", std::process::id())));
    let (ours_dir, theirs_dir) = (work.0.join("ours"), work.0.join("tus-node"));
    for dir in [&ours_dir, &theirs_dir] {
        std::fs::create_dir_all(dir)?;
    }
    let file = work.0.join("upload.bin");
    fill_random(&file, size)?;

    let mut server = Command::new(&binary);
    server
        .args(["server", "--bind", "127.0.0.1:0", "--dir"])
        .arg(&ours_dir);
    let (ours, ours_addr) = start_ours(server)?;
    let script = npm.join("xtask-tus-server.mjs");
    std::fs::write(&script, TUS_NODE_SCRIPT)?;
    let mut node = Command::new("node");
    node.current_dir(&npm).arg(&script).arg(&theirs_dir);
    let (theirs, theirs_addr) = start_ours(node)?;

    eprintln!(
        "uploading {} MiB over loopback, {} times into each: @tus/server, and {} `server` with \
         one stream and with {} parts...",
        upload.size_mib,
        upload.rounds,
        tree.label(),
        upload.parallel
    );
    let (ours_pid, theirs_pid) = (ours.0.id(), theirs.0.id());
    // Every row but the last two sends no checksum, so that both servers do the same work:
    // @tus/server has no checksum extension and would ignore an `Upload-Checksum`, while ours
    // verifies one over every byte. The last two rows are ours with the client's default,
    // SHA-256 on every chunk, hashed by the client and verified by the server: what checksums
    // cost.
    let targets = [
        Target {
            label: "@tus/server, 1 stream".into(),
            addr: theirs_addr,
            parallel: 1,
            checksum: "none",
            dir: &theirs_dir,
            pid: theirs_pid,
        },
        Target {
            label: "ours, 1 stream".into(),
            addr: ours_addr,
            parallel: 1,
            checksum: "none",
            dir: &ours_dir,
            pid: ours_pid,
        },
        Target {
            label: format!("ours, {} parts", upload.parallel),
            addr: ours_addr,
            parallel: upload.parallel,
            checksum: "none",
            dir: &ours_dir,
            pid: ours_pid,
        },
        Target {
            label: "ours, 1 stream, sha256".into(),
            addr: ours_addr,
            parallel: 1,
            checksum: "sha256",
            dir: &ours_dir,
            pid: ours_pid,
        },
        Target {
            label: format!("ours, {} parts, sha256", upload.parallel),
            addr: ours_addr,
            parallel: upload.parallel,
            checksum: "sha256",
            dir: &ours_dir,
            pid: ours_pid,
        },
    ];
    let mut times = vec![Vec::new(); targets.len()];
    let mut cpu = vec![Vec::new(); targets.len()];
    let mut copy = Vec::new();
    let mut pipeline = Vec::new();
    let sink = work.0.join("pipeline.bin");
    for _ in 0..upload.rounds.max(1) {
        copy.push(loopback_copy(size)?);
        pipeline.push(file_socket_file(&file, &sink, size)?);
        std::fs::remove_file(&sink)?;
        for ((target, times), cpu) in targets.iter().zip(&mut times).zip(&mut cpu) {
            let mut command = Command::new(&binary);
            command
                .args(["upload", "--to", &format!("http://{}/files/", target.addr)])
                .args(["--parallel", &target.parallel.to_string()])
                .args(["--chunk-size", &upload.chunk_size])
                .args(["--checksum", target.checksum])
                .arg("--state")
                .arg(work.0.join("upload.state"))
                .arg(&file);
            let ticks = cpu_ticks(target.pid)?;
            times.push(timed(command, size)?);
            cpu.push(cpu_ticks(target.pid)? - ticks);
            empty_dir(target.dir)?;
        }
    }
    let rate = |d: Duration| size as f64 / d.as_secs_f64().max(1e-9) / f64::from(1 << 20);
    let best = |t: &[Duration]| t.iter().copied().min().unwrap_or_default();
    let copy_rate = rate(best(&copy));
    let pipeline_rate = rate(best(&pipeline));
    let tus_node = rate(best(&times[0]));
    // CPU seconds per GiB of the server, the least of the rounds: unlike the time, it hardly
    // depends on what else the machine runs.
    let cpu_per_gib = |ticks: &[u64]| {
        let least = ticks.iter().copied().min().unwrap_or(0);
        least as f64 / CLOCK_TICKS * f64::from(1u32 << 30) / size as f64
    };
    let tus_cpu = cpu_per_gib(&cpu[0]);
    println!(
        "{:<26} {:>9} {:>7} {:>13} {:>9} {:>9} {:>16}",
        "into", "best time", "MiB/s", "x @tus/server", "of copy", "of pipe", "server CPU s/GiB"
    );
    for (label, time, mib) in [
        ("loopback copy (limit)", best(&copy), copy_rate),
        ("file>socket>file (limit)", best(&pipeline), pipeline_rate),
    ] {
        println!(
            "{label:<26} {:>8.3}s {mib:>7.0} {:>13} {:>8.0}% {:>8.0}%",
            time.as_secs_f64(),
            "",
            100.0 * mib / copy_rate,
            100.0 * mib / pipeline_rate,
        );
    }
    let mut rows = Vec::new();
    for ((target, times), cpu) in targets.iter().zip(&times).zip(&cpu) {
        let mib = rate(best(times));
        let cpu = cpu_per_gib(cpu);
        println!(
            "{:<26} {:>8.3}s {mib:>7.0} {:>12.2}x {:>8.0}% {:>8.0}% {cpu:>9.2} ({:.2}x)",
            target.label,
            best(times).as_secs_f64(),
            mib / tus_node,
            100.0 * mib / copy_rate,
            100.0 * mib / pipeline_rate,
            tus_cpu / cpu.max(1e-9)
        );
        if !target.label.starts_with('@') {
            rows.push(Row {
                label: target.label.trim_start_matches("ours, ").to_owned(),
                ours: mib,
                theirs: tus_node,
            });
        }
    }
    println!(
        "every rate is the best of {} (load average now: {}); no checksum unless the row says \
         sha256",
        upload.rounds,
        load_average()
    );
    Ok(Comparison {
        title: format!(
            "{} vs @tus/server, {} MiB over loopback; limits: copy {copy_rate:.0}, \
             pipeline {pipeline_rate:.0} MiB/s",
            project.slug, upload.size_mib
        ),
        unit: "MiB per second".into(),
        ours: format!("{} ({})", project.slug, tree.label()),
        theirs: "@tus/server + @tus/file-store".into(),
        note: String::new(),
        rows,
    })
}

/// One upload of the comparison.
struct Target<'a> {
    label: String,
    addr: std::net::SocketAddr,
    parallel: usize,
    /// `upload --checksum`.
    checksum: &'static str,
    dir: &'a Path,
    pid: u32,
}

/// Installs `@tus/server` and `@tus/file-store` into `npm` unless they are there.
fn install_tus_node(npm: &Path) -> Result<()> {
    if npm.join("node_modules/@tus/file-store").is_dir()
        && npm.join("node_modules/@tus/server").is_dir()
    {
        return Ok(());
    }
    if Command::new("npm").arg("--version").output().is_err() {
        bail!("npm is not installed (Debian: apt-get install nodejs npm)");
    }
    std::fs::create_dir_all(npm)?;
    eprintln!(
        "installing {} into {}...",
        TUS_NODE.join(" "),
        npm.display()
    );
    // The suite's tus-js-client lives in the same folder, and npm removes what the folder's
    // package.json does not list: name it too, so that a comparison never costs the suite its
    // client.
    let status = Command::new("npm")
        .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
        .arg(npm)
        .args(TUS_NODE)
        .arg(SUITE_CLIENT)
        .status()
        .context("running npm install")?;
    if !status.success() {
        bail!("npm install {} failed ({status})", TUS_NODE.join(" "));
    }
    Ok(())
}

/// `size` bytes from the kernel's random source, which no compression could shrink.
fn fill_random(path: &Path, size: u64) -> Result<()> {
    let mut random = std::fs::File::open("/dev/urandom")?.take(size);
    let mut out = std::fs::File::create(path)?;
    let copied = std::io::copy(&mut random, &mut out)?;
    if copied != size {
        bail!("wrote {copied} of {size} bytes into {}", path.display());
    }
    Ok(())
}

/// Removes what a server wrote, so that the next round starts as empty as the first.
fn empty_dir(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// The time to push `size` bytes through one loopback TCP socket in 1 MiB writes, read on the
/// other side in 1 MiB reads: the rate no upload over loopback can pass.
fn loopback_copy(size: u64) -> Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut stream, _) = listener.accept()?;
        let mut sink = vec![0u8; 1 << 20];
        let mut got = 0u64;
        loop {
            match stream.read(&mut sink)? {
                0 => return Ok(got),
                n => got += n as u64,
            }
        }
    });
    let block = vec![0x5a_u8; 1 << 20];
    let mut stream = TcpStream::connect(addr)?;
    let start = Instant::now();
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        stream.write_all(&block[..n])?;
        left -= n as u64;
    }
    drop(stream);
    let got = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the loopback reader panicked"))??;
    let elapsed = start.elapsed();
    if got != size {
        bail!("the loopback copy moved {got} of {size} bytes");
    }
    Ok(elapsed)
}

/// The time of the least an upload's pipeline must do, with nothing of HTTP or tus: one thread
/// reads `file` in 1 MiB positioned reads and writes each block into a loopback socket; on the
/// other side another thread reads the socket in 1 MiB reads and writes each block at its offset
/// into `sink`, a new file beside it. Four copies of every byte (file to user space, into the
/// socket, out of it, into the file), where the loopback copy makes two: the rate an upload over
/// loopback can reach at best on this machine.
fn file_socket_file(file: &Path, sink: &Path, size: u64) -> Result<Duration> {
    use std::os::unix::fs::FileExt;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let out = std::fs::File::create(sink)?;
    let receiver = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut stream, _) = listener.accept()?;
        let mut block = vec![0u8; 1 << 20];
        let mut at = 0u64;
        loop {
            match stream.read(&mut block)? {
                0 => return Ok(at),
                n => {
                    out.write_all_at(&block[..n], at)?;
                    at += n as u64;
                }
            }
        }
    });
    let source = std::fs::File::open(file)?;
    let mut block = vec![0u8; 1 << 20];
    let mut stream = TcpStream::connect(addr)?;
    let start = Instant::now();
    let mut at = 0u64;
    while at < size {
        let n = (size - at).min(block.len() as u64) as usize;
        source.read_exact_at(&mut block[..n], at)?;
        stream.write_all(&block[..n])?;
        at += n as u64;
    }
    drop(stream);
    let got = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("the pipeline's receiver panicked"))??;
    let elapsed = start.elapsed();
    if got != size {
        bail!("the file>socket>file pipeline moved {got} of {size} bytes");
    }
    Ok(elapsed)
}

/// Runs one `file-writer upload` to its end and returns how long it took, once its last line,
/// the `uploaded` event, says that all `size` bytes arrived.
fn timed(mut command: Command, size: u64) -> Result<Duration> {
    let start = Instant::now();
    let output = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running {command:?}"))?;
    let elapsed = start.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let event = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|v| v["event"] == "uploaded");
    match event {
        Some(v) if output.status.success() && v["length"].as_u64() == Some(size) => Ok(elapsed),
        _ => bail!(
            "{command:?} did not upload {size} bytes ({}): {stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// The one-minute load average, for the record: the machine is shared.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}
