//! The `file-writer` command line: argument parsing, logging and signals. The work is in the
//! library.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use file_writer_solution::client::{self, ClientConfig};
use file_writer_solution::server::{self, ServerConfig};

/// Resumable uploads over HTTP with the tus 1.0.0 protocol: many clients write chunks of one
/// file at their offsets.
///
/// Start a server with `file-writer server --dir DIR`, then
/// `file-writer upload --to http://HOST:PORT/files/ FILE`.
#[derive(Debug, Parser)]
#[command(name = "file-writer", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve tus uploads into a directory (created at `POST /files/`).
    Server {
        /// Address to listen on; port 0 picks a free port (printed as `listening on ADDR`).
        #[arg(long, default_value = "127.0.0.1:1080")]
        bind: SocketAddr,
        /// Where uploads live (created if missing). Nothing outside it is touched.
        #[arg(long)]
        dir: PathBuf,
        /// The largest upload, e.g. `10GiB` (announced as Tus-Max-Size; larger is 413).
        #[arg(long, default_value_t = server::DEFAULT_MAX_SIZE, value_parser = plumbing::parse::size)]
        max_size: u64,
        /// How long an unfinished upload lives after its last activity (`0s`: for ever).
        #[arg(
            long,
            default_value = plumbing::parse::duration_text(server::DEFAULT_EXPIRE),
            value_parser = plumbing::parse::duration
        )]
        expire: Duration,
        /// The most connections at once; one more is answered 503.
        #[arg(long, default_value_t = server::DEFAULT_MAX_CONNECTIONS)]
        max_connections: usize,
        /// The most uploads at once; one more POST is answered 503.
        #[arg(long, default_value_t = server::DEFAULT_MAX_UPLOADS)]
        max_uploads: usize,
        /// The most bytes of headers in one request (more is 431).
        #[arg(
            long,
            default_value_t = server::DEFAULT_MAX_HEADER_BYTES,
            value_parser = plumbing::parse::positive_size
        )]
        max_header_bytes: usize,
        /// The longest a client may stay silent within a request.
        #[arg(
            long,
            default_value = plumbing::parse::duration_text(server::DEFAULT_IDLE_TIMEOUT),
            value_parser = plumbing::parse::positive_duration
        )]
        idle_timeout: Duration,
        /// How long a PATCH waits for another PATCH of the same upload before 423 Locked.
        #[arg(
            long,
            default_value = plumbing::parse::duration_text(server::DEFAULT_LOCK_WAIT),
            value_parser = plumbing::parse::duration
        )]
        lock_wait: Duration,
    },
    /// Upload a file to a tus server, resuming an earlier interrupted upload of it.
    Upload {
        /// The server's creation URL, e.g. `http://127.0.0.1:1080/files/`.
        #[arg(long)]
        to: String,
        /// How many parts to send at once (2 or more: tus concatenation).
        #[arg(long, default_value_t = client::DEFAULT_PARALLEL)]
        parallel: usize,
        /// The bytes of one PATCH, e.g. `4MiB`.
        #[arg(
            long,
            default_value_t = client::DEFAULT_CHUNK_SIZE,
            value_parser = plumbing::parse::size
        )]
        chunk_size: u64,
        /// The resume state file (default: FILE.tus).
        #[arg(long)]
        state: Option<PathBuf>,
        /// How many failures in a row one part survives.
        #[arg(long, default_value_t = client::DEFAULT_RETRIES)]
        retries: u32,
        /// The `Upload-Checksum` of every PATCH: `sha256`, `sha1` or `none`.
        #[arg(long, default_value_t = client::DEFAULT_CHECKSUM)]
        checksum: client::ChunkChecksum,
        /// The file to upload.
        file: PathBuf,
    },
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
            dir,
            max_size,
            expire,
            max_connections,
            max_uploads,
            max_header_bytes,
            idle_timeout,
            lock_wait,
        } => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let listener = TcpListener::bind(bind)
                .await
                .with_context(|| format!("cannot bind {bind}"))?;
            println!("listening on {}", listener.local_addr()?);
            let config = ServerConfig {
                dir,
                max_size,
                expire,
                max_connections,
                max_uploads,
                max_header_bytes,
                idle_timeout,
                lock_wait,
            };
            server::run(listener, config, plumbing::shutdown_on_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Upload {
            to,
            parallel,
            chunk_size,
            state,
            retries,
            checksum,
            file,
        } => {
            if chunk_size == 0 || parallel == 0 {
                anyhow::bail!("--chunk-size and --parallel must be more than zero");
            }
            let config = ClientConfig {
                to,
                parallel,
                chunk_size,
                state,
                retries,
                checksum,
            };
            let bar = if std::io::stderr().is_terminal() {
                indicatif::ProgressBar::new(0)
            } else {
                indicatif::ProgressBar::hidden()
            };
            let started = std::time::Instant::now();
            let done = client::upload(&file, &config, bar).await?;
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            println!(
                "{}",
                serde_json::json!({
                    "event": "uploaded",
                    "url": done.url,
                    "length": done.length,
                    "resumed": done.resumed,
                    "mib_per_s": done.length as f64 / secs / f64::from(1 << 20),
                })
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
