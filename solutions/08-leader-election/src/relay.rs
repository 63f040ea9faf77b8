//! The simulator's network: a UDP relay between the nodes that can drop, delay, duplicate and
//! partition traffic, and counts what passes by message type.
//!
//! For every ordered pair of nodes (i, j) the relay binds one socket, `link(i, j)`: the address
//! node i is given for peer j. A datagram node i sends there is passed on to node j's real
//! address from `link(j, i)`, so that j sees it come from exactly the address it knows as i's:
//! the membership check holds, and every datagram between nodes goes through the relay.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::rng::Rng;

/// Datagrams held back for delivery later at most; beyond, delayed datagrams are dropped.
pub const MAX_IN_FLIGHT: usize = 10_000;

/// What the relay does to traffic on working links.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// The share of datagrams dropped (0.0 to 1.0).
    pub loss: f64,
    /// The share of datagrams delivered twice.
    pub duplicate: f64,
    /// A delay added to every datagram.
    pub delay: Duration,
    /// A random extra delay, from zero to this.
    pub jitter: Duration,
}

struct Shared {
    real: Vec<Option<SocketAddr>>,
    cut: BTreeSet<(usize, usize)>,
    faults: Faults,
    rng: Rng,
    counts: BTreeMap<String, u64>,
    in_flight: usize,
}

/// The relay; its tasks stop when the shutdown token given to [`Relay::start`] is cancelled.
pub struct Relay {
    n: usize,
    links: Vec<Vec<Option<SocketAddr>>>,
    shared: Arc<Mutex<Shared>>,
}

impl Relay {
    /// Binds the `n * (n - 1)` link sockets on 127.0.0.1 and starts passing traffic on.
    ///
    /// # Errors
    /// When a socket cannot be bound.
    pub async fn start(
        n: usize,
        faults: Faults,
        seed: u64,
        shutdown: CancellationToken,
    ) -> io::Result<Relay> {
        let mut sockets: Vec<Vec<Option<Arc<UdpSocket>>>> = vec![vec![None; n]; n];
        for (i, row) in sockets.iter_mut().enumerate() {
            for (j, slot) in row.iter_mut().enumerate() {
                if i != j {
                    *slot = Some(Arc::new(UdpSocket::bind("127.0.0.1:0").await?));
                }
            }
        }
        let mut links = vec![vec![None; n]; n];
        for (i, row) in sockets.iter().enumerate() {
            for (j, slot) in row.iter().enumerate() {
                if let Some(s) = slot {
                    links[i][j] = Some(s.local_addr()?);
                }
            }
        }
        let shared = Arc::new(Mutex::new(Shared {
            real: vec![None; n],
            cut: BTreeSet::new(),
            faults,
            rng: Rng::seeded(seed),
            counts: BTreeMap::new(),
            in_flight: 0,
        }));
        for (i, row) in sockets.iter().enumerate() {
            for (j, slot) in row.iter().enumerate() {
                let (Some(inbound), Some(outbound)) = (slot.clone(), sockets[j][i].clone()) else {
                    continue;
                };
                let shared = Arc::clone(&shared);
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = pass_on(i, j, inbound, outbound, shared) => {}
                    }
                });
            }
        }
        Ok(Relay { n, links, shared })
    }

    /// The address node `from` is given for peer `to`.
    pub fn link(&self, from: usize, to: usize) -> SocketAddr {
        self.links[from][to].expect("a node has no link to itself")
    }

    /// Where node `i` really listens (again after each restart).
    pub fn set_member(&self, i: usize, addr: SocketAddr) {
        self.lock().real[i] = Some(addr);
    }

    /// Cuts every link between different groups; a node in no group is cut off from all.
    pub fn partition(&self, groups: &[Vec<usize>]) {
        let group_of = |m: usize| groups.iter().position(|g| g.contains(&m));
        let mut shared = self.lock();
        shared.cut.clear();
        for i in 0..self.n {
            for j in 0..self.n {
                if i != j && (group_of(i).is_none() || group_of(i) != group_of(j)) {
                    shared.cut.insert((i, j));
                }
            }
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.lock().cut.clear();
    }

    /// Datagrams passed on so far, by their `type` field.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.lock().counts.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn pass_on(
    from: usize,
    to: usize,
    inbound: Arc<UdpSocket>,
    outbound: Arc<UdpSocket>,
    shared: Arc<Mutex<Shared>>,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        // An error is an ICMP notice from an earlier send to a node that was down.
        let Ok((len, _)) = inbound.recv_from(&mut buf).await else {
            continue;
        };
        let datagram = buf[..len].to_vec();
        let (target, copies, delay) = {
            let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
            let faults = s.faults;
            if s.cut.contains(&(from, to)) || s.rng.chance(faults.loss) {
                continue;
            }
            let Some(target) = s.real[to] else { continue };
            let kind = serde_json::from_slice::<serde_json::Value>(&datagram)
                .ok()
                .and_then(|v| v.get("type")?.as_str().map(str::to_owned))
                .unwrap_or_else(|| "?".to_owned());
            *s.counts.entry(kind).or_default() += 1;
            let copies = if s.rng.chance(faults.duplicate) { 2 } else { 1 };
            let delay = faults.delay + s.rng.below(faults.jitter);
            if !delay.is_zero() {
                if s.in_flight >= MAX_IN_FLIGHT {
                    continue;
                }
                s.in_flight += 1;
            }
            (target, copies, delay)
        };
        if delay.is_zero() {
            for _ in 0..copies {
                let _ = outbound.send_to(&datagram, target).await;
            }
            continue;
        }
        let outbound = Arc::clone(&outbound);
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            for _ in 0..copies {
                let _ = outbound.send_to(&datagram, target).await;
            }
            shared.lock().unwrap_or_else(|p| p.into_inner()).in_flight -= 1;
        });
    }
}
