//! A load generator speaking the protocol: one publisher, many subscribers, and the rate at which
//! messages are delivered. It measures this broker and a real `nats-server` the same way.
//!
//! The publisher sends in windows and keeps at most two windows ahead of the slowest subscriber,
//! so that the measure is of delivery, not of how much a broker is willing to buffer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::client::ClientError;
use crate::protocol::{self, ServerOp};

/// How long the load generator waits for any progress before it gives up.
pub const STALL: Duration = Duration::from_secs(10);

/// Bytes of messages the publisher keeps in flight per window.
const WINDOW_BYTES: usize = 256 * 1024;

/// The workload.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Subscribers, each on its own connection.
    pub subscribers: usize,
    /// Payload size in bytes.
    pub size: usize,
    /// Messages published.
    pub messages: u64,
    /// The subject they are published to.
    pub subject: String,
}

/// What a run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadReport {
    /// Messages published.
    pub published: u64,
    /// Messages received, by all subscribers together.
    pub delivered: u64,
    /// From the first publication to the last delivery.
    pub elapsed: Duration,
}

impl LoadReport {
    /// Messages delivered per second.
    pub fn delivered_per_sec(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Connects, reads `INFO`, sends a quiet `CONNECT` and `lines`, and waits for the `PONG` that
/// follows them.
async fn open(addr: SocketAddr, lines: &str) -> Result<(TcpStream, Vec<u8>), ClientError> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let hello = format!("CONNECT {{\"verbose\":false,\"pedantic\":false}}\r\n{lines}PING\r\n");
    stream.write_all(hello.as_bytes()).await?;
    let mut input = Vec::with_capacity(256 * 1024);
    loop {
        while let Some((op, used)) = protocol::parse_server(&input, usize::MAX)? {
            match op {
                ServerOp::Pong => {
                    input.drain(..used);
                    return Ok((stream, input));
                }
                ServerOp::Err(e) => {
                    return Err(ClientError::Server(String::from_utf8_lossy(e).into_owned()));
                }
                _ => {
                    input.drain(..used);
                }
            }
        }
        if stream.read_buf(&mut input).await? == 0 {
            return Err(ClientError::Closed);
        }
    }
}

/// Reads messages until `expected` have come, counting them in `received`.
async fn subscriber(
    mut stream: TcpStream,
    mut input: Vec<u8>,
    expected: u64,
    received: Arc<AtomicU64>,
    progress: Arc<Notify>,
) -> Result<(), ClientError> {
    let mut count = 0;
    loop {
        let mut at = 0;
        while let Some((op, used)) = protocol::parse_server(&input[at..], usize::MAX)? {
            at += used;
            match op {
                ServerOp::Msg { .. } => count += 1,
                ServerOp::Ping => stream.write_all(b"PONG\r\n").await?,
                ServerOp::Err(e) => {
                    return Err(ClientError::Server(String::from_utf8_lossy(e).into_owned()));
                }
                _ => {}
            }
        }
        input.drain(..at);
        received.store(count, Ordering::Release);
        progress.notify_one();
        if count >= expected {
            return Ok(());
        }
        if input.capacity() - input.len() < 64 * 1024 {
            input.reserve(256 * 1024);
        }
        if stream.read_buf(&mut input).await? == 0 {
            return Err(ClientError::Closed);
        }
    }
}

/// Runs the workload against the server at `addr`.
pub async fn run(addr: SocketAddr, config: &LoadConfig) -> Result<LoadReport, ClientError> {
    let subject = &config.subject;
    let mut counters = Vec::new();
    let progress = Arc::new(Notify::new());
    let mut tasks = JoinSet::new();
    for _ in 0..config.subscribers {
        let (stream, input) = open(addr, &format!("SUB {subject} 1\r\n")).await?;
        let received = Arc::new(AtomicU64::new(0));
        counters.push(Arc::clone(&received));
        tasks.spawn(subscriber(
            stream,
            input,
            config.messages,
            received,
            Arc::clone(&progress),
        ));
    }
    let (mut publisher, _) = open(addr, "").await?;
    let payload = vec![b'x'; config.size];
    let window = (WINDOW_BYTES / (config.size + 32)).max(16) as u64;
    let mut batch = Vec::with_capacity(WINDOW_BYTES * 2);
    let slowest = || {
        counters
            .iter()
            .map(|c| c.load(Ordering::Acquire))
            .min()
            .unwrap_or(u64::MAX)
    };
    let started = Instant::now();
    let mut published = 0;
    while published < config.messages {
        let n = window.min(config.messages - published);
        batch.clear();
        for _ in 0..n {
            protocol::encode_pub(&mut batch, subject.as_bytes(), None, &payload);
        }
        publisher.write_all(&batch).await?;
        published += n;
        // At most two windows ahead of the slowest subscriber.
        while slowest().saturating_add(2 * window) < published {
            wait(&progress).await?;
        }
    }
    while slowest() < config.messages {
        wait(&progress).await?;
    }
    let elapsed = started.elapsed();
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| ClientError::Io(std::io::Error::other(e)))??;
    }
    Ok(LoadReport {
        published,
        delivered: config.messages * config.subscribers as u64,
        elapsed,
    })
}

async fn wait(progress: &Notify) -> Result<(), ClientError> {
    tokio::time::timeout(STALL, progress.notified())
        .await
        .map_err(|_| {
            ClientError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no message delivered for {STALL:?}: some were lost"),
            ))
        })
}
