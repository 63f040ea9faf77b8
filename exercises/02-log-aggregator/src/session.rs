//! One RELP client's session: `open`, then `syslog` commands answered in order with `rsp`,
//! each only once its message is accepted under the fsync policy, then `close`. At shutdown,
//! what was received is acknowledged, and a `serverclose` hint says goodbye.
//!
//! Your task (stage 6): [`serve`] and the handling of one command.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::connection::{Reader, Shared};
use crate::protocol::{Frame, Framing};
use crate::record::{self, Origin};
use crate::relp::{self, HINT_TXNR};

/// How long a client may take to read our answers before the session is dropped.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// An answer owed, in the order of the commands.
enum Answer {
    /// The `rsp` to a `syslog` command, sent once its line is accepted.
    Ack(u32),
    /// Any other answer, encoded.
    Frame(Vec<u8>),
}

/// What a read's commands turned into: lines to append, then answers to send, in order.
#[derive(Default)]
struct Round {
    lines: Vec<u8>,
    count: u64,
    answers: Vec<Answer>,
    close: bool,
}

impl Round {
    fn answer(&mut self, txnr: u32, data: &[u8]) {
        let mut frame = Vec::new();
        relp::encode(&mut frame, txnr, "rsp", data);
        self.answers.push(Answer::Frame(frame));
    }
}

/// Serves one RELP client until `close`, an error, or shutdown.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    // TODO: (stage 6) the RELP session of the contract: every frame of one read through `command`
    // into a `Round`, its lines appended as one batch, then the answers in order (an ack is `200
    // OK` once accepted, `500` if the append failed); `0 serverclose 0` before closing unless the
    // client closed. A client that does not read its answers is dropped after `WRITE_DEADLINE`
    // (`tokio::time::timeout`). `relp::decode`, `Reader`, `Shared::accept`.
    todo!()
}

/// Handles one command: a line to append (and an ack owed), or an answer. `Err` ends the session with the reason.
fn command(
    shared: &Shared,
    origin: &Origin,
    open: &mut bool,
    frame: relp::RelpFrame,
    round: &mut Round,
) -> Result<(), String> {
    // TODO: (stage 6) one command by the contract's RELP table: `open` once
    // (`relp::open_response`), `syslog` after it (a message cut at `max_message`, one `Answer::Ack`
    // owed), `close`, anything before `open` (`Err` with the reason), an unknown command.
    todo!()
}
