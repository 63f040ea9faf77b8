//! Project 4 of the workbook: gossip, twice over. `node` is a Maelstrom node for the broadcast
//! workload (the Gossip Glomers challenges 3a to 3e): values broadcast to any node reach every
//! node through periodic gossip rounds, batching, acknowledgements and anti-entropy. `net` runs
//! N such nodes under a simulated network with latency, loss and partitions, and checks the
//! history. `simulate` spreads one rumor over a million simulated nodes, round by round, to
//! compare with the mathematics of epidemics. See the book's chapter 4.
//!
//! # Layout
//! - [`protocol`]: Maelstrom's JSON messages, decoded and encoded (pure).
//! - [`node`]: the broadcast node as a state machine: messages and rounds in, lines out.
//! - [`server`]: the node's stdin, stdout and round timer; [`server::run`] is the entry point.
//! - [`net`]: the simulated network and the history checker (given).
//! - [`simulate`]: the round simulator.
//! - [`theory`]: the closed forms the simulator is checked against (given).
//! - [`plot`]: the SVG of measured curves beside the theory (given).
//! - [`rng`]: a small seeded random number generator (given).

pub mod net;
pub mod node;
pub mod plot;
pub mod protocol;
pub mod rng;
pub mod server;
pub mod simulate;
pub mod theory;
