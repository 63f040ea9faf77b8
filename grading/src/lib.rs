//! The grader's contract with the suite, written once for both sides: `xtask` (which builds the
//! tree it grades and names its binary) and `workbook-suite` (which starts the binary it is
//! named, or builds the reference solution itself under a plain `cargo test`).
//!
//! Light on purpose (one dependency, `serde_json`): the grader must build fast on a fresh clone.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;

/// The environment variable that names the binary of project `slug`: `WORKBOOK_BIN_KV_STORE`
/// for `kv-store`.
pub fn env_var(slug: &str) -> String {
    format!("WORKBOOK_BIN_{}", slug.to_uppercase().replace('-', "_"))
}

/// The environment variable that names the tree being graded (`exercises`, `solutions` or a
/// directory), for the suite's messages.
pub const TREE_VAR: &str = "WORKBOOK_TREE";

/// `CARGO build --package PACKAGE --bin PACKAGE`, asking for JSON messages on stdout (with the
/// diagnostics rendered on stderr as usual), in release mode if `release`. The caller adds where
/// it runs and anything else (`--manifest-path`, `--target-dir`, `--quiet`), runs it, and hands
/// its stdout to [`executable`].
pub fn build_command(cargo: impl AsRef<OsStr>, package: &str, release: bool) -> Command {
    let mut command = Command::new(cargo);
    command.args([
        "build",
        "--package",
        package,
        "--bin",
        package,
        "--message-format=json-render-diagnostics",
    ]);
    if release {
        command.arg("--release");
    }
    command
}

/// The executable of `package` among the JSON messages of a [`build_command`]'s stdout.
pub fn executable(stdout: &[u8], package: &str) -> Option<PathBuf> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == *package)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_messages() {
        assert_eq!(env_var("kv-store"), "WORKBOOK_BIN_KV_STORE");
        let stdout = concat!(
            "{\"reason\":\"compiler-artifact\",\"target\":{\"name\":\"dep\"},\"executable\":null}\n",
            "not json\n",
            "{\"reason\":\"compiler-artifact\",\"target\":{\"name\":\"kv-store\"},",
            "\"executable\":\"/t/kv-store\"}\n"
        );
        assert_eq!(
            executable(stdout.as_bytes(), "kv-store"),
            Some(PathBuf::from("/t/kv-store"))
        );
        assert_eq!(executable(b"", "kv-store"), None);
    }
}
