//! One client's outbound queue: the bytes waiting to be written to it, bounded in size, and the
//! task that writes them.
//!
//! Your task (stages 1, 2 and 6): `Outbound::append` (private, but the heart of it),
//! [`Outbound::close`] and [`Outbound::write_loop`]. `push_with`, `push`, `push_msg` and
//! [`Wakes`] are given: they call `append` and wake the writer.
//!
//! Publishers never wait for a subscriber. They append the encoded `MSG` to the subscriber's
//! queue under a short lock and wake its writer; the writer takes everything queued at once and
//! writes it in one system call, so a busy subscriber gets many messages per write. A queue that
//! would grow past its bound belongs to a slow consumer: its pending bytes are dropped, it is sent
//! `-ERR 'Slow Consumer'`, and it is disconnected. The other subscribers never notice.
//!
//! Every queue also draws on one [`Budget`] shared by the whole broker: a thousand clients each
//! within their own bound can still hold more than the machine has. When the budget is spent, a
//! client that already has bytes waiting is a slow consumer too.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::protocol;

/// What became of bytes offered to a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Queued for the writer.
    Queued,
    /// The client is closing or gone: dropped.
    Closed,
    /// The queue was full: the client has just been marked a slow consumer and is being
    /// disconnected.
    Slow,
}

/// Bytes shared by the whole process, taken and given back by many threads without a lock.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    /// A budget of `limit` bytes, none used.
    pub fn new(limit: usize) -> Budget {
        Budget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// Takes `bytes` if that keeps the total within the limit; whether it did.
    pub fn try_take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    /// Takes `bytes` whatever the limit: for the few bytes of a verdict that must be sent.
    pub fn take_anyway(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::AcqRel);
    }

    /// Gives back `bytes` taken before.
    pub fn give(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Bytes taken now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// Writers that have messages waiting, to wake once a publisher is done with a batch.
#[derive(Debug, Default)]
pub struct Wakes(Vec<Arc<Outbound>>);

impl Wakes {
    /// Wakes every writer collected, and forgets them.
    pub fn wake_all(&mut self) {
        for outbound in self.0.drain(..) {
            outbound.wake.notify_one();
        }
    }
}

/// One client's outbound bytes, shared by its reader, its writer and every publisher.
#[derive(Debug)]
pub struct Outbound {
    state: Mutex<Pending>,
    wake: Notify,
    limit: usize,
    /// The broker's budget for every queue: this one holds `buf.len() + writing` of it.
    budget: Arc<Budget>,
    kill: CancellationToken,
}

#[derive(Debug, Default)]
struct Pending {
    buf: Vec<u8>,
    /// The bytes the writer took and is still writing: they count against the bound too, or
    /// a client that stopped reading would hold twice `limit` (a full queue and a full batch).
    writing: usize,
    closed: bool,
}

impl Outbound {
    /// A queue holding at most `limit` bytes, and no more than `budget` has left.
    pub fn new(limit: usize, budget: Arc<Budget>) -> Outbound {
        Outbound {
            state: Mutex::new(Pending::default()),
            wake: Notify::new(),
            limit,
            budget,
            kill: CancellationToken::new(),
        }
    }

    /// Cancelled when the client must go: it was a slow consumer, or its writes failed.
    pub fn killed(&self) -> &CancellationToken {
        &self.kill
    }

    fn state(&self) -> MutexGuard<'_, Pending> {
        // The lock guards plain bytes: a panic elsewhere cannot leave them inconsistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `len` bytes written by `encode`, unless that would pass the bound, and wakes the
    /// writer.
    pub fn push_with(&self, len: usize, encode: impl FnOnce(&mut Vec<u8>)) -> Push {
        let (push, wake) = self.append(len, encode);
        if wake {
            self.wake.notify_one();
        }
        push
    }

    /// Appends without waking the writer; whether it needs waking (the queue was empty: the
    /// writer takes everything when it wakes, so only the first push of a batch needs to).
    fn append(&self, len: usize, encode: impl FnOnce(&mut Vec<u8>)) -> (Push, bool) {
        // TODO: (stage 1) the bytes `encode` writes appended to the queue unless it is closed
        // (`Push::Closed`); `true` only when the writer needs waking (the queue was empty). (Stage
        // 6) the bounds of "Limits": past `self.limit`, counting what is being written, or with
        // `self.budget` spent while bytes are queued, this client is a slow consumer: its queue
        // replaced by `-ERR 'Slow Consumer'`, closed, `self.kill` cancelled, and the budget kept
        // exact (`try_take`, `take_anyway`, `give`).
        todo!()
    }

    /// Appends `bytes` (a reply to the client itself), unless that would pass the bound.
    pub fn push(&self, bytes: &[u8]) -> Push {
        self.push_with(bytes.len(), |buf| buf.extend_from_slice(bytes))
    }

    /// Appends a `MSG` for subscription `sid`. The writer is not woken now but added to
    /// `wakes`, for the publisher to wake once it has published everything it read: a writer
    /// then finds a whole batch of messages to write at once.
    pub fn push_msg(
        self: &Arc<Self>,
        subject: &[u8],
        sid: &[u8],
        reply: Option<&[u8]>,
        payload: &[u8],
        wakes: &mut Wakes,
    ) -> Push {
        let len = protocol::msg_len(subject, sid, reply, payload);
        let (push, wake) = self.append(len, |buf| {
            protocol::encode_msg(buf, subject, sid, reply, payload);
        });
        if wake {
            wakes.0.push(Arc::clone(self));
        }
        push
    }

    /// Accepts nothing more: the writer writes what is queued, then closes the connection.
    pub fn close(&self) {
        // TODO: mark the state closed and wake the writer, so it flushes and ends.
        todo!()
    }

    /// The writer: writes whatever is queued, many messages per write, until the queue is
    /// closed and empty, then shuts the stream down. A write that takes longer than
    /// `deadline` marks a client that has stopped reading: it is killed.
    pub async fn write_loop(
        &self,
        mut stream: impl AsyncWrite + Unpin,
        deadline: Duration,
    ) -> io::Result<()> {
        // TODO: (stage 1) the loop this doc describes, with no wake-up lost between looking at the
        // queue and waiting (`Notify::notified` created first) and each batch taken whole
        // (`std::mem::swap`). (Stage 6) the batch being written counts in `writing` against the
        // bound and the budget; each write within `deadline` (`tokio::time::timeout`); a failed or
        // late write closes the queue and cancels `self.kill`.
        todo!()
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        self.budget.give(state.buf.len() + state.writing);
    }
}
