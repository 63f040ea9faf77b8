//! A running program under test.
//!
//! Its stdout is read line by line on a thread of its own, its stderr is kept whole, and it is
//! killed when the test lets go of it, whether the test passed or panicked.

use std::fmt::Display;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a program may take to print its `listening on ADDR` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The most stderr a diagnosis quotes, in lines.
const STDERR_TAIL: usize = 25;

/// Every program still running, with the name of the thread (the test) that started it: a test
/// that overruns its time limit is abandoned, never dropped, so its programs are killed from here.
static LIVE: Mutex<Vec<(String, u32)>> = Mutex::new(Vec::new());

/// Kills every program started by the thread named `test` that is still running.
pub fn kill_started_by(test: &str) {
    let live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
    for (_, pid) in live.iter().filter(|(owner, _)| owner == test) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

/// A child process with its output captured.
pub struct Program {
    label: String,
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<JoinHandle<()>>,
    /// Every stdout line taken so far, for failure messages.
    seen: Vec<String>,
    /// Closed while the test plays a reader of stdout that has stalled.
    stdout_gate: Arc<Gate>,
}

/// Whether the thread reading a program's stdout may read: `true` unless paused.
#[derive(Default)]
struct Gate {
    paused: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    fn set(&self, paused: bool) {
        *self.paused.lock().unwrap_or_else(|p| p.into_inner()) = paused;
        self.changed.notify_all();
    }

    fn wait_open(&self) {
        let mut paused = self.paused.lock().unwrap_or_else(|p| p.into_inner());
        while *paused {
            paused = self.changed.wait(paused).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Program {
    /// Starts `binary` with `args`, stdin closed, stdout and stderr captured.
    ///
    /// # Panics
    /// When the binary cannot be started at all.
    pub fn start(binary: &Path, args: &[&str]) -> Program {
        Program::spawn(binary, args, Stdio::null()).0
    }

    /// Starts `binary` with `args` like [`start`](Self::start), but with its stdin piped: the
    /// test writes to the returned handle (closing it is the program's end of input).
    ///
    /// # Panics
    /// When the binary cannot be started at all.
    pub fn start_with_stdin(binary: &Path, args: &[&str]) -> (Program, ChildStdin) {
        let (program, stdin) = Program::spawn(binary, args, Stdio::piped());
        (program, stdin.expect("stdin is piped"))
    }

    fn spawn(binary: &Path, args: &[&str], stdin: Stdio) -> (Program, Option<ChildStdin>) {
        let label = format!(
            "`{} {}`",
            binary.file_name().map_or_else(
                || binary.display().to_string(),
                |n| n.to_string_lossy().into_owned()
            ),
            args.join(" ")
        );
        let mut child = Command::new(binary)
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A panic in the program under test should read as one line, not a backtrace.
            .env("RUST_BACKTRACE", "0")
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let owner = std::thread::current().name().unwrap_or("").to_owned();
        LIVE.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((owner, child.id()));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut err_pipe = child.stderr.take().expect("stderr is piped");
        // Bounded: a program cannot print faster than the test reads for long, and tests read
        // every line they wait for.
        let (tx, lines) = mpsc::sync_channel(100_000);
        let stdout_gate = Arc::new(Gate::default());
        let gate = Arc::clone(&stdout_gate);
        std::thread::spawn(move || {
            let mut from_stdout = BufReader::new(stdout).lines();
            loop {
                gate.wait_open();
                let Some(Ok(line)) = from_stdout.next() else {
                    break;
                };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        let stderr_reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let mut buf = sink.lock().unwrap_or_else(|p| p.into_inner());
                buf.extend_from_slice(&chunk[..n]);
                // Keep the last half megabyte or so: a program logging in a loop must not eat
                // the test's memory, and the end (where a panic is) matters most.
                if buf.len() > 1 << 20 {
                    let cut = buf.len() - (1 << 19);
                    buf.drain(..cut);
                }
            }
        });
        let program = Program {
            label,
            child,
            lines,
            stderr,
            stderr_reader: Some(stderr_reader),
            seen: Vec::new(),
            stdout_gate,
        };
        (program, stdin)
    }

    /// Starts `binary server --bind 127.0.0.1:0 ARGS...`, the convention every project's server
    /// follows, and waits for its `listening on ADDR` line.
    pub fn start_server(binary: &Path, args: &[&str]) -> (Program, SocketAddr) {
        Program::start_role(binary, "server", args)
    }

    /// Like [`start_server`](Self::start_server) for a server subcommand named for its role
    /// (`broker`, `recv`): `binary ROLE --bind 127.0.0.1:0 ARGS...`.
    pub fn start_role(binary: &Path, role: &str, args: &[&str]) -> (Program, SocketAddr) {
        let mut all = vec![role, "--bind", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut program = Program::start(binary, &all);
        let addr = program.listening();
        (program, addr)
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the first stdout line, which must be exactly `listening on ADDR`, and returns
    /// ADDR.
    #[track_caller]
    pub fn listening(&mut self) -> SocketAddr {
        let Some(line) = self.next_line(START_TIMEOUT) else {
            self.fail(format_args!(
                "expected the first stdout line `listening on ADDR` within {START_TIMEOUT:?}, \
                 but none came"
            ))
        };
        match line.strip_prefix("listening on ").map(str::parse) {
            Some(Ok(addr)) => addr,
            _ => self.fail(format_args!(
                "expected the first stdout line to be `listening on ADDR` (e.g. `listening on \
                 127.0.0.1:40123`), got {line:?}"
            )),
        }
    }

    /// The next stdout line, or `None` if none comes within `timeout` or stdout closed.
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Reads stdout lines until one is a JSON object for which `wanted` holds, and returns it.
    /// Lines that are not JSON, or do not match, are skipped (and quoted if nothing matches).
    ///
    /// # Panics
    /// With a full diagnosis when no such line comes within `timeout`.
    #[track_caller]
    pub fn expect_json(
        &mut self,
        what: impl Display,
        timeout: Duration,
        wanted: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        let first = self.seen.len();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(line) = self.next_line(left) else {
                let skipped = &self.seen[first..];
                let came = if skipped.is_empty() {
                    "nothing came".to_owned()
                } else {
                    format!("these lines came instead:\n    {}", skipped.join("\n    "))
                };
                self.fail(format_args!(
                    "expected on stdout, within {timeout:?}: {what}\n  {came}"
                ));
            };
            if let Ok(value) = serde_json::from_str::<Value>(&line)
                && wanted(&value)
            {
                return value;
            }
        }
    }

    /// Stops reading the program's stdout, as a reader that has stalled would: once the pipe
    /// is full (64 KiB on Linux, after the line being read), the program's writes to stdout
    /// block. [`resume_stdout`](Self::resume_stdout) reads on.
    pub fn pause_stdout(&mut self) {
        self.stdout_gate.set(true);
    }

    /// Reads the program's stdout again after [`pause_stdout`](Self::pause_stdout).
    pub fn resume_stdout(&mut self) {
        self.stdout_gate.set(false);
    }

    /// The stdout lines taken so far.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// The exit status, if the program has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Panics with a diagnosis if the program has ended.
    #[track_caller]
    pub fn assert_running(&mut self, doing: impl Display) {
        if self.exited().is_some() {
            self.fail(format_args!("the program ended while {doing}"));
        }
    }

    /// Waits up to `timeout` for the program to end.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Polls `probe` every `every` until it gives a value or `timeout` has passed, and gives up
    /// early once the program has exited: nothing more will come from it. The probe runs once
    /// more after the exit is seen, since the program may have done its part just before.
    pub fn poll_while_running<T>(
        &mut self,
        timeout: Duration,
        every: Duration,
        probe: impl FnMut(&Program) -> Option<T>,
    ) -> Option<T> {
        self.poll_while(timeout, every, false, probe)
    }

    /// Like [`poll_while_running`](Self::poll_while_running), and gives up as soon as the
    /// program's stderr shows a panic too: for a server, whose panicking task leaves the process
    /// up but will never answer. Use it only where no panic can be harmless to what is awaited.
    pub fn poll_while_healthy<T>(
        &mut self,
        timeout: Duration,
        every: Duration,
        probe: impl FnMut(&Program) -> Option<T>,
    ) -> Option<T> {
        self.poll_while(timeout, every, true, probe)
    }

    /// Waits up to `timeout` for a connection on `listener`, which the program is to make; gives
    /// up early once the program has exited without making it. The stream returned blocks, as
    /// the listener's own streams do.
    pub fn accept_while_running(
        &mut self,
        listener: &TcpListener,
        timeout: Duration,
    ) -> Option<TcpStream> {
        listener.set_nonblocking(true).ok()?;
        let stream = self.poll_while_running(timeout, Duration::from_millis(10), |_| {
            listener.accept().ok().map(|(stream, _)| stream)
        })?;
        stream.set_nonblocking(false).ok()?;
        Some(stream)
    }

    fn poll_while<T>(
        &mut self,
        timeout: Duration,
        every: Duration,
        or_panic: bool,
        mut probe: impl FnMut(&Program) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut last_look = false;
        loop {
            if let Some(value) = probe(self) {
                return Some(value);
            }
            if last_look || Instant::now() >= deadline {
                return None;
            }
            last_look =
                self.exited().is_some() || (or_panic && self.stderr().contains(" panicked at "));
            if !last_look {
                std::thread::sleep(every.min(deadline.saturating_duration_since(Instant::now())));
            }
        }
    }

    /// Sends SIGTERM, as a service manager would.
    pub fn terminate(&mut self) {
        // The `kill` command keeps the suite free of unsafe code and of a libc binding.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Sends a signal by name (`STOP`, `CONT`, `KILL`...), as `kill -NAME PID` would.
    pub fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status();
    }

    /// Everything the program wrote to stderr so far.
    pub fn stderr(&self) -> String {
        let buf = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Everything the program wrote to stderr, waiting (briefly, bounded) for the last bytes if
    /// it has ended: a program that just exited may still have stderr in the pipe.
    pub fn final_stderr(&mut self) -> String {
        // A panic in a task is the story: a server whose task panicked stays up, and waiting the
        // full while for an exit that will not come would cost every failing test 300 ms. A
        // panic on the main thread ends the program, so its exit is still worth the wait.
        let stderr = self.stderr();
        let grace = if stderr.contains(" panicked at ") && !stderr.contains("thread 'main'") {
            Duration::from_millis(50)
        } else {
            Duration::from_millis(300)
        };
        if self.wait_exit(grace).is_some()
            && let Some(reader) = self.stderr_reader.take()
        {
            let deadline = Instant::now() + Duration::from_secs(1);
            while !reader.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        self.stderr()
    }

    /// What a learner needs to know about the program's state: whether it ended and how, the
    /// panic that ended it, and the tail of its stderr.
    pub fn diagnosis(&mut self) -> String {
        let stderr = self.final_stderr();
        let mut out = String::new();
        if let Some(panic) = panic_summary(&stderr) {
            out.push_str(&format!("your program panicked: {panic}\n"));
        }
        match self.exited() {
            Some(status) => out.push_str(&format!("{} exited ({status})\n", self.label)),
            None => out.push_str(&format!("{} is still running\n", self.label)),
        }
        let lines: Vec<&str> = stderr.lines().collect();
        if lines.is_empty() {
            out.push_str("its stderr is empty\n");
        } else {
            let tail = &lines[lines.len().saturating_sub(STDERR_TAIL)..];
            out.push_str(&format!(
                "its stderr (last {} lines):\n    {}\n",
                tail.len(),
                tail.join("\n    ")
            ));
        }
        out
    }

    /// Panics with `message` followed by the [`diagnosis`](Self::diagnosis).
    #[track_caller]
    pub fn fail(&mut self, message: impl Display) -> ! {
        let diagnosis = self.diagnosis();
        panic!("{message}\n{diagnosis}");
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A paused reader must see the end of stdout, or its thread would wait forever.
        self.stdout_gate.set(false);
        let pid = self.child.id();
        LIVE.lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(_, live)| *live != pid);
    }
}

/// `MESSAGE at FILE:LINE:COL` from Rust's panic report (`thread 'main' panicked at
/// FILE:LINE:COL:` then MESSAGE on the next line), if stderr holds one.
pub fn panic_summary(stderr: &str) -> Option<String> {
    // Every distinct place, in order: the first panic is not always the one that broke the test
    // (a harmless background task may panic first), so the learner sees them all.
    let mut panics: Vec<String> = Vec::new();
    let mut lines = stderr.lines();
    while let Some(line) = lines.next() {
        if let Some(at) = line.split(" panicked at ").nth(1) {
            let place = at.trim_end_matches(':');
            let message = lines.next().unwrap_or("").trim();
            let panic = format!("{message} at {place}");
            if !panics.contains(&panic) {
                panics.push(panic);
            }
        }
    }
    const SHOWN: usize = 4;
    match panics.len() {
        0 => None,
        1 => panics.pop(),
        n => {
            let mut out = panics[..n.min(SHOWN)].join("; and ");
            if n > SHOWN {
                out.push_str(&format!("; and {} more", n - SHOWN));
            }
            Some(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::panic_summary;

    #[test]
    fn finds_the_panic() {
        let stderr = "listening\nthread 'main' (42) panicked at exercises/01-heartbeat/src/server.rs:80:5:\nnot yet implemented\nnote: run with\n";
        assert_eq!(
            panic_summary(stderr).unwrap(),
            "not yet implemented at exercises/01-heartbeat/src/server.rs:80:5"
        );
        assert_eq!(panic_summary("all fine\n"), None);
        let two = "thread 'a' panicked at src/tus.rs:1:1:\nnot yet implemented\n\
                   thread 'b' panicked at src/patch.rs:2:2:\nnot yet implemented\n\
                   thread 'c' panicked at src/patch.rs:2:2:\nnot yet implemented\n";
        assert_eq!(
            panic_summary(two).unwrap(),
            "not yet implemented at src/tus.rs:1:1; and not yet implemented at src/patch.rs:2:2"
        );
    }
}
