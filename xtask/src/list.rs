//! `cargo xtask list`: the ten projects, with the learner's progress on those that exist.

use std::path::Path;

use crate::check;
use crate::projects::PROJECTS;
use crate::tree::Tree;

/// Prints the projects; grades the learner's exercises unless `no_progress`.
pub fn run(root: &Path, no_progress: bool) {
    if !no_progress {
        eprintln!("grading your exercises to show progress (--no-progress skips this)...");
    }
    let mut lines = Vec::new();
    for p in &PROJECTS {
        let in_development = root.join("solutions").join(p.dir_name()).exists();
        let status = if !p.exists(root) && in_development {
            "in development".to_owned()
        } else if !p.exists(root) {
            "coming".to_owned()
        } else if no_progress {
            format!("cargo xtask check {}", p.slug)
        } else {
            let report = check::grade(root, p, &Tree::Exercises);
            match &report.error {
                Some(_) => "does not build yet".to_owned(),
                None if report.all_passed() => format!("done ({})", report.summary()),
                None => report.summary(),
            }
        };
        lines.push(format!(
            "{:>2}. {:<18} {:<55} {status}",
            p.number, p.slug, p.title
        ));
    }
    crate::emit(&(lines.join("\n") + "\n"));
}
