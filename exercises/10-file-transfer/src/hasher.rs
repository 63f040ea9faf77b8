//! SHA-256 at the speed of the machine: the sender's two passes in parallel, and the receiver's
//! whole-file hash on a thread of its own while chunks are still arriving.
//!
//! `sha2` picks its SHA-NI (x86) or ARMv8 SHA2 backend at run time when the CPU has one, so no
//! feature flag is needed for the hardware-accelerated code.
//!
//! Your task (stages 1 and 2): [`hash_file`] and [`WholeHasher`]. [`sha256`] is given.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::protocol::{Hash, Manifest};

/// How many chunk buffers the sender's pre-pass keeps in flight between its reading thread and its
/// chunk-hashing thread: enough that neither waits for the other, few enough to bound the memory
/// (at most this many chunks of at most 16 MiB).
const PREPASS_BUFFERS: usize = 3;

/// How many bytes of landed chunks may wait for the whole-file hasher: 8 chunks of the default
/// 1 MiB, fewer of larger ones (at least one), so that what a connection holds stays bounded in
/// bytes whatever chunk size its manifest declares.
const HASHER_QUEUE_BYTES: usize = 8 * 1024 * 1024;

/// The SHA-256 of a byte slice.
pub fn sha256(data: &[u8]) -> Hash {
    Sha256::digest(data).into()
}

/// Hashes the first `size` bytes of `file`: the whole-file hash and one hash per chunk of
/// `chunk_size`. The file is read once, chunk by chunk, on this thread, which feeds the
/// whole-file hash; each chunk's buffer then goes to a second thread that hashes the chunk and
/// hands the buffer back. The two hashes run at once, and the bytes cross from the page cache only
/// once.
pub fn hash_file(file: &File, size: u64, chunk_size: u32) -> io::Result<(Hash, Vec<Hash>)> {
    // TODO: two `std::sync::mpsc::sync_channel(PREPASS_BUFFERS)`: one carries full buffers
    // `(Vec<u8>, len)` to the chunk hasher, the other brings empty ones back; put PREPASS_BUFFERS
    // buffers of `chunk_size` bytes in the second. In `std::thread::scope`, spawn the chunk hasher
    // (`for (buf, n) in full_rx`: `sha256(&buf[..n])`, then send `buf` back). On this thread, for
    // each chunk: take a free buffer, `read_exact_at` the chunk into it, `update` one `Sha256`,
    // send it on. Then drop the sender (that ends the hasher's loop), `join`, and `finalize`.
    // A simpler start that also passes: two threads that each read the whole file.
    todo!()
}

enum Message {
    /// Chunk `u32` has been verified and written; here are its bytes.
    Landed(u32, Bytes),
    /// Every chunk has landed: hash what is left from the file and answer.
    Finish,
}

/// The receiver's whole-file hash, computed on its own thread as chunks land. Chunks that arrive
/// in order are hashed from memory; any others (held from an earlier transfer, re-sent, or out of
/// order) are read back from the partial file when their turn comes.
pub struct WholeHasher {
    tx: mpsc::Sender<Message>,
    done: oneshot::Receiver<io::Result<Hash>>,
}

impl WholeHasher {
    /// Starts the thread for `manifest`'s file, of which the chunks marked in `held` are already
    /// in `file`.
    pub fn spawn(manifest: &Manifest, file: Arc<File>, held: Vec<bool>) -> WholeHasher {
        // TODO: a bounded `mpsc::channel` of HASHER_QUEUE_BYTES / chunk_size messages (at least
        // one) and a `oneshot` for the answer; a
        // `std::thread::spawn` that owns a `Sha256` and `next`, the first chunk not yet hashed.
        // Loop: while chunk `next` is on disk (held, or landed out of order), `read_exact_at` it
        // and hash it; then `rx.blocking_recv()`: `Landed(next, data)` is hashed from memory,
        // any other index only marked as on disk; `Finish` hashes everything left from the file
        // and sends the digest; `None` (the transfer was abandoned) just ends the thread.
        todo!()
    }

    /// Tells the hasher that chunk `index` is verified and written.
    pub async fn landed(&self, index: u32, data: Bytes) {
        // TODO: send `Message::Landed` (an error means the thread stopped: `finish` reports why).
        todo!()
    }

    /// Waits for the whole-file hash, once every chunk has landed.
    pub async fn finish(self) -> io::Result<Hash> {
        // TODO: send `Message::Finish`, then await the `oneshot`.
        todo!()
    }
}
