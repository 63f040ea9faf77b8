//! `cargo xtask check`: build a tree's binary, run the shared suite against it, report by stage.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, Result};

use crate::hints::{self, Stage};
use crate::libtest::{self, TestOutcome};
use crate::projects::{self, PROJECTS, Project};
use crate::report::{self, ProjectReport, StageReport, Style};
use crate::tree::{Tree, cargo};

/// How a report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For a terminal.
    Text,
    /// GitHub-flavoured markdown, for a CI job summary.
    Markdown,
    /// One JSON document.
    Json,
}

/// Grades one project, or all of them, and prints the report. Returns whether everything graded
/// passed.
pub fn run(
    root: &Path,
    project: Option<&str>,
    tree: &Tree,
    format: Format,
    verbose: bool,
) -> Result<bool> {
    let reports = match project {
        Some(name) => vec![grade(root, &projects::find_existing(name, root)?, tree)],
        None => PROJECTS
            .iter()
            .map(|p| {
                if p.exists(root) {
                    grade(root, p, tree)
                } else {
                    coming(p, tree)
                }
            })
            .collect(),
    };
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let out = match format {
        Format::Text => report::text_with(&reports, Style { color }, verbose),
        Format::Markdown => report::markdown(&reports),
        Format::Json => report::json(&reports),
    };
    crate::emit(&out);
    Ok(reports
        .iter()
        .filter(|r| !r.coming)
        .all(ProjectReport::all_passed))
}

/// The report of a project not written yet.
pub fn coming(project: &Project, tree: &Tree) -> ProjectReport {
    ProjectReport {
        number: project.number,
        slug: project.slug.to_owned(),
        title: project.title.to_owned(),
        tree: tree.label(),
        coming: true,
        error: None,
        stages: Vec::new(),
    }
}

/// Grades `project` on `tree`: never fails, a build or suite error becomes the report's `error`.
pub fn grade(root: &Path, project: &Project, tree: &Tree) -> ProjectReport {
    let mut report = coming(project, tree);
    report.coming = false;
    match run_suite(root, project, tree) {
        Ok(outcomes) => {
            let suite = std::fs::read_to_string(project.suite_path(root)).unwrap_or_default();
            report.stages = by_stage(outcomes, &hints::stages(root, project), &suite);
        }
        Err(e) => report.error = Some(format!("{e:#}")),
    }
    crate::list::keep(root, project, tree, &report);
    report
}

/// Builds the tree's binary and runs the project's suite against it.
pub fn run_suite(root: &Path, project: &Project, tree: &Tree) -> Result<Vec<TestOutcome>> {
    let from = match tree {
        Tree::Exercises => root.join("exercises").join(project.dir_name()),
        Tree::Solutions => root.join("solutions").join(project.dir_name()),
        Tree::Dir(dir) => dir.join(project.dir_name()),
    };
    // The full path: a learner with two checkouts sees at once which one is graded.
    eprintln!("building {} from {}...", project.slug, from.display());
    if !dependencies_built(root, tree) {
        // A fresh clone (or a first `--dir`), whose first check compiles every dependency: 3 min
        // 8 s measured on two busy cores. Said before cargo starts, which is silent a while.
        eprintln!(
            "the first check compiles the dependencies of your crate and of the suite: about \
             three minutes on a two-core machine; later checks take seconds to a minute"
        );
    }
    let binary = tree.build(root, project, false)?;
    run_suite_on(root, project, &binary, &tree.label())
}

/// Runs the project's suite against `binary`, built from the tree called `label`.
pub fn run_suite_on(
    root: &Path,
    project: &Project,
    binary: &Path,
    label: &str,
) -> Result<Vec<TestOutcome>> {
    run_suite_with(root, project, binary, label, None, &[])
}

/// Runs the tests of the project's suite whose names contain `filter` (all when `None`) against
/// `binary`, with `envs` set for the tests and the programs they start.
pub fn run_suite_with(
    root: &Path,
    project: &Project,
    binary: &Path,
    label: &str,
    filter: Option<&str>,
    envs: &[(&str, &str)],
) -> Result<Vec<TestOutcome>> {
    build_suite(root, project)?;
    eprintln!("running the {} suite against {label}...", project.slug);
    run_built_suite_with(root, project, binary, label, filter, envs)
}

/// [`run_suite_with`] on a suite already compiled (by [`list_suite`], say), quietly: one cargo
/// run the less, for a caller that runs the suite many times.
pub fn run_built_suite_with(
    root: &Path,
    project: &Project,
    binary: &Path,
    label: &str,
    filter: Option<&str>,
    envs: &[(&str, &str)],
) -> Result<Vec<TestOutcome>> {
    let filters: Vec<&str> = filter.into_iter().collect();
    run_built_suite_args(root, project, binary, label, &filters, envs)
}

/// [`run_built_suite_with`] with any arguments for the test harness after its own (filters,
/// `--exact`).
pub fn run_built_suite_args(
    root: &Path,
    project: &Project,
    binary: &Path,
    label: &str,
    args: &[&str],
    envs: &[(&str, &str)],
) -> Result<Vec<TestOutcome>> {
    let mut command = suite_command(root, project);
    command
        // `--show-output` prints what passing tests said too, so that a test that skipped a part
        // (a real tool not installed) can be reported as such.
        .args([
            "--",
            "--test-threads=2",
            "--format",
            "pretty",
            "--show-output",
        ])
        .args(args)
        .envs(envs.iter().copied());
    let output = command
        .env(project.bin_env_var(), binary)
        .env(grading::TREE_VAR, label)
        // The messages that matter are the tests' own; backtraces would bury them.
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .output()
        .context("running cargo test")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let outcomes = libtest::parse(&stdout);
    if outcomes.is_empty() {
        // Cargo's own messages matter only when the suite did not run (it failed to build).
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = &lines[lines.len().saturating_sub(40)..];
        anyhow::bail!(
            "the {} suite ran no test ({}):\n{}\n{}",
            project.slug,
            output.status,
            stdout.trim(),
            tail.join("\n")
        );
    }
    Ok(outcomes)
}

/// `cargo test --quiet` of the project's suite target, run from `root`, before its `--`.
fn suite_command(root: &Path, project: &Project) -> std::process::Command {
    let mut command = cargo();
    command.current_dir(root).args([
        "test",
        "--quiet",
        "--package",
        "workbook-suite",
        "--test",
        project.slug,
    ]);
    command
}

/// The full names of every test in the project's suite (`cargo test -- --list`), compiling it
/// first if it needs to be.
pub fn list_suite(root: &Path, project: &Project) -> Result<Vec<String>> {
    build_suite(root, project)?;
    let output = suite_command(root, project)
        .args(["--", "--list"])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("listing the suite's tests")?;
    if !output.status.success() {
        anyhow::bail!(
            "listing the {} suite failed ({})",
            project.slug,
            output.status
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.strip_suffix(": test"))
        .map(str::to_owned)
        .collect())
}

/// Whether the suite's library has been built (not only checked: `cargo check` and
/// rust-analyzer leave `.rmeta` files alone), and for a `--dir` tree, whose crate builds in a
/// target directory of its own, whether tokio, which every project uses, has been built there.
fn dependencies_built(root: &Path, tree: &Tree) -> bool {
    fn rlib(prefix: &'static str) -> impl Fn(&str, &Path) -> bool {
        move |name, _| name.starts_with(prefix) && name.ends_with(".rlib")
    }
    any_artifact(&root.join("target/debug/deps"), rlib("libworkbook_suite-"))
        && (!matches!(tree, Tree::Dir(_))
            || any_artifact(
                &root.join("target/xtask/dir-target/debug/deps"),
                rlib("libtokio-"),
            ))
}

/// Whether any file in the `deps` directory of a target directory satisfies `wanted`, given its
/// name and path (`false` when the directory does not exist yet).
fn any_artifact(deps: &Path, wanted: impl Fn(&str, &Path) -> bool) -> bool {
    deps.read_dir().is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| wanted(&e.file_name().to_string_lossy(), &e.path()))
    })
}

/// Compiles the project's suite target before it runs, so that its compilation shows progress:
/// the first time it takes a quarter of a minute (after the dependencies, which the first build
/// compiles), and later a second or two.
fn build_suite(root: &Path, project: &Project) -> Result<()> {
    // The exercise's own binary and library share the test target's name: the suite's is the
    // one whose dependency file lists `suite/tests/`.
    let prefix = format!("{}-", project.slug.replace('-', "_"));
    let built = any_artifact(&root.join("target/debug/deps"), |name, path| {
        name.starts_with(&prefix)
            && name.ends_with(".d")
            && std::fs::read_to_string(path).is_ok_and(|d| d.contains("suite/tests/"))
    });
    let mut command = cargo();
    if !built {
        eprintln!(
            "compiling the {} suite's tests: about a quarter of a minute the first time, later \
             runs seconds...",
            project.slug
        );
    } else {
        command.arg("--quiet");
    }
    let status = command
        .current_dir(root)
        .args([
            "test",
            "--no-run",
            "--package",
            "workbook-suite",
            "--test",
            project.slug,
        ])
        .stdin(Stdio::null())
        .status()
        .context("compiling the suite")?;
    if !status.success() {
        anyhow::bail!(
            "the {} suite does not compile ({status}): the errors are above",
            project.slug
        );
    }
    Ok(())
}

/// Groups outcomes into the stages `hints.md` names, by the `stageN_` prefix of each test's
/// module. A stage with no hints entry is titled after its module. Within a stage, tests keep the
/// order they have in `suite` (the test file's source), where authors put the simplest first, so
/// that the first failure a learner is shown is the first thing to fix, the same on every run.
pub fn by_stage(outcomes: Vec<TestOutcome>, stages: &[Stage], suite: &str) -> Vec<StageReport> {
    let mut grouped: BTreeMap<u32, (String, Vec<TestOutcome>)> = BTreeMap::new();
    for outcome in outcomes {
        let module = outcome.name.split("::").next().unwrap_or("").to_owned();
        let number = module
            .strip_prefix("stage")
            .and_then(|rest| rest.split('_').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        grouped
            .entry(number)
            .or_insert_with(|| (module, Vec::new()))
            .1
            .push(outcome);
    }
    grouped
        .into_iter()
        .map(|(number, (module, mut tests))| {
            tests.sort_by_cached_key(|t| (source_position(suite, &t.name), t.name.clone()));
            let stage = stages.iter().find(|s| s.number == number);
            let hint = stage.map(Stage::first_hint).unwrap_or_default();
            let test_hints = stage
                .map(|stage| {
                    tests
                        .iter()
                        .filter(|t| !t.passed)
                        .map(|t| (t.name.clone(), stage.hint_for(&t.name)))
                        .filter(|(_, h)| *h != hint)
                        .collect()
                })
                .unwrap_or_default();
            StageReport {
                number,
                title: stage.map_or(module, |s| s.title.clone()),
                hint,
                test_hints,
                tests,
            }
        })
        .collect()
}

/// Where test `module::name` is defined in `suite`: the first `fn name(` after `mod module`
/// (`usize::MAX` when it cannot be found, which sorts it last).
fn source_position(suite: &str, test: &str) -> usize {
    let Some((module, name)) = test.rsplit_once("::") else {
        return usize::MAX;
    };
    let module_at = suite.find(&format!("mod {module} ")).unwrap_or(0);
    suite[module_at..]
        .find(&format!("fn {name}("))
        .map_or(usize::MAX, |at| module_at + at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_stage_prefix_in_order() {
        let t = |name: &str| TestOutcome {
            name: name.into(),
            passed: true,
            message: None,
            skipped: None,
            notices: Vec::new(),
        };
        let stages = hints::parse("## Stage 2: Track\nUse a map.\n");
        let grouped = by_stage(
            vec![t("stage2_b::y"), t("stage1_a::x"), t("stage2_b::a")],
            &stages,
            "",
        );
        assert_eq!(grouped.len(), 2);
        assert_eq!(
            (grouped[0].number, grouped[0].title.as_str()),
            (1, "stage1_a")
        );
        assert_eq!(grouped[1].title, "Track");
        assert_eq!(grouped[1].tests[0].name, "stage2_b::a");
    }

    #[test]
    fn keeps_the_order_of_the_source() {
        let t = |name: &str| TestOutcome {
            name: name.into(),
            passed: false,
            message: None,
            skipped: None,
            notices: Vec::new(),
        };
        let suite = "mod stage1_a {\n    fn zebra() {}\n    fn apple() {}\n}\nmod stage1_b {\n    fn apple() {}\n}\n";
        let grouped = by_stage(
            vec![
                t("stage1_b::apple"),
                t("stage1_a::apple"),
                t("stage1_a::zebra"),
            ],
            &[],
            suite,
        );
        let names: Vec<&str> = grouped[0].tests.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["stage1_a::zebra", "stage1_a::apple", "stage1_b::apple"]
        );
    }
}
