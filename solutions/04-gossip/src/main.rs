//! The `gossip` command line: argument parsing and plumbing. The work is in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use tokio::io::BufReader;

use gossip_solution::net::{self, NetConfig};
use gossip_solution::plot::{self, Series};
use gossip_solution::server::{self, Overlay, ServerConfig};
use gossip_solution::simulate::{self, Mode, SimConfig, Stop, Topology};
use gossip_solution::theory;

/// Gossip: a Maelstrom broadcast node, a network to run nodes under, and a round simulator.
#[derive(Debug, Parser)]
#[command(name = "gossip", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A Maelstrom node for the broadcast workload: JSON messages on stdin and stdout.
    Node(NodeArgs),
    /// Run N nodes under a simulated network, drive a workload, check the history.
    Net(NetArgs),
    /// Spread one rumor over N simulated nodes in synchronous rounds.
    Simulate(SimArgs),
}

#[derive(Debug, clap::Args)]
struct NodeArgs {
    /// Time between gossip rounds.
    #[arg(
        long,
        default_value = plumbing::parse::duration_text(server::DEFAULT_INTERVAL),
        value_parser = plumbing::parse::positive_duration
    )]
    interval: Duration,
    /// How long a gossip may go unacknowledged before its values are sent again.
    #[arg(
        long,
        default_value = plumbing::parse::duration_text(server::DEFAULT_RETRY),
        value_parser = plumbing::parse::positive_duration
    )]
    retry: Duration,
    /// Time between anti-entropy digests to a random node (0s: none).
    #[arg(
        long,
        default_value = plumbing::parse::duration_text(server::DEFAULT_ANTI_ENTROPY),
        value_parser = plumbing::parse::duration
    )]
    anti_entropy: Duration,
    /// Whom to gossip with: tree (a tree over node_ids), topology (the neighbours Maelstrom
    /// gives), random (--fanout peers a round).
    #[arg(long, value_enum, default_value_t = Overlay::Tree, hide_possible_values = true)]
    overlay: Overlay,
    /// Peers per round with --overlay random.
    #[arg(long, default_value_t = server::DEFAULT_FANOUT)]
    fanout: usize,
    /// Children per node with --overlay tree.
    #[arg(long, default_value_t = server::DEFAULT_BRANCHING)]
    branching: usize,
    /// Most values in one message.
    #[arg(long, default_value_t = server::DEFAULT_MAX_BATCH)]
    max_batch: usize,
    /// Longest input line (with --udp: datagram), in bytes; longer ones are discarded.
    #[arg(long, default_value_t = server::DEFAULT_MAX_LINE, value_parser = plumbing::parse::positive_size)]
    max_line: usize,
    /// Seed of the random peer choices.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Speak over UDP, one message per datagram, instead of stdin and stdout: the node's id is
    /// its --bind address, its peers are --peers, and it needs no init.
    #[arg(long)]
    udp: bool,
    /// With --udp: the address to listen on (port 0 picks one; printed as `listening on ADDR`).
    #[arg(long, default_value = server::DEFAULT_UDP_BIND)]
    bind: SocketAddr,
    /// With --udp: the other nodes' addresses, comma-separated.
    #[arg(long, value_delimiter = ',', requires = "udp")]
    peers: Vec<SocketAddr>,
}

#[derive(Debug, clap::Args)]
struct NetArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// One-way delay of every message.
    #[arg(long, default_value = "100ms", value_parser = plumbing::parse::duration)]
    latency: Duration,
    /// Probability that a node-to-node message is lost.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// A window FROM..TO (from the workload's start) with the nodes split in two; repeatable.
    #[arg(long = "partition", value_parser = parse_window, value_name = "FROM..TO")]
    partitions: Vec<(Duration, Duration)>,
    /// Client operations per second (half broadcasts, half reads).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// How long the workload runs.
    #[arg(long, default_value = "5s", value_parser = plumbing::parse::positive_duration)]
    time_limit: Duration,
    /// How long the final reads wait for every node to have every value.
    #[arg(long, default_value = "10s", value_parser = plumbing::parse::duration)]
    settle: Duration,
    /// Seed of the workload, the losses and the partitions.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The node binary (default: this one, run as `node ARGS`).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Also write the JSON report to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Arguments for every node, after `--` (with the default binary, flags of `node`).
    #[arg(last = true)]
    node_args: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Csv,
}

#[derive(Debug, clap::Args)]
struct SimArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 1_000_000)]
    nodes: usize,
    /// Who calls whom: push, pull or push-pull.
    #[arg(long, value_enum, default_value_t = Mode::Push, hide_possible_values = true)]
    mode: Mode,
    /// Calls per node per round.
    #[arg(long, default_value_t = 1)]
    fanout: usize,
    /// The graph peers are picked from: complete, ring, regular (random, --degree) or
    /// small-world (Watts-Strogatz: --degree and --rewire).
    #[arg(long, value_enum, default_value_t = Topology::Complete, hide_possible_values = true)]
    topology: Topology,
    /// Degree of --topology regular and small-world (even).
    #[arg(long, default_value_t = 4)]
    degree: usize,
    /// Probability that an edge of --topology small-world is rewired.
    #[arg(long, default_value_t = 0.1)]
    rewire: f64,
    /// Probability that a call is lost.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Fraction of nodes crashed from the start.
    #[arg(long, default_value_t = 0.0)]
    crashed: f64,
    /// When an informed node stops spreading (rumor mongering: feedback-coin, blind-coin,
    /// feedback-counter, blind-counter), or never (anti-entropy).
    #[arg(long, value_enum, default_value_t = Stop::Never, hide_possible_values = true)]
    stop: Stop,
    /// The k of the stop rule.
    #[arg(long, default_value_t = 1)]
    k: u32,
    /// Number of runs, with seeds SEED, SEED+1, ...
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Seed of the first run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Rounds after which a run gives up.
    #[arg(long, default_value_t = 1000)]
    max_rounds: usize,
    /// Output on stdout.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Leave the per-round curves out of the JSON.
    #[arg(long)]
    no_curves: bool,
    /// Draw the first run's curve and the theory's as an SVG to this file.
    #[arg(long)]
    svg: Option<PathBuf>,
}

fn parse_window(s: &str) -> Result<(Duration, Duration), String> {
    let (from, to) = s
        .split_once("..")
        .ok_or_else(|| format!("expected FROM..TO (e.g. 1s..3s), got {s:?}"))?;
    let (from, to) = (
        plumbing::parse::duration(from)?,
        plumbing::parse::duration(to)?,
    );
    if to <= from {
        return Err(format!("the window {s:?} ends before it starts"));
    }
    Ok((from, to))
}

fn main() -> ExitCode {
    plumbing::init_tracing();
    let cli = Cli::parse();
    match cli.command {
        Command::Node(args) => plumbing::run_main(1, node(args)),
        Command::Net(args) => plumbing::run_main(1, net(args)),
        Command::Simulate(args) => match simulate(args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

async fn node(args: NodeArgs) -> Result<ExitCode> {
    let config = ServerConfig {
        interval: args.interval,
        retry: args.retry,
        anti_entropy: args.anti_entropy,
        overlay: args.overlay,
        fanout: args.fanout,
        branching: args.branching,
        max_batch: args.max_batch.max(1),
        max_line: args.max_line,
        seed: args.seed,
    };
    let shutdown = plumbing::shutdown_on_signal();
    if args.udp {
        let socket = tokio::net::UdpSocket::bind(args.bind)
            .await
            .with_context(|| format!("cannot bind {}", args.bind))?;
        println!("listening on {}", socket.local_addr()?);
        server::run_udp(socket, args.peers, config, shutdown)
            .await
            .context("node UDP I/O")?;
        return Ok(ExitCode::SUCCESS);
    }
    let (stdin, stdout) = server::stdio();
    server::run(BufReader::new(stdin), stdout, config, shutdown)
        .await
        .context("node I/O")?;
    Ok(ExitCode::SUCCESS)
}

async fn net(args: NetArgs) -> Result<ExitCode> {
    if !(0.0..=1.0).contains(&args.loss) {
        bail!("--loss must be between 0 and 1, got {}", args.loss);
    }
    let (bin, node_args) = match args.bin {
        Some(bin) => (bin, args.node_args),
        None => {
            let me = std::env::current_exe().context("finding this binary")?;
            let mut all = vec!["node".to_owned()];
            all.extend(args.node_args);
            (me, all)
        }
    };
    let config = NetConfig {
        bin,
        node_args,
        nodes: args.nodes,
        latency: args.latency,
        loss: args.loss,
        partitions: args.partitions,
        rate: args.rate,
        time_limit: args.time_limit,
        settle: args.settle,
        seed: args.seed,
    };
    let report = net::run(config).await?;
    let json = serde_json::to_string(&report).context("encoding the report")?;
    if let Some(path) = &args.report {
        std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
    }
    let q = &report.stable_latency_ms;
    eprintln!(
        "{}: {} ops, {} broadcasts ({} acknowledged), msgs-per-op {:.2}, stable latency ms \
         p50 {:.0} p95 {:.0} p99 {:.0} max {:.0}",
        if report.valid { "valid" } else { "INVALID" },
        report.ops,
        report.broadcasts,
        report.acknowledged,
        report.msgs_per_op,
        q.p50,
        q.p95,
        q.p99,
        q.max
    );
    for problem in &report.problems {
        eprintln!("  problem: {problem}");
    }
    println!("{json}");
    Ok(if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn simulate(args: SimArgs) -> Result<ExitCode> {
    if args.nodes < 2 {
        bail!("--nodes must be at least 2");
    }
    if !(0.0..1.0).contains(&args.loss) || !(0.0..1.0).contains(&args.crashed) {
        bail!("--loss and --crashed must be at least 0 and below 1");
    }
    if args.stop != Stop::Never && args.mode != Mode::Push {
        bail!("the rumor-mongering stop rules apply to --mode push");
    }
    let lattice = matches!(args.topology, Topology::Regular | Topology::SmallWorld);
    if lattice && (args.degree < 2 || args.degree % 2 == 1) {
        bail!("--degree must be even and at least 2");
    }
    if args.topology == Topology::SmallWorld && args.degree >= args.nodes {
        bail!("--degree must be less than --nodes");
    }
    if !(0.0..=1.0).contains(&args.rewire) {
        bail!("--rewire must be between 0 and 1");
    }
    let config = SimConfig {
        nodes: args.nodes,
        mode: args.mode,
        fanout: args.fanout.max(1),
        topology: args.topology,
        degree: args.degree,
        rewire: args.rewire,
        loss: args.loss,
        crashed: args.crashed,
        stop: args.stop,
        k: args.k.max(1),
        max_rounds: args.max_rounds,
    };
    let runs = simulate::simulate(&config, args.runs.max(1), args.seed);
    if let Some(path) = &args.svg {
        let first = &runs[0];
        let measured: Vec<(f64, f64)> = first
            .curve
            .iter()
            .enumerate()
            .map(|(i, f)| (i as f64, *f))
            .collect();
        let expected = theory::curve(
            config.mode,
            config.nodes as f64,
            config.fanout,
            first.curve.len(),
        );
        let title = format!(
            "{:?} over {} nodes, fanout {}",
            config.mode, config.nodes, config.fanout
        );
        plot::draw(
            path,
            &title,
            &[
                Series {
                    label: "simulated".into(),
                    points: measured,
                    dashed: false,
                },
                Series {
                    label: "theory (mean field)".into(),
                    points: expected
                        .iter()
                        .enumerate()
                        .map(|(i, f)| (i as f64, *f))
                        .collect(),
                    dashed: true,
                },
            ],
        )?;
    }
    let out = std::io::stdout();
    let mut out = out.lock();
    use std::io::Write;
    match args.format {
        Format::Json => writeln!(
            out,
            "{}",
            simulate::summary(&config, &runs, !args.no_curves)
        )?,
        Format::Csv => write!(out, "{}", simulate::csv(&runs))?,
    }
    Ok(ExitCode::SUCCESS)
}
