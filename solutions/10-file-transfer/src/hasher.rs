//! SHA-256 at the speed of the machine: chunk and block hashes on every core, and the optional
//! plain SHA-256 of the whole file on a thread of its own, overlapping the transfer.
//!
//! `sha2` picks its SHA-NI (x86) or ARMv8 SHA2 backend at run time when the CPU has one, so no
//! feature flag is needed for the hardware-accelerated code.

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
    let count = protocol::chunk_count(size, piece) as u32;
    let next = AtomicU32::new(0);
    let threads = cores().min(count as usize).max(1);
    let mut hashes = vec![[0u8; 32]; count as usize];
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let next = &next;
                scope.spawn(move || {
                    let mut buf = vec![0u8; u64::from(piece).min(size) as usize];
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        if index >= count {
                            return Ok::<_, io::Error>(done);
                        }
                        let offset = u64::from(index) * u64::from(piece);
                        let n = (size - offset).min(u64::from(piece)) as usize;
                        file.read_exact_at(&mut buf[..n], offset)?;
                        done.push((index, sha256(&buf[..n])));
                    }
                })
            })
            .collect();
        for worker in workers {
            let done = worker
                .join()
                .map_err(|_| io::Error::other("a hashing thread panicked"))??;
            for (index, hash) in done {
                hashes[index as usize] = hash;
            }
        }
        Ok(hashes)
    })
}

/// The content hash of the first `size` bytes of `file` from its chunk hashes when its chunks are
/// its blocks, else from its blocks hashed again on every core.
pub fn content_hash_of(
    file: &File,
    size: u64,
    chunk_size: u32,
    chunk_hashes: &[Hash],
) -> io::Result<Hash> {
    if chunk_size == BLOCK_SIZE {
        return Ok(protocol::content_hash(chunk_hashes));
    }
    Ok(protocol::content_hash(&hash_pieces(
        file, size, BLOCK_SIZE,
    )?))
}

/// The sender's pass over the first `size` bytes of `file`: its content hash and one SHA-256 per
/// chunk of `chunk_size`, on every core. With the default chunk size (one block) every byte is
/// hashed once; with another, the blocks are a second pass.
pub fn hash_file(file: &File, size: u64, chunk_size: u32) -> io::Result<(Hash, Vec<Hash>)> {
    let chunks = hash_pieces(file, size, chunk_size)?;
    let whole = content_hash_of(file, size, chunk_size, &chunks)?;
    Ok((whole, chunks))
}

/// The plain SHA-256 of the first `size` bytes of `file`, as `sha256sum` prints it: one stream,
/// so one core, read in large pieces. The sender runs it on a thread of its own beside the
/// transfer when asked (`send --sha256`).
pub fn sha256_file(file: &File, size: u64) -> io::Result<Hash> {
    let mut whole = Sha256::new();
    let mut buf = vec![0u8; SEQUENTIAL_READ.min(size as usize)];
    let mut offset = 0u64;
    while offset < size {
        let n = (size - offset).min(SEQUENTIAL_READ as u64) as usize;
        file.read_exact_at(&mut buf[..n], offset)?;
        whole.update(&buf[..n]);
        offset += n as u64;
    }
    Ok(whole.finalize().into())
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
        let queue = (HASHER_QUEUE_BYTES / manifest.chunk_size as usize).max(1);
        let (tx, mut rx) = mpsc::channel(queue);
        let (answer, done) = oneshot::channel();
        let layout = manifest.clone();
        std::thread::spawn(move || {
            let mut hasher = Sha256::new();
            let mut on_disk = held;
            let mut next = 0u32;
            let mut buf = Vec::new();
            let mut catch_up = |next: &mut u32, on_disk: &[bool], hasher: &mut Sha256| {
                while (*next as usize) < on_disk.len() && on_disk[*next as usize] {
                    buf.resize(layout.chunk_len(*next), 0);
                    file.read_exact_at(&mut buf, layout.offset(*next))?;
                    hasher.update(&buf);
                    *next += 1;
                }
                io::Result::Ok(())
            };
            let result = loop {
                if let Err(e) = catch_up(&mut next, &on_disk, &mut hasher) {
                    break Err(e);
                }
                match rx.blocking_recv() {
                    Some(Message::Landed(index, data)) if index == next => {
                        hasher.update(&data);
                        on_disk[index as usize] = true;
                        next += 1;
                    }
                    Some(Message::Landed(index, _)) => on_disk[index as usize] = true,
                    Some(Message::Finish) => {
                        on_disk.iter_mut().for_each(|c| *c = true);
                        break catch_up(&mut next, &on_disk, &mut hasher)
                            .map(|()| hasher.finalize().into());
                    }
                    // The transfer was abandoned: nobody wants the hash.
                    None => return,
                }
            };
            let _ = answer.send(result);
        });
        WholeHasher { tx, done }
    }

    /// Tells the hasher that chunk `index` is verified and written.
    pub async fn landed(&self, index: u32, data: Bytes) {
        // An error means the thread has already stopped on a read error, which `finish` reports.
        let _ = self.tx.send(Message::Landed(index, data)).await;
    }

    /// Waits for the whole-file hash, once every chunk has landed.
    pub async fn finish(self) -> io::Result<Hash> {
        let _ = self.tx.send(Message::Finish).await;
        self.done
            .await
            .unwrap_or_else(|_| Err(io::Error::other("the hashing thread stopped")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..10_000u32).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn hash_file_matches_hashing_in_memory() {
        let data = sample();
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, &data).unwrap();
        // Fewer chunks than cores, more, one, and a last chunk that is short; one block.
        for chunk_size in [4096u32, 1000, 10_000, 20_000, BLOCK_SIZE] {
            let (whole, chunks) = hash_file(&file, data.len() as u64, chunk_size).unwrap();
            assert_eq!(whole, sha256(&sha256(&data)), "chunks of {chunk_size}");
            let expected: Vec<Hash> = data.chunks(chunk_size as usize).map(sha256).collect();
            assert_eq!(chunks, expected, "chunks of {chunk_size}");
        }
        let (whole, chunks) = hash_file(&file, 0, 4096).unwrap();
        assert_eq!((whole, chunks), (sha256(b""), vec![]), "an empty file");
        assert_eq!(
            sha256_file(&file, data.len() as u64).unwrap(),
            sha256(&data)
        );
    }

    #[test]
    fn the_content_hash_spans_blocks() {
        let block = BLOCK_SIZE as usize;
        let data: Vec<u8> = (0..2 * block + 5).map(|i| (i % 253) as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, &data).unwrap();
        let blocks: Vec<u8> = data.chunks(block).flat_map(sha256).collect();
        for chunk_size in [1 << 20, BLOCK_SIZE, 3 << 20] {
            let (whole, _) = hash_file(&file, data.len() as u64, chunk_size).unwrap();
            assert_eq!(whole, sha256(&blocks), "chunks of {chunk_size}");
        }
    }

    #[tokio::test]
    async fn the_whole_hash_is_right_whatever_the_order_chunks_land_in() {
        let data = sample();
        let manifest = Manifest {
            name: "x".into(),
            size: data.len() as u64,
            chunk_size: 4096,
            file_hash: sha256(&data),
            chunk_hashes: data.chunks(4096).map(sha256).collect(),
        };
        let file = Arc::new(tempfile::tempfile().unwrap());
        file.set_len(data.len() as u64).unwrap();
        // Chunk 1 was held from an earlier transfer; 2 lands before 0.
        file.write_all_at(&data[4096..8192], 4096).unwrap();
        let hasher = WholeHasher::spawn(&manifest, Arc::clone(&file), vec![false, true, false]);
        for index in [2u32, 0] {
            let range = manifest.offset(index) as usize
                ..(manifest.offset(index) as usize + manifest.chunk_len(index));
            file.write_all_at(&data[range.clone()], range.start as u64)
                .unwrap();
            hasher
                .landed(index, Bytes::copy_from_slice(&data[range]))
                .await;
        }
        assert_eq!(hasher.finish().await.unwrap(), sha256(&data));
    }
}
