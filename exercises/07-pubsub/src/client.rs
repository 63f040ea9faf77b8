//! A small NATS client, for the `pub` and `sub` subcommands: it works against this broker and
//! against a real `nats-server` alike.
//!
//! Your task (stage 2): [`Client::connect`], [`Client::publish`], [`Client::subscribe`],
//! [`Client::unsubscribe`], [`Client::flush`] and [`Client::next_message`]. `Event` is a suggestion
//! for what one read yields.

use std::collections::VecDeque;
use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};

use crate::protocol::{self, ProtocolError, ServerOp};

/// The most messages kept while waiting for a `PONG`; a client that falls further behind than
/// this is a slow consumer of its own making.
pub const MAX_QUEUED: usize = 65_536;

/// What can go wrong for a client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection failed.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    /// The server sent `-ERR`.
    #[error("the server said: -ERR '{0}'")]
    Server(String),
    /// The server sent something that is not the protocol.
    #[error("the server broke the protocol: {0}")]
    Protocol(#[from] ProtocolError),
    /// The server closed the connection while an answer was awaited.
    #[error("the server closed the connection")]
    Closed,
    /// The server did not start with `INFO`.
    #[error("expected INFO first from the server, got something else")]
    NoInfo,
    /// Messages piled up while waiting for a `PONG`.
    #[error("more than {MAX_QUEUED} messages arrived while waiting for the server's PONG")]
    Overrun,
}

/// A message received on a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The subject it was published to.
    pub subject: String,
    /// The subscription it matched.
    pub sid: String,
    /// Where answers should go.
    pub reply: Option<String>,
    /// The payload.
    pub payload: Vec<u8>,
}

/// A connection to a NATS server.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    max_payload: usize,
    next_sid: u64,
    queued: VecDeque<Message>,
}

/// What the next read produced.
enum Event {
    Msg(Message),
    Pong,
    Other,
}

impl Client {
    /// Connects, reads the server's `INFO` and introduces itself with a quiet `CONNECT`.
    pub async fn connect(addr: impl ToSocketAddrs) -> Result<Client, ClientError> {
        // TODO: a client past the handshake: connected (`TCP_NODELAY`), the broker's `INFO` read
        // first (else `ClientError::NoInfo`) and its `max_payload` kept, and a `CONNECT` with
        // `verbose` false and `pedantic` true queued for the first flush. `TcpStream::connect`,
        // `protocol::parse_server`.
        todo!()
    }

    /// Queues a publication; [`flush`](Self::flush) sends it and confirms it arrived.
    pub fn publish(&mut self, subject: &str, payload: &[u8]) {
        // TODO: `protocol::encode_pub` into `self.output`.
        todo!()
    }

    /// Subscribes to `subject` (in queue group `queue`, if given) and returns the sid.
    pub fn subscribe(&mut self, subject: &str, queue: Option<&str>) -> u64 {
        // TODO: the next sid; queue `SUB subject [queue] sid\r\n`.
        todo!()
    }

    /// Ends subscription `sid`, at once or after `max` messages in all.
    pub fn unsubscribe(&mut self, sid: u64, max: Option<u64>) {
        // TODO: queue `UNSUB sid [max]\r\n`.
        todo!()
    }

    /// Sends everything queued, then `PING`, and waits for the `PONG`: the server has then
    /// processed all of it. An `-ERR` on the way is returned as an error.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        // TODO: everything queued sent, and returns once the broker has handled it (its `PONG` to a
        // `PING`, contract: "`PONG` means processed"); a `MSG` that comes first is kept for
        // `next_message` (at most MAX_QUEUED), a server `PING` answered, a `-ERR` is
        // `ClientError::Server`.
        todo!()
    }

    /// The next message on any subscription, or `None` once the server has closed the
    /// connection.
    pub async fn next_message(&mut self) -> Result<Option<Message>, ClientError> {
        // TODO: a queued message first; else read frames until a MSG (a closed connection is
        // `Ok(None)`; `-ERR` is an error).
        todo!()
    }
}
