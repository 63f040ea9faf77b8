//! One client connection: read requests, answer them in order, with bounded buffers.
//!
//! Your task (stages 1, 5 and 6): [`serve`].

use std::io;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::actor::StoreHandle;
use crate::command::{self, Command};
use crate::resp::{self, MAX_REQUEST, Reply};

/// Replies gathered before they are written out, in bytes: pipelined requests are answered in
/// one write, but a long pipeline never buffers more than this.
pub const MAX_PENDING_OUTPUT: usize = 64 * 1024;

/// The most requests answered as one batch.
pub const MAX_BATCH: usize = 1024;

/// One request of a pipeline: answered on the spot, or waiting for the store.
enum Slot {
    Ready(Reply),
    Store,
}

/// Serves one client until it disconnects, sends `QUIT`, breaks the framing, or `shutdown`.
pub async fn serve(
    mut stream: TcpStream,
    store: StoreHandle,
    shutdown: CancellationToken,
) -> io::Result<()> {
    // TODO: a loop around one `BytesMut` input buffer and one output `Vec`:
    // - parse every complete request in the buffer (`resp::parse_request`, then `input.advance`),
    //   answer PING, ECHO and COMMAND yourself, send the rest to the store (`execute`, or better
    //   `execute_batch` for the whole pipeline), encode the replies in order into the output;
    // - write the output once per batch (`write_all`), never more than MAX_PENDING_OUTPUT at once;
    // - QUIT: reply +OK, write, return. A `ProtocolError`: reply `Reply::err(error)`, write, return
    //   (the stream cannot be framed any more). An input buffer over MAX_REQUEST: the same;
    // - then `tokio::select!` over `stream.read_buf(&mut input)` (0 bytes: the client left) and
    //   `shutdown.cancelled()`.
    todo!()
}
