//! From a request's arguments to a typed command, with Redis's own error messages.

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
    let mut args = args.into_iter();
    let Some(mut name) = args.next() else {
        return Err(Reply::err("empty command"));
    };
    // Lowercased in place: the hot path allocates nothing to find out which command it is.
    name.make_ascii_lowercase();
    let name = String::from_utf8(name)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
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
    let command = match name.as_str() {
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
            Command::Expire(key, integer(&next())?)
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
            Command::Keys(next())
        }
        "command" => Command::CommandInfo,
        "quit" => Command::Quit,
        _ => {
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
    let mut condition = SetCondition::Always;
    let mut i = 0;
    while i < options.len() {
        let option = String::from_utf8_lossy(&options[i]).to_uppercase();
        match option.as_str() {
            "NX" | "XX" if condition == SetCondition::Always => {
                condition = if option == "NX" {
                    SetCondition::IfAbsent
                } else {
                    SetCondition::IfPresent
                };
            }
            "EX" | "PX" if ttl.is_none() && i + 1 < options.len() => {
                i += 1;
                let amount = integer(&options[i])?;
                if amount <= 0 {
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
        parse(line.split(' ').map(|s| s.as_bytes().to_vec()).collect())
    }

    #[test]
    fn parses_set_options() {
        assert_eq!(
            cmd("set k v PX 1500 nx"),
            Ok(Command::Set {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                ttl: Some(Duration::from_millis(1500)),
                condition: SetCondition::IfAbsent
            })
        );
        assert_eq!(cmd("SET k v NX XX"), Err(Reply::err("syntax error")));
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
                "unknown command 'foo', with args beginning with: 'a' 'b' "
            ))
        );
        assert_eq!(
            cmd("MSET a"),
            Err(Reply::err("wrong number of arguments for 'mset' command"))
        );
        assert_eq!(cmd("DECRBY k 5"), Ok(Command::IncrBy(b"k".to_vec(), -5)));
    }
}
