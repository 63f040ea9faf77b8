//! Reading libtest's plain output: which tests passed, and what each failure said.

use serde::Serialize;

/// One test's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestOutcome {
    /// The full name, e.g. `stage1_client::sends_well_formed_heartbeats`.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What a failing test printed (its panic message), cleaned of libtest's own notes.
    pub message: Option<String>,
    /// For a passing test that could not run all of itself (a real tool is not installed), the
    /// line it printed saying so: `skipping: redis-cli is not installed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// For a passing test, what it noticed that a learner should know although the stage passes
    /// (`notice: ...` lines, printed by `workbook_suite::shown::notice`): a background task that
    /// panicked, say.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<String>,
}

/// How a line a passing test printed starts when it is meant for the learner.
const NOTICE: &str = "notice: ";

/// Parses the stdout of a libtest run into one outcome per test, in the order they finished.
/// Ignored tests are left out: the workbook has none.
pub fn parse(stdout: &str) -> Vec<TestOutcome> {
    let mut outcomes: Vec<TestOutcome> = stdout
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("test ")?;
            let (name, result) = rest.rsplit_once(" ... ")?;
            let passed = match result.trim() {
                "ok" => true,
                "FAILED" => false,
                _ => return None,
            };
            Some(TestOutcome {
                name: name.trim().to_owned(),
                passed,
                message: None,
                skipped: None,
                notices: Vec::new(),
            })
        })
        .collect();
    for (name, message) in failure_blocks(stdout) {
        if let Some(outcome) = outcomes.iter_mut().find(|o| o.name == name) {
            if outcome.passed {
                // A passing test's output is shown only with `--show-output`, and only its
                // note that it skipped a part matters here.
                outcome.skipped = message
                    .lines()
                    .find(|line| line.trim_start().starts_with("skipping"))
                    .map(|line| line.trim().to_owned());
                outcome.notices = message
                    .lines()
                    .filter(|line| line.trim_start().starts_with(NOTICE))
                    .map(|line| line.trim().to_owned())
                    .collect();
            } else {
                outcome.message = Some(message);
            }
        }
    }
    outcomes
}

/// The `---- NAME stdout ----` blocks libtest prints after `successes:` (with `--show-output`)
/// and `failures:`.
fn failure_blocks(stdout: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, Vec<&str>)> = None;
    for line in stdout.lines() {
        let header = line
            .strip_prefix("---- ")
            .and_then(|l| l.strip_suffix(" stdout ----"));
        if (header.is_some() || line == "failures:" || line == "successes:")
            && let Some((name, body)) = current.take()
        {
            blocks.push((name, clean(&body)));
        }
        if let Some(name) = header {
            current = Some((name.to_owned(), Vec::new()));
        } else if let Some((_, body)) = current.as_mut() {
            body.push(line);
        }
    }
    if let Some((name, body)) = current {
        blocks.push((name, clean(&body)));
    }
    blocks
}

/// Drops libtest's and the panic hook's own lines, keeping what the test said.
fn clean(body: &[&str]) -> String {
    body.iter()
        .filter(|l| !l.starts_with("thread '") && !l.starts_with("note: run with"))
        .copied()
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = "
running 3 tests
test stage1_client::a ... ok
test stage2_membership::b ... FAILED
test stage2_membership::c ... FAILED

failures:

---- stage2_membership::b stdout ----

thread 'stage2_membership::b' (12) panicked at suite/tests/heartbeat.rs:10:5:
expected a joined event
your program panicked: not yet implemented at exercises/01-heartbeat/src/server.rs:80:5
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace

---- stage2_membership::c stdout ----
thread 'stage2_membership::c' (13) panicked at suite/tests/heartbeat.rs:20:5:
second

failures:
    stage2_membership::b
    stage2_membership::c

test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.5s
";

    #[test]
    fn a_passing_test_that_skipped_a_part_says_so() {
        let run = "test stage7_real::redis_cli ... ok\ntest stage7_real::other ... ok\n\n\
                   successes:\n\n---- stage7_real::redis_cli stdout ----\n\
                   skipping: redis-cli is not installed\n\n\
                   successes:\n    stage7_real::redis_cli\n    stage7_real::other\n";
        let outcomes = parse(run);
        assert_eq!(
            outcomes[0].skipped.as_deref(),
            Some("skipping: redis-cli is not installed")
        );
        assert!(outcomes[0].message.is_none() && outcomes[1].skipped.is_none());
    }

    #[test]
    fn a_passing_test_can_leave_a_notice() {
        // The notice comes after another line of the test's output, unindented as libtest
        // prints it.
        let run = "test stage3_flip::any ... ok\n\nsuccesses:\n\n\
---- stage3_flip::any stdout ----\n\
first line\n\
notice: the receiver panicked: index out of bounds at src/receiver.rs:9:1\n\
note: run with `RUST_BACKTRACE=1`\n\n\
successes:\n    stage3_flip::any\n";
        let outcomes = parse(run);
        assert_eq!(
            outcomes[0].notices,
            ["notice: the receiver panicked: index out of bounds at src/receiver.rs:9:1"]
        );
    }

    #[test]
    fn reads_outcomes_and_messages() {
        let outcomes = parse(RUN);
        assert_eq!(outcomes.len(), 3);
        assert!(outcomes[0].passed && outcomes[0].message.is_none());
        let b = outcomes[1].message.as_deref().unwrap();
        assert!(
            b.starts_with("expected a joined event\nyour program panicked"),
            "{b}"
        );
        assert!(!b.contains("RUST_BACKTRACE"));
        assert_eq!(outcomes[2].message.as_deref(), Some("second"));
    }
}
