//! Which binary a test starts.
//!
//! The grader (`cargo xtask check`) builds the tree it grades and names the binary in
//! `WORKBOOK_BIN_<SLUG>`. Under a plain `cargo test` nobody does, so the suite builds the
//! reference solution itself, once per test process.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// The environment variable that names the binary of project `slug`: `WORKBOOK_BIN_KV_STORE`
/// for `kv-store`.
pub fn env_var(slug: &str) -> String {
    grading::env_var(slug)
}

/// The tree being graded, for messages: `exercises`, `solutions` or a path.
pub fn tree() -> String {
    std::env::var(grading::TREE_VAR).unwrap_or_else(|_| "solutions".to_owned())
}

/// The binary to test for project `slug`.
///
/// # Panics
/// When the variable names no file, or the solution does not build: no test can run then, and
/// the message says why.
pub fn binary(slug: &str) -> PathBuf {
    binary_with_profile(slug, false)
}

/// Like [`binary`], but builds the solution with `--release` when it has to (for benchmarks).
pub fn release_binary(slug: &str) -> PathBuf {
    binary_with_profile(slug, true)
}

fn binary_with_profile(slug: &str, release: bool) -> PathBuf {
    let var = env_var(slug);
    if let Some(path) = std::env::var_os(&var) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{var} names {}, which is not a file; run the tests through `cargo xtask check {slug}`",
            path.display()
        );
        return path;
    }
    static BUILT: OnceLock<Mutex<HashMap<(String, bool), PathBuf>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    built
        .entry((slug.to_owned(), release))
        .or_insert_with(|| build_solution(slug, release))
        .clone()
}

/// Builds `<slug>-solution` with the cargo that runs these tests and returns its executable.
fn build_solution(slug: &str, release: bool) -> PathBuf {
    let package = format!("{slug}-solution");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = grading::build_command(&cargo, &package, release);
    let output = command
        .arg("--quiet")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo} to build {package}: {e}"));
    assert!(
        output.status.success(),
        "building {package} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    grading::executable(&output.stdout, &package)
        .unwrap_or_else(|| panic!("cargo built {package} but named no executable"))
}
