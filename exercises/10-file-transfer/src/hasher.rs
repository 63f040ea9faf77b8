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

/// How much the whole-file pass reads at a time.
const READ_BLOCK: usize = 1024 * 1024;

/// How many landed chunks may wait for the whole-file hasher (each holds its chunk's memory).
const HASHER_QUEUE: usize = 8;

/// The SHA-256 of a byte slice.
pub fn sha256(data: &[u8]) -> Hash {
    Sha256::digest(data).into()
}

/// Hashes the first `size` bytes of `file`: the whole-file hash and one hash per chunk of
/// `chunk_size`, on two threads at once (each pass reads the file; the second read comes from the
/// page cache).
pub fn hash_file(file: &File, size: u64, chunk_size: u32) -> io::Result<(Hash, Vec<Hash>)> {
    // TODO: `std::thread::scope`: spawn one thread that reads the file in READ_BLOCK pieces
    // (`read_exact_at`) into one `Sha256` (`update`, then `finalize`); meanwhile read chunk by
    // chunk on this thread and `sha256` each. `join` the thread and return both.
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
        // TODO: a bounded `mpsc::channel(HASHER_QUEUE)` and a `oneshot` for the answer; a
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
