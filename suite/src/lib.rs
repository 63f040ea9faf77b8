//! The workbook's shared black-box test suite: helpers that every project's tests use.
//!
//! The tests never link against the code they grade. They start the chosen tree's real binary,
//! talk to it over its real protocol, and when something goes wrong they say what was sent, what
//! was expected, what came back, and, if the program died, why.
//!
//! # Layout
//! - [`binary`]: which binary to test: the one named by `WORKBOOK_BIN_<SLUG>`, or the reference
//!   solution, built on demand.
//! - [`program`]: a running program with its stdout lines, its stderr and a diagnosis of its death.
//! - [`framed`]: a TCP connection that reads whole frames of a protocol before a deadline.
//! - [`wait`]: deadlines: polling with one, and an overall bound on a test.
//! - [`udp`]: a UDP socket for tests: send JSON, receive JSON before a deadline.
//! - [`http`]: a minimal HTTP/1.1 client that sends exactly the bytes a test asks for.
//! - [`json_http`]: an HTTP/1.1 client for JSON APIs: one request per connection, the answer's
//!   body as text or JSON (to be folded into [`http`]).
//! - [`resp`]: a RESP2 (Redis protocol) client for tests, independent of the code under test.
//! - [`maelstrom`]: a Maelstrom client: a node spoken to over stdin and stdout, JSON lines.
//! - [`metrics`]: the metrics collector's output file, an HTTP GET, and an agent-protocol client.
//! - [`nats`]: a NATS protocol client for tests, independent of the code under test.
//! - [`transfer`]: the file-transfer protocol's encoders and a frame reader, independent of the
//!   code under test.
//! - [`relp`]: a RELP client for tests, independent of the code under test.
//! - [`proxy`]: a TCP proxy that flips a byte, cuts the connection or slows it down, on purpose.
//! - [`relay`]: a UDP relay between cluster members that partitions and drops, on purpose.
//! - [`seeded`]: seeded randomness, the same on every run.
//! - [`shown`]: how failure messages show results, missing values and differing bytes.
//! - [`server`]: a server under test, started the way every project's is, with its address.

pub mod binary;
pub mod framed;
pub mod http;
pub mod json_http;
pub mod maelstrom;
pub mod metrics;
pub mod nats;
pub mod program;
pub mod proxy;
pub mod relay;
pub mod relp;
pub mod resp;
pub mod seeded;
pub mod server;
pub mod shown;
pub mod transfer;
pub mod udp;
pub mod wait;

pub use binary::binary;
pub use program::Program;
pub use proxy::{Fault, FaultProxy};
pub use relay::UdpRelay;
pub use server::{LIMIT, PROMPT, Server, command};
pub use udp::UdpPeer;
pub use wait::{bounded, poll_until};
