//! A UDP heartbeat system with failure detection: project 1 of the workbook (your exercise).
//!
//! Read the chapter first (`cargo xtask book --serve`), then fill in the `todo!()`s in the order
//! of the stages: `cargo xtask check heartbeat` tells you which stage to work on next, and
//! `cargo xtask hint heartbeat N` helps when you are stuck. `main.rs` is given.
//!
//! Clients send small JSON heartbeats over UDP to one or more servers; each server keeps a
//! membership table, declares silent nodes dead, announces every change as a JSON line on stdout,
//! and answers status requests over the same socket. The book's chapter "A UDP heartbeat system"
//! explains the ideas; its page "The contract" is what the test suite checks.
//!
//! # Layout
//! - [`protocol`]: the wire format: heartbeats, status requests and replies, events; decoding
//!   and validation. Pure functions, no I/O.
//! - [`membership`]: the membership table and its sequence accounting, driven by the caller's
//!   clock.
//! - [`detector`]: the fixed-timeout and phi-accrual failure detectors.
//! - [`ratelimit`]: the token bucket on status replies and the throttle on log lines.
//! - [`server`]: the receive loop, the check timer and the event output.
//! - [`client`]: the heartbeat sender.
//! - [`status`]: the status client: paging, retries, the table.

pub mod client;
pub mod detector;
pub mod membership;
pub mod protocol;
pub mod ratelimit;
pub mod server;
pub mod status;
