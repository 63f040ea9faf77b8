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

/// Serves one client until it disconnects, sends `QUIT`, breaks the framing, or `shutdown`.
pub async fn serve(
    mut stream: TcpStream,
    store: StoreHandle,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut output = Vec::with_capacity(16 * 1024);
    loop {
        // Answer every complete request already buffered: this is what makes pipelining work.
        loop {
            let (args, used) = match resp::parse_request(&input) {
                Ok(Some(request)) => request,
                Ok(None) => break,
                Err(error) => {
                    Reply::err(error).encode(&mut output);
                    stream.write_all(&output).await?;
                    return Ok(());
                }
            };
            input.advance(used);
            if args.is_empty() {
                continue;
            }
            let reply = match command::parse(args) {
                Ok(Command::Quit) => {
                    Reply::OK.encode(&mut output);
                    stream.write_all(&output).await?;
                    return Ok(());
                }
                Ok(Command::Ping(None)) => Reply::Simple("PONG".into()),
                Ok(Command::Ping(Some(message)) | Command::Echo(message)) => {
                    Reply::Bulk(Some(message))
                }
                Ok(Command::CommandInfo) => Reply::Array(Vec::new()),
                Ok(command) => store.execute(command).await,
                Err(reply) => reply,
            };
            reply.encode(&mut output);
            if output.len() >= MAX_PENDING_OUTPUT {
                stream.write_all(&output).await?;
                output.clear();
            }
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
