//! Which tree is graded (the learner's exercises, the reference solutions, or a copy laid out
//! like `exercises/`), and building its binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::projects::Project;

/// A tree of project crates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tree {
    /// `exercises/`: the learner's work.
    Exercises,
    /// `solutions/`: the reference implementations.
    Solutions,
    /// Another directory laid out like `exercises/`, e.g. a student's copy.
    Dir(PathBuf),
}

impl Tree {
    /// The tree the common `--solutions` / `--dir PATH` flags select.
    pub fn from_flags(solutions: bool, dir: Option<PathBuf>) -> Tree {
        match (solutions, dir) {
            (_, Some(dir)) => Tree::Dir(dir),
            (true, None) => Tree::Solutions,
            (false, None) => Tree::Exercises,
        }
    }

    /// A name for reports: `exercises`, `solutions` or the directory.
    pub fn label(&self) -> String {
        match self {
            Tree::Exercises => "exercises".into(),
            Tree::Solutions => "solutions".into(),
            Tree::Dir(dir) => dir.display().to_string(),
        }
    }

    /// Builds `project`'s binary from this tree and returns its path.
    ///
    /// Cargo's own progress and any compile errors go to stderr as usual, so a learner sees
    /// their compile error exactly as `cargo build` shows it.
    pub fn build(&self, root: &Path, project: &Project, release: bool) -> Result<PathBuf> {
        let (package, staged) = match self {
            Tree::Exercises => (project.exercise_package().to_owned(), None),
            Tree::Solutions => (project.solution_package(), None),
            Tree::Dir(dir) => (
                project.exercise_package().to_owned(),
                Some(stage_dir_tree(root, dir, project)?),
            ),
        };
        let mut command = grading::build_command(cargo().get_program(), &package, release);
        command.current_dir(root);
        if let Some(manifest) = staged {
            command
                .arg("--manifest-path")
                .arg(manifest)
                .arg("--target-dir")
                .arg(root.join("target/xtask/dir-target"));
        }
        let output = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .output()
            .context("running cargo build")?;
        if !output.status.success() {
            bail!(
                "`{package}` from {} does not compile: the errors are above",
                self.label()
            );
        }
        grading::executable(&output.stdout, &package)
            .with_context(|| format!("cargo built `{package}` but reported no executable"))
    }
}

/// Copies `dir/NN-slug` into a workspace of its own under `target/xtask/dir-grade/` so that it
/// builds with this repository's shared dependency versions and lints, wherever it came from.
fn stage_dir_tree(root: &Path, dir: &Path, project: &Project) -> Result<PathBuf> {
    let source = dir.join(project.dir_name());
    if !source.join("Cargo.toml").is_file() {
        bail!(
            "{} has no {}/Cargo.toml: --dir takes a directory laid out like exercises/",
            dir.display(),
            project.dir_name()
        );
    }
    // One folder per project and graded directory: a teacher may grade several copies at once,
    // and each run clears its own folder first.
    let mut hasher = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&source, &mut hasher);
    let key = format!(
        "{}-{:016x}",
        project.slug,
        std::hash::Hasher::finish(&hasher)
    );
    let workspace = root.join("target/xtask/dir-grade").join(key);
    stage_workspace(root, &source, &workspace, &project.dir_name())
}

/// Makes `workspace` afresh: a copy of the crate at `source` as its one member `member`, the
/// shared plumbing, the root manifest and `Cargo.lock`. Returns its manifest.
pub fn stage_workspace(
    root: &Path,
    source: &Path,
    workspace: &Path,
    member: &str,
) -> Result<PathBuf> {
    if workspace.exists() {
        std::fs::remove_dir_all(workspace)
            .with_context(|| format!("clearing {}", workspace.display()))?;
    }
    copy_tree(source, &workspace.join(member))?;
    // The shared plumbing is the workbook's, not the learner's: graded as the repository has it.
    copy_tree(&root.join(PLUMBING), &workspace.join(PLUMBING))?;
    std::fs::write(
        workspace.join("Cargo.toml"),
        root_manifest_with_members(root, member)?,
    )?;
    std::fs::copy(root.join("Cargo.lock"), workspace.join("Cargo.lock"))
        .context("copying Cargo.lock")?;
    Ok(workspace.join("Cargo.toml"))
}

/// The crate of plumbing every project shares (`plumbing/`), at the root of the repository and of
/// every staged copy, where the root manifest's `[workspace.dependencies]` finds it.
pub const PLUMBING: &str = "plumbing";

/// The repository's root manifest, for a staged workspace whose one member is `member`.
pub fn root_manifest_with_members(root: &Path, member: &str) -> Result<String> {
    let manifest =
        std::fs::read_to_string(root.join("Cargo.toml")).context("reading Cargo.toml")?;
    with_members(&manifest, member)
}

/// The root manifest with its `members` line replaced by the one crate being graded and the
/// shared plumbing.
pub fn with_members(manifest: &str, member: &str) -> Result<String> {
    let mut replaced = false;
    let lines: Vec<String> = manifest
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("members") && !replaced {
                replaced = true;
                format!("members = [\"{member}\", \"{PLUMBING}\"]")
            } else {
                line.to_owned()
            }
        })
        .collect();
    if !replaced {
        bail!("the root Cargo.toml has no `members` line");
    }
    Ok(lines.join("\n") + "\n")
}

pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "target" || name == ".git" {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            copy_tree(&path, &to.join(&name))?;
        } else {
            std::fs::copy(&path, to.join(&name))
                .with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(())
}

/// `cargo`, the one that runs xtask (`$CARGO`), falling back to the one on PATH.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// The repository root: the parent of xtask's own manifest directory.
pub fn root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.clone(), Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_members_line_only() {
        let manifest = "[workspace]\nmembers = [\"a/*\", \"b\"]\n\n[workspace.dependencies]\nmembers-thing = \"1\"\n";
        let out = with_members(manifest, "01-heartbeat").unwrap();
        assert!(out.contains("members = [\"01-heartbeat\", \"plumbing\"]"));
        assert!(out.contains("members-thing = \"1\""));
    }

    #[test]
    fn flags_pick_the_tree() {
        assert_eq!(Tree::from_flags(false, None), Tree::Exercises);
        assert_eq!(Tree::from_flags(true, None), Tree::Solutions);
        assert_eq!(
            Tree::from_flags(false, Some("x".into())),
            Tree::Dir("x".into())
        );
    }
}
