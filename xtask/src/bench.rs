//! `cargo xtask bench`: the project's criterion benchmarks, against a release build of the
//! chosen tree's binary.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::projects;
use crate::tree::{Tree, cargo};

/// Builds `name` from `tree` in release mode and runs its benchmarks with `args` for criterion.
pub fn run(root: &Path, name: &str, tree: &Tree, args: &[String]) -> Result<()> {
    let project = projects::find_existing(name, root)?;
    let binary = tree.build(root, &project, true)?;
    let status = cargo()
        .current_dir(root)
        .args([
            "bench",
            "--package",
            "workbook-suite",
            "--bench",
            project.slug,
            "--",
        ])
        .args(args)
        .env(project.bin_env_var(), &binary)
        .env(grading::TREE_VAR, tree.label())
        .status()
        .context("running cargo bench")?;
    if !status.success() {
        bail!("the {} benchmarks failed ({status})", project.slug);
    }
    Ok(())
}
