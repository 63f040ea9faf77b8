//! `cargo xtask grade-pr --pr DIR`: grades a pull request the way a teacher can trust.
//!
//! A learner's pull request may change anything, the tests included. So the pull request's
//! `exercises/` is graded with *this* checkout's suite, grader, plumbing and workspace files (the
//! base branch's, in the `grade` workflow), through `check --dir`, which builds a copy of each
//! project against this checkout's `Cargo.toml` and `Cargo.lock`. Every file the pull request
//! changes outside `exercises/` is listed at the top of the report: ignored for the grade, and
//! visible to whoever reads it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::check::{self, Format};
use crate::projects::{self, PROJECTS};
use crate::report::{self, ProjectReport, Style};
use crate::tree::Tree;

/// Folders never compared: build output and version control, not the pull request's content.
const SKIPPED: [&str; 4] = [".git", "target", "node_modules", "build"];

/// How a file outside `exercises/` differs between the base and the pull request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Only the pull request has it.
    Added,
    /// Both have it, with different contents.
    Modified,
    /// Only the base has it.
    Removed,
}

impl Change {
    fn word(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Modified => "modified",
            Change::Removed => "removed",
        }
    }
}

/// Grades `pr/exercises` with the suite at `root`, prints the report in `format` with the list
/// of changes outside `exercises/` before it, and returns whether every project in `required`
/// passed (true when none is required).
pub fn run(root: &Path, pr: &Path, required: &[String], format: Format) -> Result<bool> {
    if !pr.join("exercises").is_dir() {
        bail!(
            "{} has no exercises/ folder: --pr takes a checkout of the pull request",
            pr.display()
        );
    }
    let required = required
        .iter()
        .flat_map(|r| r.split_whitespace())
        .map(|name| projects::find_existing(name, root).map(|p| p.slug))
        .collect::<Result<Vec<_>>>()?;
    let changes = changes_outside_exercises(root, pr)?;
    let tree = Tree::Dir(std::path::absolute(pr.join("exercises"))?);
    let reports: Vec<ProjectReport> = PROJECTS
        .iter()
        .map(|p| {
            if p.exists(root) {
                check::grade(root, p, &tree)
            } else {
                check::coming(p, &tree)
            }
        })
        .collect();
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|slug| !reports.iter().any(|r| r.slug == *slug && r.all_passed()))
        .collect();
    let out = match format {
        Format::Markdown => {
            let mut out = changes_markdown(&changes);
            out.push_str(&report::markdown(&reports));
            if !missing.is_empty() {
                out.push_str(&format!(
                    "\n**Required projects not passing:** {}\n",
                    missing.join(", ")
                ));
            }
            out
        }
        Format::Text => {
            let mut out = changes_text(&changes);
            out.push_str(&report::text(&reports, Style { color: false }));
            if !missing.is_empty() {
                out.push_str(&format!(
                    "required projects not passing: {}\n",
                    missing.join(", ")
                ));
            }
            out
        }
        Format::Json => {
            serde_json::to_string_pretty(&serde_json::json!({
                "changed_outside_exercises": changes
                    .iter()
                    .map(|(path, change)| serde_json::json!({"path": path, "change": change.word()}))
                    .collect::<Vec<_>>(),
                "required_not_passing": missing,
                "projects": serde_json::from_str::<serde_json::Value>(&report::json(&reports))?,
            }))? + "\n"
        }
    };
    crate::emit(&out);
    Ok(missing.is_empty())
}

/// Every file that differs between `base` and `pr`, outside `exercises/` and build output, by
/// path relative to the root, sorted.
pub fn changes_outside_exercises(base: &Path, pr: &Path) -> Result<BTreeMap<String, Change>> {
    let (ours, theirs) = (files(base)?, files(pr)?);
    let mut changes = BTreeMap::new();
    for (path, full) in &theirs {
        match ours.get(path) {
            None => {
                changes.insert(path.clone(), Change::Added);
            }
            Some(base_file) => {
                let same = std::fs::read(base_file)
                    .with_context(|| format!("reading {}", base_file.display()))?
                    == std::fs::read(full)
                        .with_context(|| format!("reading {}", full.display()))?;
                if !same {
                    changes.insert(path.clone(), Change::Modified);
                }
            }
        }
    }
    for path in ours.keys() {
        if !theirs.contains_key(path) {
            changes.insert(path.clone(), Change::Removed);
        }
    }
    Ok(changes)
}

/// Files under `root` outside `exercises/`, by relative path (with `/`), skipping [`SKIPPED`].
fn files(root: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let entry = entry?;
            let path = entry.path();
            let relative = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let name = entry.file_name();
            if SKIPPED.iter().any(|s| name == *s) || relative == "exercises" {
                continue;
            }
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(path);
            } else {
                out.insert(relative, path);
            }
        }
    }
    Ok(out)
}

fn changes_markdown(changes: &BTreeMap<String, Change>) -> String {
    if changes.is_empty() {
        return "This pull request changes nothing outside `exercises/`.\n\n".to_owned();
    }
    let mut out = format!(
        "> **This pull request changes {} file(s) outside `exercises/`.** They were ignored: the \
         exercises were graded with the base branch's suite, grader and workspace files.\n\n",
        changes.len()
    );
    for (path, change) in changes {
        out.push_str(&format!("- {} `{path}`\n", change.word()));
    }
    out.push('\n');
    out
}

fn changes_text(changes: &BTreeMap<String, Change>) -> String {
    if changes.is_empty() {
        return "no changes outside exercises/\n\n".to_owned();
    }
    let mut out = format!(
        "{} file(s) changed outside exercises/, ignored (graded with this checkout's suite):\n",
        changes.len()
    );
    for (path, change) in changes {
        out.push_str(&format!("  {:<8} {path}\n", change.word()));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, path: &str, text: &str) {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn names_every_change_outside_exercises_and_nothing_inside() {
        let tmp = std::env::temp_dir().join(format!("xtask-grade-{}", std::process::id()));
        let (base, pr) = (tmp.join("base"), tmp.join("pr"));
        for root in [&base, &pr] {
            write(root, "Cargo.toml", "[workspace]\n");
            write(root, "exercises/01-heartbeat/src/lib.rs", "todo!()");
            write(root, "target/debug/junk", "built");
        }
        write(&base, "suite/tests/heartbeat.rs", "assert!(real_check);");
        write(&pr, "suite/tests/heartbeat.rs", "assert!(true);");
        write(&base, "xtask/src/check.rs", "grade");
        write(&pr, "exercises/01-heartbeat/src/lib.rs", "solved");
        write(&pr, "exercises/01-heartbeat/src/extra.rs", "more");
        write(&pr, ".github/workflows/grade.yml", "on: push");
        write(&pr, "target/release/junk", "built");

        let changes = changes_outside_exercises(&base, &pr).unwrap();
        let got: Vec<(&str, Change)> = changes.iter().map(|(p, c)| (p.as_str(), *c)).collect();
        assert_eq!(
            got,
            [
                (".github/workflows/grade.yml", Change::Added),
                ("suite/tests/heartbeat.rs", Change::Modified),
                ("xtask/src/check.rs", Change::Removed),
            ]
        );
        let summary = changes_markdown(&changes);
        assert!(
            summary.contains("changes 3 file(s) outside `exercises/`"),
            "{summary}"
        );
        assert!(
            summary.contains("- modified `suite/tests/heartbeat.rs`"),
            "{summary}"
        );
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn an_untouched_pull_request_says_so() {
        assert!(changes_markdown(&BTreeMap::new()).contains("changes nothing outside"));
    }
}
