//! `cargo xtask list`: the ten projects, with the learner's progress on those that exist.
//!
//! Every grade of the learner's exercises that `check` gives is kept in
//! `target/xtask/grades/<slug>.json` with a fingerprint of what it graded (the exercise's files
//! and the project's suite). `list` shows the kept grade and its age, and grades again only a
//! project whose fingerprint has changed since.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::check;
use crate::projects::{PROJECTS, Project};
use crate::report::ProjectReport;
use crate::tree::Tree;

/// What is kept of one grade.
#[derive(Debug, Serialize, Deserialize)]
struct Kept {
    /// The fingerprint of the files graded.
    fingerprint: u64,
    /// When, in seconds since the Unix epoch.
    graded_at: u64,
    /// `stages 3/7, tests 20/29`.
    summary: String,
    /// Whether every test passed.
    passed: bool,
    /// Whether it could not be graded (it did not compile).
    error: bool,
}

/// Prints the projects with the kept grades; grades again those whose files changed, unless
/// `no_progress`.
pub fn run(root: &Path, no_progress: bool) {
    let mut lines = Vec::new();
    for p in &PROJECTS {
        let status = if p.in_development(root) {
            "in development".to_owned()
        } else if !p.exists(root) {
            "coming".to_owned()
        } else {
            let kept = read(root, p);
            let fresh = kept
                .as_ref()
                .is_some_and(|k| k.fingerprint == fingerprint(root, p));
            match kept {
                Some(k) if fresh => describe(&k),
                Some(k) if no_progress => format!("{} (files changed since)", describe(&k)),
                Some(_) => {
                    eprintln!(
                        "{} changed since its last grade: grading it again...",
                        p.slug
                    );
                    check::grade(root, p, &Tree::Exercises);
                    read(root, p).map_or_else(|| "not graded".to_owned(), |k| describe(&k))
                }
                None => format!("not graded yet: cargo xtask check {}", p.slug),
            }
        };
        lines.push(format!(
            "{:>2}. {:<18} {:<55} {status}",
            p.number, p.slug, p.title
        ));
    }
    crate::emit(&(lines.join("\n") + "\n"));
}

/// Keeps `report` as the last grade of `project`, when it graded the learner's exercises.
pub fn keep(root: &Path, project: &Project, tree: &Tree, report: &ProjectReport) {
    if *tree != Tree::Exercises {
        return;
    }
    let kept = Kept {
        fingerprint: fingerprint(root, project),
        graded_at: now(),
        summary: report.summary(),
        passed: report.all_passed(),
        error: report.error.is_some(),
    };
    let path = kept_path(root, project);
    // Progress is a convenience: failing to keep it must not fail the grading.
    let _ = std::fs::create_dir_all(path.parent().unwrap_or(root))
        .and_then(|()| std::fs::write(&path, serde_json::to_vec(&kept).unwrap_or_default()));
}

fn describe(kept: &Kept) -> String {
    let age = humanize(Duration::from_secs(now().saturating_sub(kept.graded_at)));
    if kept.error {
        format!("does not build yet ({age} ago)")
    } else if kept.passed {
        format!("done, {} ({age} ago)", kept.summary)
    } else {
        format!("{} ({age} ago)", kept.summary)
    }
}

fn read(root: &Path, project: &Project) -> Option<Kept> {
    serde_json::from_slice(&std::fs::read(kept_path(root, project)).ok()?).ok()
}

fn kept_path(root: &Path, project: &Project) -> PathBuf {
    root.join("target/xtask/grades")
        .join(format!("{}.json", project.slug))
}

/// A hash of the exercise's files (names and contents) and of the project's suite.
fn fingerprint(root: &Path, project: &Project) -> u64 {
    let mut hasher = DefaultHasher::new();
    let exercise = root.join("exercises").join(project.dir_name());
    let mut pending = vec![exercise];
    let mut files = vec![project.suite_path(root)];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if entry.file_name() != "target" {
                    pending.push(path);
                }
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    for file in files {
        file.hash(&mut hasher);
        std::fs::read(&file).unwrap_or_default().hash(&mut hasher);
    }
    hasher.finish()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `42s`, `5m`, `3h`, `2d`: the age of a grade, roughly.
fn humanize(age: Duration) -> String {
    let s = age.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_roughly() {
        assert_eq!(humanize(Duration::from_secs(42)), "42s");
        assert_eq!(humanize(Duration::from_secs(300)), "5m");
        assert_eq!(humanize(Duration::from_secs(7200)), "2h");
        assert_eq!(humanize(Duration::from_secs(200_000)), "2d");
    }

    #[test]
    fn a_kept_grade_describes_itself() {
        let kept = Kept {
            fingerprint: 1,
            graded_at: now(),
            summary: "stages 1/7, tests 3/29".into(),
            passed: false,
            error: false,
        };
        assert!(describe(&kept).starts_with("stages 1/7, tests 3/29 ("));
    }
}
