//! One client connection: a reader (this task) that parses operations and acts on them, and a
//! writer task that drains the client's [`Outbound`] queue.
//!
//! Your task (stages 1, 2, 5, 6, 7 and 8): [`serve`]. `End` is a suggestion for why a
//! connection ends.
//!
//! Everything the client is sent, its own `+OK`s and `PONG`s as well as the messages published
//! to it, goes through the one queue, so it arrives in the order it was produced.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tracing::debug;

use crate::broker::{Broker, Subscription};
use crate::outbound::{Outbound, Push, Wakes};
use crate::protocol::{self, ClientOp, ConnectOptions, ProtocolError};
use crate::server::ServerConfig;
use crate::subject;

/// What a connection works with: the broker's configuration (its limits) and its identity.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The limits, as the broker was started with them.
    pub config: ServerConfig,
    /// The broker's name for itself in `INFO`.
    pub server_id: String,
    /// The port it listens on, for `INFO`.
    pub port: u16,
}

/// The signals a connection obeys at shutdown.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// Cancelled when the server stops: stop reading.
    pub stop: CancellationToken,
    /// Cancelled once every connection has stopped reading: nothing more will be published, so
    /// flush what is queued, say goodbye and close.
    pub drain: CancellationToken,
}

/// Why the reader stopped.
enum End {
    /// The client closed the connection, or reading failed.
    Gone,
    /// The client sent something that cannot be framed.
    Refused(ProtocolError),
    /// It was a slow consumer, or its writes failed.
    Killed,
    /// It left [`MAX_PINGS_OUT`] of the broker's `PING`s unanswered.
    Stale,
    /// The server is shutting down.
    Shutdown,
}

/// The broker's `PING`s a silent client may leave unanswered: at the next tick it is stale.
pub const MAX_PINGS_OUT: u32 = 2;

/// Serves one client until it disconnects, breaks the protocol, falls behind, or the server
/// shuts down. `reading` is held while the connection may still publish.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    settings: Settings,
    shutdown: Shutdown,
    reading: TaskTrackerToken,
) -> io::Result<()> {
    // TODO: growing stage by stage (the later parts can wait):
    // - Stage 1: a fresh client id (`broker.next_id()`), an `Arc<Outbound>` of
    //   `settings.config.max_pending` drawing on `broker.queue_budget()`;
    //   `stream.into_split()`, and the writer `tokio::spawn`ed on
    //   `outbound.write_loop(writer, settings.config.write_deadline)`. Queue
    //   `protocol::info_line(..)` first. Then loop: handle every whole operation in the input buffer
    //   (`protocol::parse_client`; answer through the outbound queue: PONG, `+OK` when verbose),
    //   drop the bytes used, then `tokio::select!` over `reader.read_buf(&mut input)` (0: the
    //   client left) and `shutdown.stop.cancelled()`. At the end: `outbound.close()` and await
    //   the writer.
    // - Stage 2: SUB and PUB through the `broker`; keep the client's subscriptions in a
    //   `HashMap` by sid. Pass one `Wakes` to every `publish` of a batch and `wake_all()` once
    //   the batch is handled: until then no writer is woken.
    // - Stage 5: UNSUB (`Subscription::set_max`, `Broker::unsubscribe`); a sid whose
    //   subscription `is_done()` is free again; when the client leaves, however it leaves,
    //   unsubscribe everything.
    // - Stage 6: one more `select!` branch, `outbound.killed().cancelled()` (a slow consumer, or
    //   a failed write), and a ping timer: `interval_at` one `settings.config.ping_interval`
    //   from now (a zero interval means never ping, and `interval_at` panics on one). Nothing heard since
    //   the last tick? Send PING. `MAX_PINGS_OUT` already unanswered? End with
    //   `-ERR 'Stale Connection'`.
    // - Stage 7: `-ERR 'Invalid Subject'` (the connection stays); the sum of the subscriptions'
    //   `Subscription::memory` (given): a SUB past `max_subscriptions` or
    //   `max_subscription_bytes` gets `-ERR 'Maximum Subscriptions Exceeded'`, and so does one
    //   the broker's `subscription_budget()` cannot `try_take` (`give` back what every
    //   subscription gone held, and all of it when the client leaves); a protocol error
    //   queues its `-ERR` line before the close.
    // - Stage 8: `drop(reading)` as soon as this connection stops reading; on shutdown await
    //   `shutdown.drain.cancelled()` (every connection has stopped publishing) and queue
    //   `INFO {\"ldm\":true}\r\n` before the close.
    todo!()
}
