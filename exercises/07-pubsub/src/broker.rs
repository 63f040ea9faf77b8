//! The broker's shared state: every subscription, indexed by subject, and publishing to them.
//!
//! Your task (stages 2 to 5): [`Subscription::set_max`], [`Subscription::is_done`],
//! [`Broker::subscribe`], [`Broker::unsubscribe`] and [`Broker::publish`].
//!
//! One [`Index`] behind a read-write lock: publishing takes the read lock (so publishers on
//! different threads fan out in parallel) and never awaits while holding it; subscribing and
//! unsubscribing take the write lock briefly. Delivery is appending to each subscriber's
//! [`Outbound`] queue, which never waits either.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::outbound::{Budget, Outbound, Push, Wakes};
use crate::subject::Index;

/// What one subscription costs besides its strings and nodes, in [`Subscription::memory`]: the
/// shared record, and its entries in the index and in its connection's map.
pub const SUBSCRIPTION_BYTES: usize = 256;

/// What one node of the index costs, in [`Subscription::memory`]: about 270 bytes measured (a
/// node, its map slot in its parent, its key), rounded up.
pub const NODE_BYTES: usize = 320;

/// One subscription of one client.
#[derive(Debug)]
pub struct Subscription {
    /// Unique in the broker: how the index tells subscriptions apart.
    pub id: u64,
    /// The client that made it.
    pub client: u64,
    /// Its subject, possibly with wildcards.
    pub subject: Box<[u8]>,
    /// Its queue group, if any.
    pub queue: Option<Box<[u8]>>,
    /// The client's name for it, sent back in every `MSG`.
    pub sid: Box<[u8]>,
    /// The client's queue.
    pub outbound: Arc<Outbound>,
    /// Messages delivered so far.
    delivered: AtomicU64,
    /// Remove after this many deliveries in all (0: never).
    max: AtomicU64,
}

impl PartialEq for Subscription {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Subscription {
    /// A subscription with no delivery limit.
    pub fn new(
        id: u64,
        client: u64,
        subject: &[u8],
        queue: Option<&[u8]>,
        sid: &[u8],
        outbound: Arc<Outbound>,
    ) -> Subscription {
        Subscription {
            id,
            client,
            subject: subject.into(),
            queue: queue.map(Into::into),
            sid: sid.into(),
            outbound,
            delivered: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }

    /// An estimate, from above, of the bytes a subscription holds: [`SUBSCRIPTION_BYTES`] for
    /// itself, [`NODE_BYTES`] for each token of its subject (each may be a node of the index),
    /// its subject and sid twice (in the subscription, and as the index's keys and the
    /// connection's), and its queue name.
    pub fn memory(subject: &[u8], queue: Option<&[u8]>, sid: &[u8]) -> usize {
        let tokens = subject.split(|b| *b == b'.').count();
        SUBSCRIPTION_BYTES
            + NODE_BYTES * tokens
            + 2 * subject.len()
            + 2 * sid.len()
            + queue.map_or(0, <[u8]>::len)
    }

    /// Messages delivered so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Acquire)
    }

    /// Limits the subscription to `max` deliveries in all (`UNSUB sid max`). Returns whether it
    /// is still live (it has delivered fewer than `max`).
    pub fn set_max(&self, max: u64) -> bool {
        // TODO: store `max` (`Ordering::Release`); live if fewer than `max` were delivered.
        todo!()
    }

    /// Whether it has delivered all it may.
    pub fn is_done(&self) -> bool {
        // TODO: a non-zero max that the delivered count has reached.
        todo!()
    }

    /// Claims one delivery: `None` if none is left, else whether it was the last.
    fn claim(&self) -> Option<bool> {
        // TODO: a suggestion: `fetch_add(1)` on `delivered`; with no max, `Some(false)`; with one,
        // `Some(was_last)` if the count before was under it, else `None`.
        todo!()
    }
}

/// What publishing did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Messages queued for subscribers.
    pub delivered: usize,
    /// Subscribers found slow and disconnected.
    pub slow: usize,
}

/// Every subscription, and the counters that name clients and subscriptions.
#[derive(Debug)]
pub struct Broker {
    index: RwLock<Index<Arc<Subscription>>>,
    next_id: AtomicU64,
    /// Picks the member of a queue group: a counter, scrambled per message.
    turn: AtomicU64,
    /// What every client's subscriptions may hold together, as [`Subscription::memory`]
    /// estimates it.
    subscription_budget: Budget,
    /// What every client's outbound queue may hold together.
    queue_budget: Arc<Budget>,
}

impl Broker {
    /// An empty broker whose subscriptions may hold `subscription_bytes` in all, and whose
    /// outbound queues `queued_bytes` in all.
    pub fn new(subscription_bytes: usize, queued_bytes: usize) -> Broker {
        Broker {
            index: RwLock::default(),
            next_id: AtomicU64::new(0),
            turn: AtomicU64::new(0),
            subscription_budget: Budget::new(subscription_bytes),
            queue_budget: Arc::new(Budget::new(queued_bytes)),
        }
    }

    /// The budget every client's subscriptions draw on.
    pub fn subscription_budget(&self) -> &Budget {
        &self.subscription_budget
    }

    /// The budget every client's outbound queue draws on, for [`Outbound::new`].
    pub fn queue_budget(&self) -> &Arc<Budget> {
        &self.queue_budget
    }

    /// A fresh id, for a client or a subscription.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// How many subscriptions exist.
    pub fn subscriptions(&self) -> usize {
        self.index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Adds a subscription.
    pub fn subscribe(&self, sub: Arc<Subscription>) {
        // TODO: `self.index.write()` (a poisoned lock is still consistent:
        // `unwrap_or_else(PoisonError::into_inner)`), then `insert` under the subscription's
        // subject.
        todo!()
    }

    /// Removes a subscription; whether it was there.
    pub fn unsubscribe(&self, sub: &Arc<Subscription>) -> bool {
        // TODO: `remove` it from the index under the write lock.
        todo!()
    }

    /// Delivers a message to every subscription matching `subject` (one member of each queue
    /// group), skipping the publisher's own when `echo` is off. Never waits for a subscriber.
    /// The writers to wake are added to `wakes`.
    pub fn publish(
        &self,
        publisher: u64,
        echo: bool,
        subject: &[u8],
        reply: Option<&[u8]>,
        payload: &[u8],
        wakes: &mut Wakes,
    ) -> Published {
        // TODO: the contract's "Delivery" for one `PUB`, without ever awaiting or blocking on a
        // subscriber: `MSG` to every matching plain subscription and to one member of each queue
        // group, a member able to take it (not closed, slow or done), spread evenly for every
        // subject, even when a publisher alternates subjects (the turn counter is shared by all).
        // `UNSUB` maximums hold exactly, under racing publishers. `Index::for_each_match` under
        // `self.index.read()`, `Outbound::push_msg`, `Subscription::claim`, `slice::chunk_by`.
        todo!()
    }
}
