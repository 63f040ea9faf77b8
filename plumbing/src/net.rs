//! Resolving the `HOST:PORT` a user types, and binding a server's socket the way every server of
//! the workbook announces it.

use std::net::SocketAddr;

use anyhow::{Context, Result, anyhow};
use tokio::net::{TcpListener, UdpSocket};

/// Resolves `HOST:PORT` (a name or an address) to its first address.
///
/// # Errors
/// When the name does not resolve, or resolves to nothing; the message quotes what was given.
pub async fn resolve(addr: &str) -> Result<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("cannot resolve {addr:?} (expected HOST:PORT)"))?
        .next()
        .ok_or_else(|| anyhow!("{addr:?} resolves to no address"))
}

/// Binds a TCP listener on `addr` and prints `listening on ADDR` on stdout, ADDR being the
/// address bound (with the port that port 0 picked): the first line of every server's stdout,
/// which the suite and scripts wait for.
///
/// # Errors
/// When the address cannot be bound (in use, not this machine's); the message names it.
pub async fn listen(addr: SocketAddr) -> Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind {addr}"))?;
    println!("listening on {}", listener.local_addr()?);
    Ok(listener)
}

/// [`listen`] for a UDP server: binds `addr` and prints `listening on ADDR`.
///
/// # Errors
/// When the address cannot be bound; the message names it.
pub async fn listen_udp(addr: SocketAddr) -> Result<UdpSocket> {
    let socket = UdpSocket::bind(addr)
        .await
        .with_context(|| format!("cannot bind {addr}"))?;
    println!("listening on {}", socket.local_addr()?);
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_an_address_and_refuses_nonsense() {
        let addr = resolve("127.0.0.1:80").await.unwrap();
        assert_eq!(addr.port(), 80);
        let err = resolve("no port here").await.unwrap_err();
        assert!(format!("{err:#}").contains("expected HOST:PORT"), "{err:#}");
    }
}
