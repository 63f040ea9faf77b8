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
//! The suite mostly waits on sockets and timers, so `--jobs N` grades N mutants at once, each in
//! a scratch workspace of its own; a failure counts only when it repeats with the other jobs
//! paused (see `Locks`). Every outcome is appended to a log as it comes, and `--resume` grades
//! only what the log lacks.
//!
//! Too slow for `verify` (a build and a suite run per mutant): run it by hand, `--sample N` for a
//! quick look.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Tests that failed once and passed when run again alone: not counted as catching it.
    flaky: Vec<String>,
}

/// A graded mutant as the log and `--format json` write it.
#[derive(Serialize, Deserialize)]
struct GradedJson {
    name: String,
    file: String,
    outcome: Outcome,
    first_stage: Option<u32>,
    caught_by_stage: Option<u32>,
    seconds: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    failures_not_repeated: Vec<String>,
}

impl Graded {
    fn to_json(&self) -> String {
        serde_json::to_string(&GradedJson {
            name: self.name.clone(),
            file: self.file.clone(),
            outcome: self.outcome,
            first_stage: self.first_stage,
            caught_by_stage: self.caught_by,
            seconds: self.took.as_secs_f64(),
            failures_not_repeated: self.flaky.clone(),
        })
        .expect("a graded mutant serializes")
    }

    fn from_json(line: &str) -> Result<Graded> {
        let j: GradedJson = serde_json::from_str(line)?;
        Ok(Graded {
            name: j.name,
            file: j.file,
            outcome: j.outcome,
            caught_by: j.caught_by_stage,
            first_stage: j.first_stage,
            took: Duration::from_secs_f64(j.seconds.max(0.0)),
            flaky: j.failures_not_repeated,
        })
    }
}

/// How `run` grades: which mutants, how many at once, and how it prints.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Grade only this many, chosen at random from `seed`.
    pub sample: Option<usize>,
    pub seed: u64,
    pub format: MutantsFormat,
    /// Mutants graded at once, each in a scratch workspace of its own.
    pub jobs: usize,
    /// Keep the outcomes an earlier run wrote to its log, and grade only the rest.
    pub resume: bool,
    /// As `resume`, and grade again the mutants the log calls missed (after tests were added,
    /// which can catch a missed mutant but never miss a caught one).
    pub regrade_missed: bool,
}

/// Lists, samples, applies and grades the mutants of `name`'s solution, and prints the score.
pub fn run(root: &Path, name: &str, options: Options) -> Result<()> {
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
    if let Some(n) = options.sample {
        mutants = pick(mutants, n, options.seed);
    }
    let log_path = root
        .join("target/xtask/mutants")
        .join(format!("{}.jsonl", project.slug));
    let mut earlier = if options.resume || options.regrade_missed {
        read_log(&log_path, &mutants)?
    } else {
        Vec::new()
    };
    if options.regrade_missed {
        earlier.retain(|g| g.outcome != Outcome::Missed);
    }
    let todo: Vec<&Mutant> = mutants
        .iter()
        .filter(|m| !earlier.iter().any(|g| g.name == m.name))
        .collect();
    let jobs = options.jobs.clamp(1, todo.len().max(1));
    eprintln!(
        "{} mutants of {}; grading {}{}, {} at a time; outcomes logged to {}",
        total,
        project.solution_package(),
        todo.len(),
        if earlier.is_empty() {
            String::new()
        } else {
            format!(" ({} kept from the log)", earlier.len())
        },
        jobs,
        log_path.display()
    );
    let options = Options { jobs, ..options };
    let plan = Plan::new(root, &project)?;
    let scratches = (0..jobs)
        .map(|k| Scratch::new(root, &project, k))
        .collect::<Result<Vec<_>>>()?;
    // Every run appends, a sample's too; `read_log` keeps each mutant's latest outcome.
    std::fs::create_dir_all(log_path.parent().expect("the log is in a folder"))?;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    // A run cut off mid-line leaves no newline: the next record starts on a line of its own.
    if std::fs::read(&log_path).is_ok_and(|b| b.last().is_some_and(|&c| c != b'\n')) {
        log.write_all(b"\n")?;
    }
    let started = Instant::now();
    let shared = Mutex::new(Shared {
        results: earlier,
        graded_now: 0,
        log,
    });
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let locks = Locks {
        build: Mutex::new(()),
        machine: RwLock::new(()),
    };
    let errors: Vec<anyhow::Error> = std::thread::scope(|scope| {
        let workers: Vec<_> = scratches
            .iter()
            .map(|scratch| {
                let (plan, project, todo) = (&plan, &project, &todo);
                let (shared, next, stop, locks) = (&shared, &next, &stop, &locks);
                scope.spawn(move || -> Result<()> {
                    while !stop.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(mutant) = todo.get(i) else {
                            return Ok(());
                        };
                        let (first_stage, from) = first_stage(plan, &lock(shared).results, mutant);
                        let began = Instant::now();
                        let verdict =
                            match scratch.grade(root, project, plan, first_stage, mutant, locks) {
                                Ok(verdict) => verdict,
                                Err(e) => {
                                    stop.store(true, Ordering::Relaxed);
                                    eprintln!("stopping after the mutants in progress: {e:#}");
                                    return Err(e);
                                }
                            };
                        let graded = Graded {
                            name: mutant.name.clone(),
                            file: mutant.file.clone(),
                            outcome: verdict.outcome,
                            caught_by: verdict.caught_by,
                            first_stage,
                            took: began.elapsed(),
                            flaky: verdict.flaky,
                        };
                        let mut shared = lock(shared);
                        let line = graded.to_json() + "\n";
                        if let Err(e) = shared.log.write_all(line.as_bytes()) {
                            stop.store(true, Ordering::Relaxed);
                            return Err(anyhow::Error::from(e).context("writing the log"));
                        }
                        shared.graded_now += 1;
                        let line = format!(
                            "[{}/{}] {} ({from})",
                            shared.graded_now,
                            todo.len(),
                            mutant.name
                        );
                        shared.results.push(graded);
                        eprintln!(
                            "{line}\n{}",
                            progress(&shared, todo.len(), started.elapsed())
                        );
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .filter_map(|w| match w.join() {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => {
                    stop.store(true, Ordering::Relaxed);
                    Some(anyhow::anyhow!("a grading thread panicked"))
                }
            })
            .collect()
    });
    if let Some(e) = errors.into_iter().next() {
        return Err(e);
    }
    let mut results = shared
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .results;
    // In the listed order, whatever order the jobs finished in.
    let listed: std::collections::HashMap<&str, usize> = mutants
        .iter()
        .enumerate()
        .map(|(i, m)| (m.name.as_str(), i))
        .collect();
    results.sort_by_key(|r| listed.get(r.name.as_str()).copied());
    crate::emit(&report(
        &project,
        &results,
        total,
        options,
        started.elapsed(),
    )?);
    Ok(())
}

/// How the jobs take turns. A build holds `build` (they share a target directory), and every
/// build and suite run holds `machine` for reading; a failed test's second run, which decides
/// whether a mutant is caught, holds it for writing, so that it runs once the other jobs have
/// finished their current step and before they start another: a test that fails only while
/// other jobs load the cores catches nothing. `build` is taken before `machine`, so that a job
/// queued for its build holds up no second run.
struct Locks {
    build: Mutex<()>,
    machine: RwLock<()>,
}

/// What the grading threads share: the outcomes so far (the log's included) and the log.
struct Shared {
    results: Vec<Graded>,
    /// How many of `results` this run graded (the rest came from the log).
    graded_now: usize,
    log: std::fs::File,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The stage to start `mutant` with, and why.
fn first_stage(plan: &Plan, results: &[Graded], mutant: &Mutant) -> (Option<u32>, String) {
    match plan.stage_of(mutant) {
        Some(stage) => (Some(stage), format!("stage {stage} first: its function's")),
        None => match learned_stage(results, &mutant.file) {
            Some(stage) => (
                Some(stage),
                format!("stage {stage} first: it caught most of this file's mutants so far"),
            ),
            None => (
                None,
                "given code or a helper: the last stage first".to_owned(),
            ),
        },
    }
}

/// The outcomes an earlier run logged, of the mutants still listed (a mutant's name carries its
/// line and column, so an edited file's old outcomes drop out by themselves), the latest of each.
fn read_log(path: &Path, mutants: &[Mutant]) -> Result<Vec<Graded>> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(Vec::new());
    };
    let mut kept: Vec<Graded> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        // A line cut short by an interrupted run is skipped: its mutant is graded again.
        let Ok(graded) = Graded::from_json(line) else {
            continue;
        };
        if !mutants.iter().any(|m| m.name == graded.name) {
            continue;
        }
        // A mutant graded again (`--regrade-missed`) keeps its latest outcome.
        match kept.iter_mut().find(|k| k.name == graded.name) {
            Some(k) => *k = graded,
            None => kept.push(graded),
        }
    }
    Ok(kept)
}

/// The report, as text or JSON.
fn report(
    project: &Project,
    results: &[Graded],
    total: usize,
    options: Options,
    elapsed: Duration,
) -> Result<String> {
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
    // Wall-clock time: with several jobs, a mutant's own time overlaps the others'.
    let full_run = mean(None).map(|m| m * total as f64 / options.jobs.max(1) as f64);
    let flaky: Vec<(&str, &str)> = results
        .iter()
        .flat_map(|r| r.flaky.iter().map(|t| (r.name.as_str(), t.as_str())))
        .collect();
    Ok(match options.format {
        MutantsFormat::Json => {
            serde_json::to_string_pretty(&serde_json::json!({
                "project": project.slug,
                "mutants_listed": total,
                "graded": results.len(),
                "seed": options.sample.map(|_| options.seed),
                "jobs": options.jobs,
                "caught": caught,
                "missed": missed,
                "unviable": unviable,
                "score_percent": score,
                "seconds": elapsed.as_secs_f64(),
                "mean_seconds": {
                    "all": mean(None),
                    "caught": mean(Some(Outcome::Caught)),
                    "missed": mean(Some(Outcome::Missed)),
                    "unviable": mean(Some(Outcome::Unviable)),
                },
                "full_run_estimate_seconds": full_run,
                "mutants": results.iter().map(|r| serde_json::from_str::<serde_json::Value>(&r.to_json()).expect("our own JSON")).collect::<Vec<_>>(),
            }))? + "\n"
        }
        MutantsFormat::Text => {
            let mut out = String::new();
            for r in results.iter().filter(|r| r.outcome == Outcome::Missed) {
                out.push_str(&format!("missed: {}\n", r.name));
            }
            for (mutant, test) in &flaky {
                out.push_str(&format!(
                    "a failure that did not repeat (not counted): {test}, with {mutant}\n"
                ));
            }
            let secs = |m: Option<f64>| m.map_or("-".to_owned(), |m| format!("{m:.0} s"));
            out.push_str(&format!(
                "{}: {caught} caught, {missed} missed, {unviable} unviable of {} graded ({total} listed): score {score:.0}%\n\
                 mean time a mutant: {} (caught {}, missed {}, unviable {}); all {total}, {} at a time: about {}\n",
                project.slug,
                results.len(),
                secs(mean(None)),
                secs(mean(Some(Outcome::Caught))),
                secs(mean(Some(Outcome::Missed))),
                secs(mean(Some(Outcome::Unviable))),
                options.jobs,
                full_run.map_or("-".to_owned(), |s| clock(Duration::from_secs_f64(s))),
            ));
            out
        }
    })
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
fn progress(shared: &Shared, of: usize, elapsed: Duration) -> String {
    let results = &shared.results;
    let last = results.last().expect("a mutant was graded");
    let count = |o: Outcome| results.iter().filter(|r| r.outcome == o).count();
    let how = match (last.outcome, last.caught_by) {
        (Outcome::Caught, Some(stage)) => format!("caught by stage {stage}"),
        (outcome, _) => format!("{outcome:?}").to_lowercase(),
    };
    let done = shared.graded_now;
    let eta = elapsed.mul_f64(of.saturating_sub(done) as f64 / done as f64);
    let flaky = if last.flaky.is_empty() {
        String::new()
    } else {
        format!(
            " (a failure that did not repeat: {})",
            last.flaky.join(", ")
        )
    };
    format!(
        "        {how} in {:.0} s{flaky}; so far {} caught, {} missed, {} unviable; about {} left",
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
/// a time is applied, built and graded. Each job has one.
struct Scratch {
    workspace: PathBuf,
    /// Where the diffs apply: the folder holding the member's `solutions/`.
    patch_dir: PathBuf,
    pristine: PathBuf,
    crate_dir: PathBuf,
    /// Where the job keeps its built mutant while the suite runs it: the target directory, shared
    /// by every job, holds only the latest build.
    binary: PathBuf,
}

impl Scratch {
    fn new(root: &Path, project: &Project, job: usize) -> Result<Scratch> {
        let workspace = root
            .join("target/xtask/mutants")
            .join(project.slug)
            .join(job.to_string());
        // Under `jobN/`, the member keeps its path in the repository, where cargo-mutants' diffs
        // point. The prefix keeps the jobs' builds apart in the target directory they share:
        // cargo names a path package's artifacts after its path relative to the workspace root,
        // so the same relative path in every job would make one job's build look fresh to the
        // next, which would then grade the wrong binary.
        let jobdir = format!("job{job}");
        let repo_path = format!("solutions/{}", project.dir_name());
        let member = format!("{jobdir}/{repo_path}");
        let source = root.join(&repo_path);
        tree::stage_workspace(root, &source, &workspace, &member)?;
        let pristine = workspace.join("pristine");
        tree::copy_tree(&source.join("src"), &pristine)?;
        Ok(Scratch {
            patch_dir: workspace.join(jobdir),
            crate_dir: workspace.join(&member),
            binary: workspace.join(project.solution_package()),
            workspace,
            pristine,
        })
    }

    /// Applies `mutant` to a fresh copy of the solution, builds it (one job at a time) and runs
    /// the suite on it, stage by stage from `first` until a stage fails.
    fn grade(
        &self,
        root: &Path,
        project: &Project,
        plan: &Plan,
        first: Option<u32>,
        mutant: &Mutant,
        locks: &Locks,
    ) -> Result<Verdict> {
        std::fs::remove_dir_all(self.crate_dir.join("src"))?;
        tree::copy_tree(&self.pristine, &self.crate_dir.join("src"))?;
        let mut patch = Command::new("patch")
            .current_dir(&self.patch_dir)
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
            // cargo-mutants made the diff from these very sources, so this is unexpected; the
            // mutant is not graded, and the run goes on (a resumed run would meet it again).
            eprintln!(
                "warning: the diff of {} does not apply; counted as unviable:\n{}",
                mutant.name, mutant.diff
            );
            return Ok(Verdict::of(Outcome::Unviable));
        }
        let package = project.solution_package();
        {
            let _one_build_at_a_time = lock(&locks.build);
            let _shared = locks.machine.read().unwrap_or_else(|p| p.into_inner());
            let output = grading::build_command(cargo().get_program(), &package, false)
                .current_dir(&self.workspace)
                .arg("--quiet")
                .arg("--target-dir")
                .arg(root.join("target/xtask/dir-target"))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .output()
                .context("running cargo build")?;
            if !output.status.success() {
                let stderr = String::from_utf8_lossy(&output.stderr);
                // Unviable means rustc rejected the mutant; any other failure (a full disk, a
                // killed compiler) is the grader's, and stops the run rather than being logged
                // as the mutant's.
                if stderr.contains("could not compile") {
                    return Ok(Verdict::of(Outcome::Unviable));
                }
                let lines: Vec<&str> = stderr.lines().collect();
                bail!(
                    "cargo failed to build {} ({}), and not for a compile error:\n{}",
                    mutant.name,
                    output.status,
                    lines[lines.len().saturating_sub(20)..].join("\n")
                );
            }
            let built = grading::executable(&output.stdout, &package)
                .context("cargo built the mutant but reported no executable")?;
            // A copy, not a link: the next job's build replaces the file in the target directory.
            let _ = std::fs::remove_file(&self.binary);
            std::fs::copy(&built, &self.binary).with_context(|| {
                format!("copying {} to {}", built.display(), self.binary.display())
            })?;
        }
        let mut flaky = Vec::new();
        let mut ran = HashSet::new();
        for stage in plan.order(first) {
            let filter = format!("stage{stage}_");
            let label = format!("a mutant (stage {stage})");
            match self.run_confirmed(root, project, locks, &[&filter], &label, &mut flaky)? {
                Run::Failed => {
                    return Ok(Verdict {
                        outcome: Outcome::Caught,
                        caught_by: Some(stage),
                        flaky,
                    });
                }
                Run::Passed(names) => ran.extend(names),
            }
        }
        // Every test must have run before a mutant is called missed: any the stages did not
        // name (a test outside a `stageN_` module) run here with the rest.
        if plan.tests.iter().any(|t| !ran.contains(t))
            && let Run::Failed =
                self.run_confirmed(root, project, locks, &[], "a mutant", &mut flaky)?
        {
            return Ok(Verdict {
                outcome: Outcome::Caught,
                caught_by: None,
                flaky,
            });
        }
        Ok(Verdict {
            outcome: Outcome::Missed,
            caught_by: None,
            flaky,
        })
    }

    /// Runs the tests `filters` select against this job's mutant. A failure counts once a
    /// failed test fails again run alone (see [`Locks`]), one test at a time, so that the first
    /// to repeat decides and the others (a mutant that breaks resuming fails a dozen tests, each
    /// by its timeout) hold up no other job; failures that do not repeat (a test starved on a
    /// busy machine) go to `flaky`, and the selection runs once more. Two runs whose failures do
    /// not repeat count as a pass.
    fn run_confirmed(
        &self,
        root: &Path,
        project: &Project,
        locks: &Locks,
        filters: &[&str],
        label: &str,
        flaky: &mut Vec<String>,
    ) -> Result<Run> {
        let run = |args: &[&str]| {
            check::run_built_suite_args(root, project, &self.binary, label, args, &[])
        };
        let mut outcomes = Vec::new();
        for _attempt in 0..2 {
            outcomes = {
                let _shared = locks.machine.read().unwrap_or_else(|p| p.into_inner());
                run(filters)?
            };
            let failed: Vec<&str> = outcomes
                .iter()
                .filter(|t| !t.passed)
                .map(|t| t.name.as_str())
                .collect();
            if failed.is_empty() {
                break;
            }
            let repeated = {
                let _alone = locks.machine.write().unwrap_or_else(|p| p.into_inner());
                let mut repeated = false;
                for test in &failed {
                    if run(&["--exact", test])?.iter().any(|t| !t.passed) {
                        repeated = true;
                        break;
                    }
                }
                repeated
            };
            if repeated {
                return Ok(Run::Failed);
            }
            for test in failed {
                if !flaky.iter().any(|f| f == test) {
                    flaky.push(test.to_owned());
                }
            }
        }
        Ok(Run::Passed(outcomes.into_iter().map(|t| t.name).collect()))
    }
}

/// What [`Scratch::grade`] found.
struct Verdict {
    outcome: Outcome,
    /// The stage whose tests caught it.
    caught_by: Option<u32>,
    /// Tests whose failure did not repeat when run alone.
    flaky: Vec<String>,
}

impl Verdict {
    fn of(outcome: Outcome) -> Verdict {
        Verdict {
            outcome,
            caught_by: None,
            flaky: Vec::new(),
        }
    }
}

/// What [`Scratch::run_confirmed`] found.
enum Run {
    /// A test failed, and failed again run alone.
    Failed,
    /// The names of the tests run, none of which failed twice.
    Passed(Vec<String>),
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
    fn the_log_keeps_the_latest_outcome_of_each_listed_mutant_and_skips_a_line_cut_short() {
        let dir = std::env::temp_dir().join(format!("mutants-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.jsonl");
        let graded = |name: &str, outcome, flaky: &[&str]| Graded {
            name: name.into(),
            file: "a.rs".into(),
            outcome,
            caught_by: (outcome == Outcome::Caught).then_some(2),
            first_stage: Some(1),
            took: Duration::from_millis(1500),
            flaky: flaky.iter().map(|t| (*t).to_owned()).collect(),
        };
        let lines = [
            graded("m0", Outcome::Missed, &[]).to_json(),
            graded("gone", Outcome::Missed, &[]).to_json(),
            graded("m1", Outcome::Missed, &["stage1_x::y"]).to_json(),
            graded("m0", Outcome::Caught, &[]).to_json(),
            r#"{"name":"m2","file":"a.rs","outc"#.to_owned(),
        ];
        std::fs::write(&path, lines.join("\n")).unwrap();
        let kept = read_log(&path, &mutants(3)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let names: Vec<&str> = kept.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["m0", "m1"]);
        assert_eq!(kept[0].outcome, Outcome::Caught);
        assert_eq!(kept[0].caught_by, Some(2));
        assert_eq!(kept[1].flaky, ["stage1_x::y"]);
        assert_eq!(kept[1].took, Duration::from_millis(1500));
        assert!(
            read_log(&dir.join("none.jsonl"), &mutants(3))
                .unwrap()
                .is_empty()
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
            flaky: Vec::new(),
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
