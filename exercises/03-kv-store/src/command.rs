//! From a request's arguments to a typed command, with Redis's own error messages.
//!
//! Your task (stages 1 and 2): [`parse`] and [`integer`]. The error texts are part of the
//! contract: clients and the tests match them.

use std::time::Duration;

use bytes::Bytes;

use crate::glob;
use crate::resp::Reply;

/// A key or a value: Redis strings are bytes, not text. A `Bytes` is shared, not copied, when it
/// is cloned: a value named by a thousand replies is held once.
pub type Blob = Bytes;

/// The longest expiry, in seconds, `EXPIRE` and `SET ... EX` accept (Redis's own bound: the time
/// in milliseconds must fit in 64 bits). Past it: `-ERR invalid expire time in '...' command`.
pub const MAX_EXPIRE_SECONDS: i64 = 9_223_372_036_854_775;

/// When a `SET` applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetCondition {
    /// Always.
    Always,
    /// `NX`: only if the key does not exist.
    IfAbsent,
    /// `XX`: only if the key exists.
    IfPresent,
}

/// Every command the store understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `PING [message]`.
    Ping(Option<Blob>),
    /// `ECHO message`.
    Echo(Blob),
    /// `GET key`.
    Get(Blob),
    /// `SET key value [EX seconds | PX milliseconds] [NX | XX]`.
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
    /// `DEL key [key ...]`.
    Del(Vec<Blob>),
    /// `EXISTS key [key ...]`.
    Exists(Vec<Blob>),
    /// `INCR`, `DECR`, `INCRBY key delta` (and `DECRBY`).
    IncrBy(Blob, i64),
    /// `MGET key [key ...]`.
    MGet(Vec<Blob>),
    /// `MSET key value [key value ...]`.
    MSet(Vec<(Blob, Blob)>),
    /// `EXPIRE key seconds`.
    Expire(Blob, i64),
    /// `TTL key`.
    Ttl(Blob),
    /// `DBSIZE`.
    DbSize,
    /// `FLUSHDB`.
    FlushDb,
    /// `KEYS pattern`.
    Keys(Blob),
    /// `COMMAND ...`: answered with an empty list, which is enough for `redis-cli` to start.
    CommandInfo,
    /// `QUIT`: `+OK`, then the server closes the connection.
    Quit,
}

/// Parses a request's arguments, or returns the error reply Redis would send.
pub fn parse(args: Vec<Blob>) -> Result<Command, Reply> {
    // TODO: a `Command` for each row of the contract's "Commands" table, the name matched
    // case-insensitively and the arity checked, or the error reply its list gives, word for word
    // (`Reply::err`; the unknown name in the case it was sent). COMMAND with any arguments is
    // `Command::CommandInfo`. `String::from_utf8_lossy`, `integer`, `MAX_EXPIRE_SECONDS`,
    // `glob::MAX_PATTERN`.
    todo!()
}

/// A decimal `i64`, or Redis's "not an integer" error.
pub fn integer(bytes: &[u8]) -> Result<i64, Reply> {
    // TODO: UTF-8, then `str::parse::<i64>`; any failure is
    // `Reply::err("value is not an integer or out of range")`.
    todo!()
}
