//! One client connection: read requests, answer them in order, with bounded buffers.

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
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut output = Vec::with_capacity(16 * 1024);
    // `slots` is reused from batch to batch; `commands` is handed to the store with each batch.
    let mut slots = Vec::with_capacity(64);
    let mut commands = Vec::new();
    loop {
        // Take every complete request already buffered (this is what makes pipelining pay), run
        // the store's share as one batch, and answer them all in order.
        slots.clear();
        let mut ending: Option<Reply> = None;
        while slots.len() < MAX_BATCH {
            let (args, used) = match resp::parse_request(&input) {
                Ok(Some(request)) => request,
                Ok(None) => break,
                Err(error) => {
                    ending = Some(Reply::err(error));
                    break;
                }
            };
            input.advance(used);
            if args.is_empty() {
                continue;
            }
            let slot = match command::parse(args) {
                Ok(Command::Quit) => {
                    ending = Some(Reply::OK);
                    break;
                }
                Ok(Command::Ping(None)) => Slot::Ready(Reply::Simple("PONG".into())),
                Ok(Command::Ping(Some(message)) | Command::Echo(message)) => {
                    Slot::Ready(Reply::Bulk(Some(message)))
                }
                Ok(Command::CommandInfo) => Slot::Ready(Reply::Array(Vec::new())),
                Ok(command) => {
                    commands.push(command);
                    Slot::Store
                }
                Err(reply) => Slot::Ready(reply),
            };
            slots.push(slot);
        }
        let mut from_store = store
            .execute_batch(std::mem::take(&mut commands))
            .await
            .into_iter();
        for slot in slots.drain(..) {
            let reply = match slot {
                Slot::Ready(reply) => reply,
                Slot::Store => from_store
                    .next()
                    .unwrap_or_else(|| Reply::err("no reply from the store")),
            };
            reply.encode(&mut output);
            if output.len() >= MAX_PENDING_OUTPUT {
                stream.write_all(&output).await?;
                output.clear();
            }
        }
        if let Some(last) = ending {
            last.encode(&mut output);
            stream.write_all(&output).await?;
            return Ok(());
        }
        if !output.is_empty() {
            stream.write_all(&output).await?;
            output.clear();
        }
        if input.len() > MAX_REQUEST {
            Reply::err(resp::ProtocolError::RequestTooLarge).encode(&mut output);
            stream.write_all(&output).await?;
            return Ok(());
        }
        // A full batch may have left complete requests behind: read only when none is left.
        if !matches!(resp::parse_request(&input), Ok(None)) {
            continue;
        }
        tokio::select! {
            read = stream.read_buf(&mut input) => {
                if read? == 0 {
                    return Ok(());
                }
            }
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}
