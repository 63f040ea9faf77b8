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
    // TODO: one client by the contract, growing stage by stage (stages.md's table says which part
    // is which stage's): (1) `INFO` first, then every whole operation answered in order, replies
    // through the client's `Outbound` and its writer task; (2) SUB and PUB through the `broker`,
    // the writers woken once a batch (`Wakes`); (5) UNSUB, and every subscription gone when the
    // client goes; (6) slow and silent clients, (7) the errors and subscription bounds, (8) the
    // lame-duck shutdown, as "Errors", "Limits" and "Shutdown" say. `cargo xtask hint pubsub N` has
    // the steps.
    todo!()
}
