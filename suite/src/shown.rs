//! How failure messages show what came back, in words rather than Rust's `Debug`: a result as
//! its value or its error, a missing value as what its absence means, bytes that differ.
//!
//! A protocol's own notation lives with its client (`Display` of [`crate::resp::Resp`],
//! [`crate::nats::Frame`], [`crate::transfer::Frame`], ...); these are the pieces every suite
//! shares.

use std::fmt::Display;
use std::process::ExitStatus;

/// A result as a failure message shows it: the value, or the error (each by its `Display`).
pub fn outcome<T: Display, E: Display>(got: &Result<T, E>) -> String {
    match got {
        Ok(value) => value.to_string(),
        Err(e) => e.to_string(),
    }
}

/// A value that may be missing: the value, or `none` (what its absence means, e.g. "no leader").
pub fn or<T: Display>(got: &Option<T>, none: &str) -> String {
    match got {
        Some(value) => value.to_string(),
        None => none.to_owned(),
    }
}

/// Items joined with `, ` for a failure message (`n1, n3`), or `none` when there are none.
pub fn listed<T: Display>(items: impl IntoIterator<Item = T>, none: &str) -> String {
    let shown: Vec<String> = items.into_iter().map(|item| item.to_string()).collect();
    if shown.is_empty() {
        none.to_owned()
    } else {
        shown.join(", ")
    }
}

/// Where two byte strings first differ: `the first difference is at byte 12`, or, when one is
/// the start of the other, which is shorter.
pub fn first_difference(got: &[u8], expected: &[u8]) -> String {
    match got.iter().zip(expected).position(|(a, b)| a != b) {
        Some(at) => format!("the first difference is at byte {at}"),
        None if got.len() < expected.len() => {
            format!("what arrived is the first {} bytes of it", got.len())
        }
        None if got.len() > expected.len() => format!(
            "it starts with all {} expected bytes, then has {} more",
            expected.len(),
            got.len() - expected.len()
        ),
        None => "they are the same".to_owned(),
    }
}

/// Bytes in hexadecimal, space-separated, as a wire dump shows them: `00 00 00 0c 0d 02`.
pub fn hex_bytes(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// How a program ended, or that it had not: `exit status: 1`, `still running`.
pub fn ended(status: Option<ExitStatus>) -> String {
    or(&status, "still running")
}

/// Tells the learner something a passing test noticed (a task that panicked, say): the grader
/// shows it under the stage, which still passes. One line; printed to the test's captured stdout.
pub fn notice(message: impl Display) {
    let line = message.to_string().replace('\n', " ");
    println!("notice: {line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_results_options_and_differences() {
        assert_eq!(outcome::<i32, String>(&Err("closed".into())), "closed");
        assert_eq!(or::<u8>(&None, "no leader"), "no leader");
        assert_eq!(
            first_difference(b"abc", b"abd"),
            "the first difference is at byte 2"
        );
        assert_eq!(
            first_difference(b"ab", b"abc"),
            "what arrived is the first 2 bytes of it"
        );
        assert_eq!(hex_bytes(&[0, 12, 255]), "00 0c ff");
        assert_eq!(listed(["n1", "n3"], "none"), "n1, n3");
        assert_eq!(listed(Vec::<u8>::new(), "none"), "none");
    }
}
