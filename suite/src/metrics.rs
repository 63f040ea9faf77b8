//! For the metrics collector's tests: its output file read as batches, a minimal HTTP GET, and a
//! client of the agent protocol, all written from the contract, independent of the code under
//! test.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// One stat line of the output file.
#[derive(Debug, Clone)]
pub struct Stat {
    /// The batch it belongs to.
    pub batch: u64,
    /// Its output name, e.g. `stats_counts.hits`.
    pub name: String,
    /// Its value (`None` for `null`).
    pub value: Option<f64>,
    /// Its tags.
    pub tags: Vec<String>,
    /// The whole line.
    pub line: Value,
}

/// The output file as read so far: stat lines of closed batches, and the closing lines.
#[derive(Debug, Default, Clone)]
pub struct Output {
    /// Every stat line whose batch is closed.
    pub stats: Vec<Stat>,
    /// Every batch's closing line, in file order.
    pub batches: Vec<Value>,
    /// Lines that are not JSON objects (should be none).
    pub garbage: Vec<String>,
}

impl Output {
    /// Reads `path` (missing means empty). Stat lines of a batch not yet closed are left out.
    pub fn read(path: &Path) -> Output {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut out = Output::default();
        let mut open: Vec<Stat> = Vec::new();
        // A batch being appended may end mid-line: only whole lines count.
        let whole = text.rfind('\n').map_or("", |i| &text[..=i]);
        for line in whole.lines() {
            let Ok(value) = serde_json::from_str::<Value>(line) else {
                out.garbage.push(line.to_owned());
                continue;
            };
            match value["kind"].as_str() {
                Some("stat") => open.push(Stat {
                    batch: value["batch"].as_u64().unwrap_or(0),
                    name: value["name"].as_str().unwrap_or_default().to_owned(),
                    value: value["value"].as_f64(),
                    tags: value["tags"]
                        .as_array()
                        .map(|t| {
                            t.iter()
                                .filter_map(|s| s.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                    line: value,
                }),
                Some("batch") => {
                    out.stats.append(&mut open);
                    out.batches.push(value);
                }
                _ => out.garbage.push(line.to_owned()),
            }
        }
        out
    }

    /// The sum of `name` (untagged) over every closed batch.
    pub fn sum(&self, name: &str) -> f64 {
        self.named(name, &[]).filter_map(|s| s.value).sum()
    }

    /// The stats called `name` with exactly `tags`, in file order.
    pub fn named<'a>(&'a self, name: &'a str, tags: &'a [&str]) -> impl Iterator<Item = &'a Stat> {
        self.stats.iter().filter(move |s| {
            s.name == name && s.tags.iter().map(String::as_str).eq(tags.iter().copied())
        })
    }

    /// The last value of `name` (untagged).
    pub fn last<'a>(&'a self, name: &'a str) -> Option<&'a Stat> {
        self.named(name, &[]).last()
    }

    /// The sum of a numeric field of the closing lines (`samples`, `overflow`, ...).
    pub fn batch_total(&self, field: &str) -> u64 {
        self.batches.iter().filter_map(|b| b[field].as_u64()).sum()
    }

    /// The sum of `malformed.REASON` over the closing lines.
    pub fn malformed(&self, reason: &str) -> u64 {
        self.batches
            .iter()
            .filter_map(|b| b["malformed"][reason].as_u64())
            .sum()
    }

    /// A short account for failure messages: the last few lines of each kind.
    pub fn describe(&self) -> String {
        if self.stats.is_empty() && self.batches.is_empty() {
            return "no closed batch at all".to_owned();
        }
        let stats: Vec<String> = self
            .stats
            .iter()
            .rev()
            .take(12)
            .map(|s| s.line.to_string())
            .collect();
        let batches: Vec<String> = self
            .batches
            .iter()
            .rev()
            .take(3)
            .map(Value::to_string)
            .collect();
        format!(
            "{} stat lines in {} closed batches; last stats:\n    {}\n  last batch lines:\n    {}{}",
            self.stats.len(),
            self.batches.len(),
            stats.join("\n    "),
            batches.join("\n    "),
            if self.garbage.is_empty() {
                String::new()
            } else {
                format!(
                    "\n  lines that are not stat or batch lines: {:?}",
                    self.garbage
                )
            }
        )
    }
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    /// The body.
    pub body: String,
}

/// A response as a failure message shows it: its status, and its body quoted (the first 200
/// bytes), e.g. `404 "not found"`.
impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut end = self.body.len().min(200);
        while !self.body.is_char_boundary(end) {
            end -= 1;
        }
        write!(f, "{} {:?}", self.status, &self.body[..end])?;
        if end < self.body.len() {
            write!(f, " ({} bytes in all)", self.body.len())?;
        }
        Ok(())
    }
}

/// `GET path` over HTTP/1.1 with `Connection: close`, bounded by `timeout`.
///
/// # Errors
/// When the connection fails or the response is not HTTP.
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let bad = || std::io::Error::other(format!("not an HTTP response: {text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect::<BTreeMap<_, _>>();
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A raw client of the agent protocol, for tests that play a (possibly hostile) agent.
pub struct AgentConn {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl AgentConn {
    /// Connects to a collector's agent listener.
    ///
    /// # Errors
    /// When the connection fails.
    pub fn connect(addr: SocketAddr) -> std::io::Result<AgentConn> {
        let stream = TcpStream::connect(addr)?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(AgentConn { stream, reader })
    }

    /// Sends raw bytes.
    ///
    /// # Errors
    /// When the write fails.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends `BATCH seq received_ms len` and the payload.
    ///
    /// # Errors
    /// When the write fails.
    pub fn batch(&mut self, seq: u64, received_ms: u64, payload: &str) -> std::io::Result<()> {
        let frame = format!("BATCH {seq} {received_ms} {}\n{payload}", payload.len());
        self.send(frame.as_bytes())
    }

    /// What a failure message says of a [`reply`](Self::reply): the line quoted, or that none
    /// came within `waited` (or before the collector closed the connection).
    pub fn shown(reply: &Option<String>, waited: Duration) -> String {
        match reply {
            Some(line) => format!("{line:?}"),
            None => format!("no reply line within {waited:?} (or the connection closed)"),
        }
    }

    /// The next reply line, without its newline; `None` on close or after `timeout`.
    pub fn reply(&mut self, timeout: Duration) -> Option<String> {
        self.stream.set_read_timeout(Some(timeout)).ok()?;
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end_matches('\n').to_owned()),
        }
    }
}
