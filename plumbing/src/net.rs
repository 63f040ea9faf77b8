//! Resolving the `HOST:PORT` a user types.

use std::net::SocketAddr;

use anyhow::{Context, Result, anyhow};

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
