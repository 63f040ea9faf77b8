//! `cargo xtask mutants <project>`: how much of a wrong solution the suite notices.
//!
//! cargo-mutants (crates.io) lists the mutants of the project's solution, each a small diff
//! (a function body replaced by a default value, an operator swapped). Its own runner runs the
//! mutated package's tests only, and the workbook's tests live in another package, so this
//! command applies each diff to a scratch copy of the solution, builds it, grades it with the
//! project's suite exactly as `check` does, and counts: **caught** (some test failed), **missed**
//! (every test passed: a learner's code wrong in the same way would pass too) and **unviable**
//! (it does not build). The score is caught / (caught + missed).
//!
//! Too slow for `verify` (a build and a suite run per mutant): run it by hand, `--sample N` for a
//! quick look.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::check;
use crate::projects::{self, Project};
use crate::tree::{self, cargo};

/// One mutant, as cargo-mutants lists it.
#[derive(Debug, Clone)]
pub struct Mutant {
    /// Its one-line name: `src/glob.rs:12:5: replace matches -> bool with true`.
    pub name: String,
    /// The unified diff that makes it, with paths relative to the workspace root.
    pub diff: String,
}

/// What the suite made of a mutant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// At least one test failed.
    Caught,
    /// Every test passed.
    Missed,
    /// It did not build.
    Unviable,
}

/// How the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MutantsFormat {
    /// For a terminal.
    Text,
    /// One JSON document.
    Json,
}

/// Lists, samples, applies and grades the mutants of `name`'s solution, and prints the score.
pub fn run(
    root: &Path,
    name: &str,
    sample: Option<usize>,
    seed: u64,
    format: MutantsFormat,
) -> Result<()> {
    let project = projects::find(name)?;
    if !root
        .join("solutions")
        .join(project.dir_name())
        .join("Cargo.toml")
        .is_file()
    {
        bail!("{} has no solution yet", project.slug);
    }
    let mut mutants = list(root, &project)?;
    let total = mutants.len();
    if let Some(n) = sample {
        mutants = pick(mutants, n, seed);
    }
    eprintln!(
        "{} mutants of {}; grading {}",
        total,
        project.solution_package(),
        mutants.len()
    );
    let scratch = Scratch::new(root, &project)?;
    let mut results = Vec::new();
    for (i, mutant) in mutants.iter().enumerate() {
        eprintln!("[{}/{}] {}", i + 1, mutants.len(), mutant.name);
        let outcome = scratch.grade(root, &project, mutant)?;
        eprintln!("        {outcome:?}");
        results.push((mutant.name.clone(), outcome));
    }
    let count = |o: Outcome| results.iter().filter(|(_, r)| *r == o).count();
    let (caught, missed, unviable) = (
        count(Outcome::Caught),
        count(Outcome::Missed),
        count(Outcome::Unviable),
    );
    let viable = caught + missed;
    let score = if viable == 0 {
        100.0
    } else {
        100.0 * caught as f64 / viable as f64
    };
    let out = match format {
        MutantsFormat::Json => {
            serde_json::to_string_pretty(&serde_json::json!({
                "project": project.slug,
                "mutants_listed": total,
                "graded": results.len(),
                "seed": sample.map(|_| seed),
                "caught": caught,
                "missed": missed,
                "unviable": unviable,
                "score_percent": score,
                "mutants": results.iter().map(|(name, outcome)| serde_json::json!({
                    "name": name, "outcome": outcome,
                })).collect::<Vec<_>>(),
            }))? + "\n"
        }
        MutantsFormat::Text => {
            let mut out = String::new();
            for (name, _) in results.iter().filter(|(_, o)| *o == Outcome::Missed) {
                out.push_str(&format!("missed: {name}\n"));
            }
            out.push_str(&format!(
                "{}: {caught} caught, {missed} missed, {unviable} unviable of {} graded ({total} listed): score {score:.0}%\n",
                project.slug,
                results.len()
            ));
            out
        }
    };
    crate::emit(&out);
    Ok(())
}

/// Asks cargo-mutants for the mutants of the project's solution, each with its diff.
fn list(root: &Path, project: &Project) -> Result<Vec<Mutant>> {
    let output = cargo()
        .current_dir(root)
        .args(["mutants", "--list", "--json", "--diff", "--package"])
        .arg(project.solution_package())
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo mutants")?;
    if !output.status.success() {
        bail!(
            "`cargo mutants --list` failed ({}); is cargo-mutants installed? \
             `cargo install --locked cargo-mutants`",
            output.status
        );
    }
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("reading cargo mutants' JSON list")?;
    let entries = json
        .as_array()
        .context("cargo mutants' list is not a JSON array")?;
    entries
        .iter()
        .map(|m| {
            let diff = m["diff"]
                .as_str()
                .context("a mutant without a diff (cargo-mutants too old for --diff?)")?
                .to_owned();
            Ok(Mutant {
                name: name_of(m),
                diff,
            })
        })
        .collect()
}

/// The one-line name cargo-mutants gives a mutant: its own `name` field where there is one,
/// else `file:line:column: replacement`.
fn name_of(m: &serde_json::Value) -> String {
    if let Some(name) = m["name"].as_str() {
        return name.to_owned();
    }
    let start = &m["span"]["start"];
    let function = m["function"]["function_name"].as_str().unwrap_or("?");
    format!(
        "{}:{}:{}: replace {} with {}",
        m["file"].as_str().unwrap_or("?"),
        start["line"],
        start["column"],
        function,
        m["replacement"].as_str().unwrap_or("?")
    )
}

/// `n` of `mutants`, chosen at random from `seed` (the same on every machine), in listed order.
fn pick(mutants: Vec<Mutant>, n: usize, seed: u64) -> Vec<Mutant> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut chosen =
        rand::seq::index::sample(&mut rng, mutants.len(), n.min(mutants.len())).into_vec();
    chosen.sort_unstable();
    chosen.into_iter().map(|i| mutants[i].clone()).collect()
}

/// A workspace of its own holding a copy of the solution (and the plumbing), where one mutant at
/// a time is applied, built and graded.
struct Scratch {
    workspace: PathBuf,
    pristine: PathBuf,
    crate_dir: PathBuf,
}

impl Scratch {
    fn new(root: &Path, project: &Project) -> Result<Scratch> {
        let workspace = root.join("target/xtask/mutants").join(project.slug);
        if workspace.exists() {
            std::fs::remove_dir_all(&workspace)
                .with_context(|| format!("clearing {}", workspace.display()))?;
        }
        let member = format!("solutions/{}", project.dir_name());
        let source = root.join(&member);
        let pristine = workspace.join("pristine");
        tree::copy_tree(&source, &pristine)?;
        let crate_dir = workspace.join(&member);
        tree::copy_tree(&source, &crate_dir)?;
        tree::copy_tree(&root.join(tree::PLUMBING), &workspace.join(tree::PLUMBING))?;
        let manifest =
            std::fs::read_to_string(root.join("Cargo.toml")).context("reading Cargo.toml")?;
        std::fs::write(
            workspace.join("Cargo.toml"),
            tree::with_members(&manifest, &member)?,
        )?;
        std::fs::copy(root.join("Cargo.lock"), workspace.join("Cargo.lock"))
            .context("copying Cargo.lock")?;
        Ok(Scratch {
            workspace,
            pristine,
            crate_dir,
        })
    }

    /// Applies `mutant` to a fresh copy of the solution, builds it and runs the suite on it.
    fn grade(&self, root: &Path, project: &Project, mutant: &Mutant) -> Result<Outcome> {
        std::fs::remove_dir_all(self.crate_dir.join("src"))?;
        tree::copy_tree(&self.pristine.join("src"), &self.crate_dir.join("src"))?;
        let mut patch = Command::new("patch")
            .current_dir(&self.workspace)
            .args(["--quiet", "--strip=0", "--forward", "--batch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .context("running patch (install it: apt-get install patch)")?;
        std::io::Write::write_all(
            patch.stdin.as_mut().context("patch's stdin")?,
            mutant.diff.as_bytes(),
        )?;
        if !patch.wait()?.success() {
            bail!(
                "the diff of {} does not apply:\n{}",
                mutant.name,
                mutant.diff
            );
        }
        let package = project.solution_package();
        let output = cargo()
            .current_dir(&self.workspace)
            .args(["build", "--quiet", "--message-format=json", "--package"])
            .arg(&package)
            .args(["--bin", &package, "--target-dir"])
            .arg(root.join("target/xtask/dir-target"))
            .stderr(Stdio::null())
            .output()
            .context("running cargo build")?;
        if !output.status.success() {
            return Ok(Outcome::Unviable);
        }
        let binary = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == *package)
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .context("cargo built the mutant but reported no executable")?;
        let outcomes = check::run_suite_on(root, project, &binary, "a mutant")?;
        Ok(if outcomes.iter().all(|t| t.passed) {
            Outcome::Missed
        } else {
            Outcome::Caught
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mutants(n: usize) -> Vec<Mutant> {
        (0..n)
            .map(|i| Mutant {
                name: format!("m{i}"),
                diff: String::new(),
            })
            .collect()
    }

    #[test]
    fn a_sample_is_the_same_for_a_seed_and_keeps_the_listed_order() {
        let names = |v: Vec<Mutant>| v.into_iter().map(|m| m.name).collect::<Vec<_>>();
        let a = names(pick(mutants(50), 10, 7));
        assert_eq!(a, names(pick(mutants(50), 10, 7)));
        assert_ne!(a, names(pick(mutants(50), 10, 8)));
        assert_eq!(a.len(), 10);
        let mut sorted = a.clone();
        sorted.sort_by_key(|n| n[1..].parse::<usize>().unwrap());
        assert_eq!(a, sorted);
        assert_eq!(pick(mutants(3), 10, 1).len(), 3);
    }

    #[test]
    fn names_a_mutant_without_a_name_field() {
        let m = serde_json::json!({
            "file": "src/glob.rs",
            "span": {"start": {"line": 12, "column": 5}},
            "function": {"function_name": "matches"},
            "replacement": "true",
        });
        assert_eq!(name_of(&m), "src/glob.rs:12:5: replace matches with true");
    }
}
