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
    let mut labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    if labels.last() != Some(&"consul") {
        return None;
    }
    labels.pop();
    if labels.last() == Some(&datacenter) && labels.len() >= 3 {
        labels.pop();
    }
    if labels.last() != Some(&"service") {
        return None;
    }
    labels.pop();
    match labels.as_slice() {
        [name] => Some(Lookup {
            service: (*name).to_owned(),
            tag: None,
        }),
        [first, second] => match (first.strip_prefix('_'), second.strip_prefix('_')) {
            // RFC 2782: `_tcp` (or `_udp`) is the protocol, not a tag.
            (Some(name), Some("tcp" | "udp")) => Some(Lookup {
                service: name.to_owned(),
                tag: None,
            }),
            (Some(name), Some(tag)) => Some(Lookup {
                service: name.to_owned(),
                tag: Some(tag.to_owned()),
            }),
            _ => Some(Lookup {
                service: (*second).to_owned(),
                tag: Some((*first).to_owned()),
            }),
        },
        _ => None,
    }
}

/// The answer to one DNS message, or `None` when it is too broken to answer at all (fewer
/// bytes than a header). `limit` caps A and SRV records (a UDP answer's limit).
pub fn answer(query: &[u8], registry: &Registry, limit: Option<usize>) -> Option<Vec<u8>> {
    let request = match Message::from_bytes(query) {
        Ok(request) => request,
        Err(_) if query.len() >= 2 => {
            let mut reply = Message::new();
            reply.set_id(u16::from_be_bytes([query[0], query[1]]));
            reply.set_message_type(MessageType::Response);
            reply.set_response_code(ResponseCode::FormErr);
            return reply.to_vec().ok();
        }
        Err(_) => return None,
    };
    let mut reply = Message::new();
    reply.set_id(request.id());
    reply.set_message_type(MessageType::Response);
    reply.set_op_code(request.op_code());
    reply.set_recursion_desired(request.recursion_desired());
    reply.set_authoritative(true);
    let Some(question) = request.queries().first().cloned() else {
        reply.set_response_code(ResponseCode::FormErr);
        return reply.to_vec().ok();
    };
    reply.add_query(question.clone());
    let name = question.name().to_lowercase();
    let labels: Vec<String> = name
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    if labels.last().map(String::as_str) != Some("consul") {
        reply.set_response_code(ResponseCode::Refused);
        return reply.to_vec().ok();
    }
    let datacenter = registry.node().datacenter.to_lowercase();
    let instances = parse_name(&labels, &datacenter)
        .map(|lookup| registry.passing_instances(&lookup.service, lookup.tag.as_deref()))
        .unwrap_or_default();
    let mut instances: Vec<(String, Ipv4Addr, u16)> = instances
        .into_iter()
        .filter_map(|(id, address, port)| match IpAddr::from_str(&address) {
            Ok(IpAddr::V4(ip)) => Some((id, ip, port)),
            _ => None,
        })
        .collect();
    if instances.is_empty() {
        reply.set_response_code(ResponseCode::NXDomain);
        reply.add_name_server(soa(&datacenter));
        return reply.to_vec().ok();
    }
    // Consul shuffles the instances so that clients spread their load.
    rand::seq::SliceRandom::shuffle(instances.as_mut_slice(), &mut rand::rng());
    if let Some(limit) = limit {
        instances.truncate(limit);
    }
    let qtype = question.query_type();
    for (_, ip, port) in &instances {
        match qtype {
            RecordType::A | RecordType::ANY => {
                reply.add_answer(Record::from_rdata(name.clone(), 0, RData::A(A(*ip))));
            }
            RecordType::SRV => {
                let target =
                    Name::from_ascii(format!("{}.addr.{datacenter}.consul.", hex_ip(*ip))).ok()?;
                let srv = SRV::new(1, 1, *port, target.clone());
                reply.add_answer(Record::from_rdata(name.clone(), 0, RData::SRV(srv)));
                reply.add_additional(Record::from_rdata(target, 0, RData::A(A(*ip))));
            }
            _ => {}
        }
    }
    if reply.answers().is_empty() {
        reply.add_name_server(soa(&datacenter));
    }
    reply.to_vec().ok()
}

fn hex_ip(ip: Ipv4Addr) -> String {
    ip.octets().iter().map(|b| format!("{b:02x}")).collect()
}

fn soa(datacenter: &str) -> Record {
    let zone = Name::from_ascii("consul.").unwrap_or_else(|_| Name::root());
    let mname =
        Name::from_ascii(format!("ns.{datacenter}.consul.")).unwrap_or_else(|_| Name::root());
    let rname = Name::from_ascii("hostmaster.consul.").unwrap_or_else(|_| Name::root());
    let soa = SOA::new(mname, rname, 1, 3600, 600, 86400, 0);
    Record::from_rdata(zone, 0, RData::SOA(soa))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(name: &str) -> Vec<String> {
        name.split('.').map(str::to_owned).collect()
    }

    #[test]
    fn names() {
        let plain = parse_name(&labels("web.service.consul"), "dc1").unwrap();
        assert_eq!(plain.service, "web");
        assert_eq!(plain.tag, None);
        let tagged = parse_name(&labels("v1.web.service.dc1.consul"), "dc1").unwrap();
        assert_eq!(tagged.tag.as_deref(), Some("v1"));
        let rfc = parse_name(&labels("_web._tcp.service.consul"), "dc1").unwrap();
        assert_eq!((rfc.service.as_str(), rfc.tag), ("web", None));
        assert_eq!(parse_name(&labels("web.node.consul"), "dc1"), None);
    }
}
