//! The actors: each shard of the key space is owned by one task, and nothing else touches it.
//!
//! Connections never see a `Store`. They hold a [`StoreHandle`] and send it commands over a
//! bounded channel, each with a `oneshot` for the reply. The bound is the backpressure: when a
//! shard falls behind, senders wait instead of piling up work in memory.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::command::{Bytes, Command};
use crate::resp::Reply;
use crate::store::Store;

/// Commands a shard's queue holds before senders wait.
pub const QUEUE: usize = 1024;

/// How often each shard removes expired keys nobody has read.
pub const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// The most expired keys one sweep removes, so that a sweep never stalls a shard for long.
pub const SWEEP_LIMIT: usize = 1000;

/// What one shard is asked to do: a command restricted to the keys it owns.
#[derive(Debug)]
enum Op {
    Get(Bytes),
    Set(Command),
    Del(Vec<Bytes>),
    Exists(Vec<Bytes>),
    IncrBy(Bytes, i64),
    MGet(Vec<Bytes>),
    MSet(Vec<(Bytes, Bytes)>),
    Expire(Bytes, i64),
    Ttl(Bytes),
    DbSize,
    FlushDb,
    Keys(Bytes),
}

/// A batch of operations for one shard, answered together: one channel round trip for a whole
/// pipeline instead of one per command.
struct Job {
    ops: Vec<Op>,
    reply: oneshot::Sender<Vec<Reply>>,
}

/// A cheap, cloneable handle to the store: to its actors, or to the one store behind a mutex.
#[derive(Clone, Debug)]
pub struct StoreHandle {
    shards: Vec<mpsc::Sender<Job>>,
    locked: Option<Arc<Mutex<Store>>>,
}

impl StoreHandle {
    /// Starts `shards` actors (at least one). They stop when the last handle is dropped.
    pub fn spawn(shards: usize) -> StoreHandle {
        let shards = (0..shards.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(run_shard(rx));
                tx
            })
            .collect();
        StoreHandle {
            shards,
            locked: None,
        }
    }

    /// One store behind a `std::sync::Mutex`, shared by every connection: the lock-based design
    /// the chapter measures against the actors. A task sweeps expired keys until the last handle
    /// is dropped.
    pub fn locked() -> StoreHandle {
        let store = Arc::new(Mutex::new(Store::new()));
        let weak = Arc::downgrade(&store);
        tokio::spawn(async move {
            let mut sweep = tokio::time::interval(SWEEP_EVERY);
            sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                sweep.tick().await;
                let Some(store) = weak.upgrade() else { break };
                lock(&store).sweep(Instant::now(), SWEEP_LIMIT);
            }
        });
        StoreHandle {
            shards: Vec::new(),
            locked: Some(store),
        }
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
        self.shards[shard].send(Job { ops, reply }).await.ok()?;
        Some(answer)
    }

    async fn ask(&self, shard: usize, op: Op) -> Reply {
        let answer = match self.send(shard, vec![op]).await {
            Some(answer) => answer.await.ok().and_then(|mut replies| replies.pop()),
            None => None,
        };
        answer.unwrap_or_else(|| Reply::err("the store is shutting down"))
    }

    /// Runs a pipeline of key-space commands and returns their replies in order.
    ///
    /// Single-key commands are grouped by shard and sent as one job per shard, all shards at
    /// once. A command spanning shards (`MGET`, `DEL`, `KEYS`...) first waits for everything
    /// before it, so no client can observe the reordering: effects on different keys commute.
    pub async fn execute_batch(&self, commands: Vec<Command>) -> Vec<Reply> {
        if let Some(store) = &self.locked {
            return run_locked(store, commands);
        }
        let mut replies: Vec<Option<Reply>> = vec![None; commands.len()];
        let mut pending: Vec<Vec<(usize, Op)>> =
            (0..self.shards.len()).map(|_| Vec::new()).collect();
        for (i, command) in commands.into_iter().enumerate() {
            let single = match command {
                Command::Get(key) => Ok((self.shard_of(&key), Op::Get(key))),
                Command::Set { ref key, .. } => Ok((self.shard_of(key), Op::Set(command))),
                Command::IncrBy(key, delta) => Ok((self.shard_of(&key), Op::IncrBy(key, delta))),
                Command::Expire(key, secs) => Ok((self.shard_of(&key), Op::Expire(key, secs))),
                Command::Ttl(key) => Ok((self.shard_of(&key), Op::Ttl(key))),
                other => Err(other),
            };
            match single {
                Ok((shard, op)) => pending[shard].push((i, op)),
                Err(command) => {
                    self.flush(&mut pending, &mut replies).await;
                    replies[i] = Some(self.execute(command).await);
                }
            }
        }
        self.flush(&mut pending, &mut replies).await;
        replies
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Reply::err("the store is shutting down")))
            .collect()
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

    /// Runs a command that touches the key space and returns its reply. Commands that do not
    /// (`PING`, `ECHO`, `COMMAND`, `QUIT`) are the connection's business.
    pub async fn execute(&self, command: Command) -> Reply {
        if let Some(store) = &self.locked {
            return run_locked(store, vec![command])
                .pop()
                .unwrap_or_else(|| Reply::err("no reply from the store"));
        }
        match command {
            Command::Get(key) => self.ask(self.shard_of(&key), Op::Get(key)).await,
            Command::Set { ref key, .. } => self.ask(self.shard_of(key), Op::Set(command)).await,
            Command::IncrBy(key, delta) => {
                self.ask(self.shard_of(&key), Op::IncrBy(key, delta)).await
            }
            Command::Expire(key, secs) => {
                self.ask(self.shard_of(&key), Op::Expire(key, secs)).await
            }
            Command::Ttl(key) => self.ask(self.shard_of(&key), Op::Ttl(key)).await,
            Command::Del(keys) => self.sum_by_shard(keys, Op::Del).await,
            Command::Exists(keys) => self.sum_by_shard(keys, Op::Exists).await,
            Command::MGet(keys) => self.mget(keys).await,
            Command::MSet(pairs) => {
                let mut by_shard: Vec<Vec<(Bytes, Bytes)>> = vec![Vec::new(); self.shards.len()];
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
            Command::DbSize => {
                let mut total = 0;
                for shard in 0..self.shards.len() {
                    match self.ask(shard, Op::DbSize).await {
                        Reply::Integer(n) => total += n,
                        other => return other,
                    }
                }
                Reply::Integer(total)
            }
            Command::FlushDb => {
                for shard in 0..self.shards.len() {
                    self.ask(shard, Op::FlushDb).await;
                }
                Reply::OK
            }
            Command::Keys(pattern) => {
                let mut all = Vec::new();
                for shard in 0..self.shards.len() {
                    if let Reply::Array(keys) = self.ask(shard, Op::Keys(pattern.clone())).await {
                        all.extend(keys);
                    }
                }
                Reply::Array(all)
            }
            Command::Ping(_) | Command::Echo(_) | Command::CommandInfo | Command::Quit => {
                Reply::err("not a key-space command")
            }
        }
    }

    /// `DEL` and `EXISTS`: each shard counts its own keys; the counts add up.
    async fn sum_by_shard(&self, keys: Vec<Bytes>, op: fn(Vec<Bytes>) -> Op) -> Reply {
        let mut by_shard: Vec<Vec<Bytes>> = vec![Vec::new(); self.shards.len()];
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
    async fn mget(&self, keys: Vec<Bytes>) -> Reply {
        let mut by_shard: Vec<(Vec<usize>, Vec<Bytes>)> =
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

/// The store behind the mutex. A panic while it was held cannot have left a half-applied
/// command behind (`apply` changes the map in one step), so a poisoned lock is still usable.
fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs commands on the store behind the mutex: one lock per pipeline, never held across an
/// `.await` (which is why a std mutex, not tokio's, is right here).
fn run_locked(store: &Mutex<Store>, commands: Vec<Command>) -> Vec<Reply> {
    let now = Instant::now();
    let mut store = lock(store);
    commands
        .into_iter()
        .map(|command| match op_of(command) {
            Some(op) => apply(&mut store, op, now),
            None => Reply::err("not a key-space command"),
        })
        .collect()
}

/// The whole of a key-space command as one store's operation (no sharding to split it by).
fn op_of(command: Command) -> Option<Op> {
    Some(match command {
        Command::Get(key) => Op::Get(key),
        command @ Command::Set { .. } => Op::Set(command),
        Command::Del(keys) => Op::Del(keys),
        Command::Exists(keys) => Op::Exists(keys),
        Command::IncrBy(key, delta) => Op::IncrBy(key, delta),
        Command::MGet(keys) => Op::MGet(keys),
        Command::MSet(pairs) => Op::MSet(pairs),
        Command::Expire(key, seconds) => Op::Expire(key, seconds),
        Command::Ttl(key) => Op::Ttl(key),
        Command::DbSize => Op::DbSize,
        Command::FlushDb => Op::FlushDb,
        Command::Keys(pattern) => Op::Keys(pattern),
        Command::Ping(_) | Command::Echo(_) | Command::CommandInfo | Command::Quit => return None,
    })
}

/// One shard's actor: applies jobs in arrival order, and sweeps expired keys between them.
async fn run_shard(mut jobs: mpsc::Receiver<Job>) {
    let mut store = Store::new();
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            job = jobs.recv() => {
                let Some(job) = job else { break };
                let now = Instant::now();
                let replies = job.ops.into_iter().map(|op| apply(&mut store, op, now)).collect();
                // The asker may have gone (its connection closed): nothing to do about it.
                let _ = job.reply.send(replies);
            }
            _ = sweep.tick() => {
                store.sweep(Instant::now(), SWEEP_LIMIT);
            }
        }
    }
}

fn apply(store: &mut Store, op: Op, now: Instant) -> Reply {
    let count = |n: usize| Reply::Integer(i64::try_from(n).unwrap_or(i64::MAX));
    match op {
        Op::Get(key) => Reply::Bulk(store.get(&key, now)),
        Op::Set(Command::Set {
            key,
            value,
            ttl,
            condition,
        }) => {
            if store.set(key, value, ttl, condition, now) {
                Reply::OK
            } else {
                Reply::Bulk(None)
            }
        }
        Op::Set(_) => Reply::err("internal error: not a SET"),
        Op::Del(keys) => count(keys.iter().filter(|k| store.del(k, now)).count()),
        Op::Exists(keys) => count(keys.iter().filter(|k| store.exists(k, now)).count()),
        Op::IncrBy(key, delta) => match store.incr_by(&key, delta, now) {
            Ok(n) => Reply::Integer(n),
            Err(e) => Reply::err(e),
        },
        Op::MGet(keys) => Reply::Array(
            keys.iter()
                .map(|k| Reply::Bulk(store.get(k, now)))
                .collect(),
        ),
        Op::MSet(pairs) => {
            for (k, v) in pairs {
                store.set(k, v, None, crate::command::SetCondition::Always, now);
            }
            Reply::OK
        }
        Op::Expire(key, seconds) => Reply::Integer(i64::from(store.expire(&key, seconds, now))),
        Op::Ttl(key) => Reply::Integer(store.ttl(&key, now)),
        Op::DbSize => count(store.len()),
        Op::FlushDb => {
            store.clear();
            Reply::OK
        }
        Op::Keys(pattern) => Reply::Array(
            store
                .keys(&pattern, now)
                .into_iter()
                .map(|k| Reply::Bulk(Some(k)))
                .collect(),
        ),
    }
}
