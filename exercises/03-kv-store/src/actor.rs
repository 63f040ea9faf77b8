//! The actors: each shard of the key space is owned by one task, and nothing else touches it.
//!
//! Your task (stages 2, 3 and 5): [`StoreHandle::spawn`], [`StoreHandle::execute`] and
//! [`StoreHandle::execute_batch`]. The private `Op` and `Job` types are a suggestion for the
//! messages; change them as you like.
//!
//! Connections never see a `Store`. They hold a [`StoreHandle`] and send it commands over a
//! bounded channel, each with a `oneshot` for the reply. The bound is the backpressure: when a
//! shard falls behind, senders wait instead of piling up work in memory.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
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
        // TODO: for each shard (at least one), `mpsc::channel(QUEUE)`; `tokio::spawn` a task that
        // owns a `Store` and loops with `tokio::select!` over `jobs.recv()` (apply the ops in
        // order, send the replies back on the job's oneshot; `None` means every handle is gone:
        // return) and a `tokio::time::interval(SWEEP_EVERY)` tick (call
        // `store.sweep(Instant::now(), SWEEP_LIMIT)`). Keep the senders in the handle.
        todo!()
    }

    /// One store behind a `std::sync::Mutex`, shared by every connection: the lock-based design
    /// the chapter measures against the actors. A task sweeps expired keys until the last handle
    /// is dropped.
    pub fn locked() -> StoreHandle {
        // TODO: (going further, for `--backend mutex`) `Arc::new(Mutex::new(Store::new()))` in
        // `locked`, no shards. `execute` and `execute_batch` then lock it (once per batch; the
        // guard is never held across an `.await`, which is why a std mutex is right) and apply
        // the commands directly. Spawn a sweep task holding only a `Weak` (`Arc::downgrade`), so
        // that it stops when the last handle is gone.
        todo!()
    }

    /// Runs a pipeline of key-space commands and returns their replies in order.
    ///
    /// Single-key commands are grouped by shard and sent as one job per shard, all shards at
    /// once. A command spanning shards (`MGET`, `DEL`, `KEYS`...) first waits for everything
    /// before it, so no client can observe the reordering: effects on different keys commute.
    pub async fn execute_batch(&self, commands: Vec<Command>) -> Vec<Reply> {
        // TODO: start simple: `execute` each command in turn and collect the replies. That passes
        // every test. Then make pipelines cheap: group single-key commands by shard and send
        // each shard one `Job` for the whole group; a multi-key command (MGET, DEL, KEYS...)
        // must first wait for everything queued before it, so that replies and effects keep
        // their order as each client sees it.
        todo!()
    }

    /// Runs a command that touches the key space and returns its reply. Commands that do not
    /// (`PING`, `ECHO`, `COMMAND`, `QUIT`) are the connection's business.
    pub async fn execute(&self, command: Command) -> Reply {
        // TODO: send the command to the shard that owns its key (hash the key with
        // `DefaultHasher`, modulo the number of shards), with a `oneshot::channel()` for the
        // answer, and await it. Multi-key commands go to every shard concerned and combine the
        // answers: DEL/EXISTS/DBSIZE add up, MGET puts values back in the order asked, KEYS
        // concatenates. If a shard is gone, answer `Reply::err("the store is shutting down")`.
        todo!()
    }
}
