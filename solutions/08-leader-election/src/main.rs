//! The `leader-election` command line: argument parsing, logging and signals. The work is in
//! the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand, ValueEnum};
use tokio::net::UdpSocket;

use leader_election_solution::protocol::validate_id;
use leader_election_solution::relay::Faults;
use leader_election_solution::resource::{self, DEFAULT_MAX_KEYS, DEFAULT_MAX_REQUEST};
use leader_election_solution::server::{
    self, Algorithm, DEFAULT_MAX_MESSAGE, DEFAULT_STATUS_RATE, ServerConfig,
};
use leader_election_solution::{cluster, status, timeline};

/// Leader election via heartbeats and priority, safe under partitions.
///
/// Start one `node` per member, each naming the others with --peer; watch the JSON events on
/// their stdout. Logs go to stderr (set RUST_LOG=debug for more).
#[derive(Debug, Parser)]
#[command(name = "leader-election", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one member of the cluster.
    Node(NodeArgs),
    /// Run the fencing-token store a leader writes to.
    Resource(ResourceArgs),
    /// Show a running node's view: term, leader, peers.
    Status(StatusArgs),
    /// Simulate: N nodes behind a faulty relay, a scenario, a timeline and the safety check.
    Cluster(ClusterArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AlgorithmArg {
    /// Terms, pre-vote, majority votes, leases.
    Safe,
    /// The plain bully algorithm: no quorum, no lease (splits under partitions).
    Bully,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Debug, clap::Args)]
struct NodeArgs {
    /// This node's id: 1 to 64 bytes, no whitespace or control characters.
    #[arg(long)]
    id: String,
    /// Its priority: the live node of highest priority that a majority reaches leads.
    #[arg(long, default_value_t = 0)]
    priority: u64,
    /// Address to listen on; port 0 picks a free port (printed as `listening on ADDR`).
    #[arg(long, default_value = "127.0.0.1:7000")]
    bind: SocketAddr,
    /// Another member, as ID=HOST:PORT; repeat for each.
    #[arg(long = "peer", value_name = "ID=ADDR", value_parser = plumbing::parse::key_value)]
    peers: Vec<(String, String)>,
    /// Time between heartbeats.
    #[arg(long, default_value = "100ms", value_parser = plumbing::parse::positive_duration)]
    heartbeat: Duration,
    /// Silence from the leader after which a node may stand for election.
    #[arg(long, default_value = "1s", value_parser = plumbing::parse::positive_duration)]
    timeout: Duration,
    /// The leader's lease; must be shorter than --timeout [default: 3/4 of --timeout].
    #[arg(long, value_parser = plumbing::parse::positive_duration)]
    lease: Option<Duration>,
    /// Whether a live node of higher priority takes over from the leader.
    #[arg(long, value_enum, default_value = "on")]
    preempt: OnOff,
    /// How long that node must have been heard without a gap before it takes over.
    #[arg(long, default_value = "3s", value_parser = plumbing::parse::duration)]
    hold_down: Duration,
    /// The election algorithm.
    #[arg(long, value_enum, default_value = "safe")]
    algorithm: AlgorithmArg,
    /// Directory for the term and vote; without it they are lost on restart (unsafe).
    #[arg(long)]
    data: Option<PathBuf>,
    /// A fencing-token store (see `resource`) the leader writes to every heartbeat.
    #[arg(long, value_name = "ADDR")]
    resource: Option<String>,
    /// The longest datagram read; longer ones are dropped and counted.
    #[arg(long, default_value_t = DEFAULT_MAX_MESSAGE, value_parser = plumbing::parse::positive_size)]
    max_message: usize,
    /// Status replies per second at most.
    #[arg(long, default_value_t = DEFAULT_STATUS_RATE)]
    status_rate: u32,
}

#[derive(Debug, clap::Args)]
struct ResourceArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:7100")]
    bind: SocketAddr,
    /// The most keys held.
    #[arg(long, default_value_t = DEFAULT_MAX_KEYS)]
    max_keys: usize,
    /// The longest request read, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_REQUEST, value_parser = plumbing::parse::positive_size)]
    max_request: usize,
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    /// The node to ask (HOST:PORT).
    #[arg(long)]
    node: String,
    /// How long to wait for each of three tries.
    #[arg(long, default_value = "1s", value_parser = plumbing::parse::positive_duration)]
    wait: Duration,
}

#[derive(Debug, clap::Args)]
struct ClusterArgs {
    /// How many nodes; node n<i> gets priority i + 1.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// The nodes' algorithm.
    #[arg(long, value_enum, default_value = "safe")]
    algorithm: AlgorithmArg,
    /// The nodes' heartbeat interval.
    #[arg(long, default_value = "100ms", value_parser = plumbing::parse::positive_duration)]
    heartbeat: Duration,
    /// The nodes' election timeout.
    #[arg(long, default_value = "1s", value_parser = plumbing::parse::positive_duration)]
    timeout: Duration,
    /// A fault, as `AT ACTION`: `2s kill leader`, `4s restart n2`, `5s pause n0`,
    /// `6s resume n0`, `7s partition n0,n1|n2`, `9s heal`; repeatable.
    #[arg(long = "at", value_name = "STEP", value_parser = cluster::parse_step)]
    steps: Vec<cluster::Step>,
    /// A file of steps, one per line (`#` starts a comment).
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// How long to run once every node is up.
    #[arg(long, default_value = "10s", value_parser = plumbing::parse::positive_duration)]
    duration: Duration,
    /// The share of datagrams the relay drops (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// The share of datagrams the relay delivers twice (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    /// A delay the relay adds to every datagram.
    #[arg(long, default_value = "0s", value_parser = plumbing::parse::duration)]
    delay: Duration,
    /// A random extra delay, up to this.
    #[arg(long, default_value = "0s", value_parser = plumbing::parse::duration)]
    jitter: Duration,
    /// The seed of the relay's random faults.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Extra flags for every node, e.g. `--node-arg=--preempt=off`; repeatable.
    #[arg(long = "node-arg", value_name = "FLAG", allow_hyphen_values = true)]
    node_args: Vec<String>,
    /// Draw the timeline as an SVG here.
    #[arg(long)]
    svg: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    plumbing::init_tracing();
    plumbing::run_main(1, async move {
        match cli.command {
            Command::Node(args) => node(args).await?,
            Command::Resource(args) => resource(args).await?,
            Command::Status(args) => show_status(args).await?,
            Command::Cluster(args) => return simulate(args).await,
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn node(args: NodeArgs) -> Result<()> {
    validate_id(&args.id).map_err(|e| anyhow!("--id: {e}"))?;
    let mut peers = Vec::with_capacity(args.peers.len());
    for (id, addr) in &args.peers {
        validate_id(id).map_err(|e| anyhow!("--peer {id}={addr}: {e}"))?;
        if *id == args.id || peers.iter().any(|(p, _)| p == id) {
            bail!("--peer {id}={addr}: each member must be named once, and not this node");
        }
        peers.push((id.clone(), plumbing::resolve(addr).await?));
    }
    if let Some(lease) = args.lease
        && lease >= args.timeout
    {
        bail!(
            "--lease {lease:?} must be shorter than --timeout {:?}",
            args.timeout
        );
    }
    let resource = match &args.resource {
        Some(addr) => Some(plumbing::resolve(addr).await?),
        None => None,
    };
    if args.data.is_none() {
        tracing::warn!("no --data: the term and vote are lost on restart");
    }
    let config = ServerConfig {
        id: args.id,
        priority: args.priority,
        peers,
        heartbeat: args.heartbeat,
        timeout: args.timeout,
        lease: args.lease,
        preempt: matches!(args.preempt, OnOff::On),
        hold_down: args.hold_down,
        algorithm: match args.algorithm {
            AlgorithmArg::Safe => Algorithm::Safe,
            AlgorithmArg::Bully => Algorithm::Bully,
        },
        data: args.data,
        resource,
        max_message: args.max_message,
        status_rate: args.status_rate,
    };
    let socket = UdpSocket::bind(args.bind)
        .await
        .with_context(|| format!("cannot bind {}", args.bind))?;
    println!("listening on {}", socket.local_addr()?);
    server::run(socket, config, plumbing::shutdown_on_signal())
        .await
        .context("the node stopped")
}

async fn resource(args: ResourceArgs) -> Result<()> {
    let socket = UdpSocket::bind(args.bind)
        .await
        .with_context(|| format!("cannot bind {}", args.bind))?;
    println!("listening on {}", socket.local_addr()?);
    let config = resource::ResourceConfig {
        max_keys: args.max_keys,
        max_request: args.max_request,
    };
    resource::run(socket, config, plumbing::shutdown_on_signal())
        .await
        .context("writing events to stdout")
}

async fn show_status(args: StatusArgs) -> Result<()> {
    let node = plumbing::resolve(&args.node).await?;
    let reply = status::fetch(node, args.wait, 3).await?;
    println!("{}", serde_json::to_string(&reply)?);
    Ok(())
}

async fn simulate(args: ClusterArgs) -> Result<ExitCode> {
    let mut steps = args.steps;
    if let Some(path) = &args.scenario {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if !line.is_empty() {
                steps.push(
                    cluster::parse_step(line)
                        .map_err(|e| anyhow!("{}:{}: {e}", path.display(), n + 1))?,
                );
            }
        }
    }
    let data = std::env::temp_dir().join(format!("leader-election-cluster-{}", std::process::id()));
    let algorithm = match args.algorithm {
        AlgorithmArg::Safe => "safe",
        AlgorithmArg::Bully => "bully",
    };
    let mut node_args: Vec<String> = vec![
        "--algorithm".into(),
        algorithm.into(),
        "--heartbeat".into(),
        format!("{}ms", args.heartbeat.as_millis()),
        "--timeout".into(),
        format!("{}ms", args.timeout.as_millis()),
    ];
    node_args.extend(args.node_args);
    let config = cluster::ClusterConfig {
        nodes: args.nodes,
        node_args,
        faults: Faults {
            loss: args.loss,
            duplicate: args.duplicate,
            delay: args.delay,
            jitter: args.jitter,
        },
        steps,
        duration: args.duration,
        seed: args.seed,
        data: data.clone(),
    };
    let report = cluster::run(config, plumbing::shutdown_on_signal()).await;
    let _ = std::fs::remove_dir_all(&data);
    let report = report?;
    println!("---");
    match report.first_leader_ms {
        Some(ms) => println!("first leader: {ms} ms after start"),
        None => println!("first leader: none"),
    }
    let mut times: Vec<u64> = report.failovers.iter().map(|f| f.0).collect();
    let mut messages: Vec<u64> = report.failovers.iter().map(|f| f.1).collect();
    if let (Some((t50, tmax)), Some((m50, mmax))) = (
        cluster::median_max(&mut times),
        cluster::median_max(&mut messages),
    ) {
        println!(
            "failovers: {}; time to a new leader: median {t50} ms, max {tmax} ms; election \
             messages: median {m50}, max {mmax}",
            report.failovers.len()
        );
    } else {
        println!("failovers: 0");
    }
    if let Some(path) = &args.svg {
        let title = format!("{} nodes, {algorithm} algorithm", args.nodes);
        timeline::draw(&report, args.nodes, path, &title).map_err(|e| anyhow!("drawing: {e}"))?;
        println!("timeline: {}", path.display());
    }
    if !report.exits.is_empty() {
        // Nodes that died on their own ran nothing worth judging: say so, not "safety: ok".
        for e in &report.exits {
            println!("failed: {e}");
        }
        println!("safety: not judged: a node ended on its own (see its stderr above)");
        Ok(ExitCode::FAILURE)
    } else if report.violations.is_empty() {
        println!("safety: ok (one leader per term, never two acting leaders at once)");
        Ok(ExitCode::SUCCESS)
    } else {
        for v in &report.violations {
            println!("safety: VIOLATED: {v}");
        }
        // Apart from 1, which is an error of the simulator itself.
        Ok(ExitCode::from(3))
    }
}
