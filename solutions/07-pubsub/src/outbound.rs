//! One client's outbound queue: the bytes waiting to be written to it, bounded in size, and the
//! task that writes them.
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

/// The capacity a slow consumer's emptied queue keeps (64 KiB): only its verdict follows.
const QUEUE_KEEPS: usize = 65_536;
/// The capacity the writer's batch keeps after a burst (256 KiB), so one burst does not hold
/// its peak for the connection's life. Memory only: what is written does not depend on it.
const BATCH_KEEPS: usize = 262_144;

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
        let mut state = self.state();
        if state.closed {
            return (Push::Closed, false);
        }
        let held = state.buf.len() + state.writing;
        if held + len > self.limit || !self.take_budget(len, held) {
            self.budget.give(state.buf.len());
            state.buf.clear();
            state.buf.shrink_to(QUEUE_KEEPS);
            const VERDICT: &[u8] = b"-ERR 'Slow Consumer'\r\n";
            self.budget.take_anyway(VERDICT.len());
            state.buf.extend_from_slice(VERDICT);
            state.closed = true;
            drop(state);
            self.kill.cancel();
            return (Push::Slow, true);
        }
        let was_empty = state.buf.is_empty();
        encode(&mut state.buf);
        (Push::Queued, was_empty)
    }

    /// Takes `len` bytes of the shared budget for a queue holding `held`; whether it may.
    fn take_budget(&self, len: usize, held: usize) -> bool {
        if self.budget.try_take(len) {
            return true;
        }
        // An empty queue may take one message past a spent budget: its client keeps up, and the
        // clients holding the budget are cut off as soon as a message comes for them.
        if held == 0 {
            self.budget.take_anyway(len);
            return true;
        }
        false
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
        self.state().closed = true;
        self.wake.notify_one();
    }

    /// The writer: writes whatever is queued, many messages per write, until the queue is
    /// closed and empty, then shuts the stream down. A write that takes longer than
    /// `deadline` marks a client that has stopped reading: it is killed.
    pub async fn write_loop(
        &self,
        mut stream: impl AsyncWrite + Unpin,
        deadline: Duration,
    ) -> io::Result<()> {
        let mut batch = Vec::with_capacity(64 * 1024);
        let result = loop {
            let notified = self.wake.notified();
            let closed = {
                let mut state = self.state();
                std::mem::swap(&mut state.buf, &mut batch);
                // The batch before this one has been written: its bytes are free.
                self.budget.give(state.writing);
                state.writing = batch.len();
                state.closed
            };
            if !batch.is_empty() {
                match tokio::time::timeout(deadline, stream.write_all(&batch)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => break Err(e),
                    Err(_) => {
                        break Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("slow consumer: a write took longer than {deadline:?}"),
                        ));
                    }
                }
                batch.clear();
                // A burst may have grown the buffer: give most of it back.
                batch.shrink_to(BATCH_KEEPS);
                continue;
            }
            if closed {
                let _ = stream.shutdown().await;
                break Ok(());
            }
            notified.await;
        };
        if result.is_err() {
            self.state().closed = true;
            self.kill.cancel();
        }
        result
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        self.budget.give(state.buf.len() + state.writing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unbounded() -> Arc<Budget> {
        Arc::new(Budget::new(usize::MAX))
    }

    #[test]
    fn a_full_queue_marks_a_slow_consumer() {
        let out = Arc::new(Outbound::new(100, unbounded()));
        let mut wakes = Wakes::default();
        assert_eq!(out.push(&[b'x'; 60]), Push::Queued);
        assert_eq!(
            out.push_msg(b"s", b"1", None, &[0; 50], &mut wakes),
            Push::Slow
        );
        assert!(out.killed().is_cancelled());
        assert_eq!(out.push(b"PONG\r\n"), Push::Closed);
        assert_eq!(out.state().buf, b"-ERR 'Slow Consumer'\r\n");
    }

    #[tokio::test]
    async fn bytes_being_written_count_against_the_bound() {
        let out = Arc::new(Outbound::new(100, unbounded()));
        assert_eq!(out.push(&[b'x'; 60]), Push::Queued);
        // A peer that reads nothing: the writer takes the 60 bytes and blocks writing them.
        let (writer, _reader) = tokio::io::duplex(1);
        let writing = {
            let out = Arc::clone(&out);
            tokio::spawn(async move { out.write_loop(writer, Duration::from_secs(60)).await })
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while out.state().writing == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the writer never took the batch"
            );
            tokio::task::yield_now().await;
        }
        assert!(out.state().buf.is_empty());
        assert_eq!(
            out.push(&[b'y'; 50]),
            Push::Slow,
            "60 being written + 50 > 100"
        );
        writing.abort();
    }

    #[test]
    fn a_spent_budget_cuts_off_a_client_that_is_behind_and_gives_its_bytes_back() {
        let budget = Arc::new(Budget::new(100));
        let (one, two) = (
            Outbound::new(1000, Arc::clone(&budget)),
            Outbound::new(1000, Arc::clone(&budget)),
        );
        assert_eq!(one.push(&[b'x'; 70]), Push::Queued);
        assert_eq!(two.push(&[b'y'; 20]), Push::Queued);
        assert_eq!(
            two.push(&[b'y'; 20]),
            Push::Slow,
            "120 > 100, and two has 20 waiting"
        );
        assert_eq!(budget.used(), 70 + 22, "two holds only its verdict");
        let three = Outbound::new(1000, Arc::clone(&budget));
        assert_eq!(
            three.push(&[b'z'; 50]),
            Push::Queued,
            "an empty queue takes one"
        );
        drop((one, two, three));
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn the_writer_flushes_then_closes() {
        let out = Arc::new(Outbound::new(1000, unbounded()));
        out.push(b"+OK\r\n");
        out.push_msg(b"a", b"1", None, b"hi", &mut Wakes::default());
        out.close();
        let mut written = Vec::new();
        out.write_loop(&mut written, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(written, b"+OK\r\nMSG a 1 2\r\nhi\r\n");
    }
}
