//! What a store is asked to do: a key-space command as one store's operation, and applying it.
//!
//! A command becomes an [`Op`] here, once ([`Op::of`]), whichever backend runs it: the actors
//! route it by [`Op::key`] to the shard that owns the key, or split it by key when it spans
//! shards; the mutex backend applies it whole. A new key-space command is a `Command` variant
//! (`command.rs`), an `Op` variant with its line in `Op::of`, its store method (`store.rs`) and
//! its arm in [`apply`]; if it touches several keys, the actors' `spanning` says how its shards'
//! answers combine.

use std::time::{Duration, Instant};

use crate::command::{Blob, Command, SetCondition};
use crate::resp::Reply;
use crate::store::Store;

/// One store's operation, restricted (by the actors) to the keys that store owns.
#[derive(Debug)]
pub enum Op {
    /// `GET`.
    Get(Blob),
    /// `SET`.
    Set {
        /// The key.
        key: Blob,
        /// The value.
        value: Blob,
        /// Time to live, if any.
        ttl: Option<Duration>,
        /// `NX`, `XX` or neither.
        condition: SetCondition,
    },
    /// `DEL`: how many of these keys were removed.
    Del(Vec<Blob>),
    /// `EXISTS`: how many of these keys exist.
    Exists(Vec<Blob>),
    /// `INCRBY` and friends.
    IncrBy(Blob, i64),
    /// `MGET`: the values, in the order asked.
    MGet(Vec<Blob>),
    /// `MSET`.
    MSet(Vec<(Blob, Blob)>),
    /// `EXPIRE`.
    Expire(Blob, i64),
    /// `TTL`.
    Ttl(Blob),
    /// `DBSIZE`.
    DbSize,
    /// `FLUSHDB`.
    FlushDb,
    /// `KEYS pattern`.
    Keys(Blob),
}

impl Op {
    /// The operation a key-space command is; `None` for the connection's own commands (`PING`,
    /// `ECHO`, `COMMAND`, `QUIT`).
    pub fn of(command: Command) -> Option<Op> {
        Some(match command {
            Command::Get(key) => Op::Get(key),
            Command::Set {
                key,
                value,
                ttl,
                condition,
            } => Op::Set {
                key,
                value,
                ttl,
                condition,
            },
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
            Command::Ping(_) | Command::Echo(_) | Command::CommandInfo | Command::Quit => {
                return None;
            }
        })
    }

    /// The one key the operation touches, if it touches exactly one: then the shard that owns
    /// it can run the operation alone.
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            Op::Get(key)
            | Op::Set { key, .. }
            | Op::IncrBy(key, _)
            | Op::Expire(key, _)
            | Op::Ttl(key) => Some(key),
            Op::Del(_)
            | Op::Exists(_)
            | Op::MGet(_)
            | Op::MSet(_)
            | Op::DbSize
            | Op::FlushDb
            | Op::Keys(_) => None,
        }
    }
}

/// Applies `op` to `store` at `now` and returns the reply.
pub fn apply(store: &mut Store, op: Op, now: Instant) -> Reply {
    let count = |n: usize| Reply::Integer(i64::try_from(n).unwrap_or(i64::MAX));
    match op {
        Op::Get(key) => Reply::Bulk(store.get(&key, now)),
        Op::Set {
            key,
            value,
            ttl,
            condition,
        } => {
            if store.set(key, value, ttl, condition, now) {
                Reply::OK
            } else {
                Reply::Bulk(None)
            }
        }
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
                store.set(k, v, None, SetCondition::Always, now);
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
