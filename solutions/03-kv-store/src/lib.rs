//! An in-memory key-value store owned by actors, speaking RESP2 (the Redis protocol): project 3
//! of the workbook. Real Redis tools (`redis-cli`, `redis-benchmark`) work against it unchanged.
//!
//! # Layout
//! - [`resp`]: the wire protocol: parsing requests (arrays and inline), encoding replies. Pure.
//! - [`command`]: from arguments to a typed [`command::Command`], with Redis's error messages.
//! - [`store`]: the key space of one shard, with lazy and active expiry; [`glob`] for `KEYS`.
//! - [`actor`]: one task per shard owns its store; a cloneable handle routes commands to them.
//! - [`locked`]: the other backend, one store behind a mutex (to compare).
//! - [`op`]: a key-space command as one store's operation, and applying it.
//! - [`connection`]: one client: pipelined requests answered in order, bounded buffers.
//! - [`server`]: the accept loop with its connection limit and graceful shutdown.
//! - [`client`]: a one-shot client that prints replies like `redis-cli`.

pub mod actor;
pub mod client;
pub mod command;
pub mod connection;
pub mod glob;
pub mod locked;
pub mod op;
pub mod resp;
pub mod server;
pub mod store;
