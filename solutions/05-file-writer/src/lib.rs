//! Project 5 of the workbook: a distributed chunked file writer that speaks tus 1.0.0, the open
//! protocol for resumable uploads over HTTP. Many clients write chunks of one file at their
//! offsets, with positioned writes; an offset is only ever claimed once its bytes are on disk.
//!
//! The chapter is `book/src/05-file-writer/`; the contract, what the suite checks, is its
//! `contract.md`.
//!
//! # Layout
//! - [`protocol`]: the tus headers, parsed (pure, synchronous), and the values announced.
//! - [`store`]: uploads on disk (bytes file, record, fsync order) and in memory (the lock).
//! - [`server`]: `ServerConfig`, [`server::run`], the HTTP/1.1 connections and what every request
//!   goes through.
//! - [`tus`]: the shared state, OPTIONS, HEAD, DELETE, expiration.
//! - [`create`]: POST: creation, creation-with-upload, deferred length, concatenation.
//! - [`patch`]: PATCH: positioned writes, checksums, honest offsets.
//! - [`client`]: the `upload` command, parallel parts and resume.

pub mod client;
pub mod create;
pub mod patch;
pub mod protocol;
pub mod server;
pub mod store;
pub mod tus;
