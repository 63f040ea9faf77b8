//! Fan-out: every connection reader routes its samples, by a hash of their series, to one of N
//! aggregation workers, each the only owner of its shard. No lock is taken per sample; a reader
//! sends a worker one batch per read. A flush is a message like any other on the same queue, so
//! it reports exactly the samples sent to the worker before it.
//!
//! Each sample's series key is hashed once, here, with a keyed SipHash (`RandomState`): the
//! hash picks the worker and travels with the sample, and the worker's table finds the series
//! by it without hashing again. Series names come from the network, and a keyed hash is what
//! keeps a sender from choosing names that all collide.
//!
//! Your task (stage 1): [`Router::start`], [`Router::hash`], [`Router::shard_of`], [`Router::send`],
//! [`Router::flush`] and the private `worker`. The messages, the counters and the error are given.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::aggregate::{Limits, Report, Shard, Stamped};
use crate::protocol::{Reason, Sample};

/// A message to a worker.
#[derive(Debug)]
pub enum Msg {
    /// Samples for the worker's shard, each with its [`Router::hash`].
    Samples(Vec<(u64, Stamped)>),
    /// Report the interval and start the next.
    Flush(oneshot::Sender<Vec<Report>>),
}

/// Counts every part of the collector adds to, read at each flush and by `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Samples accepted from any protocol.
    pub samples: AtomicU64,
    /// Malformed lines, by [`Reason::index`].
    pub malformed: [AtomicU64; Reason::ALL.len()],
    /// Agent batches dropped as duplicates of one already taken.
    pub duplicates: AtomicU64,
}

impl Counters {
    /// Counts one malformed line.
    pub fn malformed(&self, reason: Reason) {
        self.malformed[reason.index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// The readers' handle on the workers: cheap to clone, one per connection.
#[derive(Debug, Clone)]
pub struct Router {
    workers: Arc<[mpsc::Sender<Msg>]>,
    hasher: std::hash::RandomState,
}

/// The workers have stopped: the collector is shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl Router {
    /// Starts `workers` aggregation tasks, each with a queue of `queue` batches, under the shared
    /// `limits`. Returns the router and the workers' handles (they end when every router clone
    /// is dropped).
    pub fn start(
        workers: usize,
        queue: usize,
        limits: Arc<Limits>,
    ) -> (Router, Vec<JoinHandle<()>>) {
        // TODO: one bounded `mpsc::channel(queue)` and one `tokio::spawn(worker(rx, Shard::new(..)))`
        //   per worker (at least one); keep the senders in an `Arc<[_]>` and a `RandomState` for hashing.
        todo!()
    }

    /// How many workers there are.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// The keyed hash of `sample`'s series (its kind, name and tags): it picks the worker, and
    /// the worker's table finds the series by it.
    pub fn hash(&self, sample: &Sample) -> u64 {
        // TODO: hash the kind, the name and the tags with `self.hasher.build_hasher()` and
        //   `finish()`: the same series always gets the same hash.
        todo!()
    }

    /// The worker that owns the series of this [`Router::hash`]. It reads the hash's middle
    /// bits (24 to 55), which the worker's table does not use: the table takes its bucket from
    /// the low bits and its tag byte from the top 7, and a shard whose hashes all shared them
    /// would crowd its table.
    pub fn shard_of(&self, hash: u64) -> usize {
        // TODO: bits 24 to 55 of `hash` (a `u32`), times `workers`, shifted right by 32: a
        //   number below `workers`, the same for the same hash.
        todo!()
    }

    /// Sends `samples` to their workers, waiting while a worker's queue is full (so a fast TCP
    /// sender is slowed down rather than buffered without bound).
    ///
    /// # Errors
    /// [`Closed`] when the workers have stopped.
    pub async fn send(&self, samples: Vec<Stamped>) -> Result<(), Closed> {
        // TODO: hash each sample once (`hash`), group `(hash, sample)` by `shard_of(hash)` into one
        //   `Vec` per worker and `send(Msg::Samples(..))` each non-empty one (awaiting: a full
        //   queue slows the reader). A send error is `Closed`.
        todo!()
    }

    /// Asks every worker for its interval and gathers the reports.
    ///
    /// # Errors
    /// [`Closed`] when the workers have stopped.
    pub async fn flush(&self) -> Result<Vec<Report>, Closed> {
        // TODO: send every worker `Msg::Flush(oneshot)` first, then await the replies and concatenate.
        //   Samples sent before the flush are in the worker's queue before it, so they are reported.
        todo!()
    }
}

async fn worker(mut rx: mpsc::Receiver<Msg>, mut shard: Shard) {
    // TODO: `while let Some(msg) = rx.recv().await`: add samples to the shard with their hash
    //   (`shard.add(hash, sample)`), or answer a flush with `shard.flush()`.
    todo!()
}
