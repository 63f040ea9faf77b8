//! A small NATS client, for the `pub` and `sub` subcommands: it works against this broker and
//! against a real `nats-server` alike.

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
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut client = Client {
            stream,
            input: Vec::with_capacity(16 * 1024),
            output: Vec::new(),
            max_payload: protocol::MAX_CONTROL_LINE,
            next_sid: 0,
            queued: VecDeque::new(),
        };
        let info = loop {
            if let Some((op, used)) = protocol::parse_server(&client.input, 0)? {
                let ServerOp::Info(json) = op else {
                    return Err(ClientError::NoInfo);
                };
                let info: serde_json::Value = serde_json::from_slice(json)
                    .map_err(|_| ClientError::Protocol(ProtocolError::Parser))?;
                client.input.drain(..used);
                break info;
            }
            client.fill().await?;
        };
        client.max_payload = info["max_payload"]
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(protocol::DEFAULT_MAX_PAYLOAD);
        client.output.extend_from_slice(
            format!(
                "CONNECT {{\"verbose\":false,\"pedantic\":true,\"echo\":true,\"lang\":\"rust\",\"version\":\"{}\",\"protocol\":0,\"name\":\"pubsub\"}}\r\n",
                env!("CARGO_PKG_VERSION")
            )
            .as_bytes(),
        );
        Ok(client)
    }

    /// Queues a publication; [`flush`](Self::flush) sends it and confirms it arrived.
    pub fn publish(&mut self, subject: &str, payload: &[u8]) {
        protocol::encode_pub(&mut self.output, subject.as_bytes(), None, payload);
    }

    /// Subscribes to `subject` (in queue group `queue`, if given) and returns the sid.
    pub fn subscribe(&mut self, subject: &str, queue: Option<&str>) -> u64 {
        self.next_sid += 1;
        let queue = queue.map(|q| format!("{q} ")).unwrap_or_default();
        self.output
            .extend_from_slice(format!("SUB {subject} {queue}{}\r\n", self.next_sid).as_bytes());
        self.next_sid
    }

    /// Ends subscription `sid`, at once or after `max` messages in all.
    pub fn unsubscribe(&mut self, sid: u64, max: Option<u64>) {
        let max = max.map(|m| format!(" {m}")).unwrap_or_default();
        self.output
            .extend_from_slice(format!("UNSUB {sid}{max}\r\n").as_bytes());
    }

    /// Sends everything queued, then `PING`, and waits for the `PONG`: the server has then
    /// processed all of it. An `-ERR` on the way is returned as an error.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        self.output.extend_from_slice(b"PING\r\n");
        self.send().await?;
        loop {
            match self.next_event().await? {
                Event::Pong => return Ok(()),
                Event::Msg(message) => {
                    if self.queued.len() >= MAX_QUEUED {
                        return Err(ClientError::Overrun);
                    }
                    self.queued.push_back(message);
                }
                Event::Other => {}
            }
        }
    }

    /// The next message on any subscription, or `None` once the server has closed the
    /// connection.
    pub async fn next_message(&mut self) -> Result<Option<Message>, ClientError> {
        if let Some(message) = self.queued.pop_front() {
            return Ok(Some(message));
        }
        loop {
            match self.next_event().await {
                Ok(Event::Msg(message)) => return Ok(Some(message)),
                Ok(Event::Pong | Event::Other) => {}
                Err(ClientError::Closed) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    async fn send(&mut self) -> Result<(), ClientError> {
        self.stream.write_all(&self.output).await?;
        self.output.clear();
        Ok(())
    }

    async fn fill(&mut self) -> Result<(), ClientError> {
        if self.stream.read_buf(&mut self.input).await? == 0 {
            return Err(ClientError::Closed);
        }
        Ok(())
    }

    async fn next_event(&mut self) -> Result<Event, ClientError> {
        loop {
            let parsed = protocol::parse_server(&self.input, self.max_payload)?;
            let Some((op, used)) = parsed else {
                self.fill().await?;
                continue;
            };
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            let event = match op {
                ServerOp::Msg {
                    subject,
                    sid,
                    reply,
                    payload,
                } => Event::Msg(Message {
                    subject: text(subject),
                    sid: text(sid),
                    reply: reply.map(text),
                    payload: payload.to_vec(),
                }),
                ServerOp::Pong => Event::Pong,
                ServerOp::Err(e) => return Err(ClientError::Server(text(e))),
                ServerOp::Ping => {
                    self.output.extend_from_slice(b"PONG\r\n");
                    Event::Other
                }
                ServerOp::Info(_) | ServerOp::Ok => Event::Other,
            };
            self.input.drain(..used);
            if !self.output.is_empty() && matches!(event, Event::Other) {
                self.send().await?;
            }
            return Ok(event);
        }
    }
}
