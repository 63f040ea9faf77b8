//! A publish-subscribe broker speaking the core of the NATS client protocol: project 7 of the
//! workbook. NATS clients work against it unchanged, and its own clients work against a real
//! `nats-server`. This is your exercise.
//!
//! Read the chapter first, then fill in the `todo!()`s in the order of the stages:
//! `cargo xtask check pubsub` says which stage to work on next. `main.rs` and `loadgen.rs` are
//! given, and so is the client's side of `protocol.rs`.
//!
//! # Layout
//! - [`protocol`]: the wire protocol: parsing client operations, encoding `MSG`s, the client's
//!   side of both. Pure.
//! - [`subject`]: subject validation and the [`subject::Index`], a trie with `*` and `>`.
//! - [`outbound`]: one client's bounded outbound queue and the task that writes it in batches;
//!   slow consumers are cut off here.
//! - [`broker`]: every subscription, and fan-out with queue groups.
//! - [`connection`]: one client: its reader, its subscriptions, its replies.
//! - [`server`]: the accept loop, the connection limit and the two-step graceful shutdown.
//! - [`client`]: a small client for the `pub` and `sub` subcommands.
//! - [`loadgen`]: the load generator behind the `bench` subcommand.

pub mod broker;
pub mod client;
pub mod connection;
pub mod loadgen;
pub mod outbound;
pub mod protocol;
pub mod server;
pub mod subject;
