//! The status client: asks a node for its view, with retries (UDP may lose either datagram).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::net::UdpSocket;

use crate::protocol::{self, Message, StatusReply};

/// Asks `node` for its status, `tries` times at most, waiting `wait` for each answer.
///
/// # Errors
/// When no answer comes, or the answer is not a status reply.
pub async fn fetch(node: SocketAddr, wait: Duration, tries: u32) -> Result<StatusReply> {
    let bind = if node.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(bind)
        .await
        .context("binding a UDP socket")?;
    let request = protocol::encode(&Message::Status);
    let mut buf = vec![0u8; 65_536];
    for _ in 0..tries.max(1) {
        socket
            .send_to(&request, node)
            .await
            .context("sending the request")?;
        let Ok(received) = tokio::time::timeout(wait, socket.recv_from(&mut buf)).await else {
            continue;
        };
        let (len, from) = received.context("receiving the reply")?;
        if from != node {
            continue;
        }
        return serde_json::from_slice(&buf[..len])
            .with_context(|| format!("{node} answered with something other than a status reply"));
    }
    bail!("{node} did not answer {tries} status requests, {wait:?} apart")
}
