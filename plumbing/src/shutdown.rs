//! Signals: Ctrl-C and SIGTERM end a program gracefully; SIGHUP asks it to reopen its files.

use tokio_util::sync::CancellationToken;

/// A token cancelled on the first Ctrl-C or SIGTERM. Call it from inside the runtime.
///
/// Servers pass it to their `run(listener, ..., shutdown)`, which stops accepting, finishes or
/// flushes what it owes, and returns.
pub fn shutdown_on_signal() -> CancellationToken {
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

/// SIGHUP, as a stream of wake-ups: `while hangups.recv().await.is_some() { reopen }`. Servers
/// that write a file reopen it on SIGHUP, as `logrotate` expects.
///
/// # Errors
/// When the signal handler cannot be installed.
#[cfg(unix)]
pub fn hangups() -> std::io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
}
