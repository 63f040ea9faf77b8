//! One syslog sender's TCP connection: read, split into messages, format, append, read again.
//! Waiting for the append before reading more is the backpressure: when the disk is slow, TCP
//! fills up and the sender slows down, and no memory grows here.

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
        buf.reserve(READ_CHUNK);
        if !self.draining {
            tokio::select! {
                biased;
                read = self.stream.read_buf(buf) => return read,
                () = self.shutdown.cancelled() => self.draining = true,
                () = tokio::time::sleep_until(self.deadline) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no whole message for {:?}", self.idle),
                    ));
                }
            }
        }
        loop {
            if self.drained > DRAIN_LIMIT {
                return Ok(0);
            }
            match self.stream.try_read_buf(buf) {
                Ok(n) => {
                    self.drained += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let more = tokio::time::timeout(DRAIN_QUIET, self.stream.readable()).await;
                    if !matches!(more, Ok(Ok(()))) {
                        return Ok(0);
                    }
                }
                Err(e) => return Err(e),
            }
        }
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
    let mut reader = Reader::new(stream, shutdown, shared.idle_timeout);
    let mut decoder = Decoder::new(shared.max_message, shared.max_frame);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        let ended = match reader.read(&mut buf).await {
            Ok(n) => n == 0,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                warn!(%peer, "closing the connection: {e}");
                true
            }
            Err(e) => {
                debug!(%peer, "read failed: {e}");
                true
            }
        };
        let origin = Origin::now(peer, "tcp");
        let mut lines = Vec::with_capacity(buf.len() + buf.len() / 2);
        let mut count = 0;
        let mut failure = None;
        loop {
            let next = if ended {
                decoder.finish(&mut buf)
            } else {
                decoder.decode(&mut buf)
            };
            match next {
                Ok(Some(frame)) => {
                    record::write(&mut lines, shared.format, &origin, &frame);
                    count += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if count > 0 {
            reader.progressed();
        }
        if let Err(e) = shared.accept(lines, count).await {
            warn!(%peer, "cannot write to the output file: {e}; closing the connection");
            return;
        }
        if let Some(e) = failure {
            warn!(%peer, "closing the connection: {e}");
            return;
        }
        if ended {
            debug!(%peer, "connection ended");
            return;
        }
    }
}
