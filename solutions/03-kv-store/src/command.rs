//! From a request's arguments to a typed command, with Redis's own error messages.

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
    let mut args = args.into_iter();
    let Some(raw) = args.next() else {
        return Err(Reply::err("empty command"));
    };
    // Lowercased on the stack: the hot path allocates nothing to find out which command it is.
    let mut lower = [0u8; 16];
    let name = match lower.get_mut(..raw.len()) {
        Some(name) => {
            name.copy_from_slice(&raw);
            name.make_ascii_lowercase();
            std::str::from_utf8(name).unwrap_or("")
        }
        None => "",
    };
    let arity = |ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(Reply::err(format!(
                "wrong number of arguments for '{name}' command"
            )))
        }
    };
    let n = args.len();
    let mut rest = args;
    let mut next = || rest.next().unwrap_or_default();
    let command = match name {
        "ping" => {
            arity(n <= 1)?;
            Command::Ping((n == 1).then(&mut next))
        }
        "echo" => {
            arity(n == 1)?;
            Command::Echo(next())
        }
        "get" => {
            arity(n == 1)?;
            Command::Get(next())
        }
        "set" => {
            arity(n >= 2)?;
            let (key, value) = (next(), next());
            let options: Vec<Blob> = (2..n).map(|_| next()).collect();
            parse_set(key, value, &options)?
        }
        "del" | "exists" => {
            arity(n >= 1)?;
            let keys = (0..n).map(|_| next()).collect();
            if name == "del" {
                Command::Del(keys)
            } else {
                Command::Exists(keys)
            }
        }
        "incr" | "decr" => {
            arity(n == 1)?;
            Command::IncrBy(next(), if name == "incr" { 1 } else { -1 })
        }
        "incrby" | "decrby" => {
            arity(n == 2)?;
            let key = next();
            let delta = integer(&next())?;
            if name == "incrby" {
                Command::IncrBy(key, delta)
            } else {
                let negated = delta
                    .checked_neg()
                    .ok_or_else(|| Reply::err("decrement would overflow"))?;
                Command::IncrBy(key, negated)
            }
        }
        "mget" => {
            arity(n >= 1)?;
            Command::MGet((0..n).map(|_| next()).collect())
        }
        "mset" => {
            arity(n >= 2 && n.is_multiple_of(2))?;
            Command::MSet((0..n / 2).map(|_| (next(), next())).collect())
        }
        "expire" => {
            arity(n == 2)?;
            let key = next();
            let seconds = integer(&next())?;
            if !(-MAX_EXPIRE_SECONDS..=MAX_EXPIRE_SECONDS).contains(&seconds) {
                return Err(Reply::err("invalid expire time in 'expire' command"));
            }
            Command::Expire(key, seconds)
        }
        "ttl" => {
            arity(n == 1)?;
            Command::Ttl(next())
        }
        "dbsize" => {
            arity(n == 0)?;
            Command::DbSize
        }
        "flushdb" => Command::FlushDb,
        "keys" => {
            arity(n == 1)?;
            let pattern = next();
            if pattern.len() > glob::MAX_PATTERN {
                return Err(Reply::err("pattern too long"));
            }
            Command::Keys(pattern)
        }
        "command" => Command::CommandInfo,
        "quit" => Command::Quit,
        _ => {
            // Echoed as it was sent, as Redis 7 does (the arity error names the command's own
            // lowercase name: that one is known).
            let name = String::from_utf8_lossy(&raw);
            let shown: String = (0..n.min(3))
                .map(|_| format!("'{}' ", String::from_utf8_lossy(&next())))
                .collect();
            return Err(Reply::err(format!(
                "unknown command '{name}', with args beginning with: {shown}"
            )));
        }
    };
    Ok(command)
}

fn parse_set(key: Blob, value: Blob, options: &[Blob]) -> Result<Command, Reply> {
    let mut ttl = None;
    let mut unit: Option<&str> = None;
    let mut condition = SetCondition::Always;
    let mut i = 0;
    while i < options.len() {
        let option = String::from_utf8_lossy(&options[i]).to_uppercase();
        // As in Redis, an option may be repeated (the last one counts), but NX and XX, or EX and
        // PX, exclude each other.
        match option.as_str() {
            "NX" | "XX" => {
                let wanted = if option == "NX" {
                    SetCondition::IfAbsent
                } else {
                    SetCondition::IfPresent
                };
                if condition != SetCondition::Always && condition != wanted {
                    return Err(Reply::err("syntax error"));
                }
                condition = wanted;
            }
            "EX" | "PX" if i + 1 < options.len() && unit.is_none_or(|u| u == option) => {
                unit = Some(if option == "EX" { "EX" } else { "PX" });
                i += 1;
                let amount = integer(&options[i])?;
                let most = if option == "EX" {
                    MAX_EXPIRE_SECONDS
                } else {
                    i64::MAX
                };
                if amount <= 0 || amount > most {
                    return Err(Reply::err("invalid expire time in 'set' command"));
                }
                let amount = amount.unsigned_abs();
                ttl = Some(if option == "EX" {
                    Duration::from_secs(amount)
                } else {
                    Duration::from_millis(amount)
                });
            }
            _ => return Err(Reply::err("syntax error")),
        }
        i += 1;
    }
    Ok(Command::Set {
        key,
        value,
        ttl,
        condition,
    })
}

/// A decimal `i64`, or Redis's "not an integer" error.
pub fn integer(bytes: &[u8]) -> Result<i64, Reply> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| Reply::err("value is not an integer or out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(line: &str) -> Result<Command, Reply> {
        parse(
            line.split(' ')
                .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                .collect(),
        )
    }

    #[test]
    fn parses_set_options() {
        assert_eq!(
            cmd("set k v PX 1500 nx"),
            Ok(Command::Set {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"v"),
                ttl: Some(Duration::from_millis(1500)),
                condition: SetCondition::IfAbsent
            })
        );
        assert_eq!(cmd("SET k v NX XX"), Err(Reply::err("syntax error")));
        assert_eq!(cmd("SET k v EX 1 PX 5"), Err(Reply::err("syntax error")));
        assert!(matches!(
            cmd("SET k v EX 1 ex 20 NX nx"),
            Ok(Command::Set { ttl: Some(t), condition: SetCondition::IfAbsent, .. })
                if t == Duration::from_secs(20)
        ));
        assert_eq!(
            cmd("SET k v EX 0"),
            Err(Reply::err("invalid expire time in 'set' command"))
        );
        assert_eq!(
            cmd("SET k v EX x"),
            Err(Reply::err("value is not an integer or out of range"))
        );
    }

    #[test]
    fn errors_read_like_redis() {
        assert_eq!(
            cmd("GET"),
            Err(Reply::err("wrong number of arguments for 'get' command"))
        );
        assert_eq!(
            cmd("FOO a b"),
            Err(Reply::err(
                "unknown command 'FOO', with args beginning with: 'a' 'b' "
            ))
        );
        assert_eq!(
            cmd("MSET a"),
            Err(Reply::err("wrong number of arguments for 'mset' command"))
        );
        assert_eq!(
            cmd("DECRBY k 5"),
            Ok(Command::IncrBy(Bytes::from_static(b"k"), -5))
        );
        assert_eq!(
            cmd("EXPIRE k 9223372036854775807"),
            Err(Reply::err("invalid expire time in 'expire' command"))
        );
        assert_eq!(
            cmd("SET k v EX 9223372036854775807"),
            Err(Reply::err("invalid expire time in 'set' command"))
        );
    }
}
