//! SHA-256 at the speed of the machine: chunk and block hashes on every core, and the optional
//! plain SHA-256 of the whole file on a thread of its own, overlapping the transfer.
//!
//! `sha2` picks its SHA-NI (x86) or ARMv8 SHA2 backend at run time when the CPU has one, so no
//! feature flag is needed for the hardware-accelerated code.
//!
//! Your task: [`hash_pieces`], [`content_hash_of`] and [`hash_file`] (stages 1 and 2);
//! [`sha256_file`] and [`WholeHasher`] for `--sha256` (stage 2). [`sha256`], [`cores`] and
//! [`hex`] are given.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::protocol::{self, BLOCK_SIZE, Hash, Manifest};

/// How many bytes of landed chunks may wait for the plain whole-file hasher: 8 MiB, at least one
/// chunk, so that what a connection holds stays bounded in bytes whatever its chunk size.
const HASHER_QUEUE_BYTES: usize = 8_388_608;

/// How many bytes a plain whole-file hash reads at a time: 4 MiB.
const SEQUENTIAL_READ: usize = 4_194_304;

/// The SHA-256 of a byte slice.
pub fn sha256(data: &[u8]) -> Hash {
    Sha256::digest(data).into()
}

/// How many threads hash at once: one per core.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The SHA-256 of each `piece`-byte piece of the first `size` bytes of `file` (the last piece
/// shorter), in order, hashed on every core: each thread takes the next piece not yet taken,
/// reads it with a positioned read and hashes it, so the pieces cost one pass over the bytes in
/// all and the cores share it whatever their speed.
pub fn hash_pieces(file: &File, size: u64, piece: u32) -> io::Result<Vec<Hash>> {
    // TODO: (stage 2) the hashes this doc describes, in order, with at most `cores()` threads and
    // no more threads than pieces, each with one buffer of at most `piece` bytes; offsets in `u64`.
    // `protocol::chunk_count`, `std::thread::scope`, `AtomicU32::fetch_add`,
    // `FileExt::read_exact_at`, `sha256`.
    todo!()
}

/// The content hash of the first `size` bytes of `file` from its chunk hashes when its chunks are
/// its blocks, else from its blocks hashed again on every core.
pub fn content_hash_of(
    file: &File,
    size: u64,
    chunk_size: u32,
    chunk_hashes: &[Hash],
) -> io::Result<Hash> {
    // TODO: `protocol::content_hash` of `chunk_hashes` when `chunk_size == BLOCK_SIZE`; else of
    // `hash_pieces(file, size, BLOCK_SIZE)`.
    todo!()
}

/// The sender's pass over the first `size` bytes of `file`: its content hash and one SHA-256 per
/// chunk of `chunk_size`, on every core. With the default chunk size (one block) every byte is
/// hashed once; with another, the blocks are a second pass.
pub fn hash_file(file: &File, size: u64, chunk_size: u32) -> io::Result<(Hash, Vec<Hash>)> {
    // TODO: `hash_pieces` for the chunks, then `content_hash_of` with them.
    todo!()
}

/// The plain SHA-256 of the first `size` bytes of `file`, as `sha256sum` prints it: one stream,
/// so one core, read in large pieces. The sender runs it on a thread of its own beside the
/// transfer when asked (`send --sha256`).
pub fn sha256_file(file: &File, size: u64) -> io::Result<Hash> {
    // TODO: one `Sha256`; `read_exact_at` SEQUENTIAL_READ bytes at a time into one buffer,
    // `update` with each, `finalize`.
    todo!()
}

/// A hash as lowercase hexadecimal, as `sha256sum` prints it.
pub fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

enum Message {
    /// Chunk `u32` has been verified and written; here are its bytes.
    Landed(u32, Bytes),
    /// Every chunk has landed: hash what is left from the file and answer.
    Finish,
}

/// The receiver's plain whole-file SHA-256 (`recv --sha256`), computed on its own thread as
/// chunks land. Chunks that arrive
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
        // TODO: (stage 2) the plain SHA-256 of the file, in chunk order, on a `std::thread` of its
        // own: a landed chunk that is next is hashed from memory, any other read back from `file`
        // when its turn comes (held ones included); at most HASHER_QUEUE_BYTES of chunks wait (at
        // least one), `Finish` hashes what is left and answers on a `oneshot`, and a closed channel
        // (the transfer abandoned) just ends the thread. `mpsc::channel`, `blocking_recv`,
        // `Sha256`.
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
