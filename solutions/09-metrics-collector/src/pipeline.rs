//! Fan-out: every connection reader routes its samples, by a hash of their series, to one of N
//! aggregation workers, each the only owner of its shard. No lock is taken per sample; a reader
//! sends a worker one batch per read. A flush is a message like any other on the same queue, so
//! it reports exactly the samples sent to the worker before it.
//!
//! Each sample's series key is hashed once, here, with a keyed SipHash (`RandomState`): the
//! hash picks the worker and travels with the sample, and the worker's table finds the series
//! by it without hashing again. Series names come from the network, and a keyed hash is what
//! keeps a sender from choosing names that all collide.

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
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for _ in 0..workers.max(1) {
            let (tx, rx) = mpsc::channel(queue.max(1));
            senders.push(tx);
            handles.push(tokio::spawn(worker(rx, Shard::new(Arc::clone(&limits)))));
        }
        let router = Router {
            workers: senders.into(),
            hasher: std::hash::RandomState::new(),
        };
        (router, handles)
    }

    /// How many workers there are.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// The keyed hash of `sample`'s series (its kind, name and tags): it picks the worker, and
    /// the worker's table finds the series by it.
    pub fn hash(&self, sample: &Sample) -> u64 {
        let mut h = self.hasher.build_hasher();
        sample.value.kind().hash(&mut h);
        sample.name.hash(&mut h);
        sample.tags.hash(&mut h);
        h.finish()
    }

    /// The worker that owns the series of this [`Router::hash`]. It reads the hash's middle
    /// bits (24 to 55), which the worker's table does not use: the table takes its bucket from
    /// the low bits and its tag byte from the top 7, and a shard whose hashes all shared them
    /// would crowd its table.
    pub fn shard_of(&self, hash: u64) -> usize {
        let middle = (hash >> 24) & 0xffff_ffff;
        ((middle * self.workers.len() as u64) >> 32) as usize
    }

    /// Sends `samples` to their workers, waiting while a worker's queue is full (so a fast TCP
    /// sender is slowed down rather than buffered without bound).
    ///
    /// # Errors
    /// [`Closed`] when the workers have stopped.
    pub async fn send(&self, samples: Vec<Stamped>) -> Result<(), Closed> {
        if samples.is_empty() {
            return Ok(());
        }
        let hashed = samples.into_iter().map(|s| (self.hash(&s.sample), s));
        if self.workers.len() == 1 {
            return self.workers[0]
                .send(Msg::Samples(hashed.collect()))
                .await
                .map_err(|_| Closed);
        }
        // Room for an even share each (and a little more), so that a batch rarely grows.
        let share = hashed.len() / self.workers.len() + hashed.len() / 8;
        let mut by_shard: Vec<Vec<(u64, Stamped)>> = (0..self.workers.len())
            .map(|_| Vec::with_capacity(share))
            .collect();
        for (hash, s) in hashed {
            by_shard[self.shard_of(hash)].push((hash, s));
        }
        for (worker, batch) in self.workers.iter().zip(by_shard) {
            if !batch.is_empty() {
                worker.send(Msg::Samples(batch)).await.map_err(|_| Closed)?;
            }
        }
        Ok(())
    }

    /// Asks every worker for its interval and gathers the reports.
    ///
    /// # Errors
    /// [`Closed`] when the workers have stopped.
    pub async fn flush(&self) -> Result<Vec<Report>, Closed> {
        let mut replies = Vec::new();
        for worker in self.workers.iter() {
            let (tx, rx) = oneshot::channel();
            worker.send(Msg::Flush(tx)).await.map_err(|_| Closed)?;
            replies.push(rx);
        }
        let mut reports = Vec::new();
        for rx in replies {
            reports.extend(rx.await.map_err(|_| Closed)?);
        }
        Ok(reports)
    }
}

async fn worker(mut rx: mpsc::Receiver<Msg>, mut shard: Shard) {
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Samples(samples) => samples.into_iter().for_each(|(hash, s)| shard.add(hash, s)),
            Msg::Flush(reply) => {
                let _ = reply.send(shard.flush());
            }
        }
    }
}
