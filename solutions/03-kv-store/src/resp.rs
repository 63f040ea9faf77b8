//! RESP2, the Redis serialisation protocol: parsing requests and encoding replies.
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
        if self.remaining.is_none() {
            let Some(&first) = buf.first() else {
                return Ok(None);
            };
            let Some(end) = self.line_end(buf)? else {
                return Ok(None);
            };
            self.scanned = 0;
            // The line is read where it lies and then dropped from the buffer: splitting it off
            // would cost a reference count per line.
            let text = strip_cr(&buf[..end]);
            if first != b'*' {
                let args = split_inline(text);
                buf.advance(end + 1);
                return args.map(Some);
            }
            // `*-1` and `*0` are legal and mean "nothing": Redis skips them silently.
            if text == b"*-1" {
                buf.advance(end + 1);
                return Ok(Some(Vec::new()));
            }
            let count = number(&text[1..], MAX_ARGS).ok_or(ProtocolError::BadArrayLength)?;
            buf.advance(end + 1);
            // Grow as arguments actually arrive: a declared count is a claim, not a promise.
            self.args = Vec::with_capacity(count.min(64));
            self.taken = end + 1;
            self.remaining = Some(count);
        }
        while let Some(remaining) = self.remaining.filter(|&n| n > 0) {
            let len = match self.bulk_len {
                Some(len) => len,
                None => {
                    let Some(end) = self.line_end(buf)? else {
                        return self.incomplete(buf);
                    };
                    self.scanned = 0;
                    let header = strip_cr(&buf[..end]);
                    match header.first() {
                        Some(b'$') => {}
                        Some(&other) => return Err(ProtocolError::ExpectedBulk(char::from(other))),
                        None => return Err(ProtocolError::ExpectedBulk(' ')),
                    }
                    let len = number(&header[1..], MAX_BULK).ok_or(ProtocolError::BadBulkLength)?;
                    buf.advance(end + 1);
                    self.taken += end + 1;
                    self.bulk_len = Some(len);
                    len
                }
            };
            if buf.len() < len + 2 {
                return self.incomplete(buf);
            }
            if &buf[len..len + 2] != b"\r\n" {
                return Err(ProtocolError::MissingCrlf);
            }
            self.args.push(Bytes::copy_from_slice(&buf[..len]));
            buf.advance(len + 2);
            self.taken += len + 2;
            self.bulk_len = None;
            self.remaining = Some(remaining - 1);
            if self.taken > MAX_REQUEST {
                return Err(ProtocolError::RequestTooLarge);
            }
        }
        self.remaining = None;
        self.taken = 0;
        Ok(Some(std::mem::take(&mut self.args)))
    }

    /// Bytes of the unfinished request taken out of the buffer and held here.
    pub fn held(&self) -> usize {
        self.taken
    }

    /// `Ok(None)`, unless the unfinished request is already too large.
    fn incomplete(&self, buf: &[u8]) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        if self.taken + buf.len() > MAX_REQUEST {
            return Err(ProtocolError::RequestTooLarge);
        }
        Ok(None)
    }

    /// Where the line at the front of `buf` ends (its `\n`), searching only bytes not searched
    /// before.
    fn line_end(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        let from = self.scanned.min(buf.len());
        match buf[from..].iter().position(|&b| b == b'\n') {
            Some(at) if from + at > MAX_LINE => Err(ProtocolError::LineTooLong),
            Some(at) => Ok(Some(from + at)),
            None if buf.len() > MAX_LINE => Err(ProtocolError::LineTooLong),
            None => {
                self.scanned = buf.len();
                Ok(None)
            }
        }
    }
}

/// A line without its `\r` (a bare `\n` ends a line too).
fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The line at the front of `buf` (without `\r\n`, or `\n` alone) and the bytes it used.
fn line(buf: &[u8]) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(end) if end > MAX_LINE => Err(ProtocolError::LineTooLong),
        Some(end) => Ok(Some((strip_cr(&buf[..end]), end + 1))),
        None if buf.len() > MAX_LINE => Err(ProtocolError::LineTooLong),
        None => Ok(None),
    }
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
        match self {
            Reply::Simple(s) => {
                out.push(b'+');
                out.extend_from_slice(s.as_bytes());
            }
            Reply::Error(e) => {
                out.push(b'-');
                // A newline inside an error would break the framing for the client.
                out.extend(
                    e.bytes()
                        .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
                );
            }
            Reply::Integer(n) => {
                out.push(b':');
                push_number(out, *n);
            }
            Reply::Bulk(None) => out.extend_from_slice(b"$-1"),
            Reply::Bulk(Some(bytes)) => {
                out.push(b'$');
                push_number(out, bytes.len());
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(bytes);
            }
            Reply::Array(items) => {
                out.push(b'*');
                push_number(out, items.len());
                out.extend_from_slice(b"\r\n");
                for item in items {
                    item.encode(out);
                }
                return;
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends a number in decimal without allocating a `String` for it.
fn push_number(out: &mut Vec<u8>, n: impl std::fmt::Display) {
    use std::io::Write;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{n}");
}

/// Parses one reply from the front of `buf` (the client's side), or `None` if incomplete.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    let Some((head, used)) = line(buf)? else {
        return Ok(None);
    };
    let Some((&kind, rest)) = head.split_first() else {
        return Err(ProtocolError::UnknownReply(' '));
    };
    let text = || String::from_utf8_lossy(rest).into_owned();
    let reply = match kind {
        b'+' => Reply::Simple(Cow::Owned(text())),
        b'-' => Reply::Error(text()),
        b':' => Reply::Integer(text().parse().map_err(|_| ProtocolError::BadBulkLength)?),
        b'$' if rest == b"-1" => Reply::Bulk(None),
        b'$' => {
            let len = number(rest, MAX_BULK).ok_or(ProtocolError::BadBulkLength)?;
            if buf.len() < used + len + 2 {
                return Ok(None);
            }
            let bytes = Bytes::copy_from_slice(&buf[used..used + len]);
            return Ok(Some((Reply::Bulk(Some(bytes)), used + len + 2)));
        }
        b'*' if rest == b"-1" => Reply::Array(Vec::new()),
        b'*' => {
            let count = number(rest, MAX_ARGS).ok_or(ProtocolError::BadArrayLength)?;
            let mut items = Vec::with_capacity(count.min(64));
            let mut at = used;
            for _ in 0..count {
                let Some((item, n)) = parse_reply(&buf[at..])? else {
                    return Ok(None);
                };
                items.push(item);
                at += n;
            }
            return Ok(Some((Reply::Array(items), at)));
        }
        other => return Err(ProtocolError::UnknownReply(char::from(other))),
    };
    Ok(Some((reply, used)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<Bytes> {
        list.iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    /// Parses `wire` in one go: the requests, and what is left in the buffer.
    fn parse_all(wire: &[u8]) -> Result<(Vec<Vec<Bytes>>, usize), ProtocolError> {
        let mut parser = RequestParser::new();
        let mut buf = BytesMut::from(wire);
        let mut requests = Vec::new();
        while let Some(request) = parser.parse(&mut buf)? {
            requests.push(request);
        }
        Ok((requests, buf.len() + parser.held()))
    }

    #[test]
    fn parses_arrays_incrementally() {
        let wire = b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n";
        let mut parser = RequestParser::new();
        let mut buf = BytesMut::new();
        for (i, &byte) in wire.iter().enumerate() {
            assert_eq!(parser.parse(&mut buf), Ok(None), "after {i} bytes");
            buf.extend_from_slice(&[byte]);
        }
        assert_eq!(parser.parse(&mut buf), Ok(Some(args(&["GET", "a"]))));
        assert!(buf.is_empty());
        assert_eq!(parser.held(), 0);
    }

    #[test]
    fn parses_inline_with_quotes() {
        let (got, left) = parse_all(b"SET k \"hello world\" 'x'\r\nrest").unwrap();
        assert_eq!(got, vec![args(&["SET", "k", "hello world", "x"])]);
        assert_eq!(left, 4);
        assert_eq!(parse_all(b"\r\n*0\r\n*-1\r\n"), Ok((vec![vec![]; 3], 0)));
        assert_eq!(
            parse_all(b"SET \"a\r\n"),
            Err(ProtocolError::UnbalancedQuotes)
        );
    }

    #[test]
    fn refuses_huge_or_bad_lengths_without_allocating() {
        let refused = |wire: &[u8]| parse_all(wire).unwrap_err();
        assert_eq!(
            refused(b"*2\r\n$999999999999\r\n"),
            ProtocolError::BadBulkLength
        );
        assert_eq!(refused(b"*99999999999\r\n"), ProtocolError::BadArrayLength);
        assert_eq!(refused(b"*x\r\n"), ProtocolError::BadArrayLength);
        assert_eq!(refused(b"*1\r\n+a\r\n"), ProtocolError::ExpectedBulk('+'));
        assert_eq!(refused(b"*1\r\n$1\r\nab\r\n"), ProtocolError::MissingCrlf);
        assert_eq!(refused(&[b'a'; MAX_LINE + 2]), ProtocolError::LineTooLong);
    }

    #[test]
    fn a_request_over_max_request_is_refused_before_it_ends() {
        let mut parser = RequestParser::new();
        let mut buf = BytesMut::from(&b"*3\r\n"[..]);
        let bulk = format!("${MAX_BULK}\r\n");
        for _ in 0..2 {
            buf.extend_from_slice(bulk.as_bytes());
            buf.extend_from_slice(&vec![b'x'; MAX_BULK]);
            buf.extend_from_slice(b"\r\n");
            if parser.parse(&mut buf).is_err() {
                return;
            }
        }
        buf.extend_from_slice(b"$1\r\n");
        assert_eq!(parser.parse(&mut buf), Err(ProtocolError::RequestTooLarge));
    }

    #[test]
    fn encodes_replies() {
        let mut out = Vec::new();
        Reply::Array(vec![
            Reply::OK,
            Reply::Integer(-3),
            Reply::Bulk(None),
            Reply::Bulk(Some(Bytes::from_static(b"hi"))),
            Reply::err("bad\r\nthing"),
        ])
        .encode(&mut out);
        assert_eq!(
            out,
            b"*5\r\n+OK\r\n:-3\r\n$-1\r\n$2\r\nhi\r\n-ERR bad  thing\r\n"
        );
        let (back, used) = parse_reply(&out).unwrap().unwrap();
        assert_eq!(used, out.len());
        assert!(matches!(back, Reply::Array(items) if items.len() == 5));
    }
}
