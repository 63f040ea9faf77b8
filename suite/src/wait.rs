//! Deadlines. Every wait in the suite is a poll with a deadline, and every test has a bound.

use std::time::{Duration, Instant};

/// Calls `probe` every `every` until it returns `Some`, or `timeout` has passed (`None`).
pub fn poll_until<T>(
    timeout: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every.min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// Runs `test` with an overall time limit: it panics with its own message if `test` panics,
/// and with "exceeded" if it takes longer than `limit`, after killing the programs it started
/// (the abandoned thread will never drop them).
pub fn bounded<F>(limit: Duration, test: F)
where
    F: FnOnce() + Send + 'static,
{
    let (done, finished) = std::sync::mpsc::channel();
    // Named after the test (libtest names its threads so), so that a panic message says which.
    let name = std::thread::current().name().unwrap_or("test").to_owned();
    let runner_name = name.clone();
    let runner = std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            test();
            let _ = done.send(());
        })
        .expect("spawn the test's thread");
    match finished.recv_timeout(limit) {
        Ok(()) => {
            let _ = runner.join();
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            // The test panicked: re-raise its panic so libtest reports its message.
            if let Err(panic) = runner.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            crate::program::kill_started_by(&runner_name);
            panic!("the test exceeded its time limit of {limit:?}: something waited forever")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use super::bounded;
    use crate::Program;

    #[test]
    fn an_overrun_kills_what_the_test_started() {
        let (tx, rx) = std::sync::mpsc::channel();
        let overran = std::panic::catch_unwind(|| {
            bounded(Duration::from_millis(300), move || {
                let program = Program::start(Path::new("sleep"), &["30"]);
                let _ = tx.send(program.id());
                // A test that hangs: the helper under test must give up on it.
                std::thread::sleep(Duration::from_secs(30));
                drop(program);
            });
        });
        assert!(overran.is_err(), "bounded should panic on an overrun");
        let pid = rx.recv().expect("the program started");
        // Killed but never reaped (its handle is on the abandoned thread): gone or a zombie.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.contains(") Z ") {
                break;
            }
            assert!(Instant::now() < deadline, "sleep {pid} still runs: {stat}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
