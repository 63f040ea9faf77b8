//! The wire formats, pure and synchronous: StatsD lines (Etsy's daemon with DogStatsD tags),
//! Graphite plaintext lines, and the agent's framed protocol.
//!
//! A StatsD line is `NAME:VALUE|TYPE[|@RATE][|#TAG,TAG:VALUE]`, with `TYPE` one of `c` (counter),
//! `g` (gauge; a leading `+` or `-` makes it a delta), `ms`, `h` or `d` (a timing), `s` (a set).
//! A Graphite line is `PATH VALUE TIMESTAMP`, the timestamp in Unix seconds, the value a number
//! or `nan`. The agent's frames are text headers, one a line:
//!
//! ```text
//! agent -> collector   HELLO <agent-id>\n
//! collector -> agent   OK <highest sequence taken from this agent, 0 if none>\n
//! agent -> collector   BATCH <seq> <received-ms> <bytes>\n<bytes of StatsD lines>
//! collector -> agent   ACK <seq>\n
//! collector -> agent   ERR <reason>\n   (then it closes)
//! ```

use thiserror::Error;

/// Why a line or frame was refused. Each variant is one `reason` in the collector's counts.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// A StatsD line without `:` or without `|TYPE`.
    #[error("expected NAME:VALUE|TYPE")]
    Syntax,
    /// An empty name, or one with a character that would break an output name.
    #[error("bad metric name")]
    BadName,
    /// A value that is not a finite number (or, for Graphite, `nan`).
    #[error("bad value")]
    BadValue,
    /// A type other than `c`, `g`, `ms`, `h`, `d`, `s`.
    #[error("unknown metric type")]
    BadType,
    /// A sample rate outside `(0, 1]`, or a field after the type that is neither `@` nor `#`.
    #[error("bad sample rate")]
    BadRate,
    /// An empty tag.
    #[error("bad tags")]
    BadTags,
    /// A Graphite line without exactly three fields.
    #[error("expected PATH VALUE TIMESTAMP")]
    GraphiteSyntax,
    /// A Graphite timestamp that is not a non-negative number of seconds.
    #[error("bad timestamp")]
    BadTimestamp,
    /// A line longer than the limit.
    #[error("line too long")]
    LineTooLong,
    /// A line that is not UTF-8.
    #[error("not UTF-8")]
    NotUtf8,
    /// An agent frame header that is not `HELLO`, `BATCH` or well formed.
    #[error("bad frame: {0}")]
    BadFrame(String),
    /// An agent batch larger than the limit.
    #[error("frame of {0} bytes is larger than the limit")]
    FrameTooLarge(usize),
}

impl ProtocolError {
    /// The reason as counted and reported: `syntax`, `bad_value`, ...
    pub fn reason(&self) -> Reason {
        match self {
            ProtocolError::Syntax => Reason::Syntax,
            ProtocolError::BadName => Reason::BadName,
            ProtocolError::BadValue => Reason::BadValue,
            ProtocolError::BadType => Reason::BadType,
            ProtocolError::BadRate => Reason::BadRate,
            ProtocolError::BadTags => Reason::BadTags,
            ProtocolError::GraphiteSyntax => Reason::GraphiteSyntax,
            ProtocolError::BadTimestamp => Reason::BadTimestamp,
            ProtocolError::LineTooLong => Reason::LineTooLong,
            ProtocolError::NotUtf8 => Reason::NotUtf8,
            ProtocolError::BadFrame(_) | ProtocolError::FrameTooLarge(_) => Reason::BadFrame,
        }
    }
}

/// The reasons a line is counted as malformed, in the order they are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// See [`ProtocolError::Syntax`].
    Syntax,
    /// See [`ProtocolError::BadName`].
    BadName,
    /// See [`ProtocolError::BadValue`].
    BadValue,
    /// See [`ProtocolError::BadType`].
    BadType,
    /// See [`ProtocolError::BadRate`].
    BadRate,
    /// See [`ProtocolError::BadTags`].
    BadTags,
    /// See [`ProtocolError::GraphiteSyntax`].
    GraphiteSyntax,
    /// See [`ProtocolError::BadTimestamp`].
    BadTimestamp,
    /// See [`ProtocolError::LineTooLong`].
    LineTooLong,
    /// See [`ProtocolError::NotUtf8`].
    NotUtf8,
    /// See [`ProtocolError::BadFrame`].
    BadFrame,
}

impl Reason {
    /// Every reason, in report order.
    pub const ALL: [Reason; 11] = [
        Reason::Syntax,
        Reason::BadName,
        Reason::BadValue,
        Reason::BadType,
        Reason::BadRate,
        Reason::BadTags,
        Reason::GraphiteSyntax,
        Reason::BadTimestamp,
        Reason::LineTooLong,
        Reason::NotUtf8,
        Reason::BadFrame,
    ];

    /// The name in the batch line's `malformed` object and the Prometheus `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Syntax => "syntax",
            Reason::BadName => "bad_name",
            Reason::BadValue => "bad_value",
            Reason::BadType => "bad_type",
            Reason::BadRate => "bad_rate",
            Reason::BadTags => "bad_tags",
            Reason::GraphiteSyntax => "graphite_syntax",
            Reason::BadTimestamp => "bad_timestamp",
            Reason::LineTooLong => "line_too_long",
            Reason::NotUtf8 => "not_utf8",
            Reason::BadFrame => "bad_frame",
        }
    }

    /// Its index in [`Reason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What one sample says, by metric type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `c`: add `value / rate` to the interval's count.
    Counter {
        /// The increment as sent (may be negative).
        value: f64,
        /// The sample rate, in `(0, 1]`.
        rate: f64,
    },
    /// `g` without a sign: the gauge is now `value`.
    Gauge(f64),
    /// `g` with a leading `+` or `-`: the gauge moves by this much.
    GaugeDelta(f64),
    /// `ms`, `h`, `d`: one timing, in milliseconds, standing for `1 / rate` samples.
    Timer {
        /// The duration in milliseconds.
        ms: f64,
        /// The sample rate, in `(0, 1]`.
        rate: f64,
    },
    /// `s`: one member of the set.
    Set(String),
    /// A Graphite data point: the value (`NaN` when sent as `nan`) at the sender's time.
    Graphite {
        /// The value; `NaN` for `nan`.
        value: f64,
        /// The sender's timestamp, in milliseconds since the Unix epoch.
        sent_ms: u64,
    },
}

/// The kind of series a sample belongs to: counter `x` and gauge `x` are two series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Counters.
    Counter,
    /// Gauges.
    Gauge,
    /// Timers and histograms.
    Timer,
    /// Sets.
    Set,
    /// Graphite paths.
    Graphite,
}

impl Value {
    /// The series kind.
    pub fn kind(&self) -> Kind {
        match self {
            Value::Counter { .. } => Kind::Counter,
            Value::Gauge(_) | Value::GaugeDelta(_) => Kind::Gauge,
            Value::Timer { .. } => Kind::Timer,
            Value::Set(_) => Kind::Set,
            Value::Graphite { .. } => Kind::Graphite,
        }
    }
}

/// One parsed sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name (bucket), as sent.
    pub name: String,
    /// DogStatsD tags, sorted and deduplicated, each `key:value` or `key`.
    pub tags: Vec<String>,
    /// What it says.
    pub value: Value,
}

/// Whether `name` can be a series name: not empty, and free of the bytes that separate the
/// fields of either protocol or of an output name.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b':' | b'|' | b'@' | b'#' | b'"' | b'\\'))
}

fn finite(text: &str) -> Result<f64, ProtocolError> {
    // Most values are small integers (a count of 1): up to 15 digits, the sum of the digits is
    // exact in an `f64`, and is what `parse` would give, without its general algorithm.
    let digits = text.as_bytes();
    if (1..=15).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit) {
        let n = digits
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        return Ok(n as f64);
    }
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(ProtocolError::BadValue),
    }
}

/// The longest timing accepted, in milliseconds: one hour. Longer ones are not timings a
/// histogram of request latencies should hold, and the bound keeps each timer's histogram small.
pub const MAX_TIMER_MS: f64 = 3_600_000.0;

/// Parses one StatsD line (without its newline).
///
/// # Errors
/// The [`ProtocolError`] naming what is wrong.
pub fn parse_statsd(line: &str) -> Result<Sample, ProtocolError> {
    // Byte searches rather than `str::split`: every separator is ASCII, so each index is a
    // character boundary, and a line is a few dozen bytes, too short for the general searcher.
    let (name, rest) = split_at_byte(line, b':');
    let rest = rest.ok_or(ProtocolError::Syntax)?;
    if !valid_name(name) {
        return Err(ProtocolError::BadName);
    }
    let (value, rest) = split_at_byte(rest, b'|');
    let (kind, mut fields) = split_at_byte(rest.ok_or(ProtocolError::Syntax)?, b'|');
    let mut rate = 1.0;
    let mut tags = Vec::new();
    while let Some(rest) = fields {
        let (field, next) = split_at_byte(rest, b'|');
        fields = next;
        if let Some(r) = field.strip_prefix('@') {
            rate = match r.parse::<f64>() {
                Ok(r) if r > 0.0 && r <= 1.0 => r,
                _ => return Err(ProtocolError::BadRate),
            };
        } else if let Some(list) = field.strip_prefix('#') {
            for tag in list.split(',') {
                if tag.is_empty() || tag.contains(['"', '\\']) {
                    return Err(ProtocolError::BadTags);
                }
                tags.push(tag.to_owned());
            }
        } else {
            return Err(ProtocolError::BadRate);
        }
    }
    tags.sort_unstable();
    tags.dedup();
    let value = match kind {
        "c" => Value::Counter {
            value: finite(value)?,
            rate,
        },
        "g" if value.starts_with(['+', '-']) => Value::GaugeDelta(finite(value)?),
        "g" => Value::Gauge(finite(value)?),
        "ms" | "h" | "d" => {
            let ms = finite(value)?;
            if !(0.0..=MAX_TIMER_MS).contains(&ms) {
                return Err(ProtocolError::BadValue);
            }
            Value::Timer { ms, rate }
        }
        "s" if !value.is_empty() => Value::Set(value.to_owned()),
        "s" => return Err(ProtocolError::BadValue),
        _ => return Err(ProtocolError::BadType),
    };
    Ok(Sample {
        name: name.to_owned(),
        tags,
        value,
    })
}

/// `text` before the first `byte` (an ASCII separator), and what follows it if it is there.
fn split_at_byte(text: &str, byte: u8) -> (&str, Option<&str>) {
    match text.bytes().position(|b| b == byte) {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    }
}

/// Parses one Graphite plaintext line (without its newline): `PATH VALUE TIMESTAMP`.
///
/// # Errors
/// The [`ProtocolError`] naming what is wrong.
pub fn parse_graphite(line: &str) -> Result<Sample, ProtocolError> {
    let mut fields = line.split_ascii_whitespace();
    let (Some(path), Some(value), Some(ts), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(ProtocolError::GraphiteSyntax);
    };
    if !valid_name(path) {
        return Err(ProtocolError::BadName);
    }
    let value = if value.eq_ignore_ascii_case("nan") {
        f64::NAN
    } else {
        finite(value)?
    };
    let sent_ms = match ts.parse::<f64>() {
        Ok(s) if (0.0..1e13).contains(&s) => (s * 1000.0).round() as u64,
        _ => return Err(ProtocolError::BadTimestamp),
    };
    Ok(Sample {
        name: path.to_owned(),
        tags: Vec::new(),
        value: Value::Graphite { value, sent_ms },
    })
}

/// A frame header from an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentFrame {
    /// `HELLO <agent-id>`: who is sending.
    Hello(String),
    /// `BATCH <seq> <received-ms> <bytes>`: a batch of `bytes` bytes of StatsD lines follows.
    Batch {
        /// The batch's sequence number, from 1, per agent.
        seq: u64,
        /// When the agent received the batch's first line, by its own clock.
        received_ms: u64,
        /// The payload's length.
        len: usize,
    },
}

/// Parses an agent frame header from the front of `buf`: `Ok(None)` until a whole header line is
/// there, then the frame and the bytes the header took (the payload follows them).
///
/// # Errors
/// A malformed header, or a batch longer than `max_frame`.
pub fn parse_agent_frame(
    buf: &[u8],
    max_frame: usize,
) -> Result<Option<(AgentFrame, usize)>, ProtocolError> {
    const MAX_HEADER: usize = 512;
    let Some(end) = buf.iter().take(MAX_HEADER).position(|&b| b == b'\n') else {
        if buf.len() >= MAX_HEADER {
            return Err(ProtocolError::BadFrame("header too long".into()));
        }
        return Ok(None);
    };
    let header = std::str::from_utf8(&buf[..end])
        .map_err(|_| ProtocolError::BadFrame("header not UTF-8".into()))?
        .trim_end_matches('\r');
    let mut words = header.split(' ');
    let bad = || ProtocolError::BadFrame(format!("{header:?}"));
    let frame = match (words.next(), words.next(), words.next(), words.next()) {
        (Some("HELLO"), Some(id), None, None) if !id.is_empty() && id.len() <= 128 => {
            AgentFrame::Hello(id.to_owned())
        }
        (Some("BATCH"), Some(seq), Some(received), Some(len)) if words.next().is_none() => {
            let seq = seq.parse().map_err(|_| bad())?;
            let received_ms = received.parse().map_err(|_| bad())?;
            let len: usize = len.parse().map_err(|_| bad())?;
            if len > max_frame {
                return Err(ProtocolError::FrameTooLarge(len));
            }
            AgentFrame::Batch {
                seq,
                received_ms,
                len,
            }
        }
        _ => return Err(bad()),
    };
    Ok(Some((frame, end + 1)))
}

/// A reply from the collector to an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CollectorReply {
    /// `OK <seq>`: the highest sequence number the collector has taken from this agent.
    Ok(u64),
    /// `ACK <seq>`: batch `seq` is taken (or was, and this one was a duplicate).
    Ack(u64),
    /// `ERR <reason>`: the collector closes the connection after this.
    Err(String),
}

/// Parses one reply line (without its newline).
///
/// # Errors
/// When the line is none of the replies.
pub fn parse_reply(line: &str) -> Result<CollectorReply, ProtocolError> {
    let bad = || ProtocolError::BadFrame(format!("{line:?}"));
    match line.split_once(' ') {
        Some(("OK", n)) => n.parse().map(CollectorReply::Ok).map_err(|_| bad()),
        Some(("ACK", n)) => n.parse().map(CollectorReply::Ack).map_err(|_| bad()),
        Some(("ERR", reason)) => Ok(CollectorReply::Err(reason.to_owned())),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statsd_types() {
        let s = parse_statsd("gorets:1|c|@0.1").unwrap();
        assert_eq!(
            s.value,
            Value::Counter {
                value: 1.0,
                rate: 0.1
            }
        );
        assert_eq!(
            parse_statsd("g:-4|g").unwrap().value,
            Value::GaugeDelta(-4.0)
        );
        assert_eq!(
            parse_statsd("g:+4|g").unwrap().value,
            Value::GaugeDelta(4.0)
        );
        assert_eq!(parse_statsd("g:4|g").unwrap().value, Value::Gauge(4.0));
        assert_eq!(
            parse_statsd("u:joe|s").unwrap().value,
            Value::Set("joe".into())
        );
        let t = parse_statsd("glork:320|ms|#b,a:1,b").unwrap();
        assert_eq!(t.tags, ["a:1", "b"]);
        assert_eq!(
            t.value,
            Value::Timer {
                ms: 320.0,
                rate: 1.0
            }
        );
    }

    #[test]
    fn statsd_errors() {
        assert_eq!(parse_statsd("nocolon"), Err(ProtocolError::Syntax));
        assert_eq!(parse_statsd("a:1"), Err(ProtocolError::Syntax));
        assert_eq!(parse_statsd(":1|c"), Err(ProtocolError::BadName));
        assert_eq!(parse_statsd("a:x|c"), Err(ProtocolError::BadValue));
        assert_eq!(parse_statsd("a:nan|g"), Err(ProtocolError::BadValue));
        assert_eq!(parse_statsd("a:1|q"), Err(ProtocolError::BadType));
        assert_eq!(parse_statsd("a:1|c|@0"), Err(ProtocolError::BadRate));
        assert_eq!(parse_statsd("a:1|c|@2"), Err(ProtocolError::BadRate));
        assert_eq!(parse_statsd("a:1|c|#"), Err(ProtocolError::BadTags));
        assert_eq!(parse_statsd("a:-1|ms"), Err(ProtocolError::BadValue));
    }

    #[test]
    fn graphite() {
        let s = parse_graphite("a.b.c 1.5 1700000000").unwrap();
        assert_eq!(
            s.value,
            Value::Graphite {
                value: 1.5,
                sent_ms: 1_700_000_000_000
            }
        );
        let nan = parse_graphite("cpu.idle nan 1700000000").unwrap();
        assert!(matches!(nan.value, Value::Graphite { value, .. } if value.is_nan()));
        assert_eq!(parse_graphite("a 1"), Err(ProtocolError::GraphiteSyntax));
        assert_eq!(parse_graphite("a 1 x"), Err(ProtocolError::BadTimestamp));
        assert_eq!(parse_graphite("a inf 1"), Err(ProtocolError::BadValue));
    }

    #[test]
    fn agent_frames() {
        assert_eq!(parse_agent_frame(b"HEL", 10), Ok(None));
        assert_eq!(
            parse_agent_frame(b"HELLO a1\nrest", 10),
            Ok(Some((AgentFrame::Hello("a1".into()), 9)))
        );
        let (frame, used) = parse_agent_frame(b"BATCH 3 17 5\nx:1|c", 10)
            .unwrap()
            .unwrap();
        assert_eq!(
            frame,
            AgentFrame::Batch {
                seq: 3,
                received_ms: 17,
                len: 5
            }
        );
        assert_eq!(used, 13);
        assert_eq!(
            parse_agent_frame(b"BATCH 3 17 50\n", 10),
            Err(ProtocolError::FrameTooLarge(50))
        );
        assert!(parse_agent_frame(b"NOPE\n", 10).is_err());
        assert_eq!(parse_reply("ACK 4"), Ok(CollectorReply::Ack(4)));
    }
}
