//! The `heartbeat` command line: argument parsing, logging and signals. Given: the work you
//! write is in the library.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Map, Value};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

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
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// How often silent nodes are checked; detection takes at most timeout + this.
    #[arg(long, default_value = "100ms", value_parser = parse_positive_duration)]
    check_interval: Duration,
    /// Failure detector: a fixed timeout, or phi accrual (with --timeout as a hard bound).
    #[arg(long, value_enum, default_value_t = DetectorKind::Timeout)]
    detector: DetectorKind,
    /// Phi above which a node is dead (with --detector phi); 8 means odds of 1 in 10^8.
    #[arg(long, default_value_t = 8.0)]
    threshold: f64,
    /// Most nodes tracked; heartbeats from further new nodes are counted and refused.
    #[arg(long, default_value_t = 100_000)]
    max_nodes: usize,
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
    #[arg(long, default_value = "1s", value_parser = parse_positive_duration)]
    interval: Duration,
    /// Send this many heartbeats, then exit; without it, run until Ctrl-C.
    #[arg(long)]
    count: Option<u64>,
    /// A KEY=VALUE fact sent in every heartbeat's `meta`; repeatable.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta)]
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
    #[arg(long, default_value = "1s", value_parser = parse_positive_duration)]
    wait: Duration,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // One task does all the work in each subcommand, so a single-threaded runtime is enough and
    // spares the hand-offs between worker threads.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
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
    };
    let socket = UdpSocket::bind(args.bind)
        .await
        .with_context(|| format!("cannot bind {}", args.bind))?;
    println!("listening on {}", socket.local_addr()?);
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

/// Resolves HOST:PORT to its first address.
async fn resolve(addr: &str) -> Result<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("cannot resolve {addr:?} (expected HOST:PORT)"))?
        .next()
        .ok_or_else(|| anyhow!("{addr:?} resolves to no address"))
}

/// A token cancelled on Ctrl-C or SIGTERM.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        cancel.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(d)
}

fn parse_meta(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}
