//! The status client: asks a node for its view, with retries (UDP may lose either datagram).
//!
//! Your task (stage 1): [`fetch`].

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
    // TODO: the `status_reply` of the node at `node` (contract: "Status"), asked up to `tries`
    // times, `wait` each, an answer from another address ignored. `UdpSocket`,
    // `tokio::time::timeout`, `protocol::encode`.
    todo!()
}
