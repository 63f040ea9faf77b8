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
/// and with "exceeded" if it takes longer than `limit`. Programs the test started are killed
/// when their handles drop (on the abandoned thread, at the latest when the process ends).
pub fn bounded<F>(limit: Duration, test: F)
where
    F: FnOnce() + Send + 'static,
{
    let (done, finished) = std::sync::mpsc::channel();
    // Named after the test (libtest names its threads so), so that a panic message says which.
    let name = std::thread::current().name().unwrap_or("test").to_owned();
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
            panic!("the test exceeded its time limit of {limit:?}: something waited forever")
        }
    }
}
