//! The `log-aggregator` command line: argument parsing and plumbing. The work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use log_aggregator_solution::client::{self, Load, Transport};
use log_aggregator_solution::logfile::DEFAULT_KEEP;
use log_aggregator_solution::protocol::{DEFAULT_MAX_FRAME, DEFAULT_MAX_MESSAGE};
use log_aggregator_solution::record::OutputFormat;
use log_aggregator_solution::server::{self, Listeners, ServerConfig};
use log_aggregator_solution::writer::{DEFAULT_QUEUE_BYTES, Fsync, WriterKind};

/// A syslog receiver over TCP and RELP that appends every message to one file, safely.
#[derive(Debug, Parser)]
#[command(name = "log-aggregator", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Receive syslog messages and append them to a file.
    Server {
        /// Syslog over TCP (RFC 6587); port 0 picks a free port (printed as `listening on ADDR`).
        #[arg(long, default_value = "127.0.0.1:5140")]
        bind: String,
        /// Also speak RELP here (printed as a `{"event":"listening","protocol":"relp",...}` line).
        #[arg(long)]
        relp_bind: Option<String>,
        /// The file every message is appended to.
        #[arg(long)]
        out: PathBuf,
        /// How each message is written.
        #[arg(long, value_enum, default_value_t = server::DEFAULT_FORMAT)]
        format: OutputFormat,
        /// How connections share the file.
        #[arg(long, value_enum, default_value_t = server::DEFAULT_WRITER)]
        writer: WriterKind,
        /// When the file is synced to disk.
        #[arg(long, value_enum, default_value_t = server::DEFAULT_FSYNC)]
        fsync: Fsync,
        /// The longest message kept; longer ones are truncated, marked.
        #[arg(long, default_value_t = DEFAULT_MAX_MESSAGE, value_parser = plumbing::parse::positive_size)]
        max_message: usize,
        /// The largest octet count or RELP DATALEN; a larger one closes the connection.
        #[arg(long, default_value_t = DEFAULT_MAX_FRAME, value_parser = plumbing::parse::positive_size)]
        max_frame: usize,
        /// The most connections at once, per listener.
        #[arg(long, default_value_t = server::DEFAULT_MAX_CONNECTIONS)]
        max_connections: usize,
        /// The writer task's queue bound, in bytes.
        #[arg(long, default_value_t = DEFAULT_QUEUE_BYTES, value_parser = plumbing::parse::positive_size)]
        queue_bytes: usize,
        /// Rotate FILE to FILE.1 before it would grow past this size.
        #[arg(long, value_parser = plumbing::parse::positive_size)]
        rotate_size: Option<usize>,
        /// How many rotated files to keep.
        #[arg(long, default_value_t = DEFAULT_KEEP)]
        keep: usize,
        /// How long connections get to finish after SIGTERM.
        #[arg(long, default_value = "5s", value_parser = plumbing::parse::duration)]
        grace: Duration,
        /// Close a connection that completes no message for this long (idle or dripping).
        #[arg(long, default_value = plumbing::parse::duration_text(server::DEFAULT_IDLE_TIMEOUT),
              value_parser = plumbing::parse::positive_duration)]
        idle_timeout: Duration,
    },
    /// Send lines from a file or stdin, one message each.
    Send {
        /// The aggregator (HOST:PORT).
        #[arg(long)]
        to: String,
        /// Speak RELP (to the `--relp-bind` address).
        #[arg(long)]
        relp: bool,
        /// Frame with octet counting instead of LF.
        #[arg(long, conflicts_with = "relp")]
        octet_count: bool,
        /// The file to send, or `-` for stdin.
        #[arg(default_value = "-")]
        file: PathBuf,
    },
    /// Load the aggregator with many connections and report messages/s.
    Bench {
        /// The aggregator (HOST:PORT).
        #[arg(long)]
        to: String,
        /// Connections at once.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Messages per connection.
        #[arg(long, default_value_t = 100_000)]
        messages: u64,
        /// Bytes per message.
        #[arg(long, default_value_t = 256, value_parser = plumbing::parse::positive_size)]
        size: usize,
        /// Speak RELP.
        #[arg(long)]
        relp: bool,
        /// Frame with octet counting instead of LF.
        #[arg(long, conflicts_with = "relp")]
        octet_count: bool,
        /// Afterwards, check that this file (the server's `--out`) holds exactly what was sent.
        #[arg(long)]
        check: Option<PathBuf>,
    },
}

fn transport(relp: bool, octet_count: bool) -> Transport {
    match (relp, octet_count) {
        (true, _) => Transport::Relp,
        (false, true) => Transport::OctetCounted,
        (false, false) => Transport::Lines,
    }
}

async fn listen(bind: &str) -> Result<TcpListener> {
    let addr = plumbing::resolve(bind).await?;
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind {bind}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    plumbing::init_tracing();
    plumbing::run_main(0, dispatch(cli.command))
}

async fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Server {
            bind,
            relp_bind,
            out,
            format,
            writer,
            fsync,
            max_message,
            max_frame,
            max_connections,
            queue_bytes,
            rotate_size,
            keep,
            grace,
            idle_timeout,
        } => {
            // Before `listening on`: a SIGTERM right after it must find the handler installed.
            let shutdown = plumbing::shutdown_on_signal();
            let syslog = listen(&bind).await?;
            println!("listening on {}", syslog.local_addr()?);
            let relp = match relp_bind {
                Some(relp_bind) => {
                    let relp = listen(&relp_bind).await?;
                    let event = serde_json::json!({
                        "event": "listening",
                        "protocol": "relp",
                        "addr": relp.local_addr()?.to_string(),
                    });
                    println!("{event}");
                    Some(relp)
                }
                None => None,
            };
            let config = ServerConfig {
                out,
                format,
                writer,
                fsync,
                max_message,
                max_frame,
                max_connections,
                queue_bytes,
                rotate_size: rotate_size.map(|s| s as u64),
                keep,
                grace,
                idle_timeout,
            };
            let listeners = Listeners { syslog, relp };
            let written = server::run(listeners, config, shutdown).await?;
            println!(
                "{}",
                serde_json::json!({"event": "stopped", "messages": written})
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Send {
            to,
            relp,
            octet_count,
            file,
        } => {
            let addr = plumbing::resolve(&to).await?;
            let transport = transport(relp, octet_count);
            let sent = if file.as_os_str() == "-" {
                client::send(
                    addr,
                    transport,
                    tokio::io::BufReader::new(tokio::io::stdin()),
                )
                .await
            } else {
                let input = tokio::fs::File::open(&file)
                    .await
                    .with_context(|| format!("cannot open {}", file.display()))?;
                client::send(addr, transport, tokio::io::BufReader::new(input)).await
            }
            .with_context(|| format!("sending to {to}"))?;
            println!("{}", serde_json::json!({"sent": sent}));
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            to,
            connections,
            messages,
            size,
            relp,
            octet_count,
            check,
        } => {
            let addr = plumbing::resolve(&to).await?;
            let load = Load {
                connections,
                messages,
                size,
                transport: transport(relp, octet_count),
            };
            let run = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64);
            let report = client::bench(addr, load, run)
                .await
                .with_context(|| format!("loading {to}"))?;
            let seconds = report.elapsed.as_secs_f64();
            let rate = report.messages as f64 / seconds;
            let mut summary = serde_json::json!({
                "messages": report.messages,
                "seconds": seconds,
                "messages_per_sec": rate.round(),
                "mib_per_sec": rate * size as f64 / f64::from(1 << 20),
            });
            if let Some(file) = check {
                if let Err(e) = client::check(&file, run, load) {
                    summary["check"] = e.clone().into();
                    println!("{summary}");
                    eprintln!("error: {} does not hold what was sent: {e}", file.display());
                    return Ok(ExitCode::FAILURE);
                }
                summary["check"] = "ok".into();
            }
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
