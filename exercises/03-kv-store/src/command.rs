//! From a request's arguments to a typed command, with Redis's own error messages.
//!
//! Your task (stages 1 and 2): [`parse`] and [`integer`]. The error texts are part of the
//! contract: clients and the tests match them.

use std::time::Duration;

use crate::resp::Reply;

/// A key or a value: Redis strings are bytes, not text. (Not `bytes::Bytes`: an owned `Vec<u8>`.)
pub type Blob = Vec<u8>;

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
    // TODO: the first argument names the command, case-insensitively (`to_lowercase` on a
    // `String::from_utf8_lossy`). Check the arity of each, and build the `Command`:
    // - wrong arity: `Reply::err(format!("wrong number of arguments for '{name}' command"))`;
    // - unknown: `Reply::err(format!("unknown command '{name}', with args beginning with: {shown}"))`,
    //   where `shown` is up to three arguments, each as `'arg' ` (quote, text, quote, space);
    // - SET options: EX seconds, PX milliseconds (positive, else "invalid expire time in 'set'
    //   command"), NX, XX; anything else or a repeat is "syntax error";
    // - INCR/DECR are INCRBY with 1 and -1; DECRBY negates (watch `i64::MIN`);
    // - MSET needs an even, non-zero number of arguments after its name;
    // - COMMAND with any arguments is `Command::CommandInfo`.
    todo!()
}

/// A decimal `i64`, or Redis's "not an integer" error.
pub fn integer(bytes: &[u8]) -> Result<i64, Reply> {
    // TODO: UTF-8, then `str::parse::<i64>`; any failure is
    // `Reply::err("value is not an integer or out of range")`.
    todo!()
}
