//! Leader election via heartbeats and priority, safe under partitions: project 8 of the
//! workbook.
//!
//! Nodes exchange JSON heartbeats and election messages over UDP. The live node of highest
//! priority that a majority can reach becomes leader; terms only grow and are kept on disk with
//! the vote; a leader's lease, shorter than the election timeout, makes a cut-off leader step
//! down before anyone else can be elected. `--algorithm bully` keeps the plain algorithm, to be
//! watched failing in the simulator. The book's chapter explains the ideas; its page "The
//! contract" is what the test suite checks.
//!
//! # Layout
//! - [`protocol`]: the wire format, the events and the status reply. Pure, no I/O.
//! - [`persist`]: the term and vote on disk: write, fsync, rename.
//! - [`election`]: the safe algorithm as a state machine driven by the caller's clock.
//! - [`bully`]: the bully algorithm, for comparison.
//! - [`rng`]: the jitter of election timeouts.
//! - [`server`]: a node: the socket, the membership check, the timers.
//! - [`resource`]: the fencing-token store.
//! - [`status`]: the status client.
//! - [`relay`]: the simulator's UDP relay: drops, delays, duplicates, partitions.
//! - [`cluster`]: the simulator: nodes behind the relay, a scenario, the safety check.
//! - [`timeline`]: the simulator's timeline as an SVG.

pub mod bully;
pub mod cluster;
pub mod election;
pub mod persist;
pub mod protocol;
pub mod relay;
pub mod resource;
pub mod rng;
pub mod server;
pub mod status;
pub mod timeline;
