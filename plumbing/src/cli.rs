//! A binary's `main`: logging, the runtime, and errors printed with their causes.

use std::future::Future;
use std::io::IsTerminal;
use std::process::ExitCode;

/// Sends `tracing` logs to stderr, at `info` unless `RUST_LOG` says otherwise, in colour only on
/// a terminal. Stdout stays free for what a program prints for people and tests (`listening on
/// ADDR`, JSON events).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second call (a test that runs two mains in one process) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Runs `body` on a tokio runtime with `threads` worker threads and turns its outcome into the
/// process's exit code: an error is printed as `error: ...` with every cause (`{:#}`).
///
/// One thread gives a current-thread runtime, with no hand-off between threads; `0` gives one
/// worker per core.
pub fn run_main<F>(threads: usize, body: F) -> ExitCode
where
    F: Future<Output = anyhow::Result<ExitCode>>,
{
    let runtime = match threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        0 => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(body) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
