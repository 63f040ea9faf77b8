//! The broker's shared state: every subscription, indexed by subject, and publishing to them.
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
        self.max.store(max, Ordering::Release);
        self.delivered() < max
    }

    /// Whether it has delivered all it may.
    pub fn is_done(&self) -> bool {
        let max = self.max.load(Ordering::Acquire);
        max != 0 && self.delivered() >= max
    }

    /// Claims one delivery: `None` if none is left, else whether it was the last.
    fn claim(&self) -> Option<bool> {
        let max = self.max.load(Ordering::Acquire);
        let before = self.delivered.fetch_add(1, Ordering::AcqRel);
        if max == 0 {
            return Some(false);
        }
        (before < max).then_some(before + 1 == max)
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
    /// Picks the member of a queue group: a counter, scrambled per message (see [`pick`]).
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
        let subject = sub.subject.clone();
        // Nothing can be left half-done under this lock: a poisoned one is still consistent.
        self.index
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(&subject, sub);
    }

    /// Removes a subscription; whether it was there.
    pub fn unsubscribe(&self, sub: &Arc<Subscription>) -> bool {
        self.index
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&sub.subject, sub)
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
        let mut result = Published::default();
        let mut finished: Vec<Arc<Subscription>> = Vec::new();
        {
            let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
            let mut grouped: Vec<&Arc<Subscription>> = Vec::new();
            let mut deliver = |sub: &Arc<Subscription>| -> bool {
                let Some(last) = sub.claim() else {
                    return false;
                };
                if last {
                    finished.push(Arc::clone(sub));
                }
                match sub
                    .outbound
                    .push_msg(subject, &sub.sid, reply, payload, wakes)
                {
                    Push::Queued => result.delivered += 1,
                    Push::Slow => {
                        // Lost to this subscriber, which is being cut off; another member of
                        // its queue group, if any, takes the message instead.
                        result.slow += 1;
                        return false;
                    }
                    Push::Closed => return false,
                }
                true
            };
            index.for_each_match(subject, |sub| {
                if !echo && sub.client == publisher {
                    return;
                }
                if sub.queue.is_some() {
                    grouped.push(sub);
                } else {
                    deliver(sub);
                }
            });
            if !grouped.is_empty() {
                grouped.sort_by(|a, b| a.queue.cmp(&b.queue));
                let turn = self.turn.fetch_add(1, Ordering::Relaxed);
                for (nth, group) in grouped.chunk_by(|a, b| a.queue == b.queue).enumerate() {
                    // Start at this message's member; if it cannot take the message (closing,
                    // slow, or done), the next one does.
                    let start = pick(turn, nth, group.len());
                    (0..group.len())
                        .map(|i| group[(start + i) % group.len()])
                        .any(&mut deliver);
                }
            }
        }
        for sub in finished {
            self.unsubscribe(&sub);
        }
        result
    }
}

/// Which of `members` takes message number `turn` in the `nth` queue group it reaches.
///
/// Not `turn % members`: the counter is shared by every subject, so a publisher alternating
/// between two subjects with queue groups would send every message of one of them to the same
/// member. Scrambling the counter (splitmix64's finaliser) makes each subject's sequence of picks
/// look random, as `nats-server`'s are, while staying deterministic and allocation-free.
fn pick(turn: u64, nth: usize, members: usize) -> usize {
    let mut x = turn ^ (nth as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    // The remainder is below `members`, a `usize`, so it converts back.
    usize::try_from(x % members as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(broker: &Broker, subject: &str, queue: Option<&str>) -> Arc<Subscription> {
        let sub = Arc::new(Subscription::new(
            broker.next_id(),
            0,
            subject.as_bytes(),
            queue.map(str::as_bytes),
            b"1",
            Arc::new(Outbound::new(1 << 20, Arc::clone(broker.queue_budget()))),
        ));
        broker.subscribe(Arc::clone(&sub));
        sub
    }

    #[test]
    fn one_member_of_each_queue_group() {
        let broker = Broker::new(usize::MAX, usize::MAX);
        let plain = sub(&broker, "a.*", None);
        let q1: Vec<_> = (0..3).map(|_| sub(&broker, "a.b", Some("q1"))).collect();
        let q2 = sub(&broker, ">", Some("q2"));
        for _ in 0..30 {
            assert_eq!(
                broker
                    .publish(9, true, b"a.b", None, b"x", &mut Wakes::default())
                    .delivered,
                3
            );
        }
        assert_eq!(plain.delivered(), 30);
        assert_eq!(q2.delivered(), 30);
        let counts: Vec<u64> = q1.iter().map(|s| s.delivered()).collect();
        assert_eq!(counts.iter().sum::<u64>(), 30);
        assert!(
            counts.iter().all(|&n| n > 0),
            "members take turns: {counts:?}"
        );
    }

    #[test]
    fn alternating_subjects_do_not_starve_a_queue_member() {
        let broker = Broker::new(usize::MAX, usize::MAX);
        let a: Vec<_> = (0..2).map(|_| sub(&broker, "a", Some("q"))).collect();
        let _b: Vec<_> = (0..2).map(|_| sub(&broker, "b", Some("q"))).collect();
        for _ in 0..200 {
            for subject in [&b"a"[..], b"b"] {
                broker.publish(9, true, subject, None, b"x", &mut Wakes::default());
            }
        }
        let counts: Vec<u64> = a.iter().map(|s| s.delivered()).collect();
        assert!(
            counts.iter().all(|&n| n >= 60),
            "200 messages on `a`, alternating with `b`, to 2 members: {counts:?}"
        );
    }

    #[test]
    fn a_slow_member_passes_the_message_to_another() {
        let broker = Broker::new(usize::MAX, usize::MAX);
        let slow = Arc::new(Subscription::new(
            broker.next_id(),
            1,
            b"a",
            Some(b"q"),
            b"1",
            // Too small for any MSG: the first one makes it a slow consumer.
            Arc::new(Outbound::new(8, Arc::clone(broker.queue_budget()))),
        ));
        broker.subscribe(Arc::clone(&slow));
        let _ok = sub(&broker, "a", Some("q"));
        let results: Vec<Published> = (0..20)
            .map(|_| broker.publish(9, true, b"a", None, b"x", &mut Wakes::default()))
            .collect();
        assert!(
            results.iter().all(|r| r.delivered == 1),
            "every message reaches the member that can take it: {results:?}"
        );
        assert_eq!(results.iter().map(|r| r.slow).sum::<usize>(), 1);
    }

    #[test]
    fn a_limited_subscription_removes_itself() {
        let broker = Broker::new(usize::MAX, usize::MAX);
        let s = sub(&broker, "a", None);
        assert!(s.set_max(2));
        for _ in 0..5 {
            broker.publish(9, true, b"a", None, b"x", &mut Wakes::default());
        }
        assert_eq!(broker.subscriptions(), 0);
        assert!(s.is_done());
    }
}
