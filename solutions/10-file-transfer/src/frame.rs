//! Frame I/O over any async stream: a header, then a body whose length was checked before a byte
//! of it was read or a byte of memory set aside for it.

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
    let mut header = [0u8; HEADER_LEN];
    let first = reader.read(&mut header).await?;
    if first == 0 {
        return Err(FrameError::Closed);
    }
    reader.read_exact(&mut header[first..]).await?;
    Ok(protocol::parse_header(header)?)
}

/// Reads a body of `len` bytes, which must be at most `max` (else the frame is refused before any
/// of it is read).
pub async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    kind: Kind,
    len: usize,
    max: usize,
) -> Result<Vec<u8>, FrameError> {
    if len > max {
        return Err(ProtocolError::WrongLength {
            kind,
            len,
            expected: format!("at most {max} bytes"),
        }
        .into());
    }
    // Read into the spare capacity: zeroing a megabyte only to overwrite it costs a pass over
    // memory per chunk.
    let mut body = Vec::with_capacity(len);
    let mut limited = reader.take(len as u64);
    while body.len() < len {
        if limited.read_buf(&mut body).await? == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
    }
    Ok(body)
}

/// Reads a whole frame whose body may be at most `max` bytes.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<(Kind, Vec<u8>), FrameError> {
    let (kind, len) = read_header(reader).await?;
    let body = read_body(reader, kind, len, max).await?;
    Ok((kind, body))
}

/// Frames up to this size (64 KiB) are gathered into one buffer before they are written.
const SMALL: usize = 65_536;

/// Writes a frame: its header and its body, given in pieces (a large body is not copied).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    kind: Kind,
    parts: &[&[u8]],
) -> io::Result<()> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let header = protocol::header(kind, len);
    if len <= SMALL {
        // One write, one segment: a control frame split in two would wait on Nagle's algorithm.
        let mut frame = Vec::with_capacity(HEADER_LEN + len);
        frame.extend_from_slice(&header);
        parts.iter().for_each(|p| frame.extend_from_slice(p));
        return writer.write_all(&frame).await;
    }
    writer.write_all(&header).await?;
    for part in parts {
        writer.write_all(part).await?;
    }
    Ok(())
}
