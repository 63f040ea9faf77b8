//! `cargo xtask compare metrics-collector`: one StatsD load into a release build of the chosen
//! tree's collector and into Etsy's StatsD daemon (npm `statsd` 0.9, under node), and one
//! Graphite plaintext load into the collector and into carbon-cache (Debian `graphite-carbon`).
//!
//! The load is this module's own, the same yardstick for every receiver: counters
//! `load.sN:1|c` (StatsD) or points `load.sN 1 TS` (Graphite) over S series, over C TCP
//! connections, and StatsD over UDP in datagrams of at most 1,400 bytes sent as fast as one
//! socket can. Every byte is laid out before the clock starts (a chunk of whole periods of
//! each connection's lines, written over and over), so the generator costs the receiver only
//! the kernel's copies; its own ceiling, into a reader that only counts bytes, is printed
//! after the table. What counts is what each receiver reports it ingested:
//! - the collector: the `samples` of its `flush` events;
//! - StatsD: the counters its graphite backend flushes (`stats_counts.load.*`), to a listener
//!   here;
//! - carbon-cache: its own `metricsReceived`, written each second to its whisper file (read
//!   here). Its defaults are kept (500 updates/s, 50 creates a minute), but for
//!   `CACHE_WRITE_STRATEGY = naive`: under the default `sorted`, the load's series, with many
//!   points each, are always written before the one point a second of `metricsReceived`, and
//!   the count would show up late. The load starts once carbon has created that file: carbon
//!   drops the points of a metric it may not create yet, and the load's 1,000 new series
//!   would spend the 50 creates first (the count read 0, or a few percent, when it did not
//!   wait). Its count can still come short: two of its once-a-second counts that fall in one
//!   second (its timer late under load) share one whisper slot, and the second replaces the
//!   first.
//!
//! Each rate is the samples ingested over the time from the first byte sent until the last
//! sample was reported, so it includes one flush interval (200 ms for the collector and StatsD;
//! carbon reports each second). The flush latency is that last part alone: from the end of
//! sending to the report that completes the total. Memory is each process's peak resident size
//! (`VmHWM`).
//!
//! The StatsD daemon is installed into `target/npm/metrics-collector` with npm when it is
//! missing; carbon-cache must be installed (`apt-get install graphite-carbon`).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use super::{Guard, free_port, require, start_ours, start_theirs, wait_for_port};
use crate::chart::{self, Comparison, Distribution, Row};
use crate::projects::Project;
use crate::tree::Tree;

/// How long a receiver may take to report the last sample after the load has been sent.
const REPORT_LIMIT: Duration = Duration::from_secs(120);

/// After the load is sent, how long a total may stay the same before it counts as final (UDP,
/// where some may be lost).
const SETTLED: Duration = Duration::from_secs(2);

/// The load.
#[derive(Debug, clap::Args)]
pub struct Load {
    /// Samples per run: enough that the one flush interval each rate includes (200 ms) is a
    /// small part of the collector's time, not most of it (at a million, it was).
    #[arg(long, default_value_t = 5_000_000)]
    samples: u64,
    /// TCP connections at once.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Distinct series.
    #[arg(long, default_value_t = 1000)]
    series: usize,
    /// Also measure the latency batching costs (a sample's send to the flush that reports it,
    /// straight to the collector and through an agent, `--flush 1s`) and draw its
    /// distribution into FILE.
    #[arg(long, value_name = "FILE")]
    latency_svg: Option<PathBuf>,
    /// Extra arguments for the collector (after `--`), e.g. `-- --workers 1`.
    #[arg(last = true)]
    collector_args: Vec<String>,
}

/// One receiver's figures for one load.
struct Measured {
    rate: f64,
    ingested: u64,
    latency: Duration,
    peak_rss_kib: u64,
    /// CPU time (user and system) the receiver spent from the first byte sent to the report:
    /// steadier than the rate on a shared machine, where the wall clock counts others' work.
    cpu_s: f64,
}

/// Runs the StatsD loads (TCP, UDP) and the Graphite load against each pair of receivers.
pub fn run(root: &Path, project: &Project, tree: &Tree, load: &Load) -> Result<Comparison> {
    require("node", "nodejs")?;
    require("carbon-cache", "graphite-carbon")?;
    let statsd = install_statsd(root)?;
    let binary = tree.build(root, project, true)?;
    let dir = root.join("target/compare/metrics-collector");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    eprintln!(
        "{} samples over {} series; TCP over {} connections, UDP from one socket",
        load.samples, load.series, load.connections
    );
    println!(
        "{:<14} {:>22} {:>20} {:>7} {:>24}",
        "load",
        format!("{} samples/s", project.slug),
        "theirs samples/s",
        "ratio",
        "flush latency, peak RSS"
    );
    let mut rows = Vec::new();
    for (label, kind) in [
        ("StatsD TCP", Kind::StatsdTcp),
        ("StatsD UDP", Kind::StatsdUdp),
        ("Graphite TCP", Kind::Graphite),
    ] {
        let ours = measure_ours(&binary, &dir, load, kind)?;
        let theirs = match kind {
            Kind::Graphite => measure_carbon(&dir, load)?,
            _ => measure_statsd(&statsd, &dir, load, kind)?,
        };
        let peer = if kind == Kind::Graphite {
            "carbon-cache"
        } else {
            "statsd"
        };
        println!(
            "{label:<14} {:>22.0} {:>20.0} {:>6.2}x   ours {:.2} s, {} MiB; {peer} {:.2} s, {} MiB",
            ours.rate,
            theirs.rate,
            ours.rate / theirs.rate,
            ours.latency.as_secs_f64(),
            ours.peak_rss_kib / 1024,
            theirs.latency.as_secs_f64(),
            theirs.peak_rss_kib / 1024,
        );
        let per_cpu = |m: &Measured| m.ingested as f64 / m.cpu_s.max(1e-3);
        println!(
            "{:<14} CPU time: ours {:.2} s ({:.0} samples per CPU-second); {peer} {:.2} s ({:.0}): \
             {:.2}x",
            "",
            ours.cpu_s,
            per_cpu(&ours),
            theirs.cpu_s,
            per_cpu(&theirs),
            per_cpu(&ours) / per_cpu(&theirs),
        );
        for (who, m) in [("ours", &ours), (peer, &theirs)] {
            if m.ingested != load.samples {
                // Lost over UDP; over TCP, not reported within the time allowed.
                println!(
                    "{:<14} {who} reported {} of {} ({:.1}% missing)",
                    "",
                    m.ingested,
                    load.samples,
                    100.0 * (load.samples - m.ingested.min(load.samples)) as f64
                        / load.samples as f64
                );
            }
        }
        rows.push(Row {
            label: format!("{label} ({peer})"),
            ours: ours.rate,
            theirs: theirs.rate,
        });
    }
    // The yardstick's own ceiling: if a receiver came near it, the generator was the bound.
    for (label, kind) in [
        ("StatsD TCP", Kind::StatsdTcp),
        ("StatsD UDP", Kind::StatsdUdp),
    ] {
        let sink = measure_sink(load, kind)?;
        println!(
            "{label:<14} the load generator into a reader that only counts bytes: {:.0} \
             samples/s ({} of {})",
            sink.rate, sink.ingested, load.samples
        );
    }
    if let Some(svg) = &load.latency_svg {
        latency(&binary, &dir, load, svg)?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Comparison {
        title: format!(
            "{} against the StatsD daemon and carbon-cache: {} samples, {} series",
            project.slug, load.samples, load.series
        ),
        unit: "samples ingested per second".into(),
        ours: format!("{} ({})", project.slug, tree.label()),
        theirs: "statsd 0.9 (StatsD rows), carbon-cache (Graphite)".into(),
        note: String::new(),
        rows,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    StatsdTcp,
    StatsdUdp,
    Graphite,
}

/// The npm `statsd` package's directory, installed with npm first if it is missing.
fn install_statsd(root: &Path) -> Result<PathBuf> {
    let prefix = root.join("target/npm/metrics-collector");
    let package = prefix.join("node_modules/statsd");
    if package.join("stats.js").is_file() {
        return Ok(package);
    }
    require("npm", "npm")?;
    std::fs::create_dir_all(&prefix)?;
    eprintln!(
        "installing the StatsD daemon (npm install statsd) into {}...",
        prefix.display()
    );
    let status = Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--silent",
            "statsd@0.9",
        ])
        .current_dir(&prefix)
        .status()
        .context("running npm")?;
    if !status.success() || !package.join("stats.js").is_file() {
        bail!("npm install statsd failed ({status})");
    }
    Ok(package)
}

/// The collector with its StatsD TCP, UDP and Graphite listeners on free ports, flushing every
/// 200 ms.
fn measure_ours(binary: &Path, dir: &Path, load: &Load, kind: Kind) -> Result<Measured> {
    let (tcp, udp, graphite) = (free_port()?, free_port()?, free_port()?);
    let mut child = Command::new(binary)
        .args(["collector", "--bind", &format!("127.0.0.1:{tcp}")])
        .args(["--udp-bind", &format!("127.0.0.1:{udp}")])
        .args(["--graphite-bind", &format!("127.0.0.1:{graphite}")])
        .args(["--flush", "200ms", "--out"])
        .arg(dir.join("ours.jsonl"))
        .args(&load.collector_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the collector")?;
    let stdout = child.stdout.take().context("the collector's stdout")?;
    let guard = Guard(child);
    let seen = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&seen);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if event["event"] == "flush" {
                let samples = event["samples"].as_u64().unwrap_or(0);
                counted.fetch_add(samples, Ordering::Relaxed);
            }
        }
    });
    let port = match kind {
        Kind::StatsdTcp => tcp,
        Kind::StatsdUdp => udp,
        Kind::Graphite => graphite,
    };
    wait_for_port(tcp)?;
    let measured = drive(load, kind, port, guard.0.id(), || {
        seen.load(Ordering::Relaxed)
    });
    let _ = std::fs::remove_file(dir.join("ours.jsonl"));
    measured
}

/// The StatsD daemon under node, its graphite backend flushing every 200 ms to a listener here
/// that sums the `stats_counts.load.*` it gets.
fn measure_statsd(statsd: &Path, dir: &Path, load: &Load, kind: Kind) -> Result<Measured> {
    let backend = TcpListener::bind("127.0.0.1:0")?;
    let graphite_port = backend.local_addr()?.port();
    let seen = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in backend.incoming().map_while(Result::ok) {
            let counted = Arc::clone(&counted);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut fields = line.split(' ');
                    let (Some(name), Some(value)) = (fields.next(), fields.next()) else {
                        continue;
                    };
                    if name.starts_with("stats_counts.load.")
                        && let Ok(v) = value.parse::<f64>()
                    {
                        counted.fetch_add(v as u64, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let (udp, tcp) = (free_port()?, free_port()?);
    let config = dir.join("statsd.js");
    std::fs::write(
        &config,
        format!(
            "{{ port: {udp}, address: \"127.0.0.1\", flushInterval: 200,\n\
             backends: [\"./backends/graphite\"], graphiteHost: \"127.0.0.1\",\n\
             graphitePort: {graphite_port},\n\
             servers: [{{ server: \"./servers/udp\", address: \"127.0.0.1\", port: {udp} }},\n\
                       {{ server: \"./servers/tcp\", address: \"127.0.0.1\", port: {tcp} }}] }}\n"
        ),
    )?;
    let guard = start_theirs(
        Command::new("node")
            .arg("stats.js")
            .arg(&config)
            .current_dir(statsd),
    )?;
    wait_for_port(tcp)?;
    let port = if kind == Kind::StatsdUdp { udp } else { tcp };
    drive(load, kind, port, guard.0.id(), || {
        seen.load(Ordering::Relaxed)
    })
}

/// A receiver that does nothing but count the bytes it reads: how fast the load generator and
/// loopback go, on this machine, with nothing else to do. It counts bytes rather than lines
/// because xtask is a debug build, in which a loop over every byte would be the bound; the
/// samples are the bytes' share of the load's (exact once every byte is in; over UDP, where
/// some are lost, close: the lost datagrams' lines are of the same lengths).
fn measure_sink(load: &Load, kind: Kind) -> Result<Measured> {
    let total = Prepared::new(load, kind).bytes().max(1);
    let seen = Arc::new(AtomicU64::new(0));
    let port = if kind == Kind::StatsdUdp {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        let port = socket.local_addr()?.port();
        let counted = Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while let Ok(n) = socket.recv(&mut buf) {
                counted.fetch_add(n as u64, Ordering::Relaxed);
            }
        });
        port
    } else {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let counted = Arc::clone(&seen);
        std::thread::spawn(move || {
            for mut stream in listener.incoming().map_while(Result::ok) {
                let counted = Arc::clone(&counted);
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 256 * 1024];
                    while let Ok(n @ 1..) = std::io::Read::read(&mut stream, &mut buf) {
                        counted.fetch_add(n as u64, Ordering::Relaxed);
                    }
                });
            }
        });
        port
    };
    drive(load, kind, port, std::process::id(), || {
        let bytes = seen.load(Ordering::Relaxed);
        (u128::from(bytes) * u128::from(load.samples) / u128::from(total)) as u64
    })
}

/// carbon-cache in the foreground with a configuration of its own under `dir`, reporting its
/// own metrics every second.
fn measure_carbon(dir: &Path, load: &Load) -> Result<Measured> {
    let home = dir.join("carbon");
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home)?;
    let (line, pickle, query) = (free_port()?, free_port()?, free_port()?);
    let h = home.display();
    std::fs::write(
        home.join("carbon.conf"),
        format!(
            "[cache]\nSTORAGE_DIR = {h}/storage/\nLOCAL_DATA_DIR = {h}/storage/whisper/\n\
             WHITELISTS_DIR = {h}/storage/lists/\nCONF_DIR = {h}/\nLOG_DIR = {h}/log/\n\
             PID_DIR = {h}/\nENABLE_LOGROTATION = False\nUSER =\nMAX_CACHE_SIZE = inf\n\
             MAX_UPDATES_PER_SECOND = 500\nMAX_CREATES_PER_MINUTE = 50\n\
             LINE_RECEIVER_INTERFACE = 127.0.0.1\nLINE_RECEIVER_PORT = {line}\n\
             ENABLE_UDP_LISTENER = False\nPICKLE_RECEIVER_INTERFACE = 127.0.0.1\n\
             PICKLE_RECEIVER_PORT = {pickle}\nCACHE_QUERY_INTERFACE = 127.0.0.1\n\
             CACHE_QUERY_PORT = {query}\nCARBON_METRIC_INTERVAL = 1\nLOG_UPDATES = False\n\
             CACHE_WRITE_STRATEGY = naive\n"
        ),
    )?;
    std::fs::write(
        home.join("storage-schemas.conf"),
        "[carbon]\npattern = ^carbon\\.\nretentions = 1s:1h\n\n\
         [default]\npattern = .*\nretentions = 10s:1h\n",
    )?;
    let guard = start_theirs(
        Command::new("carbon-cache")
            .arg(format!("--config={h}/carbon.conf"))
            .args(["--nodaemon", "start"]),
    )?;
    // Python and twisted take a while to start on a loaded machine: up to 30 s.
    let mut waited = wait_for_port(line);
    for _ in 0..5 {
        if waited.is_ok() {
            break;
        }
        waited = wait_for_port(line);
    }
    waited.context("carbon-cache did not start listening within 30 s")?;
    // Its own metrics must have their files before the load: under MAX_CREATES_PER_MINUTE,
    // the load's 1,000 new series spend the creates, and carbon drops the points of a metric
    // it may not create yet, `metricsReceived` included (then it would report nothing).
    let agents = home.join("storage/whisper/carbon/agents");
    let deadline = Instant::now() + Duration::from_secs(30);
    let whisper = loop {
        if let Some(file) = received_file(&agents) {
            break file;
        }
        if Instant::now() > deadline {
            bail!("carbon-cache did not create its metricsReceived file within 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let measured = drive(load, Kind::Graphite, line, guard.0.id(), || {
        metrics_received(&whisper)
    });
    drop(guard);
    let _ = std::fs::remove_dir_all(&home);
    measured
}

/// carbon-cache's `metricsReceived` whisper file, once it exists.
fn received_file(agents: &Path) -> Option<PathBuf> {
    std::fs::read_dir(agents)
        .into_iter()
        .flatten()
        .flatten()
        .map(|agent| agent.path().join("metricsReceived.wsp"))
        .find(|p| p.is_file())
}

/// The sum of carbon-cache's `metricsReceived` points in its whisper file, read here rather
/// than with a Python process per poll (which would take CPU from carbon). The file is fresh
/// and its archive holds an hour, so every point with a timestamp is one of this run's. The
/// format (whisper 1.1): a 16-byte header whose last big-endian `u32` is the archive count,
/// then per archive `offset, seconds per point, points` (`u32` each), then the points,
/// `timestamp: u32, value: f64`, big-endian.
fn metrics_received(file: &Path) -> u64 {
    let Ok(data) = std::fs::read(file) else {
        return 0;
    };
    let word = |at: usize| {
        data.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let (Some(offset), Some(points)) = (word(16), word(24)) else {
        return 0;
    };
    let mut sum = 0.0;
    for point in 0..points {
        let at = offset + point * 12;
        let Some(b) = data.get(at..at + 12) else {
            break;
        };
        let timestamp = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let value = f64::from_be_bytes([b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11]]);
        if timestamp != 0 && value.is_finite() {
            sum += value;
        }
    }
    sum as u64
}

/// Sends the load to `port` and waits for `ingested()` to reach every sample (or, for UDP, to
/// stop growing), then reads the receiver's peak memory.
fn drive(
    load: &Load,
    kind: Kind,
    port: u16,
    pid: u32,
    ingested: impl Fn() -> u64,
) -> Result<Measured> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // Every byte is laid out before the clock starts: the time is the receiver's, not the
    // formatting's.
    let prepared = Prepared::new(load, kind);
    // 0 where /proc cannot say.
    let cpu_seconds = |pid| super::cpu_ticks(pid).map_or(0.0, |t| t as f64 / super::CLOCK_TICKS);
    let cpu_before = cpu_seconds(pid);
    let start = Instant::now();
    prepared.send(addr)?;
    let sent = Instant::now();
    let (mut last, mut grew) = (0, sent);
    loop {
        let now = Instant::now();
        let total = ingested();
        if total != last {
            (last, grew) = (total, now);
        }
        let settled = kind == Kind::StatsdUdp && now - grew > SETTLED;
        if total >= load.samples || settled || now - sent > REPORT_LIMIT {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = (grew - start).as_secs_f64();
    Ok(Measured {
        rate: last as f64 / elapsed,
        ingested: last,
        latency: grew.saturating_duration_since(sent),
        peak_rss_kib: super::proc_status_bytes(pid, "VmHWM").map_or(0, |b| b / 1024),
        cpu_s: cpu_seconds(pid) - cpu_before,
    })
}

/// One connection's lines, laid out once: the series of its k-th line is
/// `(k * connections + connection) % series`, which repeats every `series / gcd(connections,
/// series)` lines, so a chunk of whole periods sent over and over is the whole share.
struct Lines {
    bytes: Vec<u8>,
    /// Where each line of the chunk ends (after its newline).
    ends: Vec<usize>,
    /// Lines to send in all.
    count: u64,
}

/// The least bytes a chunk holds (whole periods of lines).
const CHUNK_BYTES: usize = 256 * 1024;

impl Lines {
    fn new(load: &Load, kind: Kind, connection: usize, connections: usize, count: u64) -> Self {
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let period = load.series / gcd(connections, load.series);
        let (mut bytes, mut ends) = (Vec::new(), Vec::new());
        let mut k = 0;
        while (bytes.len() < CHUNK_BYTES || k % period != 0) && (k as u64) < count {
            let series = (k * connections + connection) % load.series;
            let _ = match kind {
                Kind::Graphite => writeln!(bytes, "load.s{series} 1 {stamp}"),
                _ => writeln!(bytes, "load.s{series}:1|c"),
            };
            ends.push(bytes.len());
            k += 1;
        }
        Lines { bytes, ends, count }
    }

    /// The chunk's bytes of its first `lines` lines.
    fn prefix(&self, lines: usize) -> &[u8] {
        &self.bytes[..lines.checked_sub(1).map_or(0, |last| self.ends[last])]
    }

    /// How many whole chunks, then how many lines of one more.
    fn split(&self) -> (u64, usize) {
        let per = self.ends.len().max(1) as u64;
        (self.count / per, (self.count % per) as usize)
    }

    /// Datagrams of whole lines, at most 1,400 bytes each, over the first `lines` lines, as
    /// byte ranges of the chunk.
    fn datagrams(&self, lines: usize) -> Vec<std::ops::Range<usize>> {
        let mut out = Vec::new();
        let mut start = 0;
        let mut last = 0;
        for &end in &self.ends[..lines] {
            if end - start > 1400 {
                out.push(start..last);
                start = last;
            }
            last = end;
        }
        if last > start {
            out.push(start..last);
        }
        out
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a.max(1) } else { gcd(b, a % b) }
}

/// A load ready to send: StatsD or Graphite lines over `connections` TCP connections, or
/// StatsD datagrams from one UDP socket.
struct Prepared {
    kind: Kind,
    shares: Vec<Lines>,
}

impl Prepared {
    fn new(load: &Load, kind: Kind) -> Self {
        let connections = if kind == Kind::StatsdUdp {
            1
        } else {
            load.connections.max(1)
        };
        let each = load.samples / connections as u64;
        let extra = load.samples % connections as u64;
        let shares = (0..connections)
            .map(|c| {
                let count = each + u64::from((c as u64) < extra);
                Lines::new(load, kind, c, connections, count)
            })
            .collect();
        Prepared { kind, shares }
    }

    /// The bytes the whole load sends.
    fn bytes(&self) -> u64 {
        self.shares
            .iter()
            .map(|lines| {
                let (chunks, rest) = lines.split();
                chunks * lines.bytes.len() as u64 + lines.prefix(rest).len() as u64
            })
            .sum()
    }

    fn send(&self, addr: SocketAddr) -> Result<()> {
        if self.kind == Kind::StatsdUdp {
            return send_udp(addr, &self.shares[0]);
        }
        std::thread::scope(|scope| {
            let sends: Vec<_> = self
                .shares
                .iter()
                .map(|lines| {
                    scope.spawn(move || -> Result<()> {
                        let mut stream = TcpStream::connect(addr)?;
                        let (chunks, rest) = lines.split();
                        for _ in 0..chunks {
                            stream.write_all(&lines.bytes)?;
                        }
                        stream.write_all(lines.prefix(rest))?;
                        stream.shutdown(std::net::Shutdown::Write)?;
                        Ok(())
                    })
                })
                .collect();
            for send in sends {
                send.join()
                    .map_err(|_| anyhow::anyhow!("a sender panicked"))??;
            }
            Ok(())
        })
    }
}

/// StatsD over UDP: datagrams of whole lines, at most 1,400 bytes each, as fast as one socket
/// sends them.
fn send_udp(addr: SocketAddr, lines: &Lines) -> Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let (chunks, rest) = lines.split();
    let whole = lines.datagrams(lines.ends.len());
    for _ in 0..chunks {
        for range in &whole {
            socket.send_to(&lines.bytes[range.clone()], addr)?;
        }
    }
    for range in lines.datagrams(rest) {
        socket.send_to(&lines.bytes[range], addr)?;
    }
    Ok(())
}

/// Samples sent for the latency distribution, on each path.
const LATENCY_SAMPLES: usize = 1500;

/// Sends `LATENCY_SAMPLES` counters of distinct names 2 ms apart, straight over TCP and through
/// an agent (UDP in, default batching), into a collector flushing every second; reads from its
/// output when each was reported (`flush_ms`) and draws the distributions into `svg`.
fn latency(binary: &Path, dir: &Path, load: &Load, svg: &Path) -> Result<()> {
    let out = dir.join("latency.jsonl");
    let agent_port = free_port()?;
    let mut collector = Command::new(binary);
    collector
        .args(["collector", "--bind", "127.0.0.1:0", "--flush", "1s"])
        .args(["--agent-bind", &format!("127.0.0.1:{agent_port}"), "--out"])
        .arg(&out)
        .args(&load.collector_args);
    let (_collector, tcp) = start_ours(collector)?;
    let mut agent = Command::new(binary);
    agent.args(["agent", "--listen", "127.0.0.1:0", "--to"]);
    agent.arg(format!("127.0.0.1:{agent_port}"));
    let (_agent, udp) = start_ours(agent)?;
    eprintln!("latency: {LATENCY_SAMPLES} samples 2 ms apart on each path, --flush 1s...");
    let mut stream = TcpStream::connect(tcp)?;
    let _ = stream.set_nodelay(true);
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let mut sent = Vec::with_capacity(LATENCY_SAMPLES);
    for k in 0..LATENCY_SAMPLES {
        sent.push(now_ms());
        stream.write_all(format!("lat.tcp.{k}:1|c\n").as_bytes())?;
        socket.send_to(format!("lat.agent.{k}:1|c").as_bytes(), udp)?;
        std::thread::sleep(Duration::from_millis(2));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let (tcp_ms, agent_ms) = loop {
        let (tcp_ms, agent_ms) = reported(&out, &sent);
        let done = tcp_ms.len() == LATENCY_SAMPLES && agent_ms.len() == LATENCY_SAMPLES;
        if done || Instant::now() > deadline {
            break (tcp_ms, agent_ms);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    for (path, values) in [
        ("straight over TCP", &tcp_ms),
        ("through an agent", &agent_ms),
    ] {
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let at =
            |q: f64| sorted.get(((sorted.len() as f64 * q) as usize).min(sorted.len().max(1) - 1));
        println!(
            "latency {path}: {} of {LATENCY_SAMPLES} reported; p50 {:.0} ms, p90 {:.0} ms, \
             p99 {:.0} ms, max {:.0} ms",
            values.len(),
            at(0.5).copied().unwrap_or(f64::NAN),
            at(0.9).copied().unwrap_or(f64::NAN),
            at(0.99).copied().unwrap_or(f64::NAN),
            sorted.last().copied().unwrap_or(f64::NAN),
        );
    }
    let command = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    chart::draw_cdf(
        &Distribution {
            title: "From a sample sent to the flush that reports it (--flush 1s)".into(),
            unit: "milliseconds".into(),
            note: format!("cargo xtask {command}, {} (UTC)", chart::today()),
            series: vec![
                ("straight to the collector over TCP".into(), tcp_ms),
                ("through an agent (--batch-wait 100ms)".into(), agent_ms),
            ],
        },
        svg,
    )?;
    eprintln!("drew the latency distribution into {}", svg.display());
    let _ = std::fs::remove_file(&out);
    Ok(())
}

/// From the collector's output: for each `stats_counts.lat.tcp.K` and `stats_counts.lat.agent.K`
/// reported, its `flush_ms` minus when K was sent.
fn reported(out: &Path, sent: &[u64]) -> (Vec<f64>, Vec<f64>) {
    let (mut tcp, mut agent) = (Vec::new(), Vec::new());
    let text = std::fs::read_to_string(out).unwrap_or_default();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(name), Some(flush)) = (v["name"].as_str(), v["flush_ms"].as_u64()) else {
            continue;
        };
        let Some(rest) = name.strip_prefix("stats_counts.lat.") else {
            continue;
        };
        let (list, k) = match rest.split_once('.') {
            Some(("tcp", k)) => (&mut tcp, k),
            Some(("agent", k)) => (&mut agent, k),
            _ => continue,
        };
        if let Some(at) = k.parse::<usize>().ok().and_then(|k| sent.get(k)) {
            list.push(flush.saturating_sub(*at) as f64);
        }
    }
    (tcp, agent)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
