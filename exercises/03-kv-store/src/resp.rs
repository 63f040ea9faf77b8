//! RESP2, the Redis serialisation protocol: parsing requests and encoding replies.
//!
//! Your task (stages 1, 5 and 6): [`parse_request`], [`Reply::encode`] and [`parse_reply`] (the
//! client's side). `Reply::err` and the small helpers `memchr` and `number` are given.
//!
//! Pure and synchronous. A request is either an array of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\na\r\n`,
//! what every Redis client sends) or an inline command (`GET a\r\n`, what a person types into
//! `nc`). Parsing distinguishes "not enough bytes yet" (`Ok(None)`: read more and try again) from
//! "malformed" (`Err`: answer with an error and close, since the stream can no longer be framed).

use std::borrow::Cow;

/// The longest inline command or header line, in bytes (Redis allows 64 KiB too).
pub const MAX_LINE: usize = 64 * 1024;

/// The most arguments one request may carry.
pub const MAX_ARGS: usize = 1024 * 1024;

/// The longest bulk string, in bytes. Redis allows 512 MiB; a teaching store has no need to.
pub const MAX_BULK: usize = 8 * 1024 * 1024;

/// The most bytes one request may take in all (many arguments near [`MAX_BULK`] would otherwise
/// add up without bound while the request is incomplete).
pub const MAX_REQUEST: usize = 16 * 1024 * 1024;

/// A parsed request's arguments and how many bytes of the buffer it took.
pub type Parsed = (Vec<Vec<u8>>, usize);

/// Why a request cannot be framed. The connection answers with the error and closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A header line or inline command longer than [`MAX_LINE`].
    #[error("Protocol error: too big inline request")]
    LineTooLong,
    /// `*` followed by something that is not a count in range.
    #[error("Protocol error: invalid multibulk length")]
    BadArrayLength,
    /// `$` followed by something that is not a length in range.
    #[error("Protocol error: invalid bulk length")]
    BadBulkLength,
    /// Inside an array, something other than `$`.
    #[error("Protocol error: expected '$', got '{0}'")]
    ExpectedBulk(char),
    /// A bulk string not followed by `\r\n`.
    #[error("Protocol error: bulk string not terminated by CRLF")]
    MissingCrlf,
    /// An inline command with an unbalanced quote.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// A request larger than [`MAX_REQUEST`].
    #[error("Protocol error: request larger than {MAX_REQUEST} bytes")]
    RequestTooLarge,
    /// A reply of a type this client does not know.
    #[error("Protocol error: unknown reply type '{0}'")]
    UnknownReply(char),
}

/// Parses one request from the front of `buf`: its arguments and how many bytes it used, or
/// `None` if `buf` does not hold a whole request yet. An empty inline line yields no arguments.
pub fn parse_request(buf: &[u8]) -> Result<Option<Parsed>, ProtocolError> {
    // TODO: look at the first byte.
    // - `*`: an array. Read the header line `*<count>`; `*-1` means "no command". Then `count`
    //   times: a line `$<len>`, then exactly `len` bytes, then `\r\n`. Push each as an argument.
    // - anything else: an inline command, one line split on spaces (honour "double" and 'single'
    //   quotes, so `SET k "a b"` has three arguments).
    // Lines end at `\n`; strip an optional `\r` before it. Rules that keep the server safe:
    // - if the bytes run out anywhere, return `Ok(None)` (the caller reads more and calls again);
    // - check every declared number with `number(digits, max)` against MAX_ARGS / MAX_BULK
    //   *before* using it, and never `Vec::with_capacity(count)` with a number a client sent;
    // - a line longer than MAX_LINE (even without its `\n` yet) is `ProtocolError::LineTooLong`.
    // Return the arguments and how many bytes of `buf` the request took.
    todo!()
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

/// A decimal number in `0..=max`, or `None`.
fn number(digits: &[u8], max: usize) -> Option<usize> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    std::str::from_utf8(digits)
        .ok()?
        .parse::<usize>()
        .ok()
        .filter(|n| *n <= max)
}

/// A reply, as the server sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Simple(Cow<'static, str>),
    /// `-ERR ...`: the whole line after the `-`.
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$3\r\nfoo`, or `$-1` for `None`.
    Bulk(Option<Vec<u8>>),
    /// `*2\r\n...`.
    Array(Vec<Reply>),
}

impl Reply {
    /// `+OK`.
    pub const OK: Reply = Reply::Simple(Cow::Borrowed("OK"));

    /// An error reply with the conventional `ERR` prefix.
    pub fn err(message: impl std::fmt::Display) -> Reply {
        Reply::Error(format!("ERR {message}"))
    }

    /// Appends the wire form of this reply to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        // TODO: `+text\r\n`, `-text\r\n` (replace any \r or \n in the text with a space: it
        // would break the framing), `:number\r\n`, `$len\r\nbytes\r\n`, `$-1\r\n` for a
        // missing value, and `*count\r\n` followed by each item encoded the same way.
        todo!()
    }
}

/// Parses one reply from the front of `buf` (the client's side), or `None` if incomplete.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    // TODO: the mirror of `encode`: a first byte of `+ - : $ *`, the same `Ok(None)` rule for
    // incomplete input, and recursion for arrays.
    todo!()
}
