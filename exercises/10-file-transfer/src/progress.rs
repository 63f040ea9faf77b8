//! What the sender shows while it works: a progress bar on a terminal, plain lines otherwise
//! (a log or a pipe gets one line per tenth of the file, not a stream of redraws).

use std::time::Duration;

use bytesize::ByteSize;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::protocol::{self, Hash};

/// How a file was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReport {
    /// The name it was sent under.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// How many chunks it has.
    pub chunks: u32,
    /// How many the receiver already held (a resume).
    pub held: u32,
    /// How many chunks were sent, re-sends included.
    pub sent: u32,
    /// How many of those were re-sends the receiver asked for.
    pub resent: u32,
    /// The plain SHA-256 of the file, when asked for (`send --sha256`).
    pub sha256: Option<Hash>,
    /// From opening the file to the receiver's COMPLETE.
    pub elapsed: Duration,
}

/// Progress of the file being sent.
#[derive(Debug)]
pub struct Progress {
    terminal: bool,
    bar: Option<ProgressBar>,
    name: String,
    total: u64,
    done: u64,
    /// The next tenth (1 to 10) a plain line is printed for.
    next_tenth: u64,
}

/// `1.5 MiB`.
pub fn human(bytes: u64) -> String {
    ByteSize::b(bytes).display().iec().to_string()
}

impl Progress {
    /// Progress shown as a bar on stderr when `terminal`, as plain lines on stdout otherwise.
    pub fn new(terminal: bool) -> Progress {
        Progress {
            terminal,
            bar: None,
            name: String::new(),
            total: 0,
            done: 0,
            next_tenth: 1,
        }
    }

    /// The file `name` of `size` bytes, in chunks of `chunk_size`, is being hashed.
    pub fn hashing(&mut self, name: &str, size: u64, chunk_size: u32) {
        self.name = name.to_owned();
        let line = format!(
            "{name}: hashing {} in {} chunks of {}",
            human(size),
            protocol::chunk_count(size, chunk_size),
            human(chunk_size.into())
        );
        if self.terminal {
            let spinner = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            spinner.set_message(line);
            spinner.enable_steady_tick(Duration::from_millis(100));
            self.bar = Some(spinner);
        } else {
            println!("{line}");
        }
    }

    /// Sending starts: `to_send` bytes, the receiver already holding `held`.
    pub fn sending(&mut self, to_send: u64, held: u64) {
        self.total = to_send;
        self.done = 0;
        self.next_tenth = 1;
        let name = &self.name;
        if let Some(spinner) = self.bar.take() {
            spinner.finish_and_clear();
            let bar = ProgressBar::with_draw_target(Some(to_send), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_message(name.clone());
            self.bar = Some(bar);
        } else if held > 0 {
            println!(
                "{name}: sending {} ({} already received)",
                human(to_send),
                human(held)
            );
        } else {
            println!("{name}: sending {}", human(to_send));
        }
    }

    /// `bytes` more have been sent.
    pub fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
            return;
        }
        // The last whole tenth reached; the final line reports 100%.
        let tenth = (self.done * 10).checked_div(self.total).unwrap_or(10);
        if tenth >= self.next_tenth && tenth < 10 {
            println!(
                "{}: {}% ({} of {})",
                self.name,
                tenth * 10,
                human(self.done),
                human(self.total)
            );
        }
        self.next_tenth = self.next_tenth.max(tenth + 1);
    }

    /// The file is complete at the receiver: the final line, with the rate.
    pub fn finished(&mut self, report: &SendReport) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if let Some(hash) = &report.sha256 {
            // `sha256sum`'s format, so that `sha256sum -c` can check the received copy.
            println!("{}  {}", crate::hasher::hex(hash), report.name);
        }
        let secs = report.elapsed.as_secs_f64().max(1e-9);
        println!(
            "{}: sent {} in {:.2}s, {}/s ({} of {} chunks sent, {} already received, {} re-sent)",
            report.name,
            human(report.size),
            secs,
            human((report.size as f64 / secs) as u64),
            report.sent,
            report.chunks,
            report.held,
            report.resent
        );
    }

    /// The transfer failed: clear the bar (the error is reported by the caller).
    pub fn failed(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }
}
