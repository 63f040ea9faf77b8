//! A server under test, started the way every project's is: `SLUG ROLE --bind 127.0.0.1:0
//! ARGS...`, its address read from its first stdout line, `listening on ADDR`.
//!
//! A project's tests add what its protocol needs in a trait of their own, implemented for
//! [`Server`] (`impl Kv for Server { fn call(&mut self, ...) }`): the server, its address and its
//! diagnosis are common to all, the protocol is not.

use std::fmt::Display;
use std::net::SocketAddr;
use std::time::Duration;

use crate::{Program, binary};

/// Every test's overall bound, unless its file says why it needs another.
pub const LIMIT: Duration = Duration::from_secs(40);

/// How long a test waits for what should come at once (a reply, an event), unless its file says
/// why it needs another.
pub const PROMPT: Duration = Duration::from_secs(5);

/// A one-shot command of project `slug` (`client`, `send`, `status`, `--help`), for
/// `assert_cmd`'s assertions: stdin closed, a panic on one line, killed after [`PROMPT`].
pub fn command(slug: &str) -> assert_cmd::Command {
    let mut command = assert_cmd::Command::new(binary(slug));
    command
        .env("RUST_BACKTRACE", "0")
        .timeout(PROMPT)
        .write_stdin(Vec::new());
    command
}

/// A running server and the address it listens on.
pub struct Server {
    /// The program, for its output and its diagnosis.
    pub program: Program,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Server {
    /// Starts project `slug`'s `server --bind 127.0.0.1:0 ARGS...`.
    pub fn start(slug: &str, args: &[&str]) -> Server {
        Server::start_as(slug, "server", args)
    }

    /// Starts project `slug`'s `ROLE --bind 127.0.0.1:0 ARGS...`, for a server subcommand named
    /// for its role (`broker`, `recv`).
    pub fn start_as(slug: &str, role: &str, args: &[&str]) -> Server {
        let (program, addr) = Program::start_role(&binary(slug), role, args);
        Server { program, addr }
    }

    /// Connects with `connect` (a protocol client's), failing with the server's diagnosis.
    #[track_caller]
    pub fn connect_with<C, E: Display>(
        &mut self,
        connect: impl FnOnce(SocketAddr) -> Result<C, E>,
    ) -> C {
        match connect(self.addr) {
            Ok(conn) => conn,
            Err(e) => self
                .program
                .fail(format_args!("cannot connect to {}: {e}", self.addr)),
        }
    }
}
