//! Grading reports and their three renderings: text for a terminal, markdown for a CI job
//! summary, JSON for tools.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::libtest::TestOutcome;

/// The grade of one project on one tree.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectReport {
    /// 1 to 10.
    pub number: u8,
    /// e.g. `heartbeat`.
    pub slug: String,
    /// What it is.
    pub title: String,
    /// Which tree was graded.
    pub tree: String,
    /// Not written yet: nothing was graded.
    pub coming: bool,
    /// Why grading could not run (a compile error, a suite that did not start).
    pub error: Option<String>,
    /// The stages, in order.
    pub stages: Vec<StageReport>,
}

/// One stage of a project.
#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    /// Its number.
    pub number: u32,
    /// Its title.
    pub title: String,
    /// The first paragraph of its hints.
    pub hint: String,
    /// Hints of their own for some failing tests (by full name), from paragraphs of `hints.md`
    /// that name them; a failing test not listed gets [`StageReport::hint`].
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub test_hints: BTreeMap<String, String>,
    /// Its tests.
    pub tests: Vec<TestOutcome>,
}

impl StageReport {
    /// Whether every test passed.
    pub fn passed(&self) -> bool {
        self.tests.iter().all(|t| t.passed)
    }

    /// The hint to print under `test` when it fails.
    pub fn hint_for(&self, test: &str) -> &str {
        self.test_hints.get(test).unwrap_or(&self.hint)
    }
}

impl ProjectReport {
    /// (passed, total) tests.
    pub fn test_counts(&self) -> (usize, usize) {
        let all = self.stages.iter().flat_map(|s| &s.tests);
        (all.clone().filter(|t| t.passed).count(), all.count())
    }

    /// (passed, total) stages.
    pub fn stage_counts(&self) -> (usize, usize) {
        let passed = self.stages.iter().filter(|s| s.passed()).count();
        (passed, self.stages.len())
    }

    /// Whether the project was graded and every test passed.
    pub fn all_passed(&self) -> bool {
        let (passed, total) = self.test_counts();
        !self.coming && self.error.is_none() && total > 0 && passed == total
    }

    /// `stages 3/7, tests 20/29`.
    pub fn summary(&self) -> String {
        let (sp, st) = self.stage_counts();
        let (tp, tt) = self.test_counts();
        format!("stages {sp}/{st}, tests {tp}/{tt}")
    }

    /// Every failing test, by stage, in order.
    fn failures(&self) -> impl Iterator<Item = (&StageReport, &TestOutcome)> {
        self.stages
            .iter()
            .flat_map(|s| s.tests.iter().filter(|t| !t.passed).map(move |t| (s, t)))
    }
}

/// Terminal styling, on only for a terminal that wants colour.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// Whether to emit ANSI colours.
    pub color: bool,
}

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
    fn tick(self, ok: bool) -> String {
        if ok {
            self.paint("32", "✔")
        } else {
            self.paint("31", "✘")
        }
    }
}

/// The most lines of a failure message the text report shows.
const MESSAGE_LINES: usize = 40;

/// The report for a terminal: under each failing stage, its first failure with that test's hint.
pub fn text(reports: &[ProjectReport], style: Style) -> String {
    text_with(reports, style, false)
}

/// The report for a terminal; `verbose` shows every failure, not only each stage's first.
pub fn text_with(reports: &[ProjectReport], style: Style, verbose: bool) -> String {
    let mut out = String::new();
    if reports.len() > 1 {
        return table_text(reports, style);
    }
    for r in reports {
        let _ = writeln!(
            out,
            "{}",
            style.paint("1", &format!("{}. {} ({})", r.number, r.title, r.tree))
        );
        if let Some(error) = &r.error {
            let _ = writeln!(out, "  {} could not grade: {error}", style.tick(false));
            continue;
        }
        let mut hidden = 0;
        for s in &r.stages {
            let passed = s.tests.iter().filter(|t| t.passed).count();
            let _ = writeln!(
                out,
                "  {} Stage {}: {} ({passed}/{}{})",
                style.tick(s.passed()),
                s.number,
                s.title,
                s.tests.len(),
                skipped_note(s)
            );
            for test in s.tests.iter().filter(|t| t.passed) {
                if let Some(skipped) = &test.skipped {
                    let _ = writeln!(out, "      {}: {skipped}", test.name);
                }
                for notice in &test.notices {
                    let _ = writeln!(out, "      {}: {notice}", test.name);
                }
            }
            let failing: Vec<&TestOutcome> = s.tests.iter().filter(|t| !t.passed).collect();
            let shown = if verbose { failing.len() } else { 1 };
            hidden += failing.len().saturating_sub(shown);
            for (i, test) in failing.iter().take(shown).enumerate() {
                let label = if i == 0 { "first failure" } else { "failure" };
                let _ = writeln!(out, "      {label}: {}", test.name);
                let message = test.message.as_deref().unwrap_or("(no message)");
                let lines: Vec<&str> = message.lines().collect();
                for line in lines.iter().take(MESSAGE_LINES) {
                    let _ = writeln!(out, "        {line}");
                }
                if lines.len() > MESSAGE_LINES {
                    let _ = writeln!(
                        out,
                        "        ... ({} more lines)",
                        lines.len() - MESSAGE_LINES
                    );
                }
                let hint = s.hint_for(&test.name);
                if !hint.is_empty() {
                    let _ = writeln!(out, "      hint: {}", hint.replace('\n', "\n            "));
                }
            }
            if !failing.is_empty() {
                let _ = writeln!(out, "      more: cargo xtask hint {} {}", r.slug, s.number);
            }
        }
        let _ = writeln!(out, "{}", r.summary());
        if hidden > 0 {
            let _ = writeln!(
                out,
                "({hidden} more failing {}: --verbose shows them all, --format json holds them all)",
                if hidden == 1 { "test" } else { "tests" }
            );
        }
    }
    out
}

fn table_text(reports: &[ProjectReport], style: Style) -> String {
    let mut out = String::new();
    for r in reports {
        let status = if r.coming {
            "coming".to_owned()
        } else if let Some(error) = &r.error {
            format!(
                "{} {}",
                style.tick(false),
                error.lines().next().unwrap_or("")
            )
        } else {
            format!("{} {}", style.tick(r.all_passed()), r.summary())
        };
        let _ = writeln!(out, "{:>2}. {:<18} {status}", r.number, r.slug);
    }
    out
}

/// `, 1 skipped in part` after a stage's counts when a passing test could not run all of itself.
fn skipped_note(stage: &StageReport) -> String {
    match stage.tests.iter().filter(|t| t.skipped.is_some()).count() {
        0 => String::new(),
        n => format!(", {n} skipped in part"),
    }
}

/// The report as GitHub-flavoured markdown.
pub fn markdown(reports: &[ProjectReport]) -> String {
    let mut out = String::from(
        "## Workbook grade\n\n| # | project | tree | stages | tests | status |\n|---|---|---|---|---|---|\n",
    );
    for r in reports {
        let ((sp, st), (tp, tt)) = (r.stage_counts(), r.test_counts());
        let (stages, tests) = if r.coming {
            ("–".to_owned(), "–".to_owned())
        } else {
            (format!("{sp}/{st}"), format!("{tp}/{tt}"))
        };
        let status = match (r.coming, &r.error) {
            (true, _) => "coming".to_owned(),
            (false, Some(_)) => "❌ not graded".to_owned(),
            (false, None) if r.all_passed() => "✅ passed".to_owned(),
            (false, None) => "❌ failing".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {stages} | {tests} | {status} |",
            r.number, r.slug, r.tree
        );
    }
    for r in reports.iter().filter(|r| !r.coming) {
        if let Some(error) = &r.error {
            let _ = writeln!(
                out,
                "\n### {}. {}\n\n```text\n{error}\n```",
                r.number, r.slug
            );
            continue;
        }
        if r.all_passed() {
            continue;
        }
        let _ = writeln!(out, "\n### {}. {}\n", r.number, r.slug);
        for s in &r.stages {
            let passed = s.tests.iter().filter(|t| t.passed).count();
            let mark = if s.passed() { "✅" } else { "❌" };
            let _ = writeln!(
                out,
                "- {mark} Stage {}: {} ({passed}/{}{})",
                s.number,
                s.title,
                s.tests.len(),
                skipped_note(s)
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for (stage, test) in r.failures().filter(|(s, _)| seen.insert(s.number)) {
            let message = test
                .message
                .as_deref()
                .unwrap_or("(no message)")
                .replace("```", "'''");
            let _ = writeln!(
                out,
                "\n<details><summary>Stage {}, first failure: <code>{}</code></summary>\n\n```text\n{message}\n```\n\nHint: {}\n\n</details>",
                stage.number,
                test.name,
                stage.hint_for(&test.name)
            );
        }
    }
    out
}

/// The report as one JSON document.
pub fn json(reports: &[ProjectReport]) -> String {
    let doc = serde_json::json!({
        "passed": reports.iter().filter(|r| !r.coming).all(ProjectReport::all_passed),
        "projects": reports,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> ProjectReport {
        let t = |name: &str, passed: bool| TestOutcome {
            name: name.into(),
            passed,
            message: (!passed).then(|| "expected x\ngot y".to_owned()),
            skipped: None,
            notices: Vec::new(),
        };
        ProjectReport {
            number: 1,
            slug: "heartbeat".into(),
            title: "UDP heartbeat".into(),
            tree: "exercises".into(),
            coming: false,
            error: None,
            stages: vec![
                StageReport {
                    number: 1,
                    title: "Send".into(),
                    hint: "Use send_to.".into(),
                    test_hints: BTreeMap::new(),
                    tests: vec![t("stage1_a::x", true)],
                },
                StageReport {
                    number: 2,
                    title: "Track".into(),
                    hint: "Use a map.".into(),
                    test_hints: BTreeMap::new(),
                    tests: vec![t("stage2_b::y", false), t("stage2_b::z", true)],
                },
            ],
        }
    }

    #[test]
    fn text_shows_stages_failure_hint_and_summary() {
        let out = text(&[report()], Style { color: false });
        assert!(out.contains("✔ Stage 1: Send (1/1)"), "{out}");
        assert!(out.contains("✘ Stage 2: Track (1/2)"), "{out}");
        assert!(out.contains("first failure: stage2_b::y"), "{out}");
        assert!(out.contains("hint: Use a map."), "{out}");
        assert!(out.contains("cargo xtask hint heartbeat 2"), "{out}");
        assert!(out.trim_end().ends_with("stages 1/2, tests 2/3"), "{out}");
    }

    #[test]
    fn every_failing_stage_shows_its_first_failure_and_verbose_shows_all() {
        let mut r = report();
        r.stages[0].tests[0].passed = false;
        r.stages[1].tests[1].passed = false;
        r.stages[1]
            .test_hints
            .insert("stage2_b::z".into(), "For `z`: check z.".into());
        let out = text(&[r.clone()], Style { color: false });
        assert!(out.contains("first failure: stage1_a::x"), "{out}");
        assert!(out.contains("first failure: stage2_b::y"), "{out}");
        assert!(!out.contains("stage2_b::z"), "{out}");
        assert!(out.contains("1 more failing test: --verbose"), "{out}");
        let all = text_with(&[r], Style { color: false }, true);
        assert!(all.contains("failure: stage2_b::z"), "{all}");
        assert!(all.contains("hint: For `z`: check z."), "{all}");
        assert!(all.contains("hint: Use a map."), "{all}");
    }

    #[test]
    fn markdown_and_json_agree() {
        let md = markdown(&[report()]);
        assert!(
            md.contains("| 1 | heartbeat | exercises | 1/2 | 2/3 | ❌ failing |"),
            "{md}"
        );
        let json: serde_json::Value = serde_json::from_str(&json(&[report()])).unwrap();
        assert_eq!(json["passed"], false);
        assert_eq!(
            json["projects"][0]["stages"][1]["tests"][0]["passed"],
            false
        );
    }
}
