//! A TCP proxy that damages what passes through it, on purpose: flip one byte, cut the
//! connection after so many bytes, or slow it down. Tests put it between a client and a server to
//! check that every fault ends in a correct result or a clear error.
//!
//! Faults apply to the client-to-server direction. [`Fault::FlipByte`] and [`Fault::CutAfter`]
//! apply to the first connection only (so a retry through the same proxy goes through clean),
//! [`Fault::CutNthAfter`] to the one it names; [`Fault::Throttle`] applies to every connection. The server-to-client direction is copied as
//! it is.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// What the proxy does to the bytes a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing: a plain relay.
    None,
    /// Inverts every bit of the byte at this offset of the first connection's stream.
    FlipByte(u64),
    /// Forwards this many bytes of the first connection, then closes both of its sides.
    CutAfter(u64),
    /// Forwards at most this many bytes per second on each connection.
    Throttle(u64),
    /// Forwards this many bytes (the second number) of the connection with this index (the first
    /// number, 0 for the first connection), then closes both of its sides; every other
    /// connection goes through clean.
    CutNthAfter(usize, u64),
    /// Forwards this many bytes of every connection, then closes both of its sides: a client
    /// gets through only by reconnecting, however it spreads its requests over connections.
    CutEachAfter(u64),
}

/// A running proxy; it stops, and closes every connection through it, when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    forwarded: Arc<AtomicU64>,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port that relays to `target`, applying `fault`.
    pub fn start(target: SocketAddr, fault: Fault) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let forwarded = Arc::new(AtomicU64::new(0));
        let live = Arc::new(Mutex::new(Vec::new()));
        let (stop2, forwarded2, live2) = (stop.clone(), forwarded.clone(), live.clone());
        thread::spawn(move || {
            let mut index = 0usize;
            for client in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(target) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let fault = match fault {
                    Fault::Throttle(_) => fault,
                    Fault::CutNthAfter(n, limit) if n == index => Fault::CutAfter(limit),
                    Fault::CutNthAfter(..) => Fault::None,
                    Fault::CutEachAfter(limit) => Fault::CutAfter(limit),
                    _ if index == 0 => fault,
                    _ => Fault::None,
                };
                index += 1;
                if let Err(e) = relay(client, server, fault, &forwarded2, &live2) {
                    eprintln!("fault proxy: cannot relay a connection: {e}");
                }
            }
        });
        Ok(FaultProxy {
            addr,
            stop,
            forwarded,
            live,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many client bytes have been forwarded to the server so far, on every connection.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
        for stream in self.live.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn relay(
    client: TcpStream,
    server: TcpStream,
    fault: Fault,
    forwarded: &Arc<AtomicU64>,
    live: &Arc<Mutex<Vec<TcpStream>>>,
) -> io::Result<()> {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    {
        let mut live = live.lock().unwrap_or_else(|p| p.into_inner());
        live.push(client.try_clone()?);
        live.push(server.try_clone()?);
    }
    let (up_from, up_to) = (client.try_clone()?, server.try_clone()?);
    let forwarded = Arc::clone(forwarded);
    thread::spawn(move || pump_up(up_from, up_to, fault, &forwarded));
    thread::spawn(move || {
        let (mut from, mut to) = (server, client);
        let _ = io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
    Ok(())
}

/// Client to server, with the fault.
fn pump_up(mut from: TcpStream, mut to: TcpStream, fault: Fault, forwarded: &AtomicU64) {
    let started = Instant::now();
    let mut offset = 0u64;
    // Small slices when throttling, so that the rate is smooth.
    let mut buf = vec![
        0u8;
        if matches!(fault, Fault::Throttle(_)) {
            1024
        } else {
            64 * 1024
        }
    ];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut slice = &mut buf[..n];
        match fault {
            Fault::FlipByte(at) if (offset..offset + n as u64).contains(&at) => {
                slice[(at - offset) as usize] ^= 0xff;
            }
            Fault::CutAfter(limit) => {
                let room = limit.saturating_sub(offset) as usize;
                if room < slice.len() {
                    slice = &mut slice[..room];
                    let _ = to.write_all(slice);
                    forwarded.fetch_add(room as u64, Ordering::SeqCst);
                    let _ = to.shutdown(Shutdown::Both);
                    let _ = from.shutdown(Shutdown::Both);
                    return;
                }
            }
            Fault::Throttle(rate) => {
                // Pacing, not synchronisation: the bytes may not leave before their time.
                let due = Duration::from_secs_f64((offset + n as u64) as f64 / rate.max(1) as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    thread::sleep(wait);
                }
            }
            _ => {}
        }
        if to.write_all(slice).is_err() {
            break;
        }
        offset += n as u64;
        forwarded.fetch_add(n as u64, Ordering::SeqCst);
    }
    let _ = to.shutdown(Shutdown::Write);
}
