//! File transfer over TCP with SHA-256 checksums, resumable: project 10 of the workbook.
//!
//! A receiver (`recv`) accepts files from any number of senders (`send`). Every transfer starts
//! with a manifest: the file's name, size and chunk size, the SHA-256 of each chunk, and the
//! whole file's content hash (Dropbox's: the SHA-256 of its 4 MiB blocks' SHA-256). The
//! receiver verifies each chunk as it lands, asks again for one that fails, writes into a
//! temporary file, and renames it to its final name only once the whole-file hash matches. A transfer cut short resumes: the receiver reports the chunks it holds, and the
//! sender sends only the others.
//!
//! # Layout
//! - [`protocol`]: frames, the manifest and the receiver's answers; pure encoding and decoding.
//! - [`frame`]: reading and writing frames on a stream, every length bounded.
//! - [`name`]: which file names are accepted (plain names only).
//! - [`partial`]: a file being received: the partial file, its record of verified chunks, the
//!   final rename.
//! - [`hasher`]: SHA-256 of chunks and blocks on every core; the plain SHA-256 for `--sha256`.
//! - [`receiver`]: one sender's connection on the receiving side; [`server`]: the accept loop.
//! - [`sender`]: sending one file; [`progress`]: what the sender shows while it works.

pub mod frame;
pub mod hasher;
pub mod name;
pub mod partial;
pub mod progress;
pub mod protocol;
pub mod receiver;
pub mod sender;
pub mod server;
