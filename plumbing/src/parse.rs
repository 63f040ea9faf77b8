//! Value parsers for the flags every project has, for clap's `value_parser = ...`.
//!
//! Durations read as people write them (`500ms`, `3s`, `2m`, `1h 30m`), sizes too (`64KiB`,
//! `8MiB`, `1GB`, or a plain number of bytes). Each error says what was expected.

use std::time::Duration;

/// A duration such as `500ms` or `3s`; `0s` is allowed (for flags where zero means "off").
///
/// # Errors
/// When `s` is not a duration.
pub fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (expected e.g. 500ms, 3s, 2m)"))
}

/// A duration of more than zero.
///
/// # Errors
/// When `s` is not a duration, or is zero.
pub fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(d)
}

/// A size in bytes such as `64KiB`, `8MiB`, `1GB` or `4096`.
///
/// # Errors
/// When `s` is not a size.
pub fn size(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("{e} (expected e.g. 4096, 64KiB, 8MiB, 1GB)"))
}

/// A size of at least one byte, as a `usize` (for buffer and limit flags).
///
/// # Errors
/// When `s` is not a size, is zero, or does not fit in memory's address range.
pub fn positive_size(s: &str) -> Result<usize, String> {
    let bytes = size(s)?;
    if bytes == 0 {
        return Err("must be at least one byte".into());
    }
    usize::try_from(bytes).map_err(|_| format!("{s} is larger than this machine can address"))
}

/// `d` as [`duration`] reads it back (`10s`, `2m`), for clap's `default_value = ...` where the
/// default is a library's `pub const DEFAULT_...: Duration`: the default is written once, and
/// `--help` shows it as people write it.
///
/// The text is leaked: call it once per flag, as clap does when it builds the command.
pub fn duration_text(d: Duration) -> &'static str {
    Box::leak(humantime::format_duration(d).to_string().into_boxed_str())
}

/// A `KEY=VALUE` pair with a non-empty key; the value may be empty or hold further `=`.
///
/// # Errors
/// When there is no `=`, or the key is empty.
pub fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("0s"), Ok(Duration::ZERO));
        assert!(positive_duration("0s").is_err());
        assert!(duration("soon").unwrap_err().contains("expected"));
        for d in [Duration::from_millis(500), Duration::from_secs(120)] {
            assert_eq!(duration(duration_text(d)), Ok(d));
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(size("4096"), Ok(4096));
        assert_eq!(size("64KiB"), Ok(65_536));
        assert_eq!(size("8MiB"), Ok(8 << 20));
        assert_eq!(size("1KB"), Ok(1000));
        assert!(size("big").unwrap_err().contains("expected"));
        assert!(positive_size("0").is_err());
    }

    #[test]
    fn key_values() {
        assert_eq!(key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(key_value("a="), Ok(("a".into(), String::new())));
        assert!(key_value("=b").is_err());
        assert!(key_value("ab").is_err());
    }
}
