//! The `file-transfer` command line: clap and the shared plumbing, given in full in the
//! exercise. The work is in the library.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use plumbing::{parse, resolve, shutdown_on_signal};

use file_transfer::progress::Progress;
use file_transfer::receiver::ServerConfig;
use file_transfer::{sender, server};

/// Send files over TCP, verified chunk by chunk with SHA-256, resuming where a broken
/// connection left off.
///
/// Start a receiver with `file-transfer recv --dir DIR`, then `file-transfer send --to ADDR FILE...`.
#[derive(Debug, Parser)]
#[command(name = "file-transfer", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Receive files into a directory.
    #[command(alias = "server")]
    Recv {
        /// Address to listen on; port 0 picks a free port (printed as `listening on ADDR`).
        #[arg(long, default_value = "127.0.0.1:7010")]
        bind: SocketAddr,
        /// Where received files land (created if missing). Nothing outside it is ever written.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The largest file accepted, e.g. `10GiB`.
        #[arg(long, default_value = "64GiB", value_parser = parse::size)]
        max_size: u64,
        /// The most senders connected at once.
        #[arg(long, default_value_t = 64)]
        max_connections: usize,
        /// How long one frame may take to arrive before the sender is dropped.
        #[arg(long, default_value = "60s", value_parser = parse::duration)]
        frame_timeout: Duration,
        /// How many times one chunk may fail its check before the transfer is abandoned.
        #[arg(long, default_value_t = 8)]
        max_retries: u32,
        /// How long the partial file of a failed transfer is kept for a resume, from its last
        /// write.
        #[arg(long, default_value = "24h", value_parser = parse::positive_duration)]
        partial_ttl: Duration,
        /// How many bytes all partial files in DIR may take together; the oldest kept ones are
        /// deleted to make room.
        #[arg(long, default_value = "64GiB", value_parser = parse::size)]
        partial_budget: u64,
        /// Also compute each file's plain SHA-256 (as `sha256sum` does), given in the `complete`
        /// event: one more pass, on one core, beside the transfer.
        #[arg(long)]
        sha256: bool,
    },
    /// Send files to a receiver.
    Send {
        /// The receiver (HOST:PORT).
        #[arg(long)]
        to: String,
        /// The size of each chunk, e.g. `4MiB` (default: 4 MiB, more for very large files).
        #[arg(long, value_parser = parse::size)]
        chunk_size: Option<u64>,
        /// Also compute each file's plain SHA-256 and print it as `sha256sum` does: one more pass,
        /// on one core, beside the transfer.
        #[arg(long)]
        sha256: bool,
        /// The files to send.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    plumbing::init_tracing();
    plumbing::run_main(0, dispatch(cli.command))
}

async fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Recv {
            bind,
            dir,
            max_size,
            max_connections,
            frame_timeout,
            max_retries,
            partial_ttl,
            partial_budget,
            sha256,
        } => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let listener = plumbing::listen(bind).await?;
            let config = ServerConfig {
                dir,
                max_size,
                max_connections,
                frame_timeout,
                max_retries,
                partial_ttl,
                partial_budget,
                sha256,
            };
            server::run(listener, config, std::io::stdout(), shutdown_on_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Send {
            to,
            chunk_size,
            sha256,
            files,
        } => {
            let addr = resolve(&to).await?;
            let mut progress = Progress::new(std::io::stderr().is_terminal());
            let mut failed = 0;
            for file in &files {
                match sender::send_file(addr, file, chunk_size, sha256, &mut progress).await {
                    Ok(report) => progress.finished(&report),
                    Err(e) => {
                        progress.failed();
                        eprintln!("error: {}: {e}", file.display());
                        failed += 1;
                    }
                }
            }
            if failed > 0 {
                eprintln!("error: {failed} of {} files were not sent", files.len());
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
