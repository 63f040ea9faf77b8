//! One syslog sender's TCP connection: read, split into messages, format, append, read again.
//! Waiting for the append before reading more is the backpressure: when the disk is slow, TCP
//! fills up and the sender slows down, and no memory grows here.
//!
//! Your task (stages 1, 3, 4 and 5): [`Reader::read`] and [`serve`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::protocol::{DEFAULT_MAX_FRAME, DEFAULT_MAX_MESSAGE, Decoder};
use crate::record::{self, Origin, OutputFormat};
use crate::server::DEFAULT_IDLE_TIMEOUT;
use crate::writer::Sink;

/// How much one read takes at most.
const READ_CHUNK: usize = 64 * 1024;

/// After shutdown, how much a connection still reads of what its sender had already sent.
const DRAIN_LIMIT: usize = 4 << 20;

/// After shutdown, how long a connection waits for more once nothing is waiting: what the
/// sender wrote before the signal may still be in its own kernel's send buffer, held back by
/// our receive window, and arrives as the reads open it.
const DRAIN_QUIET: Duration = Duration::from_millis(100);

/// What every connection shares.
pub struct Shared {
    /// The output file.
    pub sink: Sink,
    /// How messages are written.
    pub format: OutputFormat,
    /// The longest message kept.
    pub max_message: usize,
    /// The largest octet count or RELP DATALEN accepted.
    pub max_frame: usize,
    /// How long a connection may go without completing a message before it is closed.
    pub idle_timeout: Duration,
    /// Messages accepted so far.
    pub messages: AtomicU64,
}

impl Shared {
    /// Shared state writing to `sink` with the default limits.
    pub fn new(sink: Sink, format: OutputFormat) -> Shared {
        Shared {
            sink,
            format,
            max_message: DEFAULT_MAX_MESSAGE,
            max_frame: DEFAULT_MAX_FRAME,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            messages: AtomicU64::new(0),
        }
    }

    /// Appends `lines` (holding `count` messages) and counts them once accepted.
    ///
    /// # Errors
    /// When the writer fails.
    pub async fn accept(&self, lines: Vec<u8>, count: u64) -> io::Result<()> {
        if count == 0 {
            return Ok(());
        }
        self.sink.append(lines).await?;
        self.messages.fetch_add(count, Ordering::Relaxed);
        Ok(())
    }
}

/// Reads a connection until its end, or until shutdown; then takes what the sender had already
/// sent (what the kernel holds), so that a message sent before the signal is not lost. A sender
/// that completes no message for the idle timeout is cut off: idle or dripping connections
/// (slowloris) would otherwise hold every slot of the connection limit for ever.
pub struct Reader {
    stream: TcpStream,
    shutdown: CancellationToken,
    draining: bool,
    drained: usize,
    idle: Duration,
    deadline: Instant,
}

impl Reader {
    /// Reads `stream` until it ends, `shutdown` is cancelled, or `idle` passes without
    /// [`Reader::progressed`].
    pub fn new(stream: TcpStream, shutdown: CancellationToken, idle: Duration) -> Reader {
        Reader {
            stream,
            shutdown,
            draining: false,
            drained: 0,
            idle,
            deadline: Instant::now() + idle,
        }
    }

    /// Says that a whole message arrived: the idle timeout starts again.
    pub fn progressed(&mut self) {
        self.deadline = Instant::now() + self.idle;
    }

    /// Reads more into `buf`; `Ok(0)` at the end of the stream, or once shutdown has taken
    /// everything that was waiting.
    ///
    /// # Errors
    /// When the read fails, and [`io::ErrorKind::TimedOut`] when the idle timeout passed
    /// since the last [`Reader::progressed`].
    pub async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        // TODO: (stage 1) read more into `buf`, `READ_CHUNK` at a time, until the end of the stream
        // or shutdown. (Stage 4) past `self.deadline`, an `io::ErrorKind::TimedOut` error. (Stage
        // 5) once cancelled, take what the sender had already sent, at most `DRAIN_LIMIT` bytes,
        // and call it the end after `DRAIN_QUIET` with nothing new. `tokio::select!`,
        // `AsyncReadExt::read_buf`, `TcpStream::try_read_buf` and `readable`,
        // `tokio::time::sleep_until`.
        todo!()
    }

    /// The stream, for writing answers.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

/// Serves one syslog sender until it closes, sends something the server cannot follow, or
/// shutdown; every message it sent before then is appended, in order.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    // TODO: (stage 1) every whole message the sender sent, appended in its order, the messages of
    // one read as one batch, and no more read until that batch is accepted (the backpressure):
    // `Reader`, `Decoder::decode` and `finish`, `record::write`, `Shared::accept`. (Stage 3 and 4)
    // a `ProtocolError` or an idle timeout ends the connection after appending what came before,
    // with the reason logged (contract: "Limits").
    todo!()
}
