//! A service registry speaking the service-discovery subset of Consul's HTTP API and its DNS
//! interface: project 6 of the workbook. Consul's own client libraries and `dig` work against
//! it unchanged.
//!
//! # Layout
//! - [`protocol`]: the wire format: registrations, check updates and query strings decoded the
//!   way Consul decodes them, Go durations, the blocking wait. Pure.
//! - [`state`]: the registry: services, TTL checks, the index, a watch channel per name, and
//!   the JSON of every read endpoint.
//! - [`journal`]: persistence under `--data`: an fsynced journal of changes, compacted.
//! - [`http`]: the routes, status codes and blocking queries.
//! - [`dns`]: A and SRV answers for `NAME.service.consul`.
//! - [`server`]: the agent: configuration, TTL expiry and reaper tasks, the accept loop.
//! - [`client`]: the command-line client (`register`, `health`, `watch`, ...).

pub mod client;
pub mod dns;
pub mod http;
pub mod journal;
pub mod protocol;
pub mod server;
pub mod state;
