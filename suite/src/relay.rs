//! A UDP relay between the members of a cluster, for tests: it can cut links (partitions),
//! drop a share of datagrams, and counts what passes by the JSON `type` field.
//!
//! For every ordered pair of members (i, j) the relay binds one socket, `link(i, j)`: that is
//! the address member i is told to use for peer j. A datagram member i sends there is passed on
//! to member j's real address *from* `link(j, i)`, so that j sees it come from exactly the
//! address it was told is i's. Members never learn each other's real addresses, and every
//! datagram between them goes through the relay.

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Default)]
struct State {
    /// Where each member really listens, once known.
    real: BTreeMap<usize, SocketAddr>,
    /// Links (from, to) that drop everything.
    cut: BTreeSet<(usize, usize)>,
    /// Datagrams passed on, by `type`.
    counts: BTreeMap<String, u64>,
    /// The share of datagrams dropped at random, in parts per thousand.
    loss_per_mille: u32,
    /// The random state for losses (xorshift, seeded by the test).
    rng: u64,
}

/// The relay. Dropping it stops its threads.
pub struct UdpRelay {
    n: usize,
    links: Vec<Vec<Option<SocketAddr>>>,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl UdpRelay {
    /// A relay for `n` members, with losses drawn from `seed`.
    ///
    /// # Panics
    /// When the sockets cannot be bound.
    pub fn new(n: usize, seed: u64) -> UdpRelay {
        let mut sockets: Vec<Vec<Option<Arc<UdpSocket>>>> = vec![vec![None; n]; n];
        for (i, row) in sockets.iter_mut().enumerate() {
            for (j, slot) in row.iter_mut().enumerate() {
                if i != j {
                    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a relay socket");
                    socket
                        .set_read_timeout(Some(Duration::from_millis(50)))
                        .expect("a read timeout");
                    *slot = Some(Arc::new(socket));
                }
            }
        }
        let links = sockets
            .iter()
            .map(|row| {
                row.iter()
                    .map(|s| s.as_ref().map(|s| s.local_addr().expect("bound")))
                    .collect()
            })
            .collect();
        let state = Arc::new(Mutex::new(State {
            rng: seed | 1,
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (i, row) in sockets.iter().enumerate() {
            for (j, slot) in row.iter().enumerate() {
                let (Some(inbound), Some(outbound)) = (slot.clone(), sockets[j][i].clone()) else {
                    continue;
                };
                let state = Arc::clone(&state);
                let stop = Arc::clone(&stop);
                threads.push(std::thread::spawn(move || {
                    pass_on(i, j, &inbound, &outbound, &state, &stop);
                }));
            }
        }
        UdpRelay {
            n,
            links,
            state,
            stop,
            threads,
        }
    }

    /// The address member `from` must use for peer `to`.
    pub fn link(&self, from: usize, to: usize) -> SocketAddr {
        self.links[from][to].expect("a member has no link to itself")
    }

    /// Tells the relay where member `i` really listens (again after a restart).
    pub fn set_member(&self, i: usize, addr: SocketAddr) {
        self.lock().real.insert(i, addr);
    }

    /// Cuts the cluster into `groups`: links inside a group work, links between groups drop
    /// everything. Members in no group are cut off from everyone.
    pub fn partition(&self, groups: &[&[usize]]) {
        let group_of = |m: usize| groups.iter().position(|g| g.contains(&m));
        let mut state = self.lock();
        state.cut.clear();
        for i in 0..self.n {
            for j in 0..self.n {
                if i != j && (group_of(i).is_none() || group_of(i) != group_of(j)) {
                    state.cut.insert((i, j));
                }
            }
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.lock().cut.clear();
    }

    /// Drops this share (0.0 to 1.0) of the datagrams on working links, at random.
    pub fn set_loss(&self, share: f64) {
        self.lock().loss_per_mille = (share.clamp(0.0, 1.0) * 1000.0) as u32;
    }

    /// Datagrams passed on so far, by `type`.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.lock().counts.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn pass_on(
    from: usize,
    to: usize,
    inbound: &UdpSocket,
    outbound: &UdpSocket,
    state: &Mutex<State>,
    stop: &AtomicBool,
) {
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let len = match inbound.recv_from(&mut buf) {
            Ok((len, _)) => len,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            // An ICMP error from an earlier send to a member that was down.
            Err(_) => continue,
        };
        let target = {
            let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
            if state.cut.contains(&(from, to)) {
                continue;
            }
            if state.loss_per_mille > 0 {
                let mut x = state.rng;
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                state.rng = x;
                if (x % 1000) < u64::from(state.loss_per_mille) {
                    continue;
                }
            }
            let kind = serde_json::from_slice::<serde_json::Value>(&buf[..len])
                .ok()
                .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
                .unwrap_or_else(|| "?".to_owned());
            *state.counts.entry(kind).or_default() += 1;
            state.real.get(&to).copied()
        };
        if let Some(target) = target {
            let _ = outbound.send_to(&buf[..len], target);
        }
    }
}
