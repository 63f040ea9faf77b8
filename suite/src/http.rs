//! A minimal HTTP/1.1 client for tests, written independently of the code under test: it sends
//! exactly the bytes a test asks for (so a test can lie, cut a body short or go silent) and
//! reads one answer before a deadline.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The headers, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body (empty for HEAD).
    pub body: Vec<u8>,
}

impl Reply {
    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A header parsed as a number.
    pub fn number(&self, name: &str) -> Option<u64> {
        self.header(name)?.trim().parse().ok()
    }

    /// The status line and headers, for failure messages.
    pub fn summary(&self) -> String {
        let mut out = format!("{}", self.status);
        for (name, value) in &self.headers {
            out.push_str(&format!("\n      {name}: {value}"));
        }
        if !self.body.is_empty() {
            let text = String::from_utf8_lossy(&self.body[..self.body.len().min(300)]);
            out.push_str(&format!("\n      body: {:?}", text.trim()));
        }
        out
    }
}

/// Request headers as a failure message shows them, the way they go on the wire:
/// `Tus-Resumable: 1.0.0, Upload-Length: 5`, or `no headers`.
pub fn shown_headers(headers: &[(&str, &str)]) -> String {
    let lines = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}"));
    crate::shown::listed(lines, "no headers")
}

/// The bytes of a request: `METHOD PATH HTTP/1.1`, `Host`, the headers given, a
/// `Content-Length` for `body` unless the headers name one, and `Connection: close`.
pub fn request_bytes(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    let has_length = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
    if !has_length && (!body.is_empty() || matches!(method, "POST" | "PATCH")) {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Sends one request on a new connection and reads its answer within `timeout`.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<Reply> {
    let mut stream = TcpStream::connect(addr)?;
    stream.write_all(&request_bytes(addr, method, path, headers, body))?;
    read_reply(&mut stream, method == "HEAD", timeout)
}

/// Reads one answer from `stream` before `timeout` has passed: the head, then a body of
/// `Content-Length` bytes (none for HEAD or a 204), or up to the close of the connection.
pub fn read_reply(stream: &mut TcpStream, head_only: bool, timeout: Duration) -> io::Result<Reply> {
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            break end;
        }
        if buf.len() > 1 << 20 {
            return Err(io::Error::other("an answer head of more than 1 MiB"));
        }
        let n = read_before(stream, &mut chunk, deadline)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the connection closed before a whole answer came (got {:?})",
                    String::from_utf8_lossy(&buf)
                ),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("not an HTTP status line: {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = buf[header_end + 4..].to_vec();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    if !head_only && status != 204 && status != 304 {
        loop {
            if length.is_some_and(|l| body.len() >= l) {
                break;
            }
            let n = match read_before(stream, &mut chunk, deadline) {
                Ok(n) => n,
                // A server may reset a connection whose request body it did not read.
                Err(e) if length.is_none() && e.kind() != io::ErrorKind::TimedOut => 0,
                Err(e) => return Err(e),
            };
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        if let Some(l) = length {
            body.truncate(l);
        }
    } else {
        body.clear();
    }
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn read_before(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no answer before the deadline",
        ));
    }
    stream.set_read_timeout(Some(left))?;
    match stream.read(buf) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no answer before the deadline",
            ))
        }
        other => other,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
