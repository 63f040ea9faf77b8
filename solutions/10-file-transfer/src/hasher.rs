//! SHA-256 at the speed of the machine: the sender's two passes in parallel, and the receiver's
//! whole-file hash on a thread of its own while chunks are still arriving.
//!
//! `sha2` picks its SHA-NI (x86) or ARMv8 SHA2 backend at run time when the CPU has one, so no
//! feature flag is needed for the hardware-accelerated code.

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
    use std::sync::mpsc::sync_channel;

    let chunks = crate::protocol::chunk_count(size, chunk_size);
    let (full_tx, full_rx) = sync_channel::<(Vec<u8>, usize)>(PREPASS_BUFFERS);
    let (free_tx, free_rx) = sync_channel::<Vec<u8>>(PREPASS_BUFFERS);
    for _ in 0..PREPASS_BUFFERS.min(chunks as usize) {
        free_tx
            .send(vec![0u8; chunk_size as usize])
            .expect("the channel has room for every buffer");
    }
    std::thread::scope(|scope| {
        let chunk_hasher = scope.spawn(move || {
            let mut hashes = Vec::with_capacity(chunks as usize);
            for (buf, n) in full_rx {
                hashes.push(sha256(&buf[..n]));
                // The reader may have stopped on an error; it no longer needs the buffer.
                let _ = free_tx.send(buf);
            }
            hashes
        });
        let mut whole = Sha256::new();
        let mut read = || -> io::Result<()> {
            for i in 0..chunks {
                let offset = i * u64::from(chunk_size);
                let n = (size - offset).min(u64::from(chunk_size)) as usize;
                let mut buf = free_rx
                    .recv()
                    .map_err(|_| io::Error::other("the chunk-hashing thread stopped"))?;
                file.read_exact_at(&mut buf[..n], offset)?;
                whole.update(&buf[..n]);
                full_tx
                    .send((buf, n))
                    .map_err(|_| io::Error::other("the chunk-hashing thread stopped"))?;
            }
            Ok(())
        };
        let read = read();
        // Closing the channel ends the chunk hasher's loop, on success or error alike.
        drop(full_tx);
        let hashes = chunk_hasher
            .join()
            .map_err(|_| io::Error::other("the chunk-hashing thread panicked"))?;
        read?;
        Ok((whole.finalize().into(), hashes))
    })
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
        // Fewer chunks than buffers in flight, more, one, and a last chunk that is short.
        for chunk_size in [4096u32, 1000, 10_000, 20_000] {
            let (whole, chunks) = hash_file(&file, data.len() as u64, chunk_size).unwrap();
            assert_eq!(whole, sha256(&data), "chunks of {chunk_size}");
            let expected: Vec<Hash> = data.chunks(chunk_size as usize).map(sha256).collect();
            assert_eq!(chunks, expected, "chunks of {chunk_size}");
        }
        let (whole, chunks) = hash_file(&file, 0, 4096).unwrap();
        assert_eq!((whole, chunks), (sha256(b""), vec![]), "an empty file");
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
