//! Signals: Ctrl-C and SIGTERM end a program gracefully; SIGHUP asks it to reopen its files.

use tokio_util::sync::CancellationToken;

/// A token cancelled on the first Ctrl-C or SIGTERM. Call it from inside the runtime.
///
/// Servers pass it to their `run(listener, ..., shutdown)`, which stops accepting, finishes or
/// flushes what it owes, and returns. The handlers are installed before this returns, so a
/// signal that comes right after (a test that stops a server as soon as it listens) is caught
/// rather than killing the process.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    let signals = Signals::install();
    tokio::spawn(async move {
        signals.wait().await;
        cancel.cancel();
    });
    token
}

/// SIGINT and SIGTERM, registered.
#[cfg(unix)]
struct Signals {
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
}

#[cfg(unix)]
impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        Signals {
            interrupt: signal(SignalKind::interrupt()).ok(),
            terminate: signal(SignalKind::terminate()).ok(),
        }
    }

    async fn wait(mut self) {
        let interrupt = async {
            match &mut self.interrupt {
                Some(s) => {
                    s.recv().await;
                }
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        let terminate = async {
            match &mut self.terminate {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = interrupt => {}
            () = terminate => {}
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> Signals {
        Signals
    }

    async fn wait(self) {
        let _ = tokio::signal::ctrl_c().await;
    }
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
