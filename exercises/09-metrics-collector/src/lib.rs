//! A fan-out metrics collector: project 9 of the workbook. Edge nodes push StatsD (over UDP or
//! TCP, DogStatsD tags included) and Graphite plaintext; the collector aggregates per series,
//! appends a timestamped batch to a JSON-lines file at every flush, and serves the aggregates to
//! Prometheus on `GET /metrics`. An edge agent batches local StatsD traffic and forwards it over
//! TCP with sequence numbers and acknowledgements, so a cut connection loses and doubles nothing.
//!
//! Your exercise: read the chapter (`cargo xtask book --serve`), then fill in the `todo!()`s in
//! the order of the stages (`cargo xtask check metrics-collector` says which comes next, `cargo
//! xtask hint metrics-collector N` helps). `main.rs` is given in full.
//!
//! # Layout
//! - [`protocol`]: StatsD and Graphite lines, the agent's frames, [`protocol::ProtocolError`].
//!   Pure.
//! - [`aggregate`]: one shard's series, their interval aggregates, the series limit.
//! - [`pipeline`]: fan-out from readers to N workers, each owning a shard.
//! - [`connection`]: the readers: TCP lines, UDP datagrams, agent connections.
//! - [`writer`]: fan-in: the flush loop and the JSON-lines batches.
//! - [`exposition`]: the Prometheus text format of `/metrics`.
//! - [`server`]: the collector's listeners, start and graceful shutdown.
//! - [`agent`]: the edge agent.

pub mod agent;
pub mod aggregate;
pub mod connection;
pub mod exposition;
pub mod pipeline;
pub mod protocol;
pub mod server;
pub mod writer;
