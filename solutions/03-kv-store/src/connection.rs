//! One client connection: read requests, answer them in order, with bounded buffers.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::actor::StoreHandle;
use crate::command::{self, Command};
use crate::resp::{Reply, RequestParser};

/// Replies gathered before they are written out, in bytes: pipelined requests are answered in
/// one write, but a connection never holds more than this of replies built and not yet written
/// (it stops reading its client until they are).
pub const MAX_PENDING_OUTPUT: usize = 64 * 1024;

/// The most requests answered as one batch.
pub const MAX_BATCH: usize = 1024;

/// A value at least this long is written from the store's own bytes, not copied into the
/// connection's output first.
pub const WRITE_DIRECT: usize = 16 * 1024;

/// What a client reads when the process-wide budget for buffered bytes is spent, before the
/// server closes its connection.
pub const OVER_BUDGET: &[u8] = b"-ERR max buffered bytes reached\r\n";

/// A read buffer grown past this by one large request is given back once it is empty.
const KEEP_INPUT: usize = 64 * 1024;

/// The bytes every connection together may hold of unfinished requests and of replies built but
/// not yet written. Cloning shares it.
#[derive(Debug, Clone)]
pub struct Budget {
    limit: usize,
    used: Arc<AtomicUsize>,
}

impl Budget {
    /// A budget of `limit` bytes, none of them used.
    pub fn new(limit: usize) -> Budget {
        Budget {
            limit,
            used: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// One connection's part of the [`Budget`], given back when it is dropped.
struct Share {
    budget: Budget,
    held: usize,
}

impl Share {
    fn new(budget: Budget) -> Share {
        Share { budget, held: 0 }
    }

    /// Holds `bytes` from now on, or returns false (and keeps holding what it held) when the
    /// budget cannot cover the increase.
    fn hold(&mut self, bytes: usize) -> bool {
        let Some(more) = bytes.checked_sub(self.held) else {
            self.budget
                .used
                .fetch_sub(self.held - bytes, Ordering::Relaxed);
            self.held = bytes;
            return true;
        };
        let limit = self.budget.limit;
        let taken = self
            .budget
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(more).filter(|&total| total <= limit)
            });
        if taken.is_ok() {
            self.held = bytes;
        }
        taken.is_ok()
    }

    /// Holds `bytes`, over the budget if need be: replies already computed are counted, never
    /// refused (each connection's are bounded by [`MAX_PENDING_OUTPUT`]).
    fn force(&mut self, bytes: usize) {
        if !self.hold(bytes) {
            self.budget
                .used
                .fetch_add(bytes - self.held, Ordering::Relaxed);
            self.held = bytes;
        }
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.held, Ordering::Relaxed);
    }
}

/// One request of a pipeline: answered on the spot, or waiting for the store.
enum Slot {
    Ready(Reply),
    Store,
}

/// The writing side: the output buffer, the stream, and the time a write may take.
struct Writer<'a> {
    stream: &'a mut TcpStream,
    output: Vec<u8>,
    /// How long one write may go without finishing (a client that reads nothing): `None` waits
    /// for ever.
    patience: Option<Duration>,
}

impl Writer<'_> {
    /// Writes out the output buffer.
    async fn flush(&mut self, share: &mut Share, input_held: usize) -> io::Result<()> {
        if self.output.is_empty() {
            return Ok(());
        }
        share.force(input_held + self.output.len());
        let output = std::mem::take(&mut self.output);
        let written = self.write(&output).await;
        self.output = output;
        self.output.clear();
        share.force(input_held);
        written
    }

    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self.patience {
            None => self.stream.write_all(bytes).await,
            Some(patience) => tokio::time::timeout(patience, self.stream.write_all(bytes))
                .await
                .unwrap_or_else(|_| {
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client read none of its replies for the idle timeout",
                    ))
                }),
        }
    }

    /// Encodes `reply`, writing out whenever [`MAX_PENDING_OUTPUT`] is reached and writing long
    /// values straight from the store's bytes: however large the reply, the connection holds
    /// no more than that of it (a thousand-key `MGET` of a 1 MiB value never becomes 1 GiB).
    async fn reply(&mut self, reply: &Reply, share: &mut Share, held: usize) -> io::Result<()> {
        // Arrays are walked with a stack of their items, so nesting needs no recursion.
        let mut stack: Vec<std::slice::Iter<'_, Reply>> = Vec::new();
        let mut next = Some(reply);
        loop {
            let item = match next.take() {
                Some(item) => item,
                None => match stack.last_mut() {
                    None => return Ok(()),
                    Some(items) => match items.next() {
                        Some(item) => item,
                        None => {
                            stack.pop();
                            continue;
                        }
                    },
                },
            };
            match item {
                Reply::Array(items) => {
                    let _ = write!(self.output, "*{}\r\n", items.len());
                    stack.push(items.iter());
                }
                Reply::Bulk(Some(value)) if value.len() >= WRITE_DIRECT => {
                    let _ = write!(self.output, "${}\r\n", value.len());
                    self.flush(share, held).await?;
                    self.write(value).await?;
                    self.output.extend_from_slice(b"\r\n");
                }
                other => other.encode(&mut self.output),
            }
            if self.output.len() >= MAX_PENDING_OUTPUT {
                self.flush(share, held).await?;
            }
        }
    }
}

/// Serves one client until it disconnects, sends `QUIT`, breaks the framing, spends what is
/// left of `budget`, stays idle for `idle_timeout` (zero: never), or `shutdown`.
pub async fn serve(
    mut stream: TcpStream,
    store: StoreHandle,
    budget: Budget,
    idle_timeout: Duration,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let idle = (!idle_timeout.is_zero()).then_some(idle_timeout);
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut parser = RequestParser::new();
    let mut share = Share::new(budget);
    let mut out = Writer {
        stream: &mut stream,
        output: Vec::with_capacity(16 * 1024),
        patience: idle,
    };
    // `slots` is reused from batch to batch; `commands` is handed to the store with each batch.
    let mut slots = Vec::with_capacity(64);
    let mut commands = Vec::new();
    let mut deadline = idle.map(|idle| Instant::now() + idle);
    loop {
        // Take every complete request already buffered (this is what makes pipelining pay), run
        // the store's share as one batch, and answer them all in order.
        slots.clear();
        let mut ending: Option<Reply> = None;
        let mut requests = 0;
        while slots.len() < MAX_BATCH {
            let args = match parser.parse(&mut input) {
                Ok(Some(args)) => args,
                Ok(None) => break,
                Err(error) => {
                    ending = Some(Reply::err(error));
                    break;
                }
            };
            requests += 1;
            if args.is_empty() {
                continue;
            }
            let slot = match command::parse(args) {
                Ok(Command::Quit) => {
                    ending = Some(Reply::OK);
                    break;
                }
                Ok(Command::Ping(None)) => Slot::Ready(Reply::Simple("PONG".into())),
                Ok(Command::Ping(Some(message)) | Command::Echo(message)) => {
                    Slot::Ready(Reply::Bulk(Some(message)))
                }
                Ok(Command::CommandInfo) => Slot::Ready(Reply::Array(Vec::new())),
                Ok(command) => {
                    commands.push(command);
                    Slot::Store
                }
                Err(reply) => Slot::Ready(reply),
            };
            slots.push(slot);
        }
        if requests > 0 {
            deadline = idle.map(|idle| Instant::now() + idle);
        }
        let held = parser.held() + input.len();
        let full = slots.len() >= MAX_BATCH;
        let mut from_store = if commands.is_empty() {
            Vec::new().into_iter()
        } else {
            store
                .execute_batch(std::mem::take(&mut commands))
                .await
                .into_iter()
        };
        for slot in slots.drain(..) {
            let reply = match slot {
                Slot::Ready(reply) => reply,
                Slot::Store => from_store
                    .next()
                    .unwrap_or_else(|| Reply::err("no reply from the store")),
            };
            out.reply(&reply, &mut share, held).await?;
        }
        if let Some(last) = ending {
            last.encode(&mut out.output);
            return out.flush(&mut share, held).await;
        }
        out.flush(&mut share, held).await?;
        // A full batch may have left complete requests behind: read only when none is left.
        if full {
            continue;
        }
        if input.is_empty() && input.capacity() > KEEP_INPUT {
            input = BytesMut::with_capacity(16 * 1024);
        }
        let idle_over = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = out.stream.read_buf(&mut input) => {
                if read? == 0 {
                    return Ok(());
                }
            }
            () = idle_over => return Ok(()),
            () = shutdown.cancelled() => return Ok(()),
        }
        if !share.hold(parser.held() + input.len()) {
            return out.write(OVER_BUDGET).await;
        }
    }
}
