//! The `heartbeat` command line: clap and the shared plumbing, given in full in the exercise.
//! The work is in the library.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::{Parser, Subcommand, ValueEnum};
use plumbing::{parse, resolve, shutdown_on_signal};
use serde_json::{Map, Value};

use heartbeat::detector::Detector;
use heartbeat::{client, protocol, server, status};

/// A UDP heartbeat system with failure detection.
///
/// Start a server, point one or more clients at it, and watch nodes join, die and recover as
/// JSON lines on the server's stdout. Logs go to stderr (set RUST_LOG=debug for more).
#[derive(Debug, Parser)]
#[command(name = "heartbeat", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Receive heartbeats, track membership, print events as JSON lines.
    Server(ServerArgs),
    /// Send heartbeats to one or more servers.
    Client(ClientArgs),
    /// Show a running server's membership table.
    Status(StatusArgs),
}

#[derive(Debug, clap::Args)]
struct ServerArgs {
    /// Address to listen on; port 0 picks a free port (printed as `listening on ADDR`).
    #[arg(long, default_value = "127.0.0.1:9000")]
    bind: SocketAddr,
    /// Silence after which a node is declared dead (e.g. 500ms, 3s).
    #[arg(long, default_value = "3s", value_parser = parse::duration)]
    timeout: Duration,
    /// How often silent nodes are checked; detection takes at most timeout + this.
    #[arg(long, default_value = "100ms", value_parser = parse::positive_duration)]
    check_interval: Duration,
    /// Failure detector: a fixed timeout, or phi accrual (with --timeout as a hard bound).
    #[arg(long, value_enum, default_value_t = DetectorKind::Timeout)]
    detector: DetectorKind,
    /// Phi above which a node is dead (with --detector phi); 8 means odds of 1 in 10^8.
    #[arg(long, default_value_t = 8.0)]
    threshold: f64,
    /// Most nodes tracked; heartbeats from further new nodes are counted and refused.
    #[arg(long, default_value_t = server::DEFAULT_MAX_NODES)]
    max_nodes: usize,
    /// Most bytes of `meta` one node keeps (e.g. 512B, 1KiB); a longer one is not kept.
    #[arg(
        long,
        default_value_t = server::DEFAULT_MAX_META_BYTES,
        value_parser = parse::positive_size
    )]
    max_meta_bytes: usize,
    /// Most bytes of `meta` all nodes keep together (e.g. 16MiB); past it, new `meta` is not kept.
    #[arg(
        long,
        default_value_t = server::DEFAULT_MAX_META_TOTAL,
        value_parser = parse::positive_size
    )]
    max_meta_total: usize,
    /// Most events waiting for stdout; when its reader is slower, further ones are dropped and
    /// counted.
    #[arg(long, default_value_t = server::DEFAULT_EVENT_QUEUE)]
    event_queue: usize,
    /// The socket's receive buffer, asked of the kernel (which may cap it), in bytes (e.g. 4MiB).
    #[arg(
        long,
        default_value_t = server::DEFAULT_RECV_BUFFER,
        value_parser = parse::positive_size
    )]
    recv_buffer: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DetectorKind {
    Timeout,
    Phi,
}

#[derive(Debug, clap::Args)]
struct ClientArgs {
    /// A server to send to (HOST:PORT); repeat to send every heartbeat to several.
    #[arg(long = "server", required = true, value_name = "ADDR")]
    servers: Vec<String>,
    /// This node's id: 1 to 64 bytes, no whitespace or control characters.
    #[arg(long)]
    node: String,
    /// Time between heartbeats (e.g. 200ms, 1s).
    #[arg(long, default_value = "1s", value_parser = parse::positive_duration)]
    interval: Duration,
    /// Send this many heartbeats, then exit; without it, run until Ctrl-C.
    #[arg(long)]
    count: Option<u64>,
    /// A KEY=VALUE fact sent in every heartbeat's `meta`; repeatable.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse::key_value)]
    meta: Vec<(String, String)>,
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    /// The server to ask (HOST:PORT).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9000")]
    server: String,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    json: bool,
    /// How long to wait for each reply before asking again (three tries per page).
    #[arg(long, default_value = "1s", value_parser = parse::positive_duration)]
    wait: Duration,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    plumbing::init_tracing();
    // One task does all the work in each subcommand, so a single-threaded runtime is enough and
    // spares the hand-offs between worker threads.
    plumbing::run_main(1, async {
        dispatch(cli.command).await?;
        Ok(ExitCode::SUCCESS)
    })
}

async fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Server(args) => serve(args).await,
        Command::Client(args) => send(args).await,
        Command::Status(args) => show_status(args).await,
    }
}

async fn serve(args: ServerArgs) -> Result<()> {
    let detector = match args.detector {
        DetectorKind::Timeout => Detector::Timeout {
            timeout: args.timeout,
        },
        DetectorKind::Phi => Detector::Phi {
            threshold: args.threshold,
            timeout: args.timeout,
        },
    };
    let config = server::ServerConfig {
        detector,
        check_interval: args.check_interval,
        max_nodes: args.max_nodes,
        max_meta_bytes: args.max_meta_bytes,
        max_meta_total: args.max_meta_total,
        event_queue: args.event_queue,
        recv_buffer: args.recv_buffer,
    };
    let socket = plumbing::listen_udp(args.bind).await?;
    let shutdown = shutdown_on_signal();
    server::run(socket, config, std::io::stdout(), shutdown)
        .await
        .context("writing events to stdout")
}

async fn send(args: ClientArgs) -> Result<()> {
    protocol::validate_node_id(&args.node).map_err(|e| anyhow!("--node {:?}: {e}", args.node))?;
    let mut servers = Vec::with_capacity(args.servers.len());
    for server in &args.servers {
        servers.push(resolve(server).await?);
    }
    let meta: Map<String, Value> = args
        .meta
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let config = client::ClientConfig {
        servers,
        node: args.node,
        interval: args.interval,
        count: args.count,
        meta: (!meta.is_empty()).then_some(meta),
    };
    client::run(config, shutdown_on_signal()).await?;
    Ok(())
}

async fn show_status(args: StatusArgs) -> Result<()> {
    let server = resolve(&args.server).await?;
    let table = status::fetch(server, args.wait, 3).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&table)?);
    } else {
        print!("{}", status::render_table(&table));
    }
    Ok(())
}
