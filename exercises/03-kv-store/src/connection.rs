//! One client connection: read requests, answer them in order, with bounded buffers.
//!
//! Your task (stages 1, 5 and 6): [`serve`]. The [`Budget`] shared by every connection, and a
//! connection's `Share` of it, are given.

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

/// Serves one client until it disconnects, sends `QUIT`, breaks the framing, spends what is
/// left of `budget`, stays idle for `idle_timeout` (zero: never), or `shutdown`.
pub async fn serve(
    mut stream: TcpStream,
    store: StoreHandle,
    budget: Budget,
    idle_timeout: Duration,
    shutdown: CancellationToken,
) -> io::Result<()> {
    // TODO: the contract's "The protocol", "Limits" and "Bad input": every complete request already
    // read is answered, in order (PING, ECHO, COMMAND and QUIT here, the rest through
    // `store.execute_batch` as one batch), never with more than MAX_PENDING_OUTPUT of replies
    // unwritten; the idle timeout, `shutdown` and the buffer budget (a `Share` of `budget`,
    // OVER_BUDGET) end the connection. `RequestParser`, `BytesMut`, `tokio::select!`.
    todo!()
}
