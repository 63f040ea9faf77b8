//! One RELP client's session: `open`, then `syslog` commands answered in order with `rsp`,
//! each only once its message is accepted under the fsync policy, then `close`. At shutdown,
//! what was received is acknowledged, and a `serverclose` hint says goodbye.

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
    let mut reader = Reader::new(stream, shutdown, shared.idle_timeout);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut open = false;
    loop {
        let ended = match reader.read(&mut buf).await {
            Ok(n) => n == 0,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                warn!(%peer, "closing the RELP session: {e}");
                true
            }
            Err(e) => {
                debug!(%peer, "read failed: {e}");
                true
            }
        };
        let origin = Origin::now(peer, "relp");
        let mut round = Round::default();
        let mut failure = None;
        while !round.close {
            match relp::decode(&buf, shared.max_frame) {
                Ok(Some((frame, used))) => {
                    buf.advance(used);
                    reader.progressed();
                    if let Err(reason) = command(&shared, &origin, &mut open, frame, &mut round) {
                        failure = Some(reason);
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        let status: &[u8] = match shared
            .accept(std::mem::take(&mut round.lines), round.count)
            .await
        {
            Ok(()) => b"200 OK",
            Err(e) => {
                warn!(%peer, "cannot write to the output file: {e}");
                failure.get_or_insert_with(|| "the output file cannot be written".into());
                b"500 cannot write the message"
            }
        };
        let mut out = Vec::new();
        for answer in &round.answers {
            match answer {
                Answer::Ack(txnr) => relp::encode(&mut out, *txnr, "rsp", status),
                Answer::Frame(frame) => out.extend_from_slice(frame),
            }
        }
        let stopping = ended || round.close || failure.is_some();
        if stopping && !round.close {
            relp::encode(&mut out, HINT_TXNR, "serverclose", b"");
        }
        let stream = reader.stream();
        let written = tokio::time::timeout(WRITE_DEADLINE, stream.write_all(&out)).await;
        if !matches!(written, Ok(Ok(()))) {
            debug!(%peer, "cannot send RELP answers; dropping the session");
            return;
        }
        if let Some(reason) = failure {
            warn!(%peer, "closing the RELP session: {reason}");
        }
        if stopping {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

/// Handles one command: a line to append (and an ack owed), or an answer. `Err` ends the session with the reason.
fn command(
    shared: &Shared,
    origin: &Origin,
    open: &mut bool,
    frame: relp::RelpFrame,
    round: &mut Round,
) -> Result<(), String> {
    match (frame.command.as_str(), *open) {
        ("open", false) => {
            *open = true;
            let offers = relp::open_response(&frame.data);
            round.answer(frame.txnr, &offers);
        }
        ("syslog", true) => {
            let truncated = frame.data.len() > shared.max_message;
            let mut message = bytes::Bytes::from(frame.data);
            message.truncate(shared.max_message);
            let frame_msg = Frame {
                message,
                framing: Framing::OctetCounting,
                truncated,
            };
            record::write(&mut round.lines, shared.format, origin, &frame_msg);
            round.count += 1;
            round.answers.push(Answer::Ack(frame.txnr));
        }
        ("close", true) => {
            round.answer(frame.txnr, b"200 OK");
            round.close = true;
        }
        (_, false) => {
            round.answer(frame.txnr, b"500 session not open");
            return Err(format!("{:?} before open", frame.command));
        }
        ("open", true) => {
            round.answer(frame.txnr, b"500 session already open");
        }
        (other, true) => {
            let text = format!("500 unknown command {other}");
            round.answer(frame.txnr, text.as_bytes());
        }
    }
    Ok(())
}
