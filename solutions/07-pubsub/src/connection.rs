//! One client connection: a reader (this task) that parses operations and acts on them, and a
//! writer task that drains the client's [`Outbound`] queue.
//!
//! Everything the client is sent, its own `+OK`s and `PONG`s as well as the messages published
//! to it, goes through the one queue, so it arrives in the order it was produced.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

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
    let client = broker.next_id();
    let outbound = Arc::new(Outbound::new(
        settings.config.max_pending,
        Arc::clone(broker.queue_budget()),
    ));
    let (mut reader, writer) = stream.into_split();
    let writing = {
        let outbound = Arc::clone(&outbound);
        let deadline = settings.config.write_deadline;
        tokio::spawn(async move { outbound.write_loop(writer, deadline).await })
    };
    outbound.push(&protocol::info_line(
        &settings.server_id,
        settings.port,
        settings.config.max_payload,
        client,
    ));
    let mut session = Session {
        client,
        broker: &broker,
        outbound: &outbound,
        settings: &settings,
        options: ConnectOptions::default(),
        subscriptions: HashMap::new(),
        memory: 0,
        limited: 0,
        since_walk: 0,
        wakes: Wakes::default(),
    };
    let mut input = Vec::with_capacity(READ_BUFFER);
    // A peer that vanished without closing (a cable pulled, a laptop shut) is only found by
    // asking: a client silent for a whole interval is sent PING, and one that stays silent
    // through MAX_PINGS_OUT of them is dropped. An interval of zero turns this off.
    let period = settings.config.ping_interval;
    let mut ping = (!period.is_zero()).then(|| {
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping
    });
    let (mut heard, mut pings_out) = (false, 0);
    let end = loop {
        match session.handle_all(&mut input) {
            Ok(()) => {}
            Err(e) => break End::Refused(e),
        }
        make_room(&mut input);
        tokio::select! {
            read = reader.read_buf(&mut input) => match read {
                Ok(0) | Err(_) => break End::Gone,
                Ok(_) => heard = true,
            },
            _ = tick(ping.as_mut()) => {
                if heard {
                    (heard, pings_out) = (false, 0);
                } else if pings_out >= MAX_PINGS_OUT {
                    break End::Stale;
                } else {
                    pings_out += 1;
                    outbound.push(b"PING\r\n");
                }
            }
            () = outbound.killed().cancelled() => break End::Killed,
            () = shutdown.stop.cancelled() => break End::Shutdown,
        }
    };
    for sub in session.subscriptions.values() {
        broker.unsubscribe(sub);
    }
    broker.subscription_budget().give(session.memory);
    drop(reading);
    match end {
        End::Gone => debug!(%peer, "client left"),
        End::Refused(error) => {
            debug!(%peer, "protocol error: {error}");
            outbound.push(&error.line());
        }
        End::Killed => debug!(%peer, "disconnected: slow consumer"),
        End::Stale => {
            debug!(%peer, "disconnected: no answer to {MAX_PINGS_OUT} PINGs");
            outbound.push(&protocol::err_line("Stale Connection"));
        }
        End::Shutdown => {
            shutdown.drain.cancelled().await;
            // Lame duck mode, in NATS terms: the client should go elsewhere.
            outbound.push(b"INFO {\"ldm\":true}\r\n");
        }
    }
    outbound.close();
    match writing.await {
        Ok(result) => result,
        Err(e) => Err(io::Error::other(e)),
    }
}

/// What the read buffer starts with, and keeps after a large payload has gone: 64 KiB.
const READ_BUFFER: usize = 65_536;

/// Keeps the read buffer's capacity sensible: gives back what a large payload grew it to once
/// the payload has gone, and reserves room ahead before it runs low (`read_buf` would otherwise
/// grow a full buffer a little at a time). Only memory and speed depend on it, not what is read.
fn make_room(input: &mut Vec<u8>) {
    if input.capacity() > 4 * READ_BUFFER && input.len() < READ_BUFFER {
        input.shrink_to(READ_BUFFER);
    }
    if input.capacity() - input.len() < READ_BUFFER / 4 {
        input.reserve(READ_BUFFER);
    }
}

/// The next tick of the ping timer, or never if there is none.
async fn tick(ping: Option<&mut tokio::time::Interval>) {
    match ping {
        Some(ping) => {
            ping.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// One client's state, as its reader sees it.
struct Session<'a> {
    client: u64,
    broker: &'a Broker,
    outbound: &'a Arc<Outbound>,
    settings: &'a Settings,
    options: ConnectOptions,
    subscriptions: HashMap<Box<[u8]>, Arc<Subscription>>,
    /// What `subscriptions` hold, as [`Subscription::memory`] estimates it.
    memory: usize,
    /// How many of `subscriptions` were given a maximum (`UNSUB sid max`), at most: only those
    /// can run out and leave the index, so only they are worth a walk of the map.
    limited: usize,
    /// `SUB`s since the last walk: a walk costs the whole map, so it is due only once the
    /// client has asked for a sixteenth of that many since the last one.
    since_walk: usize,
    /// Subscribers' writers to wake once the batch of operations read is handled.
    wakes: Wakes,
}

impl Session<'_> {
    /// Handles every complete operation in `input` and removes them from it.
    fn handle_all(&mut self, input: &mut Vec<u8>) -> Result<(), ProtocolError> {
        let mut at = 0;
        let result = loop {
            match protocol::parse_client(&input[at..], self.settings.config.max_payload) {
                Ok(Some((op, used))) => {
                    at += used;
                    self.handle(op);
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        input.drain(..at);
        self.wakes.wake_all();
        result
    }

    fn reply(&self, bytes: &[u8]) {
        // A client too slow to take its own replies is cut off like any slow consumer.
        if self.outbound.push(bytes) == Push::Slow {
            debug!(client = self.client, "slow consumer (its own replies)");
        }
    }

    fn ok(&self) {
        if self.options.verbose {
            self.reply(b"+OK\r\n");
        }
    }

    fn handle(&mut self, op: ClientOp<'_>) {
        match op {
            ClientOp::Connect(options) => {
                self.options = options;
                self.ok();
            }
            ClientOp::Ping => self.reply(b"PONG\r\n"),
            ClientOp::Pong | ClientOp::Ignored => {}
            ClientOp::Pub {
                subject,
                reply,
                payload,
            } => {
                // As nats-server: a verbose client is told +OK for any PUB, after the error for
                // a bad subject, before the message itself if it is subscribed to it.
                if !subject::valid_literal_subject(subject)
                    || reply.is_some_and(|r| !subject::valid_literal_subject(r))
                {
                    self.reply(&protocol::err_line("Invalid Publish Subject"));
                    self.ok();
                } else {
                    self.ok();
                    self.broker.publish(
                        self.client,
                        self.options.echo,
                        subject,
                        reply,
                        payload,
                        &mut self.wakes,
                    );
                }
            }
            ClientOp::Sub {
                subject,
                queue,
                sid,
            } => self.subscribe(subject, queue, sid),
            ClientOp::Unsub { sid, max } => {
                if let Some(sub) = self.subscriptions.get(sid) {
                    let live = max.is_some_and(|max| sub.set_max(max));
                    self.limited += usize::from(live);
                    if !live {
                        self.broker.unsubscribe(sub);
                        self.forget(memory(sub));
                        self.subscriptions.remove(sid);
                    }
                }
                self.ok();
            }
        }
    }

    fn subscribe(&mut self, subject: &[u8], queue: Option<&[u8]>, sid: &[u8]) {
        if !subject::valid_subject(subject) {
            self.reply(&protocol::err_line("Invalid Subject"));
            return;
        }
        if let Some(existing) = self.subscriptions.get(sid) {
            if !existing.is_done() {
                // nats-server keeps the first subscription of a sid and ignores the rest.
                self.ok();
                return;
            }
            // That one ran out of deliveries (`UNSUB sid max`) and has left the index: the sid
            // is free again, as in nats-server.
            if let Some(done) = self.subscriptions.remove(sid) {
                self.forget(memory(&done));
                self.limited = self.limited.saturating_sub(1);
            }
        }
        let cost = Subscription::memory(subject, queue, sid);
        self.since_walk += 1;
        if !self.room_for(cost)
            && self.limited > 0
            && self.since_walk > self.subscriptions.len() / 16
        {
            // Subscriptions that ran out of deliveries leave no trace in the index: forget them.
            // Only some with a maximum can have, and not at every refused SUB: a walk of the
            // whole map per refusal would cost a client at its limit nothing to ask for, and
            // the broker a core (65,536 subscriptions, 4,464 SUBs past the limit: minutes).
            let before = self.subscriptions.len();
            self.subscriptions.retain(|_, sub| !sub.is_done());
            let live: usize = self.subscriptions.values().map(|s| memory(s)).sum();
            self.forget(self.memory - live);
            self.limited = self
                .limited
                .saturating_sub(before - self.subscriptions.len());
            self.since_walk = 0;
        }
        if !self.room_for(cost) {
            self.reply(&protocol::err_line("Maximum Subscriptions Exceeded"));
            return;
        }
        // The broker's budget, shared by every client: refused in the same words as the
        // client's own limit, as nats-server refuses an account's.
        if !self.broker.subscription_budget().try_take(cost) {
            self.reply(&protocol::err_line("Maximum Subscriptions Exceeded"));
            return;
        }
        let sub = Arc::new(Subscription::new(
            self.broker.next_id(),
            self.client,
            subject,
            queue,
            sid,
            Arc::clone(self.outbound),
        ));
        self.broker.subscribe(Arc::clone(&sub));
        self.subscriptions.insert(sid.into(), sub);
        self.memory += cost;
        self.ok();
    }

    /// Gives back `bytes` of subscriptions gone, to the client's count and the broker's budget.
    fn forget(&mut self, bytes: usize) {
        self.memory -= bytes;
        self.broker.subscription_budget().give(bytes);
    }

    /// Whether one more subscription holding `cost` bytes fits the client's limits.
    fn room_for(&self, cost: usize) -> bool {
        self.subscriptions.len() < self.settings.config.max_subscriptions
            && self.memory + cost <= self.settings.config.max_subscription_bytes
    }
}

/// [`Subscription::memory`] of a subscription made.
fn memory(sub: &Subscription) -> usize {
    Subscription::memory(&sub.subject, sub.queue.as_deref(), &sub.sid)
}
