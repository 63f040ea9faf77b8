//! `cargo xtask verify`: checks the workbook itself, the way rustlings' `dev check` does. This is
//! the repository's test command, and what CI runs.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::check;
use crate::projects::{PROJECTS, Project};
use crate::report::{self, Style};
use crate::tree::{Tree, cargo};
use crate::{api, book, given, ladder, limits, width};

/// What every failing graded test must say against an untouched stub.
pub const STUB_DIAGNOSIS: &str = "not yet implemented";

/// How long a whole suite may take against the stubs. A stub panics at once, so a test that
/// notices takes milliseconds; one that waits out its deadlines instead makes a learner wait too.
pub const STUB_RUN_LIMIT: Duration = Duration::from_secs(60);

/// Runs every check (with `quick`, only those that build nothing), stopping at the first that
/// fails.
pub fn run(root: &Path, quick: bool) -> Result<()> {
    let started = Instant::now();
    let projects: Vec<Project> = PROJECTS
        .iter()
        .copied()
        .filter(|p| p.exists(root))
        .collect();
    step("formatting (cargo fmt --check)", || {
        command(cargo().current_dir(root).args(["fmt", "--all", "--check"]))
    })?;
    let mirror_all = || -> Result<()> {
        for project in &projects {
            step(
                &format!("{}: exercise mirrors solution", project.slug),
                || mirrors(root, project),
            )?;
        }
        Ok(())
    };
    if quick {
        return mirror_all();
    }
    step("lints (cargo clippy -D warnings)", || {
        command(cargo().current_dir(root).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    mirror_all()?;
    step("unit tests (cargo test --lib --bins)", || {
        command(cargo().current_dir(root).args([
            "test",
            "--workspace",
            "--lib",
            "--bins",
            "--locked",
        ]))
    })?;
    step("doc tests (cargo test --doc)", || {
        command(
            cargo()
                .current_dir(root)
                .args(["test", "--workspace", "--doc", "--locked"]),
        )
    })?;
    for project in PROJECTS
        .iter()
        .filter(|p| p.exists(root) || p.in_development(root))
    {
        step(
            &format!(
                "{}: the contract's defaults and limits match the solution",
                project.slug
            ),
            || limits::check(root, project),
        )?;
    }
    for project in &projects {
        step(
            &format!("{}: the solution passes every test", project.slug),
            || solution_passes(root, project),
        )?;
        step(
            &format!("{}: every test fails against the stubs", project.slug),
            || stubs_fail(root, project),
        )?;
        step(
            &format!(
                "{}: each stage passes with only the functions it and earlier stages assign",
                project.slug
            ),
            || ladder::check(root, project),
        )?;
    }
    for project in PROJECTS.iter().filter(|p| p.in_development(root)) {
        step(
            &format!(
                "{} (in development): the solution passes every test",
                project.slug
            ),
            || solution_passes(root, project),
        )?;
    }
    step("benchmarks compile (cargo bench --no-run)", || {
        command(cargo().current_dir(root).args([
            "bench",
            "--package",
            "workbook-suite",
            "--no-run",
            "--locked",
        ]))
    })?;
    step("the book builds with no broken links", || {
        let mdbook = book::ensure_mdbook()?;
        book::build(root, &mdbook)
    })?;
    step(
        "every page fits its width at 1280 px and 390 px (headless Chromium)",
        || width::check(&root.join("book/build")),
    )?;
    println!("\nverify: every check passed in {:.0?}", started.elapsed());
    Ok(())
}

fn step(name: &str, body: impl FnOnce() -> Result<()>) -> Result<()> {
    println!("\n▸ {name}");
    let started = Instant::now();
    match body() {
        Ok(()) => {
            println!("✔ {name} ({:.1?})", started.elapsed());
            Ok(())
        }
        Err(e) => {
            println!("✘ {name} ({:.1?})", started.elapsed());
            Err(e.context(format!("verify failed at: {name}")))
        }
    }
}

fn command(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

/// Same files, same public API, and every stub still has its `todo!()`.
fn mirrors(root: &Path, project: &Project) -> Result<()> {
    let exercise = root.join("exercises").join(project.dir_name());
    let solution = root.join("solutions").join(project.dir_name());
    let (ex_files, sol_files) = (rust_files(&exercise)?, rust_files(&solution)?);
    if ex_files != sol_files {
        bail!(
            "exercise and solution must hold the same files\n  exercise: {ex_files:?}\n  solution: {sol_files:?}"
        );
    }
    let todos = ex_files
        .iter()
        .map(|f| std::fs::read_to_string(exercise.join(f)).map(|t| t.matches("todo!()").count()))
        .sum::<std::io::Result<usize>>()?;
    if todos == 0 {
        bail!(
            "{} holds no todo!(): the exercise has been solved in place",
            exercise.display()
        );
    }
    let ex_api = api::surface(&exercise.join("src"), &project.slug.replace('-', "_"))?;
    let sol_api = api::surface(
        &solution.join("src"),
        &project.solution_package().replace('-', "_"),
    )?;
    let diff = api::diff(&ex_api, &sol_api);
    if !diff.is_empty() {
        bail!("the public APIs differ:\n  {}", diff.join("\n  "));
    }
    let defects = given::check(
        &exercise,
        &solution,
        &project.slug.replace('-', "_"),
        &project.solution_package().replace('-', "_"),
    )?;
    if !defects.is_empty() {
        bail!(
            "the exercise's hints or given code are off (see xtask/src/given.rs):\n  {}",
            defects.join("\n  ")
        );
    }
    let lints = lints_block(&exercise.join("Cargo.toml"))?;
    let canonical = lints_block(&root.join(CANONICAL_LINTS))?;
    if lints != canonical {
        bail!(
            "{}/Cargo.toml: its [lints] differ from {CANONICAL_LINTS}'s, which every exercise \
             crate copies:\n--- it has\n{lints}\n--- expected\n{canonical}",
            exercise.display()
        );
    }
    println!(
        "  {} files, {} public items, {todos} todo!()s",
        ex_files.len(),
        sol_api.len()
    );
    Ok(())
}

/// The manifest whose `[lints]` block every exercise crate copies: stubs need a few lints
/// relaxed (unused parameters, `todo!()`), the same few everywhere.
const CANONICAL_LINTS: &str = "exercises/03-kv-store/Cargo.toml";

/// The `[lints...]` tables of a manifest, from the first to the next table that is not one.
fn lints_block(manifest: &Path) -> Result<String> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let mut inside = false;
    let mut block = Vec::new();
    for line in text.lines() {
        if line.starts_with('[') {
            inside = line.starts_with("[lints");
        }
        if inside {
            block.push(line);
        }
    }
    Ok(block.join("\n").trim().to_owned())
}

/// The `.rs` files under `dir`, as paths relative to it.
fn rust_files(dir: &Path) -> Result<Vec<String>> {
    Ok(crate::walk::files_with_extension(dir, "rs")?
        .iter()
        .map(|p| p.strip_prefix(dir).unwrap_or(p).display().to_string())
        .collect())
}

fn solution_passes(root: &Path, project: &Project) -> Result<()> {
    let report = check::grade(root, project, &Tree::Solutions);
    if !report.all_passed() {
        print!(
            "{}",
            report::text(std::slice::from_ref(&report), Style { color: false })
        );
        bail!(
            "the reference solution of {} fails its own suite",
            project.slug
        );
    }
    println!("  {}", report.summary());
    Ok(())
}

fn stubs_fail(root: &Path, project: &Project) -> Result<()> {
    let started = Instant::now();
    let outcomes = check::run_suite(root, project, &Tree::Exercises)?;
    let elapsed = started.elapsed();
    let defects: Vec<String> = outcomes
        .iter()
        .filter_map(|t| {
            if t.passed {
                Some(format!(
                    "{} passes against the stubs: it asserts nothing a stub cannot do",
                    t.name
                ))
            } else if !t.message.as_deref().unwrap_or("").contains(STUB_DIAGNOSIS) {
                Some(format!(
                    "{} fails without the `{STUB_DIAGNOSIS}` diagnosis; it said:\n      {}",
                    t.name,
                    t.message.as_deref().unwrap_or("").replace('\n', "\n      ")
                ))
            } else {
                None
            }
        })
        .collect();
    if !defects.is_empty() {
        bail!(
            "graded tests that do not fail properly against the stubs:\n  {}",
            defects.join("\n  ")
        );
    }
    if elapsed > STUB_RUN_LIMIT {
        bail!(
            "the suite took {elapsed:.0?} against the stubs (limit {STUB_RUN_LIMIT:?}): some tests wait out \
             their deadlines instead of failing as soon as the program dies"
        );
    }
    println!(
        "  all {} tests fail against the stubs with the diagnosis, in {elapsed:.1?} (building included)",
        outcomes.len()
    );
    Ok(())
}
