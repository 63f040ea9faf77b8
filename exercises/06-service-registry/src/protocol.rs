//! The wire format of Consul's HTTP API, as far as service discovery uses it: decoding a service
//! registration, a check update and a query string; Go's duration syntax. Pure and synchronous.
//!
//! Consul decodes JSON with Go's `encoding/json` and its own key translation, so field names
//! match whatever their case, with or without underscores: `Name`, `name`, `DeregisterCriticalServiceAfter`
//! and `deregister_critical_service_after` are one field. [`field_key`] is that rule.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

/// Why a request cannot be understood. Each becomes `400 Bad Request` with the message as its
/// plain-text body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The body is not JSON, or a field has the wrong type or an unknown name.
    #[error("Request decode failed: {0}")]
    Decode(String),
    /// A registration without a name.
    #[error("Missing service name")]
    MissingName,
    /// A check this agent cannot run (only TTL checks are supported).
    #[error("Check is not valid: {0}")]
    InvalidCheck(String),
    /// Service metadata Consul would refuse.
    #[error("Invalid Service Meta: {0}")]
    InvalidMeta(String),
    /// `?index=` is not an unsigned integer.
    #[error("Invalid index")]
    InvalidIndex,
    /// `?wait=` is not a Go duration.
    #[error("Invalid wait time")]
    InvalidWait,
    /// `?passing=` is not a boolean.
    #[error("Invalid value for ?passing")]
    InvalidPassing,
    /// A check status other than passing, warning or critical.
    #[error("Invalid check status: \"{0}\"")]
    InvalidStatus(String),
    /// `/v1/health/state/:state` with an unknown state.
    #[error("Bad state")]
    BadState,
}

/// The state of a check, and of an instance (its worst check).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Healthy.
    Passing,
    /// Degraded: shown, but not `?passing` and not in DNS.
    Warning,
    /// Failed, or a TTL not refreshed in time.
    Critical,
}

impl Status {
    /// Consul's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passing => "passing",
            Status::Warning => "warning",
            Status::Critical => "critical",
        }
    }

    /// Parses `passing`, `warning` or `critical`.
    ///
    /// # Errors
    /// [`ProtocolError::InvalidStatus`] for anything else.
    pub fn parse(s: &str) -> Result<Status, ProtocolError> {
        match s {
            "passing" => Ok(Status::Passing),
            "warning" => Ok(Status::Warning),
            "critical" => Ok(Status::Critical),
            other => Err(ProtocolError::InvalidStatus(other.to_owned())),
        }
    }
}

/// A TTL check as registered with a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckDefinition {
    /// `CheckID`; empty means Consul's default, `service:<id>` (`service:<id>:<n>` for several).
    pub id: String,
    /// `Name`; empty means `Service '<name>' check`.
    pub name: String,
    /// `TTL`: the check turns critical when not updated for this long.
    pub ttl: Duration,
    /// `DeregisterCriticalServiceAfter`: the service goes once the check has been critical for
    /// this long.
    pub deregister_after: Option<Duration>,
    /// `Status`: the initial state; Consul starts a TTL check critical.
    pub status: Status,
    /// `Notes`.
    pub notes: String,
}

/// A decoded `PUT /v1/agent/service/register` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// `ID`; Consul uses the name when it is empty.
    pub id: String,
    /// `Name` (required).
    pub name: String,
    /// `Tags`.
    pub tags: Vec<String>,
    /// `Address`; empty means the node's address.
    pub address: String,
    /// `Port`.
    pub port: u16,
    /// `Meta`.
    pub meta: BTreeMap<String, String>,
    /// `Check` and `Checks`, in that order.
    pub checks: Vec<CheckDefinition>,
}

/// A decoded `PUT /v1/agent/check/update/:id` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckUpdate {
    /// `Status`.
    pub status: Status,
    /// `Output`.
    pub output: String,
}

/// The query-string options every read endpoint takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryOptions {
    /// `?index=N`: block until the answer's index differs from N. Zero does not block.
    pub index: u64,
    /// `?wait=DUR`: how long to block at most (before the server's clamp and jitter).
    pub wait: Option<Duration>,
    /// `?passing`: only instances whose checks all pass.
    pub passing: bool,
    /// `?tag=T`, repeatable: only instances with every one of these tags.
    pub tags: Vec<String>,
}

/// The longest `?wait` a query may ask for; longer waits are cut to this, as Consul does.
pub const MAX_WAIT: Duration = Duration::from_secs(600);

/// The wait of a blocking query that names none.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);

/// The most key/value pairs of service metadata Consul accepts.
pub const MAX_META_PAIRS: usize = 64;

/// The longest metadata key Consul accepts, in bytes.
pub const MAX_META_KEY: usize = 128;

/// The longest metadata value Consul accepts, in bytes.
pub const MAX_META_VALUE: usize = 512;

/// The key a JSON field is matched by: lower case, without underscores.
pub fn field_key(name: &str) -> String {
    // TODO: lower-case `name` and drop every `_` (`char::to_lowercase`, `filter`).
    todo!()
}

/// Parses a Go duration (`time.ParseDuration`): `300ms`, `10s`, `1.5h`, `1m30s`, `0`.
///
/// # Errors
/// A message naming the input, as Go's is.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    // TODO: Go's `time.ParseDuration` syntax: one or more NUMBER UNIT pairs (`1m30s`, `1.5s`),
    // units ns us ms s m h, and "0" alone; a bare number, a sign or an unknown unit is an error
    // whose text is `time: invalid duration "..."`.
    todo!()
}

/// Parses a registration body.
///
/// # Errors
/// [`ProtocolError`] for bad JSON, wrong types, unknown fields, a missing name, a check that is
/// not a TTL check, or metadata Consul would refuse.
pub fn parse_registration(body: &[u8]) -> Result<Registration, ProtocolError> {
    // TODO: the contract's "Registering" table and check object, every error as its
    // `ProtocolError`: field names matched as `field_key` folds them, each field of its JSON type,
    // a check's TTL (a Go duration string or nanoseconds) required, the ID defaulting to the name,
    // Meta within `MAX_META_PAIRS`, `MAX_META_KEY`, `MAX_META_VALUE`. `serde_json::Value`,
    // `parse_go_duration`, `Status::parse`.
    todo!()
}

/// Parses a check update body (`{"Status": "passing", "Output": "..."}`).
///
/// # Errors
/// [`ProtocolError`] for bad JSON, wrong types, unknown fields or an invalid status.
pub fn parse_check_update(body: &[u8]) -> Result<CheckUpdate, ProtocolError> {
    // TODO: an object with `Status` (required, through `Status::parse`) and `Output`; field
    // names through `field_key`; anything else is `Decode`.
    todo!()
}

/// Parses a query string (without the `?`) into the options read endpoints share. Unknown
/// parameters (`stale`, `consistent`, `dc`, `near`, ...) are accepted and ignored.
///
/// # Errors
/// [`ProtocolError::InvalidIndex`], [`ProtocolError::InvalidWait`] or
/// [`ProtocolError::InvalidPassing`].
pub fn parse_query(query: &str) -> Result<QueryOptions, ProtocolError> {
    // TODO: `serde_urlencoded::from_str::<Vec<(String, String)>>` decodes the pairs; `index` is a u64
    // (`InvalidIndex`), `wait` a Go duration (`InvalidWait`), `passing` is true when empty or a Go
    // boolean (`1`, `t`, `true`...), `tag` repeats. Ignore the rest (`stale`, `consistent`, `dc`).
    todo!()
}

/// How long a blocking query waits before it answers unchanged: the asked wait (five minutes
/// when none), at most ten minutes, plus `jitter`, which the caller draws from `[0, 1)` and
/// which adds up to a sixteenth of the wait, as Consul spreads its waiters' returns.
pub fn blocking_wait(asked: Option<Duration>, jitter: f64) -> Duration {
    // TODO: the wait this doc describes, with `DEFAULT_WAIT`, `MAX_WAIT` and `Duration::mul_f64`
    // (an asked wait of zero counts as none).
    todo!()
}
