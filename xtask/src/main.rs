//! The workbook's grader and maintenance tool, run as `cargo xtask <command>`.
//!
//! # Layout
//! - [`projects`]: the ten projects and where their pieces live.
//! - [`tree`]: which tree is graded (exercises, solutions, a copy) and building its binary.
//! - [`check`]: `check`: run the shared suite against a tree and report by stage.
//! - [`libtest`]: reading libtest's output. [`report`]: text, markdown and JSON reports.
//! - [`hints`]: `hint`, and the stage titles, from each chapter's `hints.md`.
//! - [`list`], [`run`], [`bench`], [`book`]: the commands of the same names.
//! - [`compare`]: a project's program against the real thing, under the same load;
//!   [`chart`] draws such a comparison as SVG for the book.
//! - [`mutants`]: `mutants`, the share of a solution's mutants that the suite catches.
//! - [`ladder`]: `ladder`, each stage passed with only the functions it and earlier ones assign.
//! - [`grade`]: `grade-pr`, a pull request's exercises graded with this checkout's suite.
//! - [`verify`]: `verify`, the repository's test command; [`api`] compares public APIs for it,
//!   [`limits`] the defaults and limits each contract states.
//! - [`width`]: the book's pages measured in headless Chromium (`book --check-width`).
//! - [`walk`]: finding files under a directory.
//! - [`watch`]: `watch`, grading again on every save.

mod api;
mod bench;
mod book;
mod chart;
mod check;
mod compare;
mod given;
mod grade;
mod hints;
mod ladder;
mod libtest;
mod limits;
mod list;
mod mutants;
mod projects;
mod report;
mod run;
mod tree;
mod verify;
mod walk;
mod watch;
mod width;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::check::Format;
use crate::tree::Tree;

/// The distributed-infrastructure workbook's grader.
///
/// Work on a project in exercises/, then `cargo xtask check <project>` to see which stages pass.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Grade a project (or --all) with the shared test suite, stage by stage.
    Check {
        /// The project: its name (`heartbeat`) or number (`1`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        project: Option<String>,
        /// Grade every project that exists.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        tree: TreeArgs,
        /// How to print the report.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Exit 0 even when tests fail (for CI that reports progress without failing).
        #[arg(long)]
        no_fail: bool,
        /// Show every failing test with its message, not only each stage's first (the JSON
        /// format always holds them all).
        #[arg(long, short)]
        verbose: bool,
    },
    /// Grade a project's exercise again on every save of its files; q then Enter quits.
    Watch {
        /// The project: its name or number.
        project: String,
    },
    /// List the ten projects, with your progress on each: the last grade `check` gave, with its
    /// age; a project whose files changed since is graded again, quietly.
    List {
        /// Grade nothing: show only the grades already kept.
        #[arg(long)]
        no_progress: bool,
    },
    /// Show the hints for a project's stage, or its list of stages.
    Hint {
        /// The project: its name or number.
        project: String,
        /// The stage number.
        stage: Option<u32>,
    },
    /// Build a project's binary and run it with ARGS.
    Run {
        /// The project: its name or number.
        project: String,
        #[command(flatten)]
        tree: TreeArgs,
        /// Build with optimisations, to measure your own server (`cargo xtask run kv-store
        /// --release -- server`).
        #[arg(long)]
        release: bool,
        /// Arguments for the binary (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Run a project's criterion benchmarks against a release build of the chosen tree.
    Bench {
        /// The project: its name or number.
        project: String,
        #[command(flatten)]
        tree: TreeArgs,
        /// Arguments for criterion (after `--`), e.g. a benchmark name filter.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Measure a project's program and the real thing side by side, under the same load
    /// (one command per project that has a comparison, listed below).
    Compare {
        #[command(subcommand)]
        comparison: compare::Comparison,
        #[command(flatten)]
        tree: TreeArgs,
        /// Also draw the comparison as an SVG bar chart into FILE (for the book).
        #[arg(long, global = true, value_name = "FILE")]
        svg: Option<PathBuf>,
    },
    /// Build the book (installing mdbook if needed) and check its links; --serve to read it.
    Book {
        /// Serve it on http://127.0.0.1:3000, rebuilding on change.
        #[arg(long)]
        serve: bool,
        /// Open it in a browser.
        #[arg(long)]
        open: bool,
        /// Then open every page in headless Chromium at 1280 px and 390 px and report every
        /// element wider than its box (skipped, saying so, where Chromium is absent).
        #[arg(long, conflicts_with = "serve")]
        check_width: bool,
        /// Only check that each contract's defaults and limits match its solution's --help
        /// and constants (as verify does), without building the book.
        #[arg(long, conflicts_with_all = ["serve", "check_width", "open"])]
        check_limits: bool,
    },
    /// Grade a pull request's exercises/ with this checkout's suite, grader and workspace files
    /// (the base branch's, in CI), listing every file it changes outside exercises/.
    GradePr {
        /// A checkout of the pull request.
        #[arg(long, value_name = "DIR")]
        pr: PathBuf,
        /// Projects that must pass for the command to succeed (slugs or numbers, spaces allowed).
        #[arg(long, value_name = "PROJECTS")]
        require: Vec<String>,
        /// How to print the report.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Grade every mutant of a project's solution (from cargo-mutants) with its suite and print
    /// the share caught. Slow: a build and a suite run per mutant.
    Mutants {
        /// The project: its name or number.
        project: String,
        /// Grade only N mutants, chosen at random from --seed.
        #[arg(long, value_name = "N")]
        sample: Option<usize>,
        /// The seed that chooses the sample.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// How to print the report.
        #[arg(long, value_enum, default_value_t = mutants::MutantsFormat::Text)]
        format: mutants::MutantsFormat,
        /// Mutants graded at once. Most of a mutant's time is the suite waiting on sockets and
        /// timers, not the cores, so several at once finish sooner even on two cores.
        #[arg(long, value_name = "N", default_value_t = 6,
              value_parser = clap::value_parser!(u16).range(1..=64))]
        jobs: u16,
        /// Keep the outcomes that earlier runs (an interrupted one included) logged to
        /// target/xtask/mutants/<project>.jsonl, and grade only the mutants it lacks. Delete the
        /// log to forget them.
        #[arg(long)]
        resume: bool,
        /// As --resume, and grade again the mutants the log calls missed: after adding tests
        /// (and changing none), which can catch a missed mutant but not miss a caught one.
        #[arg(long)]
        regrade_missed: bool,
    },
    /// Check that each stage of a project passes with only the functions that stages.md assigns
    /// to it and to the stages before (the solution's bodies for those, `todo!()` for the rest),
    /// as verify does.
    Ladder {
        /// The project: its name or number.
        project: String,
        /// Only list each stubbed function with the stage that assigns it.
        #[arg(long)]
        show: bool,
    },
    /// Check the workbook itself: fmt, clippy, APIs, solutions pass, stubs fail, stages stand
    /// alone, book builds.
    Verify {
        /// Only the checks that build nothing (formatting, and each exercise mirroring its
        /// solution): seconds, for before a commit. CI runs them all.
        #[arg(long)]
        quick: bool,
    },
}

/// Which tree to use: the exercises by default.
#[derive(Debug, Args)]
struct TreeArgs {
    /// Use the reference solutions instead of your exercises.
    #[arg(long, global = true, conflicts_with = "dir")]
    solutions: bool,
    /// Use a directory laid out like exercises/ (e.g. a student's copy).
    #[arg(long, global = true, value_name = "PATH")]
    dir: Option<PathBuf>,
}

impl TreeArgs {
    fn tree(self) -> Result<Tree> {
        let dir = match self.dir {
            Some(dir) => Some(std::path::absolute(&dir)?),
            None => None,
        };
        Ok(Tree::from_flags(self.solutions, dir))
    }
}

/// Prints `text` to stdout. A closed pipe (`cargo xtask list | head`) ends the output quietly
/// instead of panicking the way `print!` does.
pub fn emit(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> Result<ExitCode> {
    let root = tree::root();
    match command {
        Command::Check {
            project,
            all: _,
            tree,
            format,
            no_fail,
            verbose,
        } => {
            let passed = check::run(&root, project.as_deref(), &tree.tree()?, format, verbose)?;
            Ok(if passed || no_fail {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Watch { project } => watch::run(&root, &project).map(|()| ExitCode::SUCCESS),
        Command::List { no_progress } => {
            list::run(&root, no_progress);
            Ok(ExitCode::SUCCESS)
        }
        Command::Hint { project, stage } => {
            hints::run(&root, &project, stage).map(|()| ExitCode::SUCCESS)
        }
        Command::Run {
            project,
            tree,
            release,
            args,
        } => run::run(&root, &project, &tree.tree()?, release, &args),
        Command::Bench {
            project,
            tree,
            args,
        } => bench::run(&root, &project, &tree.tree()?, &args).map(|()| ExitCode::SUCCESS),
        Command::Compare {
            comparison,
            tree,
            svg,
        } => compare::run(&root, &comparison, &tree.tree()?, svg.as_deref())
            .map(|()| ExitCode::SUCCESS),
        Command::Book {
            check_limits: true, ..
        } => limits::check_all(&root).map(|()| ExitCode::SUCCESS),
        Command::Book {
            serve,
            open,
            check_width,
            check_limits: false,
        } => book::run(&root, serve, open, check_width).map(|()| ExitCode::SUCCESS),
        Command::GradePr {
            pr,
            require,
            format,
        } => Ok(if grade::run(&root, &pr, &require, format)? {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }),
        Command::Mutants {
            project,
            sample,
            seed,
            format,
            jobs,
            resume,
            regrade_missed,
        } => mutants::run(
            &root,
            &project,
            mutants::Options {
                sample,
                seed,
                format,
                jobs: usize::from(jobs),
                resume,
                regrade_missed,
            },
        )
        .map(|()| ExitCode::SUCCESS),
        Command::Ladder { project, show } => {
            let project = projects::find_existing(&project, &root)?;
            ladder::run(&root, &project, show).map(|()| ExitCode::SUCCESS)
        }
        Command::Verify { quick } => verify::run(&root, quick).map(|()| ExitCode::SUCCESS),
    }
}
