//! The actors: each shard of the key space is owned by one task, and nothing else touches it;
//! and the [`StoreHandle`] connections hold, to the actors or to the mutex backend.
//!
//! Connections never see a `Store`. They hold a [`StoreHandle`] and send it commands over a
//! bounded channel, each with a `oneshot` for the reply. The bound is the backpressure: when a
//! shard falls behind, senders wait instead of piling up work in memory.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::command::{Blob, Command};
use crate::glob;
use crate::locked::Locked;
use crate::op::{Op, apply};
use crate::resp::Reply;
use crate::store::Store;

/// Commands a shard's queue holds before senders wait.
pub const QUEUE: usize = 1024;

/// How often each shard removes expired keys nobody has read.
pub const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// The most expired keys one sweep removes, so that a sweep never stalls a shard for long.
pub const SWEEP_LIMIT: usize = 1000;

/// A cheap, cloneable handle to the store, whichever backend owns it.
#[derive(Clone, Debug)]
pub enum StoreHandle {
    /// Actors, one per shard, reached by messages.
    Actors(Actors),
    /// One store behind a mutex (for comparison).
    Locked(Locked),
}

impl StoreHandle {
    /// Starts `shards` actors (at least one). They stop when the last handle is dropped.
    pub fn spawn(shards: usize) -> StoreHandle {
        StoreHandle::Actors(Actors::spawn(shards))
    }

    /// One store behind a `std::sync::Mutex`, shared by every connection: the lock-based design
    /// the chapter measures against the actors. A task sweeps expired keys until the last handle
    /// is dropped.
    pub fn locked() -> StoreHandle {
        StoreHandle::Locked(Locked::new())
    }

    /// Runs a pipeline of key-space commands and returns their replies in order.
    pub async fn execute_batch(&self, commands: Vec<Command>) -> Vec<Reply> {
        match self {
            StoreHandle::Actors(actors) => actors.execute_batch(commands).await,
            StoreHandle::Locked(locked) => locked.execute_batch(commands),
        }
    }

    /// Runs a command that touches the key space and returns its reply. Commands that do not
    /// (`PING`, `ECHO`, `COMMAND`, `QUIT`) are the connection's business.
    pub async fn execute(&self, command: Command) -> Reply {
        self.execute_batch(vec![command])
            .await
            .pop()
            .unwrap_or_else(|| Reply::err("no reply from the store"))
    }
}

/// What a shard is asked.
enum Job {
    /// A batch of operations, answered together: one channel round trip for a whole pipeline
    /// instead of one per command.
    Ops {
        ops: Vec<Op>,
        reply: oneshot::Sender<Vec<Reply>>,
    },
    /// Every live key (shared, not copied), for `KEYS` to match away from the actor: a long
    /// match must not keep the shard from everyone else's commands.
    LiveKeys(oneshot::Sender<Vec<Blob>>),
}

/// The actors' side of the handle: one queue per shard.
#[derive(Clone, Debug)]
pub struct Actors {
    shards: Vec<mpsc::Sender<Job>>,
}

impl Actors {
    /// Starts `shards` actors (at least one). They stop when the last handle is dropped.
    pub fn spawn(shards: usize) -> Actors {
        let shards = (0..shards.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(run_shard(rx));
                tx
            })
            .collect();
        Actors { shards }
    }

    /// Runs a pipeline of key-space commands and returns their replies in order.
    ///
    /// Single-key operations are grouped by shard and sent as one job per shard, all shards at
    /// once. An operation spanning shards (`MGET`, `DEL`, `KEYS`...) first waits for everything
    /// before it, so no client can observe the reordering: effects on different keys commute.
    pub async fn execute_batch(&self, commands: Vec<Command>) -> Vec<Reply> {
        // One shard owns every key: the whole pipeline is one job, applied in order, with
        // nothing to group or put back in place (`KEYS` alone is matched away from the actor).
        if self.shards.len() == 1 && commands.iter().all(one_job) {
            let count = commands.len();
            let ops = commands.into_iter().filter_map(Op::of).collect();
            let answer = match self.send(0, ops).await {
                Some(answer) => answer.await.ok(),
                None => None,
            };
            return answer.unwrap_or_else(|| vec![Reply::err("the store is shutting down"); count]);
        }
        let mut replies: Vec<Option<Reply>> = vec![None; commands.len()];
        let mut pending: Vec<Vec<(usize, Op)>> =
            (0..self.shards.len()).map(|_| Vec::new()).collect();
        for (i, command) in commands.into_iter().enumerate() {
            let Some(op) = Op::of(command) else {
                replies[i] = Some(Reply::err("not a key-space command"));
                continue;
            };
            match op.key() {
                Some(key) => pending[self.shard_of(key)].push((i, op)),
                None => {
                    self.flush(&mut pending, &mut replies).await;
                    replies[i] = Some(self.spanning(op).await);
                }
            }
        }
        self.flush(&mut pending, &mut replies).await;
        replies
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Reply::err("the store is shutting down")))
            .collect()
    }

    fn shard_of(&self, key: &[u8]) -> usize {
        if self.shards.len() == 1 {
            return 0;
        }
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        (hasher.finish() % self.shards.len() as u64) as usize
    }

    /// Sends `ops` to `shard` as one job; `None` if the shard is gone (shutting down).
    async fn send(&self, shard: usize, ops: Vec<Op>) -> Option<oneshot::Receiver<Vec<Reply>>> {
        let (reply, answer) = oneshot::channel();
        self.shards[shard]
            .send(Job::Ops { ops, reply })
            .await
            .ok()?;
        Some(answer)
    }

    /// `KEYS`: each shard hands over its live keys; they are matched on a blocking thread, so
    /// neither the shards nor the runtime's threads (other clients) wait for the match.
    async fn keys(&self, pattern: Blob) -> Reply {
        let mut all = Vec::new();
        for shard in &self.shards {
            let (reply, answer) = oneshot::channel();
            if shard.send(Job::LiveKeys(reply)).await.is_err() {
                return Reply::err("the store is shutting down");
            }
            match answer.await {
                Ok(keys) => all.extend(keys),
                Err(_) => return Reply::err("the store is shutting down"),
            }
        }
        let matching = tokio::task::spawn_blocking(move || {
            let pattern = glob::Pattern::new(&pattern);
            all.into_iter()
                .filter(|key| pattern.matches(key))
                .map(|key| Reply::Bulk(Some(key)))
                .collect()
        });
        match matching.await {
            Ok(keys) => Reply::Array(keys),
            Err(_) => Reply::err("the store is shutting down"),
        }
    }

    async fn ask(&self, shard: usize, op: Op) -> Reply {
        let answer = match self.send(shard, vec![op]).await {
            Some(answer) => answer.await.ok().and_then(|mut replies| replies.pop()),
            None => None,
        };
        answer.unwrap_or_else(|| Reply::err("the store is shutting down"))
    }

    /// Sends every shard its pending operations, then collects the replies into their places.
    async fn flush(&self, pending: &mut [Vec<(usize, Op)>], replies: &mut [Option<Reply>]) {
        let mut waiting = Vec::new();
        for (shard, work) in pending.iter_mut().enumerate() {
            if work.is_empty() {
                continue;
            }
            let (positions, ops): (Vec<usize>, Vec<Op>) = work.drain(..).unzip();
            if let Some(answer) = self.send(shard, ops).await {
                waiting.push((positions, answer));
            }
        }
        for (positions, answer) in waiting {
            if let Ok(answers) = answer.await {
                for (position, reply) in positions.into_iter().zip(answers) {
                    replies[position] = Some(reply);
                }
            }
        }
    }

    /// An operation on several keys, or on all of them: each shard concerned answers for its
    /// own, and the answers combine.
    async fn spanning(&self, op: Op) -> Reply {
        match op {
            Op::Del(keys) => self.sum_by_shard(keys, Op::Del).await,
            Op::Exists(keys) => self.sum_by_shard(keys, Op::Exists).await,
            Op::MGet(keys) => self.mget(keys).await,
            Op::MSet(pairs) => {
                let mut by_shard: Vec<Vec<(Blob, Blob)>> = vec![Vec::new(); self.shards.len()];
                for (k, v) in pairs {
                    by_shard[self.shard_of(&k)].push((k, v));
                }
                for (shard, pairs) in by_shard
                    .into_iter()
                    .enumerate()
                    .filter(|(_, p)| !p.is_empty())
                {
                    if let Reply::Error(e) = self.ask(shard, Op::MSet(pairs)).await {
                        return Reply::Error(e);
                    }
                }
                Reply::OK
            }
            Op::DbSize => {
                let mut total = 0;
                for shard in 0..self.shards.len() {
                    match self.ask(shard, Op::DbSize).await {
                        Reply::Integer(n) => total += n,
                        other => return other,
                    }
                }
                Reply::Integer(total)
            }
            Op::FlushDb => {
                for shard in 0..self.shards.len() {
                    self.ask(shard, Op::FlushDb).await;
                }
                Reply::OK
            }
            Op::Keys(pattern) => self.keys(pattern).await,
            // A single-key operation: the shard that owns its key runs it alone.
            single @ (Op::Get(_)
            | Op::Set { .. }
            | Op::IncrBy(..)
            | Op::Expire(..)
            | Op::Ttl(_)) => {
                let shard = single.key().map_or(0, |key| self.shard_of(key));
                self.ask(shard, single).await
            }
        }
    }

    /// `DEL` and `EXISTS`: each shard counts its own keys; the counts add up.
    async fn sum_by_shard(&self, keys: Vec<Blob>, op: fn(Vec<Blob>) -> Op) -> Reply {
        let mut by_shard: Vec<Vec<Blob>> = vec![Vec::new(); self.shards.len()];
        for key in keys {
            by_shard[self.shard_of(&key)].push(key);
        }
        let mut total = 0;
        for (shard, keys) in by_shard
            .into_iter()
            .enumerate()
            .filter(|(_, k)| !k.is_empty())
        {
            match self.ask(shard, op(keys)).await {
                Reply::Integer(n) => total += n,
                other => return other,
            }
        }
        Reply::Integer(total)
    }

    /// `MGET`: each shard answers for its keys; the answers go back in the order asked.
    async fn mget(&self, keys: Vec<Blob>) -> Reply {
        let mut by_shard: Vec<(Vec<usize>, Vec<Blob>)> =
            vec![(Vec::new(), Vec::new()); self.shards.len()];
        for (i, key) in keys.into_iter().enumerate() {
            let shard = self.shard_of(&key);
            by_shard[shard].0.push(i);
            by_shard[shard].1.push(key);
        }
        let total = by_shard.iter().map(|(i, _)| i.len()).sum();
        let mut out = vec![Reply::Bulk(None); total];
        for (shard, (positions, keys)) in by_shard
            .into_iter()
            .enumerate()
            .filter(|(_, (p, _))| !p.is_empty())
        {
            match self.ask(shard, Op::MGet(keys)).await {
                Reply::Array(values) => {
                    for (position, value) in positions.into_iter().zip(values) {
                        out[position] = value;
                    }
                }
                other => return other,
            }
        }
        Reply::Array(out)
    }
}

/// Whether one shard can run `command` as part of a job: a key-space command, but `KEYS`.
fn one_job(command: &Command) -> bool {
    !matches!(
        command,
        Command::Keys(_)
            | Command::Ping(_)
            | Command::Echo(_)
            | Command::CommandInfo
            | Command::Quit
    )
}

/// One shard's actor: applies jobs in arrival order, and sweeps expired keys between them.
async fn run_shard(mut jobs: mpsc::Receiver<Job>) {
    let mut store = Store::new();
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            job = jobs.recv() => {
                let now = Instant::now();
                // The asker may have gone (its connection closed): nothing to do about it.
                match job {
                    None => break,
                    Some(Job::Ops { ops, reply }) => {
                        let replies = ops.into_iter().map(|op| apply(&mut store, op, now)).collect();
                        let _ = reply.send(replies);
                    }
                    Some(Job::LiveKeys(reply)) => {
                        let _ = reply.send(store.live_keys(now));
                    }
                }
            }
            _ = sweep.tick() => {
                store.sweep(Instant::now(), SWEEP_LIMIT);
            }
        }
    }
}
