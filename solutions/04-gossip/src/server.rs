//! The node's I/O: Maelstrom's stdin and stdout, a round timer, and the [`Node`] between them;
//! or, with [`run_udp`], the same node over real UDP sockets, one message per datagram.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::node::Node;
use crate::protocol::{self, Incoming, Payload, ProtocolError};

/// Time between gossip rounds.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(40);
/// How long a `gossip` may go unacknowledged before its values are sent again.
pub const DEFAULT_RETRY: Duration = Duration::from_millis(400);
/// Time between anti-entropy digests (`sync`) to a random node; zero turns them off.
pub const DEFAULT_ANTI_ENTROPY: Duration = Duration::from_secs(1);
/// Peers per round with the random overlay.
pub const DEFAULT_FANOUT: usize = 3;
/// Children per node in the tree overlay.
pub const DEFAULT_BRANCHING: usize = 24;
/// Most values in one `gossip` or `sync_values` message.
pub const DEFAULT_MAX_BATCH: usize = 4096;
/// Longest input line, in bytes; a longer one is discarded.
pub const DEFAULT_MAX_LINE: usize = 1 << 20;
/// Lines read ahead of the node, at most (a bound on memory, with `max_line`).
const READ_AHEAD: usize = 64;
/// The address a UDP node listens on unless `--bind` says otherwise.
pub const DEFAULT_UDP_BIND: &str = "127.0.0.1:7000";
/// Most values in one message over UDP: 2048 values of at most 21 characters keep a datagram
/// under 64 KiB, the most one can carry.
pub const UDP_MAX_BATCH: usize = 2048;
/// Clients (senders that are not peers) whose address a UDP node remembers to answer them;
/// the map is emptied when it is full.
pub const UDP_MAX_CLIENTS: usize = 1024;

/// Whom a node gossips with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Overlay {
    /// A tree over `node_ids` in their order, `branching` children per node.
    Tree,
    /// The neighbours of the `topology` message (everyone, until it comes).
    Topology,
    /// Every round, `fanout` nodes picked at random among those owed values.
    Random,
}

/// How a node gossips.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Time between rounds.
    pub interval: Duration,
    /// Retry timeout of an unacknowledged `gossip`.
    pub retry: Duration,
    /// Time between anti-entropy digests; zero for none.
    pub anti_entropy: Duration,
    /// Whom to gossip with.
    pub overlay: Overlay,
    /// Peers per round with [`Overlay::Random`].
    pub fanout: usize,
    /// Children per node with [`Overlay::Tree`].
    pub branching: usize,
    /// Most values per message.
    pub max_batch: usize,
    /// Longest input line, in bytes.
    pub max_line: usize,
    /// Seed of the peer choices (mixed with the node's id).
    pub seed: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            interval: DEFAULT_INTERVAL,
            retry: DEFAULT_RETRY,
            anti_entropy: DEFAULT_ANTI_ENTROPY,
            overlay: Overlay::Tree,
            fanout: DEFAULT_FANOUT,
            branching: DEFAULT_BRANCHING,
            max_batch: DEFAULT_MAX_BATCH,
            max_line: DEFAULT_MAX_LINE,
            seed: 0,
        }
    }
}

/// The timer of the gossip rounds, its first tick at a random moment within the first
/// `interval`: nodes started together would otherwise tick in step, and a value received just
/// after a round would wait a whole interval at every hop. With random phases it waits half of
/// one on average (memberlist staggers its gossip timers the same way).
pub fn round_timer(interval: Duration) -> tokio::time::Interval {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let seed = u64::from(nanos) ^ u64::from(std::process::id()).rotate_left(32);
    let phase = crate::rng::Rng::new(seed).below(interval.as_nanos().max(1) as u64);
    let mut ticks =
        tokio::time::interval_at(Instant::now() + Duration::from_nanos(phase), interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticks
}

/// What [`run`] reads from.
pub type Input = Box<dyn AsyncRead + Unpin + Send>;
/// What [`run`] writes to.
pub type Output = Box<dyn AsyncWrite + Unpin + Send>;

/// The process's stdin and stdout for [`run`]. Pipes (as under `net` and Maelstrom) are read
/// and written by the runtime's own event loop, in non-blocking mode; anything else (a
/// terminal, a file) goes through tokio's `stdin` and `stdout`, which hand every read and
/// every write to a thread of their own: three threads woken per message instead of one,
/// which on a busy machine is what a node runs short of. Stdout stays blocking when it is the
/// same pipe as stderr, whose writers expect that.
pub fn stdio() -> (Input, Output) {
    use std::os::fd::AsFd;
    use tokio::net::unix::pipe;
    let stdin = std::io::stdin();
    let input: Input = match stdin
        .as_fd()
        .try_clone_to_owned()
        .and_then(pipe::Receiver::from_owned_fd)
    {
        Ok(pipe) => Box::new(pipe),
        Err(_) => Box::new(tokio::io::stdin()),
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let pipe = if same_file(stdout.as_fd(), stderr.as_fd()) {
        None
    } else {
        stdout
            .as_fd()
            .try_clone_to_owned()
            .and_then(pipe::Sender::from_owned_fd)
            .ok()
    };
    let output: Output = match pipe {
        Some(pipe) => Box::new(pipe),
        None => Box::new(tokio::io::stdout()),
    };
    (input, output)
}

/// Whether two descriptors name the same file (true when that cannot be told).
fn same_file(a: std::os::fd::BorrowedFd<'_>, b: std::os::fd::BorrowedFd<'_>) -> bool {
    use std::os::unix::fs::MetadataExt;
    let meta = |fd: std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned()
            .and_then(|fd| std::fs::File::from(fd).metadata())
    };
    match (meta(a), meta(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => true,
    }
}

/// One input line, or what took its place.
#[derive(Debug)]
enum Line {
    Text(String),
    TooLong(usize),
}

/// Runs a node: reads messages from `input`, writes messages to `output`, gossips every
/// `config.interval`, until `input` ends or `shutdown` fires.
pub async fn run<R, W>(
    input: R,
    output: W,
    config: ServerConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
{
    let (tx, mut lines) = mpsc::channel(READ_AHEAD);
    let max_line = config.max_line;
    // A task of its own, so that a half-read line is never lost to the select below.
    let reader = tokio::spawn(read_lines(input, max_line, tx));
    let mut out = BufWriter::new(output);
    let mut ticks = round_timer(config.interval);
    let mut node = Node::new(config);
    loop {
        let written = tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticks.tick() => node.tick(Instant::now().into_std()),
            line = lines.recv() => match line {
                None => break,
                Some(Line::TooLong(len)) => {
                    tracing::warn!(len, max_line, "discarded a line longer than --max-line");
                    Vec::new()
                }
                Some(Line::Text(text)) => match protocol::decode(&text) {
                    Ok(message) => node.handle(message, Instant::now().into_std()),
                    Err(bad) => {
                        tracing::warn!(error = %bad.error, "bad input line");
                        node.reject(&bad).into_iter().collect()
                    }
                },
            },
        };
        for line in written {
            out.write_all(line.as_bytes()).await?;
            out.write_all(b"\n").await?;
        }
        out.flush().await?;
    }
    reader.abort();
    Ok(())
}

/// Reads newline-terminated lines of at most `max_line` bytes; a longer line is skipped to its
/// end without being held, and reported by its length.
async fn read_lines<R: AsyncBufRead + Unpin>(
    mut input: R,
    max_line: usize,
    tx: mpsc::Sender<Line>,
) {
    let mut line = Vec::new();
    let mut skipped = 0usize;
    loop {
        let chunk = match input.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(chunk) => chunk,
        };
        let (part, end) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], Some(i + 1)),
            None => (chunk, None),
        };
        if skipped > 0 || line.len() + part.len() > max_line {
            skipped += line.len() + part.len();
            line.clear();
        } else {
            line.extend_from_slice(part);
        }
        let used = end.unwrap_or(chunk.len());
        input.consume(used);
        if end.is_some() {
            let item = if skipped > 0 {
                Line::TooLong(std::mem::take(&mut skipped))
            } else {
                Line::Text(String::from_utf8_lossy(&std::mem::take(&mut line)).into_owned())
            };
            if tx.send(item).await.is_err() {
                break;
            }
        }
    }
    if !line.is_empty() {
        let _ = tx
            .send(Line::Text(String::from_utf8_lossy(&line).into_owned()))
            .await;
    }
}

/// Runs a node over UDP on `socket` until `shutdown` fires: its id is its own address, its
/// `node_ids` are that and `peers` (sorted, so that every node sees the same list), and it is
/// initialised by itself, without an `init` message. Every datagram holds one message, in
/// Maelstrom's JSON. A sender that is not a peer is a client: it is answered at the address its
/// datagram came from. A client may also ask `{"type":"stats"}`, answered with `stats_ok` and
/// the node-to-node datagrams `sent` and `received` so far.
pub async fn run_udp(
    socket: UdpSocket,
    peers: Vec<SocketAddr>,
    config: ServerConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let me = socket.local_addr()?.to_string();
    let mut ids: Vec<String> = peers.iter().map(ToString::to_string).collect();
    ids.push(me.clone());
    ids.sort();
    ids.dedup();
    let mut config = config;
    config.max_batch = config.max_batch.clamp(1, UDP_MAX_BATCH);
    let max_datagram = config.max_line.min(65_535);
    let mut ticks = round_timer(config.interval);
    let mut node = Node::new(config);
    let init = Incoming {
        src: me.clone(),
        dest: me.clone(),
        msg_id: None,
        in_reply_to: None,
        payload: Payload::Init {
            node_id: me.clone(),
            node_ids: ids.clone(),
        },
    };
    node.handle(init, Instant::now().into_std());
    let mut clients: HashMap<String, SocketAddr> = HashMap::new();
    let (mut sent, mut received) = (0u64, 0u64);
    // One byte more than the largest datagram accepted, to tell a long one from a full one.
    let mut buf = vec![0u8; max_datagram + 1];
    loop {
        let written = tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticks.tick() => node.tick(Instant::now().into_std()),
            got = socket.recv_from(&mut buf) => {
                // An error here is an ICMP answer to an earlier send (a peer not up yet): the
                // socket itself is fine.
                let Ok((len, from)) = got else { continue };
                if len > max_datagram {
                    tracing::warn!(len, %from, "discarded a datagram longer than --max-line");
                    continue;
                }
                let text = String::from_utf8_lossy(&buf[..len]);
                match protocol::decode(text.trim_end()) {
                    Ok(message) => {
                        if ids.binary_search(&message.src).is_ok() {
                            received += 1;
                        } else {
                            remember(&mut clients, &message.src, from);
                        }
                        node.handle(message, Instant::now().into_std())
                    }
                    Err(bad) => {
                        if let Some(to) = &bad.reply_to {
                            remember(&mut clients, &to.src, from);
                        }
                        match (&bad.error, &bad.reply_to) {
                            (ProtocolError::UnknownType(ty), Some(to)) if ty == "stats" => {
                                let body = json!({
                                    "type": "stats_ok",
                                    "in_reply_to": to.msg_id,
                                    "sent": sent,
                                    "received": received,
                                });
                                vec![protocol::encode(&me, &to.src, body)]
                            }
                            _ => {
                                tracing::warn!(error = %bad.error, %from, "bad datagram");
                                node.reject(&bad).into_iter().collect()
                            }
                        }
                    }
                }
            }
        };
        for line in written {
            let Some(dest) = destination(&line) else {
                continue;
            };
            let to = if ids.binary_search(&dest).is_ok() {
                sent += 1;
                dest.parse().ok()
            } else {
                clients.get(&dest).copied()
            };
            if let Some(to) = to
                && let Err(e) = socket.send_to(line.as_bytes(), to).await
            {
                tracing::debug!(%to, "cannot send: {e}");
            }
        }
    }
    Ok(())
}

/// Keeps `src`'s address for the answers to it, in a bounded map.
fn remember(clients: &mut HashMap<String, SocketAddr>, src: &str, from: SocketAddr) {
    if clients.len() >= UDP_MAX_CLIENTS && !clients.contains_key(src) {
        clients.clear();
    }
    clients.insert(src.to_owned(), from);
}

/// The `dest` of a line the node wrote.
fn destination(line: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    value.get("dest")?.as_str().map(str::to_owned)
}
