//! `cargo xtask run`: build a tree's binary and run it with the given arguments.

use std::path::Path;
use std::process::{Command, ExitCode};

use anyhow::{Context, Result};

use crate::projects;
use crate::tree::Tree;

/// Builds `name`'s binary from `tree` (optimised with `release`), runs it with `args`, and passes
/// on its exit code.
pub fn run(
    root: &Path,
    name: &str,
    tree: &Tree,
    release: bool,
    args: &[String],
) -> Result<ExitCode> {
    let project = projects::find_existing(name, root)?;
    let binary = tree.build(root, &project, release)?;
    let status = Command::new(&binary)
        .args(args)
        .status()
        .with_context(|| format!("running {}", binary.display()))?;
    Ok(ExitCode::from(
        status.code().map_or(1, |c| u8::try_from(c).unwrap_or(1)),
    ))
}
