//! The `metrics-collector` command line: argument parsing, binding and signals. The work is in
//! the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde_json::json;
use tokio::net::{TcpListener, UdpSocket};

use metrics_collector_solution::agent::{self, AgentConfig};
use metrics_collector_solution::connection::now_ms;
use metrics_collector_solution::server::{self, Listeners, ServerConfig};

/// A metrics collector that speaks StatsD, Graphite and Prometheus, and its edge agent.
///
/// Start a collector, then send it StatsD: `echo 'hits:1|c' >/dev/udp/127.0.0.1/8125` (bash).
#[derive(Debug, Parser)]
#[command(name = "metrics-collector", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the collector.
    #[command(alias = "server")]
    Collector {
        /// StatsD over TCP (newline-delimited); port 0 picks one (printed as `listening on ADDR`).
        #[arg(long, default_value = "127.0.0.1:8125")]
        bind: SocketAddr,
        /// StatsD over UDP.
        #[arg(long)]
        udp_bind: Option<SocketAddr>,
        /// Graphite plaintext over TCP.
        #[arg(long)]
        graphite_bind: Option<SocketAddr>,
        /// The agents' framed protocol over TCP.
        #[arg(long)]
        agent_bind: Option<SocketAddr>,
        /// HTTP, for `GET /metrics` (Prometheus text format).
        #[arg(long)]
        http_bind: Option<SocketAddr>,
        /// The JSON-lines file each batch is appended to.
        #[arg(long)]
        out: PathBuf,
        /// The flush interval.
        #[arg(long, default_value = "10s", value_parser = plumbing::parse::positive_duration)]
        flush: Duration,
        /// Aggregation workers (shards); 0 means one per core.
        #[arg(long, default_value_t = 0)]
        workers: usize,
        /// The most series live at once; samples of further series are dropped and counted.
        #[arg(long, default_value_t = server::DEFAULT_MAX_SERIES)]
        max_series: usize,
        /// The longest line (StatsD or Graphite).
        #[arg(long, default_value = "8KiB", value_parser = plumbing::parse::positive_size)]
        max_line: usize,
        /// The most connections at once, per TCP listener.
        #[arg(long, default_value_t = server::DEFAULT_MAX_CONNECTIONS)]
        max_connections: usize,
        /// The largest agent batch.
        #[arg(long, default_value = "1MiB", value_parser = plumbing::parse::positive_size)]
        max_frame: usize,
        /// The most members one set counts in one interval.
        #[arg(long, default_value_t = server::DEFAULT_MAX_SET_SIZE)]
        max_set_size: usize,
        /// The most distinct agents remembered for deduplication.
        #[arg(long, default_value_t = server::DEFAULT_MAX_AGENTS)]
        max_agents: usize,
        /// Batches queued to each worker before readers wait.
        #[arg(long, default_value_t = server::DEFAULT_WORKER_QUEUE)]
        worker_queue: usize,
    },
    /// Run an edge agent: StatsD over UDP in, batches over TCP to a collector's --agent-bind.
    Agent {
        /// Where local applications send StatsD (UDP); port 0 picks one.
        #[arg(long, default_value = "127.0.0.1:8125")]
        listen: SocketAddr,
        /// The collector's agent address.
        #[arg(long)]
        to: String,
        /// This agent's name; it says `HELLO NAME@START_MS`, so each run is its own sequence
        /// (default: `agent-PID-START_MS`).
        #[arg(long)]
        id: Option<String>,
        /// Lines per batch.
        #[arg(long, default_value_t = agent::DEFAULT_BATCH)]
        batch: usize,
        /// How long a batch's first line waits for the batch to fill.
        #[arg(long, default_value = "100ms", value_parser = plumbing::parse::positive_duration)]
        batch_wait: Duration,
        /// The most bytes of unacknowledged batches kept; past it the oldest are dropped.
        #[arg(long, default_value = "64MiB", value_parser = plumbing::parse::positive_size)]
        max_buffer: usize,
        /// The longest wait between reconnection attempts.
        #[arg(long, default_value = "2s", value_parser = plumbing::parse::positive_duration)]
        max_backoff: Duration,
        /// Spill batches to this directory while the collector is away (or memory is full).
        #[arg(long)]
        spool: Option<PathBuf>,
        /// The most bytes of batches in the spool; past it the oldest spooled are dropped.
        #[arg(long, default_value = "256MiB", value_parser = plumbing::parse::positive_size)]
        max_spool: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    plumbing::init_tracing();
    plumbing::run_main(0, dispatch(cli.command))
}

async fn bind_tcp(addr: Option<SocketAddr>) -> Result<Option<TcpListener>> {
    match addr {
        Some(addr) => Ok(Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot bind {addr}"))?,
        )),
        None => Ok(None),
    }
}

fn local(listener: Option<&TcpListener>) -> Option<String> {
    listener
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.to_string())
}

async fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Collector {
            bind,
            udp_bind,
            graphite_bind,
            agent_bind,
            http_bind,
            out,
            flush,
            workers,
            max_series,
            max_line,
            max_connections,
            max_frame,
            max_set_size,
            max_agents,
            worker_queue,
        } => {
            let statsd = TcpListener::bind(bind)
                .await
                .with_context(|| format!("cannot bind {bind}"))?;
            let udp = match udp_bind {
                Some(addr) => Some(
                    UdpSocket::bind(addr)
                        .await
                        .with_context(|| format!("cannot bind {addr} (UDP)"))?,
                ),
                None => None,
            };
            let listeners = Listeners {
                statsd,
                udp,
                graphite: bind_tcp(graphite_bind).await?,
                agent: bind_tcp(agent_bind).await?,
                http: bind_tcp(http_bind).await?,
            };
            println!("listening on {}", listeners.statsd.local_addr()?);
            println!(
                "{}",
                json!({
                    "event": "listening",
                    "statsd": listeners.statsd.local_addr()?.to_string(),
                    "udp": listeners.udp.as_ref().and_then(|u| u.local_addr().ok())
                        .map(|a| a.to_string()),
                    "graphite": local(listeners.graphite.as_ref()),
                    "agent": local(listeners.agent.as_ref()),
                    "http": local(listeners.http.as_ref()),
                })
            );
            let config = ServerConfig {
                out,
                flush,
                workers,
                max_series,
                max_line,
                max_connections,
                max_frame,
                max_set_size,
                max_agents,
                worker_queue,
            };
            server::run(listeners, config, plumbing::shutdown_on_signal()).await?;
        }
        Command::Agent {
            listen,
            to,
            id,
            batch,
            batch_wait,
            max_buffer,
            max_backoff,
            spool,
            max_spool,
        } => {
            let socket = UdpSocket::bind(listen)
                .await
                .with_context(|| format!("cannot bind {listen} (UDP)"))?;
            println!("listening on {}", socket.local_addr()?);
            let mut config = AgentConfig {
                to,
                batch,
                batch_wait,
                max_buffer,
                max_backoff,
                spool,
                max_spool,
                ..AgentConfig::default()
            };
            if let Some(id) = id {
                // One dedup session per run: a restarted agent starts again at sequence 1, and
                // under its bare name the collector would take its batches for old ones.
                config.id = format!("{id}@{}", now_ms());
            }
            agent::run(socket, config, plumbing::shutdown_on_signal()).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
