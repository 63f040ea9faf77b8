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
//! A mutant is caught as soon as one test fails, so the suite runs stage by stage and stops at the
//! first stage with a failure. The first stage run is the one the mutated function belongs to
//! (the ladder's assignment of every stubbed function to its stage, from `stages.md`); a mutant
//! in code the exercise gives (or in a helper it does not stub) starts with the stage that caught
//! most of its file's mutants so far, or the last stage. Then come the later stages, then the
//! earlier ones, nearest first. A missed mutant still runs every
//! test, so the outcome is the one a whole run of the suite gives; only the time differs.
//!
//! Too slow for `verify` (a build and a suite run per mutant): run it by hand, `--sample N` for a
//! quick look.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::check;
use crate::ladder::{self, Stub};
use crate::projects::{self, Project};
use crate::tree::{self, cargo};

/// One mutant, as cargo-mutants lists it.
#[derive(Debug, Clone)]
pub struct Mutant {
    /// Its one-line name: `src/glob.rs:12:5: replace matches -> bool with true`.
    pub name: String,
    /// The unified diff that makes it, with paths relative to the workspace root.
    pub diff: String,
    /// The file it changes, relative to the workspace root.
    pub file: String,
    /// The function it is in, as cargo-mutants names it (`Store::ttl`,
    /// `<impl Display for Reply>::fmt`), if any.
    pub function: Option<String>,
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

/// One graded mutant.
#[derive(Debug, Clone)]
struct Graded {
    name: String,
    file: String,
    outcome: Outcome,
    /// The stage whose tests caught it.
    caught_by: Option<u32>,
    /// The stage it started with: its function's, else the one that caught most mutants of its
    /// file so far, else the last (`None`).
    first_stage: Option<u32>,
    took: Duration,
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
    let plan = Plan::new(root, &project)?;
    let scratch = Scratch::new(root, &project)?;
    let started = Instant::now();
    let mut results: Vec<Graded> = Vec::new();
    for (i, mutant) in mutants.iter().enumerate() {
        let (first_stage, from) = match plan.stage_of(mutant) {
            Some(stage) => (Some(stage), format!("stage {stage} first: its function's")),
            None => match learned_stage(&results, &mutant.file) {
                Some(stage) => (
                    Some(stage),
                    format!("stage {stage} first: it caught most of this file's mutants so far"),
                ),
                None => (
                    None,
                    "given code or a helper: the last stage first".to_owned(),
                ),
            },
        };
        eprintln!("[{}/{}] {} ({from})", i + 1, mutants.len(), mutant.name);
        let began = Instant::now();
        let (outcome, caught_by) = scratch.grade(root, &project, &plan, first_stage, mutant)?;
        results.push(Graded {
            name: mutant.name.clone(),
            file: mutant.file.clone(),
            outcome,
            caught_by,
            first_stage,
            took: began.elapsed(),
        });
        eprintln!("{}", progress(&results, mutants.len(), started.elapsed()));
    }
    let count = |o: Outcome| results.iter().filter(|r| r.outcome == o).count();
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
    let mean = |o: Option<Outcome>| {
        let took: Vec<f64> = results
            .iter()
            .filter(|r| o.is_none_or(|o| r.outcome == o))
            .map(|r| r.took.as_secs_f64())
            .collect();
        (!took.is_empty()).then(|| took.iter().sum::<f64>() / took.len() as f64)
    };
    let full_run = mean(None).map(|m| m * total as f64);
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
                "seconds": started.elapsed().as_secs_f64(),
                "mean_seconds": {
                    "all": mean(None),
                    "caught": mean(Some(Outcome::Caught)),
                    "missed": mean(Some(Outcome::Missed)),
                    "unviable": mean(Some(Outcome::Unviable)),
                },
                "full_run_estimate_seconds": full_run,
                "mutants": results.iter().map(|r| serde_json::json!({
                    "name": r.name,
                    "outcome": r.outcome,
                    "first_stage": r.first_stage,
                    "caught_by_stage": r.caught_by,
                    "seconds": r.took.as_secs_f64(),
                })).collect::<Vec<_>>(),
            }))? + "\n"
        }
        MutantsFormat::Text => {
            let mut out = String::new();
            for r in results.iter().filter(|r| r.outcome == Outcome::Missed) {
                out.push_str(&format!("missed: {}\n", r.name));
            }
            let secs = |m: Option<f64>| m.map_or("-".to_owned(), |m| format!("{m:.0} s"));
            out.push_str(&format!(
                "{}: {caught} caught, {missed} missed, {unviable} unviable of {} graded ({total} listed): score {score:.0}%\n\
                 mean time a mutant: {} (caught {}, missed {}, unviable {}); all {total}: about {}\n",
                project.slug,
                results.len(),
                secs(mean(None)),
                secs(mean(Some(Outcome::Caught))),
                secs(mean(Some(Outcome::Missed))),
                secs(mean(Some(Outcome::Unviable))),
                full_run.map_or("-".to_owned(), |s| clock(Duration::from_secs_f64(s))),
            ));
            out
        }
    };
    crate::emit(&out);
    Ok(())
}

/// For a mutant outside the stubbed functions (given code, or a helper the exercise leaves to
/// the learner): the stage that caught most of the mutants graded so far in the same file, the
/// later stage on a tie. Only the order of the stages depends on it, never the outcome.
fn learned_stage(results: &[Graded], file: &str) -> Option<u32> {
    let mut caught: BTreeMap<u32, usize> = BTreeMap::new();
    for stage in results
        .iter()
        .filter(|r| r.file == file)
        .filter_map(|r| r.caught_by)
    {
        *caught.entry(stage).or_default() += 1;
    }
    caught
        .into_iter()
        .max_by_key(|(stage, n)| (*n, *stage))
        .map(|(stage, _)| stage)
}

/// The line printed after each mutant: which one, what became of it, the counts so far and when
/// the run should end.
fn progress(results: &[Graded], of: usize, elapsed: Duration) -> String {
    let last = results.last().expect("a mutant was graded");
    let count = |o: Outcome| results.iter().filter(|r| r.outcome == o).count();
    let how = match (last.outcome, last.caught_by) {
        (Outcome::Caught, Some(stage)) => format!("caught by stage {stage}"),
        (outcome, _) => format!("{outcome:?}").to_lowercase(),
    };
    let done = results.len();
    let eta = elapsed.mul_f64((of - done) as f64 / done as f64);
    format!(
        "        {how} in {:.0} s; so far {} caught, {} missed, {} unviable; about {} left",
        last.took.as_secs_f64(),
        count(Outcome::Caught),
        count(Outcome::Missed),
        count(Outcome::Unviable),
        clock(eta),
    )
}

/// `1 h 05 min`, `12 min`, `40 s`.
fn clock(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        _ => format!("{} h {:02} min", secs / 3600, secs % 3600 / 60),
    }
}

/// Asks cargo-mutants for the mutants of the project's solution, each with its diff. What it
/// leaves out is configured in `.cargo/mutants.toml`, each exclusion with its reason.
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
                file: m["file"].as_str().unwrap_or("").to_owned(),
                function: m["function"]["function_name"].as_str().map(str::to_owned),
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

/// The suite's stages and tests, and the stage of each function the exercise stubs: which tests
/// to run first for a mutant.
struct Plan {
    /// The stage numbers of the suite's test modules (`stageN_`), in order.
    stages: Vec<u32>,
    /// The names of all the suite's tests.
    tests: BTreeSet<String>,
    /// Each stubbed function with its stage (empty when the project has no exercise yet).
    assigned: Vec<(Stub, u32)>,
    /// `solutions/NN-slug/src/`: what a mutant's file starts with.
    src: String,
}

impl Plan {
    fn new(root: &Path, project: &Project) -> Result<Plan> {
        let tests: BTreeSet<String> = check::list_suite(root, project)?.into_iter().collect();
        if tests.is_empty() {
            bail!("the {} suite lists no test", project.slug);
        }
        let stages: BTreeSet<u32> = tests.iter().filter_map(|t| stage_number(t)).collect();
        let assigned = if root.join("exercises").join(project.dir_name()).is_dir() {
            ladder::assignments(root, project)?
        } else {
            Vec::new()
        };
        Ok(Plan {
            stages: stages.into_iter().collect(),
            tests,
            assigned,
            src: format!("solutions/{}/src/", project.dir_name()),
        })
    }

    /// The stage of the stubbed function `mutant` is in, if it is in one.
    fn stage_of(&self, mutant: &Mutant) -> Option<u32> {
        let file = mutant.file.strip_prefix(&self.src)?;
        let (owner, name) = split_function(mutant.function.as_deref()?);
        self.assigned
            .iter()
            .find(|(stub, _)| {
                stub.file == file && stub.name == name && stub.owner.as_deref() == owner
            })
            .map(|(_, stage)| *stage)
    }

    /// The order to run the stages in for a mutant that starts with `first` (the last stage when
    /// `None`): it, the later ones, then the earlier ones, nearest first.
    fn order(&self, first: Option<u32>) -> Vec<u32> {
        order(&self.stages, first)
    }
}

/// See [`Plan::order`].
fn order(stages: &[u32], first: Option<u32>) -> Vec<u32> {
    let Some(first) = first
        .filter(|f| stages.contains(f))
        .or(stages.last().copied())
    else {
        return Vec::new();
    };
    let later = stages.iter().copied().filter(|s| *s > first);
    let earlier = stages.iter().rev().copied().filter(|s| *s < first);
    std::iter::once(first).chain(later).chain(earlier).collect()
}

/// The number of test `stageN_module::name`'s stage.
fn stage_number(test: &str) -> Option<u32> {
    test.strip_prefix("stage")?.split('_').next()?.parse().ok()
}

/// `Store::ttl` → (`Store`, `ttl`); `<impl Display for Reply>::fmt` → (`Reply`, `fmt`);
/// `parse` → (none, `parse`). The owner is the type's last path segment, without generics,
/// as the ladder names it.
fn split_function(function: &str) -> (Option<&str>, &str) {
    let Some((owner, name)) = function.rsplit_once("::") else {
        return (None, function);
    };
    let owner = match owner.strip_prefix('<').and_then(|o| o.strip_suffix('>')) {
        Some(inner) => {
            let inner = inner.strip_prefix("impl").unwrap_or(inner);
            // Skip the impl's own generics, `impl<T>`, then take what follows ` for `.
            let inner = inner.rsplit_once(" for ").map_or(inner, |(_, ty)| ty);
            inner.trim()
        }
        None => owner,
    };
    let owner = owner.trim_start_matches('&').trim_start_matches("mut ");
    let owner = owner.split('<').next().unwrap_or(owner);
    let owner = owner.rsplit("::").next().unwrap_or(owner).trim();
    (Some(owner), name)
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
        // The member keeps its path in the repository, where cargo-mutants' diffs point.
        let member = format!("solutions/{}", project.dir_name());
        let source = root.join(&member);
        tree::stage_workspace(root, &source, &workspace, &member)?;
        let pristine = workspace.join("pristine");
        tree::copy_tree(&source.join("src"), &pristine)?;
        Ok(Scratch {
            crate_dir: workspace.join(&member),
            workspace,
            pristine,
        })
    }

    /// Applies `mutant` to a fresh copy of the solution, builds it and runs the suite on it, stage
    /// by stage from `first` until a stage fails. Returns the outcome and the stage that caught it.
    fn grade(
        &self,
        root: &Path,
        project: &Project,
        plan: &Plan,
        first: Option<u32>,
        mutant: &Mutant,
    ) -> Result<(Outcome, Option<u32>)> {
        std::fs::remove_dir_all(self.crate_dir.join("src"))?;
        tree::copy_tree(&self.pristine, &self.crate_dir.join("src"))?;
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
        let output = grading::build_command(cargo().get_program(), &package, false)
            .current_dir(&self.workspace)
            .arg("--quiet")
            .arg("--target-dir")
            .arg(root.join("target/xtask/dir-target"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .output()
            .context("running cargo build")?;
        if !output.status.success() {
            return Ok((Outcome::Unviable, None));
        }
        let binary = grading::executable(&output.stdout, &package)
            .context("cargo built the mutant but reported no executable")?;
        let mut ran = HashSet::new();
        for stage in plan.order(first) {
            let outcomes = check::run_built_suite_with(
                root,
                project,
                &binary,
                &format!("a mutant (stage {stage})"),
                Some(&format!("stage{stage}_")),
                &[],
            )?;
            if outcomes.iter().any(|t| !t.passed) {
                return Ok((Outcome::Caught, Some(stage)));
            }
            ran.extend(outcomes.into_iter().map(|t| t.name));
        }
        // Every test must have run before a mutant is called missed: any the stages did not
        // name (a test outside a `stageN_` module) run here with the rest.
        if plan.tests.iter().any(|t| !ran.contains(t)) {
            let outcomes =
                check::run_built_suite_with(root, project, &binary, "a mutant", None, &[])?;
            if outcomes.iter().any(|t| !t.passed) {
                return Ok((Outcome::Caught, None));
            }
        }
        Ok((Outcome::Missed, None))
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
                file: String::new(),
                function: None,
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

    #[test]
    fn splits_cargo_mutants_function_names_as_the_ladder_names_stubs() {
        assert_eq!(split_function("parse"), (None, "parse"));
        assert_eq!(split_function("Store::ttl"), (Some("Store"), "ttl"));
        assert_eq!(
            split_function("<impl Display for Reply>::fmt"),
            (Some("Reply"), "fmt")
        );
        assert_eq!(
            split_function("<impl Borrow<[u8]> for Item>::borrow"),
            (Some("Item"), "borrow")
        );
        assert_eq!(
            split_function("<impl<T> From<T> for store::Cell<T>>::from"),
            (Some("Cell"), "from")
        );
    }

    #[test]
    fn runs_the_mutants_stage_then_the_later_then_the_earlier_nearest_first() {
        let stages = [1, 2, 3, 4, 5];
        assert_eq!(order(&stages, Some(3)), [3, 4, 5, 2, 1]);
        assert_eq!(order(&stages, Some(1)), [1, 2, 3, 4, 5]);
        assert_eq!(order(&stages, None), [5, 4, 3, 2, 1]);
        assert_eq!(order(&stages, Some(9)), [5, 4, 3, 2, 1]);
        assert!(order(&[], Some(1)).is_empty());
        assert_eq!(stage_number("stage12_relp::acks"), Some(12));
        assert_eq!(stage_number("helpers::x"), None);
    }

    #[test]
    fn finds_the_stage_of_a_mutant_in_a_stubbed_function_only() {
        let plan = Plan {
            stages: vec![1, 2],
            tests: BTreeSet::new(),
            assigned: vec![(
                Stub {
                    file: "store.rs".into(),
                    owner: Some("Store".into()),
                    name: "ttl".into(),
                },
                2,
            )],
            src: "solutions/03-kv-store/src/".into(),
        };
        let mutant = |file: &str, function: &str| Mutant {
            name: String::new(),
            diff: String::new(),
            file: file.into(),
            function: Some(function.into()),
        };
        let src = "solutions/03-kv-store/src/store.rs";
        assert_eq!(plan.stage_of(&mutant(src, "Store::ttl")), Some(2));
        assert_eq!(plan.stage_of(&mutant(src, "Store::get")), None);
        assert_eq!(plan.stage_of(&mutant(src, "ttl")), None);
        assert_eq!(
            plan.stage_of(&mutant("solutions/03-kv-store/src/main.rs", "Store::ttl")),
            None
        );
    }

    #[test]
    fn a_helper_starts_with_the_stage_that_caught_its_file_most() {
        let graded = |file: &str, caught_by: Option<u32>| Graded {
            name: String::new(),
            file: file.into(),
            outcome: Outcome::Caught,
            caught_by,
            first_stage: None,
            took: Duration::ZERO,
        };
        let results = [
            graded("a.rs", Some(5)),
            graded("a.rs", Some(3)),
            graded("a.rs", Some(3)),
            graded("b.rs", Some(1)),
            graded("a.rs", None),
        ];
        assert_eq!(learned_stage(&results, "a.rs"), Some(3));
        assert_eq!(learned_stage(&results, "b.rs"), Some(1));
        assert_eq!(learned_stage(&results, "c.rs"), None);
        assert_eq!(learned_stage(&results[..2], "a.rs"), Some(5));
    }
}
