//! The fencing-token store: a tiny key-value store that accepts a write only with a token at
//! least as high as any it has seen.
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
        match request {
            ResourceRequest::Write {
                token, key, value, ..
            } => {
                let refuse = |highest, why: &str| ResourceReply {
                    ok: false,
                    highest,
                    value: None,
                    error: Some(why.to_owned()),
                };
                if *token < self.highest {
                    return refuse(self.highest, "stale token");
                }
                if !self.values.contains_key(key) && self.values.len() >= max_keys {
                    return refuse(self.highest, "too many keys");
                }
                self.highest = *token;
                self.values.insert(key.clone(), value.clone());
                ResourceReply {
                    ok: true,
                    highest: self.highest,
                    value: None,
                    error: None,
                }
            }
            ResourceRequest::Read { key } => ResourceReply {
                ok: true,
                highest: self.highest,
                value: self.values.get(key).cloned(),
                error: None,
            },
        }
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
    let mut store = Fenced::default();
    let mut buf = vec![0u8; config.max_request + 1];
    loop {
        let (len, from) = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            received = socket.recv_from(&mut buf) => match received {
                Ok(got) => got,
                Err(e) => {
                    debug!("receive error: {e}");
                    continue;
                }
            },
        };
        if len > config.max_request {
            continue;
        }
        let reply = match serde_json::from_slice::<ResourceRequest>(&buf[..len]) {
            Ok(request) => {
                let reply = store.apply(&request, config.max_keys);
                if let ResourceRequest::Write {
                    token, key, from, ..
                } = &request
                {
                    print_json(&WriteEvent {
                        event: "write",
                        key,
                        token: *token,
                        from: from.as_deref(),
                        accepted: reply.ok,
                        highest: reply.highest,
                        time_ms: now_ms(),
                    })?;
                }
                reply
            }
            Err(e) => ResourceReply {
                ok: false,
                highest: store.highest,
                value: None,
                error: Some(format!("malformed request: {e}")),
            },
        };
        reply_to(&socket, &reply, from).await;
    }
}

async fn reply_to(socket: &UdpSocket, reply: &ResourceReply, to: SocketAddr) {
    if let Err(e) = socket.send_to(&protocol::encode(reply), to).await {
        debug!(%to, "reply failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_stale_token() {
        let mut store = Fenced::default();
        let write = |token| ResourceRequest::Write {
            token,
            key: "k".into(),
            value: format!("v{token}"),
            from: None,
        };
        assert!(store.apply(&write(3), 10).ok);
        assert!(!store.apply(&write(2), 10).ok);
        assert!(store.apply(&write(3), 10).ok);
        let read = store.apply(&ResourceRequest::Read { key: "k".into() }, 10);
        assert_eq!((read.value.as_deref(), read.highest), (Some("v3"), 3));
    }
}
