//! The `kv-store` command line: clap and the shared plumbing, given in full in the exercise.
//! The work is in the library.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use plumbing::{resolve, shutdown_on_signal};

use kv_store::{client, server};

/// An in-memory key-value store that speaks the Redis protocol.
///
/// Start a server, then talk to it with `kv-store client`, `redis-cli -p PORT`, or `nc`.
#[derive(Debug, Parser)]
#[command(name = "kv-store", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the store over TCP.
    Server {
        /// Address to listen on; port 0 picks a free port (printed as `listening on ADDR`).
        #[arg(long, default_value = "127.0.0.1:6380")]
        bind: SocketAddr,
        /// Actors sharing the key space, each owning the keys that hash to it.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
        shards: u16,
        /// The most clients connected at once.
        #[arg(long, default_value_t = 1024)]
        max_connections: usize,
        /// Who owns the keys: actors (one per shard), or one store behind a mutex (to compare).
        #[arg(long, value_enum, default_value_t = BackendArg::Actors)]
        backend: BackendArg,
        /// Worker threads. One thread avoids every hand-off between threads (as Redis does);
        /// more let shards work in parallel on a machine with cores to spare.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
        threads: u16,
        /// Close a connection that completes no request, or reads none of its replies, for this
        /// long (`0s`: never).
        #[arg(
            long,
            default_value = plumbing::parse::duration_text(server::DEFAULT_IDLE_TIMEOUT),
            value_parser = plumbing::parse::duration
        )]
        idle_timeout: Duration,
        /// Bytes all connections together may hold of unfinished requests and unwritten
        /// replies; a read past it gets `-ERR max buffered bytes reached` and is disconnected.
        #[arg(long, default_value_t = server::DEFAULT_MAX_BUFFERED, value_parser = plumbing::parse::positive_size)]
        max_buffered: usize,
    },
    /// Send one command and print the reply, e.g. `kv-store client SET greeting hello`.
    Client {
        /// The server (HOST:PORT).
        #[arg(long, default_value = "127.0.0.1:6380")]
        server: String,
        /// The command and its arguments.
        #[arg(required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum BackendArg {
    Actors,
    Mutex,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    plumbing::init_tracing();
    let threads = match &cli.command {
        Command::Server { threads, .. } => usize::from(*threads),
        Command::Client { .. } => 1,
    };
    plumbing::run_main(threads, dispatch(cli.command))
}

async fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Server {
            bind,
            shards,
            max_connections,
            backend,
            threads: _,
            idle_timeout,
            max_buffered,
        } => {
            let listener = plumbing::listen(bind).await?;
            let config = server::ServerConfig {
                backend: match backend {
                    BackendArg::Actors => server::Backend::Actors,
                    BackendArg::Mutex => server::Backend::Mutex,
                },
                shards: usize::from(shards),
                max_connections,
                idle_timeout,
                max_buffered,
            };
            server::run(listener, config, shutdown_on_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Client { server, args } => {
            let addr = resolve(&server).await?;
            let reply = client::call(addr, &args)
                .await
                .with_context(|| format!("talking to {addr}"))?;
            println!("{}", client::render(&reply));
            // Like redis-cli, an error reply is printed, not a failure of the client itself.
            Ok(ExitCode::SUCCESS)
        }
    }
}
