//! RESP2, the Redis serialisation protocol: parsing requests and encoding replies.
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
    match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_array(buf),
        Some(_) => parse_inline(buf),
    }
}

/// The line at the front of `buf` (without `\r\n`, or `\n` alone) and the bytes it used.
fn line(buf: &[u8]) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    match memchr(b'\n', buf) {
        Some(end) if end > MAX_LINE => Err(ProtocolError::LineTooLong),
        Some(end) => {
            let text = &buf[..end];
            Ok(Some((text.strip_suffix(b"\r").unwrap_or(text), end + 1)))
        }
        None if buf.len() > MAX_LINE => Err(ProtocolError::LineTooLong),
        None => Ok(None),
    }
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

fn parse_array(buf: &[u8]) -> Result<Option<Parsed>, ProtocolError> {
    let Some((header, mut used)) = line(buf)? else {
        return Ok(None);
    };
    // `*-1` and `*0` are legal and mean "nothing": Redis skips them silently.
    if header == b"*-1" {
        return Ok(Some((Vec::new(), used)));
    }
    let count = number(&header[1..], MAX_ARGS).ok_or(ProtocolError::BadArrayLength)?;
    // Grow as arguments actually arrive: a declared count is a claim, not a promise.
    let mut args = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let rest = &buf[used..];
        let Some((header, header_len)) = line(rest)? else {
            return Ok(None);
        };
        match header.first() {
            Some(b'$') => {}
            Some(&other) => return Err(ProtocolError::ExpectedBulk(char::from(other))),
            None => return Err(ProtocolError::ExpectedBulk(' ')),
        }
        let len = number(&header[1..], MAX_BULK).ok_or(ProtocolError::BadBulkLength)?;
        let start = used + header_len;
        if buf.len() < start + len + 2 {
            return Ok(None);
        }
        if &buf[start + len..start + len + 2] != b"\r\n" {
            return Err(ProtocolError::MissingCrlf);
        }
        args.push(buf[start..start + len].to_vec());
        used = start + len + 2;
    }
    Ok(Some((args, used)))
}

fn parse_inline(buf: &[u8]) -> Result<Option<Parsed>, ProtocolError> {
    let Some((text, used)) = line(buf)? else {
        return Ok(None);
    };
    Ok(Some((split_inline(text)?, used)))
}

/// Splits an inline command on whitespace, honouring double and single quotes.
fn split_inline(text: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
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
            (None, b' ' | b'\t') => args.extend(current.take()),
            (None, b) => current.get_or_insert_with(Vec::new).push(b),
        }
    }
    if quote.is_some() {
        return Err(ProtocolError::UnbalancedQuotes);
    }
    args.extend(current);
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
            let bytes = buf[used..used + len].to_vec();
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

    fn args(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    #[test]
    fn parses_arrays_incrementally() {
        let wire = b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n";
        for cut in 0..wire.len() {
            assert_eq!(parse_request(&wire[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(
            parse_request(wire),
            Ok(Some((args(&["GET", "a"]), wire.len())))
        );
    }

    #[test]
    fn parses_inline_with_quotes() {
        let got = parse_request(b"SET k \"hello world\" 'x'\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!(got, (args(&["SET", "k", "hello world", "x"]), 25));
        assert_eq!(parse_request(b"\r\n"), Ok(Some((vec![], 2))));
        assert_eq!(
            parse_request(b"SET \"a\r\n"),
            Err(ProtocolError::UnbalancedQuotes)
        );
    }

    #[test]
    fn refuses_huge_or_bad_lengths_without_allocating() {
        assert_eq!(
            parse_request(b"*2\r\n$999999999999\r\n"),
            Err(ProtocolError::BadBulkLength)
        );
        assert_eq!(
            parse_request(b"*99999999999\r\n"),
            Err(ProtocolError::BadArrayLength)
        );
        assert_eq!(parse_request(b"*x\r\n"), Err(ProtocolError::BadArrayLength));
        assert_eq!(
            parse_request(b"*1\r\n+a\r\n"),
            Err(ProtocolError::ExpectedBulk('+'))
        );
        assert_eq!(
            parse_request(b"*1\r\n$1\r\nab\r\n"),
            Err(ProtocolError::MissingCrlf)
        );
        assert_eq!(
            parse_request(&[b'a'; MAX_LINE + 2]),
            Err(ProtocolError::LineTooLong)
        );
    }

    #[test]
    fn encodes_replies() {
        let mut out = Vec::new();
        Reply::Array(vec![
            Reply::OK,
            Reply::Integer(-3),
            Reply::Bulk(None),
            Reply::Bulk(Some(b"hi".to_vec())),
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
