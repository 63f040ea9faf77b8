//! A one-shot client: send one command, read one reply, print it the way `redis-cli` does.
//!
//! Your task (stage 2): [`call`]. `render` is given.

use std::io;
use std::net::SocketAddr;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::resp::{self, Reply};

/// Sends `args` as one RESP array to `server` and returns the reply.
pub async fn call(server: SocketAddr, args: &[String]) -> io::Result<Reply> {
    // TODO: one request to `server` and its reply: a RESP request is a `Reply::Array` of bulk
    // strings, and the reply is whole once `resp::parse_reply` says so; a server that closes first
    // is an `io::ErrorKind::UnexpectedEof` error. `TcpStream`, `BytesMut`, `Reply::encode`.
    todo!()
}

/// Formats a reply as `redis-cli` prints it: `OK`, `(integer) 1`, `"value"`, `(nil)`,
/// `(error) ERR ...`, and numbered lines for arrays.
pub fn render(reply: &Reply) -> String {
    match reply {
        Reply::Simple(s) => s.to_string(),
        Reply::Error(e) => format!("(error) {e}"),
        Reply::Integer(n) => format!("(integer) {n}"),
        Reply::Bulk(None) => "(nil)".to_owned(),
        Reply::Bulk(Some(bytes)) => format!("\"{}\"", bytes.escape_ascii()),
        Reply::Array(items) if items.is_empty() => "(empty array)".to_owned(),
        Reply::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| format!("{}) {}", i + 1, render(item)))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}
