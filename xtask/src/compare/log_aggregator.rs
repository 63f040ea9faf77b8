//! `cargo xtask compare log-aggregator`: the same syslog load into a release build of the chosen
//! tree's aggregator and into rsyslog (`imtcp` to `omfile`), with equivalent settings: each
//! message written as received (`--format raw`; rsyslog's `%rawmsg%` template), no fsync
//! (`--fsync never`; omfile's default), LF-terminated or octet-counted framing. Each run is
//! timed from the first connection to the last line in the file.
//!
//! The load comes from the project's own `bench`, and from syslog-ng's `loggen`, which nobody
//! here wrote: `$LOGGEN`, or `target/loggen/usr/bin/loggen` unpacked from Debian's
//! `syslog-ng-core`, which conflicts with rsyslog and so is never installed: the comparison
//! fetches it with `apt-get download` and unpacks it with `dpkg -x` when it is missing (see
//! [`LOGGEN_HOWTO`]).
//!
//! The disk's own sequential write rate is measured in the same run (256 MiB written in 1 MiB
//! writes and synced, on the disk the outputs go to), and each receiver's rate is given as a
//! share of it, counting the bytes written to the file.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{Guard, free_port, require, start_ours, start_theirs, wait_for_port};
use crate::chart::{Comparison, Row};
use crate::projects::Project;
use crate::tree::Tree;

/// How to get `loggen` without installing syslog-ng.
const LOGGEN_HOWTO: &str = "(cd target && apt-get download syslog-ng-core && \
                            dpkg -x syslog-ng-core_*.deb loggen)";

/// How long one run may take to land in the file.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// How long the file must stay the same size, after the load generator is done, to count as
/// complete.
const SETTLED: Duration = Duration::from_millis(500);

/// The load.
#[derive(Debug, clap::Args)]
pub struct Load {
    /// Connections at once.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Messages per connection.
    #[arg(long, default_value_t = 250_000)]
    messages: u64,
    /// Bytes per message.
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Framings, a comma-separated list of `lf` and `octet`.
    #[arg(long, value_delimiter = ',', default_value = "lf,octet")]
    framings: Vec<String>,
    /// Extra arguments for the aggregator (after `--`), e.g. `-- --writer std-mutex`.
    #[arg(last = true)]
    server_args: Vec<String>,
}

/// A load generator.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Generator<'a> {
    Bench(&'a Path),
    Loggen(&'a Path),
}

/// Runs every framing with every generator against both receivers.
pub fn run(root: &Path, project: &Project, tree: &Tree, load: &Load) -> Result<Comparison> {
    require("rsyslogd", "rsyslog")?;
    let binary = tree.build(root, project, true)?;
    let loggen = match std::env::var_os("LOGGEN") {
        Some(path) => Some(PathBuf::from(path)).filter(|p| p.is_file()),
        None => fetch_loggen(root),
    };
    let mut generators = vec![("bench", Generator::Bench(&binary))];
    if let Some(path) = &loggen {
        generators.push(("loggen", Generator::Loggen(path)));
    }
    // Under target/, on the same disk as a build: the files are large and dropped each run.
    let dir = root.join("target/compare/log-aggregator");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let disk = disk_write_rate(&dir)?;
    eprintln!(
        "the disk's sequential write rate: {:.0} MB/s (256 MiB in 1 MiB writes, then fsync)",
        disk / 1e6
    );
    // Raw output: each message and its LF.
    let share = |rate: f64| 100.0 * rate * (load.size as f64 + 1.0) / disk;
    eprintln!(
        "{} connections x {} messages of {} B into {} and rsyslogd (imtcp -> omfile), raw, no fsync",
        load.connections,
        load.messages,
        load.size,
        tree.label()
    );
    println!(
        "{:<8} {:<7} {:>20} {:>7} {:>15} {:>7} {:>7}",
        "load",
        "framing",
        format!("{} msg/s", project.slug),
        "of disk",
        "rsyslogd msg/s",
        "of disk",
        "ratio"
    );
    let mut rows = Vec::new();
    for framing in &load.framings {
        let octet = match framing.as_str() {
            "lf" => false,
            "octet" => true,
            other => bail!("unknown framing {other:?} (expected lf or octet)"),
        };
        for (name, generator) in &generators {
            let out = dir.as_path().join("ours.log");
            let _ = std::fs::remove_file(&out);
            let mut ours = Command::new(&binary);
            ours.args(["server", "--bind", "127.0.0.1:0", "--format", "raw"])
                .args(["--fsync", "never", "--out"])
                .arg(&out)
                .args(&load.server_args);
            let (guard, addr) = start_ours(ours)?;
            let mine = timed(*generator, addr.port(), octet, load, &out)?;
            drop(guard);
            let out = dir.as_path().join("rsyslog.log");
            let (guard, port) = start_rsyslog(dir.as_path(), &out)?;
            let theirs = timed(*generator, port, octet, load, &out)?;
            drop(guard);
            let _ = std::fs::remove_file(dir.join("ours.log"));
            let _ = std::fs::remove_file(&out);
            println!(
                "{name:<8} {framing:<7} {mine:>20.0} {:>6.1}% {theirs:>15.0} {:>6.1}% {:>6.2}x",
                share(mine),
                share(theirs),
                mine / theirs
            );
            rows.push(Row {
                label: format!("{name}, {framing}"),
                ours: mine,
                theirs,
            });
        }
    }
    Ok(Comparison {
        title: format!(
            "{} against rsyslogd: {} connections x {} messages of {} B",
            project.slug, load.connections, load.messages, load.size
        ),
        unit: "messages per second".into(),
        ours: format!("{} ({})", project.slug, tree.label()),
        theirs: "rsyslogd (imtcp -> omfile)".into(),
        note: String::new(),
        rows,
    })
}

/// `loggen` under `target/loggen`, fetched and unpacked there first if it is missing; `None`
/// (and how to get it) when that fails.
fn fetch_loggen(root: &Path) -> Option<PathBuf> {
    let loggen = root.join("target/loggen/usr/bin/loggen");
    if loggen.is_file() {
        return Some(loggen);
    }
    let fetched = (|| -> Result<()> {
        let debs = root.join("target/loggen-deb");
        std::fs::create_dir_all(&debs)?;
        eprintln!("fetching syslog-ng-core for its loggen (apt-get download, dpkg -x)...");
        let status = Command::new("apt-get")
            .args(["download", "-qq", "syslog-ng-core"])
            .current_dir(&debs)
            .stdout(Stdio::null())
            .status()
            .context("running apt-get download")?;
        if !status.success() {
            bail!("apt-get download syslog-ng-core failed ({status})");
        }
        let deb = std::fs::read_dir(&debs)?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .context("no .deb downloaded")?;
        let status = Command::new("dpkg")
            .arg("-x")
            .arg(&deb)
            .arg(root.join("target/loggen"))
            .status()
            .context("running dpkg -x")?;
        if !status.success() {
            bail!("dpkg -x {} failed ({status})", deb.display());
        }
        Ok(())
    })();
    match fetched {
        Ok(()) if loggen.is_file() => Some(loggen),
        Ok(()) => {
            eprintln!("syslog-ng-core holds no usr/bin/loggen: only bench loads");
            None
        }
        Err(e) => {
            eprintln!("cannot fetch loggen ({e:#}): only bench loads (to get it: {LOGGEN_HOWTO})");
            None
        }
    }
}

/// The disk's sequential write rate in bytes per second, measured in `dir`: 256 MiB in writes
/// of 1 MiB, then one fsync, the file removed afterwards.
fn disk_write_rate(dir: &Path) -> Result<f64> {
    use std::io::Write;
    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 256;
    let path = dir.join("disk-rate.tmp");
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect();
    let start = Instant::now();
    let mut file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    for _ in 0..CHUNKS {
        file.write_all(&chunk)?;
    }
    file.sync_all()?;
    let elapsed = start.elapsed().as_secs_f64();
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok((CHUNK * CHUNKS) as f64 / elapsed)
}

/// Starts `rsyslogd -n` writing every message it gets on a free port to `out`, as received.
fn start_rsyslog(dir: &Path, out: &Path) -> Result<(Guard, u16)> {
    let _ = std::fs::remove_file(out);
    let port = free_port()?;
    let conf = dir.join("rsyslog.conf");
    let config = format!(
        "global(workDirectory=\"{dir}\" maxMessageSize=\"64k\")\n\
         module(load=\"imtcp\")\n\
         template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n\
         input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"out\")\n\
         ruleset(name=\"out\") {{ action(type=\"omfile\" file=\"{out}\" template=\"raw\") }}\n",
        dir = dir.display(),
        out = out.display()
    );
    std::fs::write(&conf, config)?;
    let guard = start_theirs(
        Command::new("rsyslogd")
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid")),
    )?;
    wait_for_port(port)?;
    Ok((guard, port))
}

/// Runs `generator` against `port` and returns messages per second, from its start until `out`
/// stopped growing. The file's size is watched while it grows (counting lines then would
/// compete with the programs measured for the CPU); its lines are counted once it has settled.
fn timed(generator: Generator, port: u16, octet: bool, load: &Load, out: &Path) -> Result<f64> {
    let total = load.connections as u64 * load.messages;
    let start = Instant::now();
    let mut child = spawn(generator, port, octet, load)?;
    let (mut len, mut grew) = (0, start);
    let mut exited = false;
    loop {
        let now = Instant::now();
        let size = std::fs::metadata(out).map_or(0, |m| m.len());
        if size != len {
            (len, grew) = (size, now);
        }
        if !exited && let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("the load generator failed ({status})");
            }
            exited = true;
        }
        if now - start > RUN_LIMIT {
            break;
        }
        // rsyslog may pause between batches of its queue: settled and complete, or go on.
        if exited && now - grew > SETTLED && count_lines(out)? >= total {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    let lines = count_lines(out)?;
    if lines != total {
        eprintln!(
            "warning: {} holds {lines} of the {total} messages sent: counted as the rate of \
             what arrived",
            out.display()
        );
    }
    Ok(lines as f64 / (grew - start).as_secs_f64())
}

fn spawn(generator: Generator, port: u16, octet: bool, load: &Load) -> Result<Child> {
    let mut command = match generator {
        Generator::Bench(binary) => {
            let mut c = Command::new(binary);
            c.args(["bench", "--to", &format!("127.0.0.1:{port}")])
                .args(["--connections", &load.connections.to_string()])
                .args(["--messages", &load.messages.to_string()])
                .args(["--size", &load.size.to_string()]);
            if octet {
                c.arg("--octet-count");
            }
            c
        }
        Generator::Loggen(loggen) => {
            // loggen looks for its plugins under SYSLOGNG_PREFIX and its helper library beside
            // them: .../usr/bin/loggen -> .../usr.
            let prefix = loggen
                .parent()
                .and_then(Path::parent)
                .context("loggen's directory")?;
            let mut c = Command::new(loggen);
            c.env("SYSLOGNG_PREFIX", prefix)
                .env("LD_LIBRARY_PATH", prefix.join("lib/syslog-ng"))
                .args(["--inet", "--stream", "--quiet", "--rate", "10000000"])
                .args(["--size", &load.size.to_string()])
                .args(["--active-connections", &load.connections.to_string()])
                .args(["--number", &load.messages.to_string()]);
            if octet {
                // RFC 5424 messages, octet-counted (loggen frames syslog-protocol so).
                c.arg("--syslog-proto");
            }
            c.args(["127.0.0.1", &port.to_string()]);
            c
        }
    };
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the load generator")
}

/// The number of LFs in `path`.
fn count_lines(path: &Path) -> Result<u64> {
    use std::io::Read;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut chunk = vec![0u8; 1 << 20];
    let mut lines = 0;
    loop {
        let n = file.read(&mut chunk)?;
        if n == 0 {
            return Ok(lines);
        }
        lines += chunk[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
}
