//! The client side: `send` (lines from a file or stdin, over syslog TCP or RELP) and `bench`
//! (many connections at once, then a check that the file holds exactly what was sent).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::protocol::ProtocolError;
use crate::relp;

/// librelp's window: at most this many `syslog` commands wait for their `rsp`.
pub const RELP_WINDOW: usize = 128;

/// How much a client writes at once.
const WRITE_CHUNK: usize = 64 * 1024;

/// The PRI of `bench`'s messages (user.notice); the JSON output's `msg` is without it.
const BENCH_PRI: &str = "<13>";

/// How a client frames what it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Syslog over TCP, each message ended by LF.
    Lines,
    /// Syslog over TCP, each message as `LEN SP MSG`.
    OctetCounted,
    /// RELP, each message acknowledged.
    Relp,
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

impl From<ProtocolError> for io::Error {
    fn from(e: ProtocolError) -> io::Error {
        invalid(e.to_string())
    }
}

/// A RELP client session: commands go out in a window, answers are checked in order.
struct RelpClient {
    stream: TcpStream,
    out: Vec<u8>,
    buf: BytesMut,
    next_txnr: u32,
    waiting: VecDeque<u32>,
}

impl RelpClient {
    async fn open(addr: SocketAddr) -> io::Result<RelpClient> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut client = RelpClient {
            stream,
            out: Vec::new(),
            buf: BytesMut::new(),
            next_txnr: 1,
            waiting: VecDeque::new(),
        };
        client.command(
            "open",
            b"relp_version=0\nrelp_software=log-aggregator\ncommands=syslog",
        );
        client.settle(0).await?;
        Ok(client)
    }

    fn command(&mut self, command: &str, data: &[u8]) {
        relp::encode(&mut self.out, self.next_txnr, command, data);
        self.waiting.push_back(self.next_txnr);
        self.next_txnr += 1;
    }

    /// Sends what is pending, then reads answers until at most `left` commands wait.
    async fn settle(&mut self, left: usize) -> io::Result<()> {
        self.stream.write_all(&self.out).await?;
        self.out.clear();
        while self.waiting.len() > left {
            let frame = loop {
                if let Some((frame, used)) = relp::decode(&self.buf, usize::MAX >> 1)? {
                    self.buf.advance(used);
                    break frame;
                }
                if self.stream.read_buf(&mut self.buf).await? == 0 {
                    return Err(invalid("the server closed the RELP session"));
                }
            };
            if frame.command == "serverclose" {
                return Err(invalid("the server closed the RELP session (serverclose)"));
            }
            let expected = self.waiting.pop_front();
            if frame.command != "rsp" || Some(frame.txnr) != expected {
                return Err(invalid(format!(
                    "expected the rsp to txnr {expected:?}, got {} {}",
                    frame.txnr, frame.command
                )));
            }
            if !frame.data.starts_with(b"200") {
                return Err(invalid(format!(
                    "the server refused txnr {}: {}",
                    frame.txnr,
                    String::from_utf8_lossy(&frame.data)
                )));
            }
        }
        Ok(())
    }

    async fn send(&mut self, message: &[u8]) -> io::Result<()> {
        self.command("syslog", message);
        if self.waiting.len() >= RELP_WINDOW {
            self.settle(RELP_WINDOW / 2).await?;
        }
        Ok(())
    }

    async fn close(mut self) -> io::Result<()> {
        self.command("close", b"");
        self.settle(0).await
    }
}

/// One connection's sending side.
enum Sender {
    Tcp {
        stream: TcpStream,
        out: Vec<u8>,
        octet_counted: bool,
    },
    Relp(RelpClient),
}

impl Sender {
    async fn connect(addr: SocketAddr, transport: Transport) -> io::Result<Sender> {
        Ok(match transport {
            Transport::Relp => Sender::Relp(RelpClient::open(addr).await?),
            Transport::Lines | Transport::OctetCounted => Sender::Tcp {
                stream: TcpStream::connect(addr).await?,
                out: Vec::with_capacity(WRITE_CHUNK * 2),
                octet_counted: transport == Transport::OctetCounted,
            },
        })
    }

    async fn send(&mut self, message: &[u8]) -> io::Result<()> {
        match self {
            Sender::Relp(client) => client.send(message).await,
            Sender::Tcp {
                stream,
                out,
                octet_counted,
            } => {
                if *octet_counted {
                    out.extend_from_slice(format!("{} ", message.len()).as_bytes());
                    out.extend_from_slice(message);
                } else {
                    out.extend_from_slice(message);
                    out.push(b'\n');
                }
                if out.len() >= WRITE_CHUNK {
                    stream.write_all(out).await?;
                    out.clear();
                }
                Ok(())
            }
        }
    }

    /// Sends what is left and waits until the server has taken it all: for RELP, every
    /// `rsp`; for TCP, the server's close, which comes once it has appended everything.
    async fn finish(self) -> io::Result<()> {
        match self {
            Sender::Relp(client) => client.close().await,
            Sender::Tcp {
                mut stream, out, ..
            } => {
                stream.write_all(&out).await?;
                stream.shutdown().await?;
                let mut sink = [0u8; 1024];
                while stream.read(&mut sink).await? > 0 {}
                Ok(())
            }
        }
    }
}

/// Sends every line of `input` (its LF removed) as one message; returns how many.
///
/// # Errors
/// When the connection fails, or (RELP) the server refuses a message.
pub async fn send(
    addr: SocketAddr,
    transport: Transport,
    mut input: impl AsyncBufRead + Unpin,
) -> io::Result<u64> {
    let mut sender = Sender::connect(addr, transport).await?;
    let mut line = Vec::new();
    let mut sent = 0;
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line).await? == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        sender.send(&line).await?;
        sent += 1;
    }
    sender.finish().await?;
    Ok(sent)
}

/// The load `bench` sends.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Connections at once.
    pub connections: usize,
    /// Messages per connection.
    pub messages: u64,
    /// Bytes per message.
    pub size: usize,
    /// How they are framed.
    pub transport: Transport,
}

/// What `bench` measured.
#[derive(Debug, Clone, Copy)]
pub struct BenchReport {
    /// Messages sent (and taken by the server).
    pub messages: u64,
    /// From the first connection to the last message taken.
    pub elapsed: Duration,
}

/// The message `seq` of connection `conn` in run `run`: `<13>bench RUN cCONN mSEQ xxx...`,
/// padded to `size` bytes. The PRI makes it a syslog message, which octet counting needs.
pub fn bench_message(run: u64, conn: usize, seq: u64, size: usize) -> Vec<u8> {
    let mut message = format!("{BENCH_PRI}bench {run} c{conn} m{seq} ").into_bytes();
    if message.len() < size {
        message.resize(size, b'x');
    }
    message
}

/// Sends `load`, tagged with `run`, and waits until the server has taken all of it.
///
/// # Errors
/// When a connection fails.
pub async fn bench(addr: SocketAddr, load: Load, run: u64) -> io::Result<BenchReport> {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for conn in 0..load.connections {
        tasks.spawn(async move {
            let mut sender = Sender::connect(addr, load.transport).await?;
            for seq in 0..load.messages {
                sender
                    .send(&bench_message(run, conn, seq, load.size))
                    .await?;
            }
            sender.finish().await
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(io::Error::other)??;
    }
    Ok(BenchReport {
        messages: load.connections as u64 * load.messages,
        elapsed: start.elapsed(),
    })
}

/// Checks that `file` holds every message of run `run` exactly once, in each connection's
/// order, whether written as JSON (its `msg`) or raw.
///
/// # Errors
/// A message that is missing, repeated, out of order or torn, or a file that cannot be read.
pub fn check(file: &Path, run: u64, load: Load) -> Result<(), String> {
    let text = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let prefix = format!("bench {run} c");
    let mut next = vec![0u64; load.connections];
    // Bench messages found with their `<PRI>` still in front: a server that did not parse it.
    let mut with_pri = 0u64;
    let pri_prefix = format!("{BENCH_PRI}{prefix}");
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let message = if line.starts_with(b"{") {
            let value: serde_json::Value = serde_json::from_slice(line).map_err(|e| {
                format!(
                    "a line is not JSON ({e}): {}",
                    String::from_utf8_lossy(line)
                )
            })?;
            value["msg"]
                .as_str()
                .unwrap_or_default()
                .as_bytes()
                .to_vec()
        } else {
            line.strip_prefix(BENCH_PRI.as_bytes())
                .unwrap_or(line)
                .to_vec()
        };
        let Some(rest) = message.strip_prefix(prefix.as_bytes()) else {
            with_pri += u64::from(message.starts_with(pri_prefix.as_bytes()));
            continue;
        };
        let rest = String::from_utf8_lossy(rest);
        let mut fields = rest.split(' ');
        let conn: usize = fields
            .next()
            .and_then(|c| c.parse().ok())
            .filter(|&c| c < load.connections)
            .ok_or_else(|| format!("a torn message: {rest}"))?;
        let seq: u64 = fields
            .next()
            .and_then(|m| m.strip_prefix('m'))
            .and_then(|m| m.parse().ok())
            .ok_or_else(|| format!("a torn message: {rest}"))?;
        if seq != next[conn] {
            return Err(format!(
                "connection {conn}: expected message {} next, found message {seq}",
                next[conn]
            ));
        }
        if message.len() + BENCH_PRI.len() != bench_message(run, conn, seq, load.size).len() {
            return Err(format!("connection {conn}: message {seq} is torn"));
        }
        next[conn] += 1;
    }
    match next.iter().position(|&n| n != load.messages) {
        Some(conn) if with_pri > 0 => Err(format!(
            "connection {conn}: {} of {} messages found; {with_pri} lines hold a bench message \
             with its {BENCH_PRI} still in front of msg: the server did not split off the PRI",
            next[conn], load.messages
        )),
        Some(conn) => Err(format!(
            "connection {conn}: {} of {} messages in the file",
            next[conn], load.messages
        )),
        None => Ok(()),
    }
}
