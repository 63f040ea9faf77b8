//! A one-shot client: send one command, read one reply, print it the way `redis-cli` does.

use std::io;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::resp::{self, Reply};

/// Sends `args` as one RESP array to `server` and returns the reply.
pub async fn call(server: SocketAddr, args: &[String]) -> io::Result<Reply> {
    let mut stream = TcpStream::connect(server).await?;
    let mut request = Vec::new();
    Reply::Array(
        args.iter()
            .map(|a| Reply::Bulk(Some(Bytes::copy_from_slice(a.as_bytes()))))
            .collect(),
    )
    .encode(&mut request);
    stream.write_all(&request).await?;
    let mut input = BytesMut::with_capacity(4096);
    loop {
        match resp::parse_reply(&input) {
            Ok(Some((reply, _))) => return Ok(reply),
            Ok(None) => {}
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
        if stream.read_buf(&mut input).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection without a reply",
            ));
        }
    }
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
