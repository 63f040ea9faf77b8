//! The `leader-election` command line: argument parsing, logging and signals. The work is in
//! the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand, ValueEnum};
use tokio::net::UdpSocket;

use leader_election::protocol::validate_id;
use leader_election::resource::{self, DEFAULT_MAX_KEYS, DEFAULT_MAX_REQUEST};
use leader_election::server::{
    self, Algorithm, DEFAULT_MAX_MESSAGE, DEFAULT_STATUS_RATE, ServerConfig,
};
use leader_election::status;

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    plumbing::init_tracing();
    plumbing::run_main(1, async move {
        match cli.command {
            Command::Node(args) => node(args).await?,
            Command::Resource(args) => resource(args).await?,
            Command::Status(args) => show_status(args).await?,
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
