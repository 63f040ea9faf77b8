//! A UDP socket for tests: send JSON or raw bytes, receive JSON before a deadline.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A UDP socket bound to a free port on 127.0.0.1.
pub struct UdpPeer {
    socket: UdpSocket,
}

impl UdpPeer {
    /// Binds `127.0.0.1:0`.
    ///
    /// # Panics
    /// When the machine has no free UDP port.
    pub fn bind() -> UdpPeer {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket on 127.0.0.1:0");
        UdpPeer { socket }
    }

    /// The address the socket is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.socket
            .local_addr()
            .expect("a bound socket has an address")
    }

    /// Sends raw bytes as one datagram.
    pub fn send(&self, to: SocketAddr, datagram: &[u8]) {
        self.socket
            .send_to(datagram, to)
            .unwrap_or_else(|e| panic!("sending {} bytes to {to}: {e}", datagram.len()));
    }

    /// Sends a JSON value as one datagram.
    pub fn send_json(&self, to: SocketAddr, message: &Value) {
        self.send(to, message.to_string().as_bytes());
    }

    /// The next datagram within `timeout`, with its sender, or `None`.
    pub fn recv(&self, timeout: Duration) -> Option<(Vec<u8>, SocketAddr)> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65_536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.socket
                .set_read_timeout(Some(left))
                .expect("a non-zero read timeout is valid");
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => return Some((buf[..n].to_vec(), from)),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None;
                }
                // An ICMP error from an earlier send: not for this receive. Interrupted: a
                // signal (a child process of the test ending) cut the wait short.
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionRefused | ErrorKind::Interrupted
                    ) =>
                {
                    continue;
                }
                Err(e) => panic!("receiving on {}: {e}", self.addr()),
            }
        }
    }

    /// Discards every datagram already queued.
    pub fn drain(&self) {
        while self.recv(Duration::from_millis(1)).is_some() {}
    }
}
