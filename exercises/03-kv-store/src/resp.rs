//! RESP2, the Redis serialisation protocol: parsing requests and encoding replies.
//!
//! Your task (stages 1, 5 and 6): [`RequestParser::parse`], [`Reply::encode`] and
//! [`parse_reply`] (the client's side). `Reply::err` and the small helpers `strip_cr`,
//! `split_inline` and `number` are given.
//!
//! Pure and synchronous. A request is either an array of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\na\r\n`,
//! what every Redis client sends) or an inline command (`GET a\r\n`, what a person types into
//! `nc`). Parsing distinguishes "not enough bytes yet" (`Ok(None)`: read more and try again) from
//! "malformed" (`Err`: answer with an error and close, since the stream can no longer be framed).

use std::borrow::Cow;

use bytes::{Buf, Bytes, BytesMut};

/// The longest inline command or header line, in bytes (Redis allows 64 KiB too).
pub const MAX_LINE: usize = 64 * 1024;

/// The most arguments one request may carry.
pub const MAX_ARGS: usize = 1024 * 1024;

/// The longest bulk string, in bytes. Redis allows 512 MiB; a teaching store has no need to.
pub const MAX_BULK: usize = 8 * 1024 * 1024;

/// The most bytes one request may take in all (many arguments near [`MAX_BULK`] would otherwise
/// add up without bound while the request is incomplete).
pub const MAX_REQUEST: usize = 16 * 1024 * 1024;

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

/// Parses requests as their bytes arrive, keeping what it has taken of an unfinished one, so that
/// a request costs time linear in its size however many reads it arrives in.
///
/// Each argument is taken out of the buffer as soon as it is whole (copied into a [`Bytes`] of
/// its own, so that a small stored value never pins a large read buffer): the buffer holds only
/// what is not parsed yet, and no byte is looked at twice.
#[derive(Debug, Default)]
pub struct RequestParser {
    /// Arguments the array being read still expects; `None` between requests.
    remaining: Option<usize>,
    /// The length in the current argument's `$` header, when its body is not all here yet.
    bulk_len: Option<usize>,
    /// The arguments taken so far.
    args: Vec<Bytes>,
    /// Bytes of the unfinished request already taken out of the buffer.
    taken: usize,
    /// How much of the buffer's front was searched for a line end, in vain.
    scanned: usize,
}

impl RequestParser {
    /// A parser between requests.
    pub fn new() -> RequestParser {
        RequestParser::default()
    }

    /// Takes one whole request off the front of `buf`: its arguments, or `None` when `buf` ends
    /// before the request does (what was taken is kept for the next call, with more bytes). An
    /// empty inline line, `*0` and `*-1` yield no arguments.
    pub fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        // TODO: the contract's "The protocol" and "Limits": an array (`*count`, then `count`
        // times `$len`, `len` bytes, `\r\n`) or an inline line (`split_inline`). Take what is
        // whole out of `buf` as you go (`split_to`, `advance`, `Bytes::copy_from_slice`) and keep
        // the rest of your progress in `self`, so that no call looks at a byte twice; check each
        // declared number with `number` before using it, and the request's size against
        // MAX_REQUEST.
        todo!()
    }

    /// Bytes of the unfinished request taken out of the buffer and held here.
    pub fn held(&self) -> usize {
        // TODO: what the connection counts against the server's buffer budget, with `buf.len()`.
        todo!()
    }
}

/// A line without its `\r` (a bare `\n` ends a line too).
fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Splits an inline command on whitespace, honouring double and single quotes.
fn split_inline(text: &[u8]) -> Result<Vec<Bytes>, ProtocolError> {
    let mut args = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    let mut quote: Option<u8> = None;
    for &b in text {
        match (quote, b) {
            (Some(q), b) if b == q => quote = None,
            (Some(_), b) => current.get_or_insert_with(Vec::new).push(b),
            (None, b'"' | b'\'') => {
                quote = Some(b);
                current.get_or_insert_with(Vec::new);
            }
            (None, b' ' | b'\t') => args.extend(current.take().map(Bytes::from)),
            (None, b) => current.get_or_insert_with(Vec::new).push(b),
        }
    }
    if quote.is_some() {
        return Err(ProtocolError::UnbalancedQuotes);
    }
    args.extend(current.map(Bytes::from));
    Ok(args)
}

/// A decimal number in `0..=max`, or `None`.
fn number(digits: &[u8], max: usize) -> Option<usize> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    // Digits only (no sign, no spaces), read without a detour through `str`: this runs twice
    // per argument.
    digits
        .iter()
        .try_fold(0usize, |n, &d| {
            let digit = d.checked_sub(b'0').filter(|d| *d <= 9)?;
            n.checked_mul(10)?.checked_add(usize::from(digit))
        })
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
    Bulk(Option<Bytes>),
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
