//! The ten projects of the workbook, and where each one's pieces live.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// One project of the course.
#[derive(Debug, Clone, Copy)]
pub struct Project {
    /// Its place in the course, 1 to 10.
    pub number: u8,
    /// The short name used on the command line and in package names.
    pub slug: &'static str,
    /// What it is.
    pub title: &'static str,
}

/// Every project, in course order. Adding a project is adding its trees, its suite target and
/// its chapter; this list already names it.
pub const PROJECTS: [Project; 10] = [
    project(
        1,
        "heartbeat",
        "UDP heartbeat system with failure detection",
    ),
    project(2, "log-aggregator", "Concurrent TCP log aggregator"),
    project(3, "kv-store", "Actor-based in-memory KV store over TCP"),
    project(4, "gossip", "Gossip protocol simulator"),
    project(5, "file-writer", "Distributed chunked file writer"),
    project(6, "service-registry", "HTTP service registry with TTLs"),
    project(7, "pubsub", "Pub/sub over TCP with topic fan-out"),
    project(
        8,
        "leader-election",
        "Leader election via heartbeats and priority",
    ),
    project(
        9,
        "metrics-collector",
        "Fan-out metrics collector with batching and timestamps",
    ),
    project(
        10,
        "file-transfer",
        "File transfer over TCP with SHA-256 checksums",
    ),
];

const fn project(number: u8, slug: &'static str, title: &'static str) -> Project {
    Project {
        number,
        slug,
        title,
    }
}

impl Project {
    /// `01-heartbeat`: the directory name in `exercises/`, `solutions/` and `book/src/`.
    pub fn dir_name(&self) -> String {
        format!("{:02}-{}", self.number, self.slug)
    }

    /// The exercise package and binary: `heartbeat`.
    pub fn exercise_package(&self) -> &'static str {
        self.slug
    }

    /// The solution package and binary: `heartbeat-solution`.
    pub fn solution_package(&self) -> String {
        format!("{}-solution", self.slug)
    }

    /// The environment variable through which the suite learns which binary to test.
    pub fn bin_env_var(&self) -> String {
        grading::env_var(self.slug)
    }

    /// Whether the project is ready to be worked on and graded: its exercise, its solution and its
    /// suite test target all exist. A project with only some of them is in development (its code
    /// is still built and linted with the workspace, but nothing grades it).
    pub fn exists(&self, root: &Path) -> bool {
        let dir = self.dir_name();
        root.join("exercises")
            .join(&dir)
            .join("Cargo.toml")
            .is_file()
            && root
                .join("solutions")
                .join(&dir)
                .join("Cargo.toml")
                .is_file()
            && self.suite_path(root).is_file()
    }

    /// Whether the project is in development: its solution and its suite test target exist, its
    /// exercise does not yet. `verify` holds the solution to its suite; nothing grades a learner.
    pub fn in_development(&self, root: &Path) -> bool {
        !self.exists(root)
            && root
                .join("solutions")
                .join(self.dir_name())
                .join("Cargo.toml")
                .is_file()
            && self.suite_path(root).is_file()
    }

    /// Its test target in the shared suite: `suite/tests/kv_store.rs`.
    pub fn suite_path(&self, root: &Path) -> PathBuf {
        root.join("suite/tests")
            .join(format!("{}.rs", self.slug.replace('-', "_")))
    }

    /// Its hints file, whose `## Stage N: Title` headings name the stages.
    pub fn hints_path(&self, root: &Path) -> PathBuf {
        root.join("book/src").join(self.dir_name()).join("hints.md")
    }
}

/// Finds a project by slug (`heartbeat`) or number (`1`, `01`).
pub fn find(name: &str) -> Result<Project> {
    let wanted = name.trim().to_lowercase();
    let by_number = wanted.parse::<u8>().ok();
    if let Some(p) = PROJECTS
        .iter()
        .find(|p| p.slug == wanted || Some(p.number) == by_number)
    {
        return Ok(*p);
    }
    let valid: Vec<String> = PROJECTS
        .iter()
        .map(|p| format!("  {:>2}  {}", p.number, p.slug))
        .collect();
    bail!(
        "no project called {name:?}; the projects are:\n{}",
        valid.join("\n")
    )
}

/// Finds a project that has been written, with a clear message for one that is still coming.
pub fn find_existing(name: &str, root: &Path) -> Result<Project> {
    let project = find(name)?;
    if !project.exists(root) {
        bail!(
            "project {} ({}) is coming: it is not in the workbook yet. `cargo xtask list` shows what is.",
            project.number,
            project.slug
        );
    }
    Ok(project)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_by_slug_or_number() {
        assert_eq!(find("heartbeat").unwrap().number, 1);
        assert_eq!(find("01").unwrap().slug, "heartbeat");
        assert_eq!(find("10").unwrap().slug, "file-transfer");
        let err = find("nope").unwrap_err().to_string();
        assert!(err.contains("kv-store"), "{err}");
        assert_eq!(
            find("kv-store").unwrap().bin_env_var(),
            "WORKBOOK_BIN_KV_STORE"
        );
    }
}
