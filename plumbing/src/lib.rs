//! What every project of the workbook shares and none of them teaches: the plumbing around the
//! lesson. Exercises and solutions use this one crate, so a learner is given it in full and never
//! writes it, and the grader builds a learner's copy of a project against it.
//!
//! # Layout
//! - [`cli`]: a binary's `main`: logging to stderr, the runtime, errors printed with their causes.
//! - [`parse`]: clap value parsers for the flags every project has: durations, sizes, `KEY=VALUE`.
//! - [`net`]: resolving `HOST:PORT`; binding a server's socket and printing `listening on ADDR`.
//! - [`shutdown`]: a cancellation token cancelled by Ctrl-C or SIGTERM, and SIGHUP as a stream.
//! - [`accept`]: the bounded accept loop of a TCP server, with a refusal past the limit and a
//!   shutdown grace.

pub mod accept;
pub mod cli;
pub mod net;
pub mod parse;
pub mod shutdown;

pub use accept::{AcceptConfig, accept_loop, drain};
pub use cli::{init_tracing, run_main};
pub use net::{listen, listen_udp, resolve};
pub use shutdown::shutdown_on_signal;
