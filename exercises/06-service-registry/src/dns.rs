//! The DNS interface: `NAME.service.consul` and `TAG.NAME.service.consul` (and RFC 2782's
//! `_NAME._TAG.service.consul`) answer A and SRV records of the passing instances; anything
//! else under `.consul` is NXDOMAIN. The wire format is hickory's.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinDecodable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;
use tracing::debug;

use crate::server::Shared;
use crate::state::Registry;

/// The most A or SRV records in a UDP answer (Consul's `udp_answer_limit`); TCP has no limit.
pub const UDP_ANSWER_LIMIT: usize = 3;

/// DNS-over-TCP connections served at once.
pub const MAX_TCP_CONNECTIONS: usize = 256;

/// How long a DNS-over-TCP connection may stay silent.
pub const TCP_IDLE: Duration = Duration::from_secs(10);

/// The sockets of the DNS interface, bound by the caller (the agent prints `dns on ADDR`).
#[derive(Debug)]
pub struct DnsSockets {
    /// Queries over UDP.
    pub udp: UdpSocket,
    /// Queries over TCP (two-byte length prefix), on the same port.
    pub tcp: TcpListener,
}

impl DnsSockets {
    /// Binds UDP and TCP on one port. With port 0, the port UDP picked may be taken for TCP,
    /// so a few ports are tried.
    ///
    /// # Errors
    /// When the address cannot be bound (after those tries, for port 0).
    pub async fn bind(addr: SocketAddr) -> std::io::Result<DnsSockets> {
        let tries = if addr.port() == 0 { 20 } else { 1 };
        let mut last = None;
        for _ in 0..tries {
            let udp = UdpSocket::bind(addr).await?;
            match TcpListener::bind(udp.local_addr()?).await {
                Ok(tcp) => return Ok(DnsSockets { udp, tcp }),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no port could be bound")))
    }

    /// The address both sockets are bound to.
    ///
    /// # Errors
    /// When the socket cannot tell.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.udp.local_addr()
    }
}

/// Answers DNS on both sockets until the agent shuts down.
pub async fn serve(sockets: DnsSockets, shared: Arc<Shared>) {
    let udp = {
        let shared = Arc::clone(&shared);
        async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let (n, peer) = tokio::select! {
                    () = shared.shutdown.cancelled() => return,
                    got = sockets.udp.recv_from(&mut buf) => match got {
                        Ok(got) => got,
                        Err(e) => { debug!("dns recv: {e}"); continue; }
                    },
                };
                let reply = answer(&buf[..n], &shared.registry(), Some(UDP_ANSWER_LIMIT));
                if let Some(reply) = reply {
                    let _ = sockets.udp.send_to(&reply, peer).await;
                }
            }
        }
    };
    let tcp = async move {
        let permits = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
        loop {
            let (stream, _) = tokio::select! {
                () = shared.shutdown.cancelled() => return,
                got = sockets.tcp.accept() => match got {
                    Ok(got) => got,
                    Err(e) => { debug!("dns accept: {e}"); continue; }
                },
            };
            let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                continue;
            };
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                let _ = serve_tcp(stream, &shared).await;
                drop(permit);
            });
        }
    };
    tokio::join!(udp, tcp);
}

async fn serve_tcp(mut stream: tokio::net::TcpStream, shared: &Shared) -> std::io::Result<()> {
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut query)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let Some(reply) = answer(&query, &shared.registry(), None) else {
            return Ok(());
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            return Ok(());
        };
        stream.write_all(&reply_len.to_be_bytes()).await?;
        stream.write_all(&reply).await?;
    }
}

/// What a query name asks for.
#[derive(Debug, PartialEq, Eq)]
struct Lookup {
    service: String,
    tag: Option<String>,
}

/// Reads `[TAG.]NAME.service[.DC].consul.` or `_NAME._TAG.service[.DC].consul.`; `None` for
/// any other name under `.consul`. `labels` are the query name's labels left to right
/// (`["v1", "web", "service", "consul"]`), lower-cased, without the root's empty label;
/// `datacenter` is lower-cased too.
fn parse_name(labels: &[String], datacenter: &str) -> Option<Lookup> {
    // TODO: drop `consul`, then the datacenter label if present, then expect `service`; one label
    // left is the name, two are TAG.NAME or RFC 2782's `_NAME._TAG` (where `_tcp`/`_udp` means no tag).
    todo!()
}

/// The answer to one DNS message, or `None` when it is too broken to answer at all (fewer
/// bytes than a header). `limit` caps A and SRV records (a UDP answer's limit).
pub fn answer(query: &[u8], registry: &Registry, limit: Option<usize>) -> Option<Vec<u8>> {
    // TODO: the contract's "DNS", every rule of it: the header copied from the query (ID, opcode,
    // RD) with AA set and the question echoed; FORMERR, REFUSED, NXDOMAIN and the empty NOERROR
    // each where it says, the latter two with an SOA in the authority section; A and SRV records of
    // the passing instances, shuffled, at most `limit`, an SRV's target A record in the additional
    // section. hickory-proto's `Message`, `Record::from_rdata`, `RData::A`, `SRV`; `parse_name`.
    todo!()
}
