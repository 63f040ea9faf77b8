//! Frame I/O over any async stream: a header, then a body whose length was checked before a byte
//! of it was read or a byte of memory set aside for it.
//!
//! Your task (stage 1): every function here. [`FrameError`] is given.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::protocol::{self, HEADER_LEN, Kind, ProtocolError};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection between frames.
    #[error("the peer closed the connection")]
    Closed,
    /// The connection failed, or closed in the middle of a frame.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The bytes break the protocol.
    #[error("{0}")]
    Protocol(#[from] ProtocolError),
}

/// Reads a frame header: its kind and body length. A clean end of stream before the first byte is
/// [`FrameError::Closed`].
pub async fn read_header<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<(Kind, usize), FrameError> {
    // TODO: tell the two ends apart: a peer that closes between frames is `FrameError::Closed`;
    // one that leaves within the 5 header bytes is an `io::Error` (it left mid-frame).
    // `AsyncReadExt::read` and `read_exact`, then `protocol::parse_header`.
    todo!()
}

/// Reads a body of `len` bytes, which must be at most `max` (else the frame is refused before any
/// of it is read).
pub async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    kind: Kind,
    len: usize,
    max: usize,
) -> Result<Vec<u8>, FrameError> {
    // TODO: `len > max` is `ProtocolError::WrongLength` (checked before allocating: `len` comes
    // from the peer); otherwise `vec![0; len]` and `read_exact`.
    todo!()
}

/// Reads a whole frame whose body may be at most `max` bytes.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<(Kind, Vec<u8>), FrameError> {
    // TODO: `read_header`, then `read_body`.
    todo!()
}

/// Writes a frame: its header and its body, given in pieces (a large body is not copied).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    kind: Kind,
    parts: &[&[u8]],
) -> io::Result<()> {
    // TODO: `protocol::header(kind, total length)`, then `write_all` each part. Gather a small
    // frame into one buffer first: a control frame written in two pieces can sit waiting for a
    // delayed ACK (Nagle's algorithm).
    todo!()
}
