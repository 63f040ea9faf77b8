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
    name.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Parses a Go duration (`time.ParseDuration`): `300ms`, `10s`, `1.5h`, `1m30s`, `0`.
///
/// # Errors
/// A message naming the input, as Go's is.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration \"{s}\"");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return Err(invalid());
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        if number.is_empty() || number == "." {
            return Err(invalid());
        }
        let value: f64 = number.parse().map_err(|_| invalid())?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(invalid()),
        };
        nanos += value * scale;
        rest = next;
    }
    if !nanos.is_finite() || nanos > 9.2e18 {
        return Err(invalid());
    }
    // Truncation is intended: the value is finite, non-negative and below u64::MAX.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(Duration::from_nanos(nanos as u64))
}

/// Parses a registration body.
///
/// # Errors
/// [`ProtocolError`] for bad JSON, wrong types, unknown fields, a missing name, a check that is
/// not a TTL check, or metadata Consul would refuse.
pub fn parse_registration(body: &[u8]) -> Result<Registration, ProtocolError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ProtocolError::Decode(e.to_string()))?;
    let Value::Object(object) = value else {
        return Err(decode("the body must be a JSON object"));
    };
    let mut reg = Registration {
        id: String::new(),
        name: String::new(),
        tags: Vec::new(),
        address: String::new(),
        port: 0,
        meta: BTreeMap::new(),
        checks: Vec::new(),
    };
    for (key, value) in &object {
        match field_key(key).as_str() {
            "id" => reg.id = string(key, value)?,
            "name" => reg.name = string(key, value)?,
            "tags" => reg.tags = strings(key, value)?,
            "address" => reg.address = string(key, value)?,
            "port" => reg.port = port(key, value)?,
            "meta" => reg.meta = string_map(key, value)?,
            "check" if !value.is_null() => reg.checks.insert(0, check(key, value)?),
            "checks" if !value.is_null() => {
                let Value::Array(items) = value else {
                    return Err(wrong_type(key, "an array of checks"));
                };
                for item in items {
                    reg.checks.push(check(key, item)?);
                }
            }
            // Accepted and ignored: fields real clients send that service discovery here has
            // no use for.
            "check" | "checks" | "enabletagoverride" | "weights" | "kind" | "taggedaddresses"
            | "namespace" | "partition" | "token" => {}
            _ => return Err(decode(format!("unknown field \"{key}\""))),
        }
    }
    if reg.name.is_empty() {
        return Err(ProtocolError::MissingName);
    }
    if reg.id.is_empty() {
        reg.id.clone_from(&reg.name);
    }
    validate_meta(&reg.meta)?;
    Ok(reg)
}

/// Parses a check update body (`{"Status": "passing", "Output": "..."}`).
///
/// # Errors
/// [`ProtocolError`] for bad JSON, wrong types, unknown fields or an invalid status.
pub fn parse_check_update(body: &[u8]) -> Result<CheckUpdate, ProtocolError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ProtocolError::Decode(e.to_string()))?;
    let Value::Object(object) = value else {
        return Err(decode("the body must be a JSON object"));
    };
    let mut status = None;
    let mut output = String::new();
    for (key, value) in &object {
        match field_key(key).as_str() {
            "status" => status = Some(Status::parse(&string(key, value)?)?),
            "output" => output = string(key, value)?,
            _ => return Err(decode(format!("unknown field \"{key}\""))),
        }
    }
    let status = status.ok_or_else(|| ProtocolError::InvalidStatus(String::new()))?;
    Ok(CheckUpdate { status, output })
}

/// Parses a query string (without the `?`) into the options read endpoints share. Unknown
/// parameters (`stale`, `consistent`, `dc`, `near`, ...) are accepted and ignored.
///
/// # Errors
/// [`ProtocolError::InvalidIndex`], [`ProtocolError::InvalidWait`] or
/// [`ProtocolError::InvalidPassing`].
pub fn parse_query(query: &str) -> Result<QueryOptions, ProtocolError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query).map_err(|e| decode(e.to_string()))?;
    let mut options = QueryOptions::default();
    for (key, value) in pairs {
        match key.as_str() {
            "index" => options.index = value.parse().map_err(|_| ProtocolError::InvalidIndex)?,
            "wait" => {
                let wait = parse_go_duration(&value).map_err(|_| ProtocolError::InvalidWait)?;
                options.wait = Some(wait);
            }
            "passing" => {
                options.passing = match value.as_str() {
                    "" | "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
                    "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
                    _ => return Err(ProtocolError::InvalidPassing),
                };
            }
            "tag" => options.tags.push(value),
            _ => {}
        }
    }
    Ok(options)
}

/// How long a blocking query waits before it answers unchanged: the asked wait (five minutes
/// when none), at most ten minutes, plus `jitter`, which the caller draws from `[0, 1)` and
/// which adds up to a sixteenth of the wait, as Consul spreads its waiters' returns.
pub fn blocking_wait(asked: Option<Duration>, jitter: f64) -> Duration {
    let wait = asked
        .filter(|w| !w.is_zero())
        .unwrap_or(DEFAULT_WAIT)
        .min(MAX_WAIT);
    wait + (wait / 16).mul_f64(jitter.clamp(0.0, 1.0))
}

fn decode(message: impl Into<String>) -> ProtocolError {
    ProtocolError::Decode(message.into())
}

fn wrong_type(key: &str, expected: &str) -> ProtocolError {
    decode(format!("field \"{key}\" must be {expected}"))
}

fn string(key: &str, value: &Value) -> Result<String, ProtocolError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        _ => Err(wrong_type(key, "a string")),
    }
}

fn strings(key: &str, value: &Value) -> Result<Vec<String>, ProtocolError> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                _ => Err(wrong_type(key, "an array of strings")),
            })
            .collect(),
        _ => Err(wrong_type(key, "an array of strings")),
    }
}

fn port(key: &str, value: &Value) -> Result<u16, ProtocolError> {
    match value {
        Value::Null => Ok(0),
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| wrong_type(key, "a port number from 0 to 65535")),
        _ => Err(wrong_type(key, "a port number from 0 to 65535")),
    }
}

fn string_map(key: &str, value: &Value) -> Result<BTreeMap<String, String>, ProtocolError> {
    match value {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(wrong_type(key, "an object of strings")),
            })
            .collect(),
        _ => Err(wrong_type(key, "an object of strings")),
    }
}

/// A duration field: a Go duration string, or a number of nanoseconds.
fn duration(key: &str, value: &Value) -> Result<Option<Duration>, ProtocolError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => parse_go_duration(s).map(Some).map_err(decode),
        Value::Number(n) => n
            .as_u64()
            .map(|n| Some(Duration::from_nanos(n)))
            .ok_or_else(|| wrong_type(key, "a duration")),
        _ => Err(wrong_type(key, "a duration such as \"10s\"")),
    }
}

fn check(key: &str, value: &Value) -> Result<CheckDefinition, ProtocolError> {
    let Value::Object(object) = value else {
        return Err(wrong_type(key, "a check object"));
    };
    check_fields(object)
}

fn check_fields(object: &Map<String, Value>) -> Result<CheckDefinition, ProtocolError> {
    let mut ttl = None;
    let mut def = CheckDefinition {
        id: String::new(),
        name: String::new(),
        ttl: Duration::ZERO,
        deregister_after: None,
        status: Status::Critical,
        notes: String::new(),
    };
    for (key, value) in object {
        match field_key(key).as_str() {
            "checkid" | "id" => def.id = string(key, value)?,
            "name" => def.name = string(key, value)?,
            "ttl" => ttl = duration(key, value)?,
            "deregistercriticalserviceafter" => def.deregister_after = duration(key, value)?,
            "status" => {
                let status = string(key, value)?;
                if !status.is_empty() {
                    def.status = Status::parse(&status)?;
                }
            }
            "notes" => def.notes = string(key, value)?,
            "http" | "tcp" | "grpc" | "args" | "script" | "dockercontainerid" | "h2ping"
            | "udp" | "aliasservice" | "aliasnode" => {
                if !value.is_null() && value != "" {
                    return Err(ProtocolError::InvalidCheck(format!(
                        "{key} checks are not supported by this agent: use a TTL check"
                    )));
                }
            }
            "interval"
            | "timeout"
            | "method"
            | "header"
            | "body"
            | "tlsskipverify"
            | "successbeforepassing"
            | "failuresbeforecritical"
            | "failuresbeforewarning" => {}
            _ => return Err(decode(format!("unknown check field \"{key}\""))),
        }
    }
    match ttl {
        Some(ttl) if !ttl.is_zero() => def.ttl = ttl,
        _ => {
            return Err(ProtocolError::InvalidCheck(
                "TTL must be set: this agent runs TTL checks only".into(),
            ));
        }
    }
    Ok(def)
}

fn validate_meta(meta: &BTreeMap<String, String>) -> Result<(), ProtocolError> {
    if meta.len() > MAX_META_PAIRS {
        return Err(ProtocolError::InvalidMeta(format!(
            "Node metadata cannot contain more than {MAX_META_PAIRS} key/value pairs"
        )));
    }
    for (key, value) in meta {
        if key.is_empty() {
            return Err(ProtocolError::InvalidMeta("Key cannot be blank".into()));
        }
        if !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ProtocolError::InvalidMeta(format!(
                "Key contains invalid characters: {key}"
            )));
        }
        if key.len() > MAX_META_KEY {
            return Err(ProtocolError::InvalidMeta(format!(
                "Key is too long (limit: {MAX_META_KEY} characters)"
            )));
        }
        if key.starts_with("consul-") {
            return Err(ProtocolError::InvalidMeta(format!(
                "Key prefix 'consul-' is reserved for internal use: {key}"
            )));
        }
        if value.len() > MAX_META_VALUE {
            return Err(ProtocolError::InvalidMeta(format!(
                "Value is too long (limit: {MAX_META_VALUE} characters)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert!(parse_go_duration("10").is_err());
        assert!(parse_go_duration("-1s").is_err());
        assert!(parse_go_duration("s").is_err());
        assert!(parse_go_duration("3 days").is_err());
    }

    #[test]
    fn fields_match_whatever_their_case() {
        let body = br#"{"name":"web","ID":"web-1","tags":["a"],"port":80,
            "check":{"ttl":"10s","deregister_critical_service_after":"1m"}}"#;
        let reg = parse_registration(body).unwrap();
        assert_eq!(reg.id, "web-1");
        assert_eq!(reg.name, "web");
        assert_eq!(reg.checks[0].ttl, Duration::from_secs(10));
        assert_eq!(
            reg.checks[0].deregister_after,
            Some(Duration::from_secs(60))
        );
        assert_eq!(reg.checks[0].status, Status::Critical);
    }

    #[test]
    fn refuses_what_consul_refuses() {
        assert_eq!(parse_registration(b"{}"), Err(ProtocolError::MissingName));
        assert!(matches!(
            parse_registration(br#"{"Name":"a","Port":"80"}"#),
            Err(ProtocolError::Decode(_))
        ));
        assert!(matches!(
            parse_registration(br#"{"Name":"a","Bogus":1}"#),
            Err(ProtocolError::Decode(_))
        ));
        assert!(matches!(
            parse_registration(br#"{"Name":"a","Check":{"HTTP":"http://x"}}"#),
            Err(ProtocolError::InvalidCheck(_))
        ));
    }

    #[test]
    fn queries() {
        let q = parse_query("index=7&wait=2s&passing&tag=v1&stale").unwrap();
        assert_eq!(q.index, 7);
        assert_eq!(q.wait, Some(Duration::from_secs(2)));
        assert!(q.passing);
        assert_eq!(q.tags, ["v1"]);
        assert_eq!(parse_query("index=x"), Err(ProtocolError::InvalidIndex));
        assert_eq!(parse_query("wait=10"), Err(ProtocolError::InvalidWait));
    }

    #[test]
    fn waits_are_clamped_and_jittered() {
        assert_eq!(blocking_wait(None, 0.0), DEFAULT_WAIT);
        assert_eq!(
            blocking_wait(Some(Duration::from_secs(3600)), 0.0),
            MAX_WAIT
        );
        assert_eq!(
            blocking_wait(Some(Duration::from_secs(16)), 1.0),
            Duration::from_secs(17)
        );
    }
}
