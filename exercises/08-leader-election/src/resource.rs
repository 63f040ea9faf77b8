//! The fencing-token store: a tiny key-value store that accepts a write only with a token at
//! least as high as any it has seen.
//!
//! Your task (stage 6): [`Fenced::apply`] and [`run`]. The leader's writes are in `server.rs`.
//!
//! A leader writes with its term as the token. A deposed leader that does not know it yet (it
//! was paused, or its messages were delayed) still holds its old term, lower than its
//! successor's: its late write is refused here, whatever its clock believed.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;

use serde::Serialize;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::protocol::{self, ResourceReply, ResourceRequest};
use crate::server::{now_ms, print_json};

/// The most keys the store holds.
pub const DEFAULT_MAX_KEYS: usize = 10_000;
/// The longest request accepted, in bytes.
pub const DEFAULT_MAX_REQUEST: usize = 8 * 1024;

/// The store's limits.
#[derive(Debug, Clone, Copy)]
pub struct ResourceConfig {
    /// The most keys held; a write of a further key is refused.
    pub max_keys: usize,
    /// The longest request; longer ones are dropped.
    pub max_request: usize,
}

impl Default for ResourceConfig {
    fn default() -> ResourceConfig {
        ResourceConfig {
            max_keys: DEFAULT_MAX_KEYS,
            max_request: DEFAULT_MAX_REQUEST,
        }
    }
}

/// The line the store prints for every write, accepted or refused.
#[derive(Debug, Serialize)]
struct WriteEvent<'a> {
    event: &'static str,
    key: &'a str,
    token: u64,
    from: Option<&'a str>,
    accepted: bool,
    highest: u64,
    time_ms: u64,
}

/// The store's state: the highest token seen and the values.
#[derive(Debug, Default)]
pub struct Fenced {
    highest: u64,
    values: BTreeMap<String, String>,
}

impl Fenced {
    /// Applies one request.
    pub fn apply(&mut self, request: &ResourceRequest, max_keys: usize) -> ResourceReply {
        // TODO: a write whose token is below `highest` is refused (`stale token`); a new key
        // past `max_keys` too (`too many keys`); otherwise store it and raise `highest` to the
        // token. A read answers the value (or `None`) and `highest`.
        todo!()
    }
}

/// Runs the store on `socket` until `shutdown` is cancelled.
///
/// # Errors
/// When stdout cannot be written.
pub async fn run(
    socket: UdpSocket,
    config: ResourceConfig,
    shutdown: CancellationToken,
) -> io::Result<()> {
    // TODO: the store of the contract's "Fencing" on `socket` until `shutdown`: every request
    // answered (one too long for `max_request` is dropped), a request that does not parse answered
    // `ok: false` with `malformed request: ...`, and every write printed as a `WriteEvent`.
    // `apply`, `reply_to`, `print_json`, `tokio::select!`.
    todo!()
}

async fn reply_to(socket: &UdpSocket, reply: &ResourceReply, to: SocketAddr) {
    if let Err(e) = socket.send_to(&protocol::encode(reply), to).await {
        debug!(%to, "reply failed: {e}");
    }
}
