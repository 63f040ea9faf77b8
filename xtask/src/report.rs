//! Grading reports and their three renderings: text for a terminal, markdown for a CI job
//! summary, JSON for tools.

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
    /// Its tests.
    pub tests: Vec<TestOutcome>,
}

impl StageReport {
    /// Whether every test passed.
    pub fn passed(&self) -> bool {
        self.tests.iter().all(|t| t.passed)
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

    /// The first failing test of the first failing stage.
    fn first_failure(&self) -> Option<(&StageReport, &TestOutcome)> {
        self.stages
            .iter()
            .find_map(|s| s.tests.iter().find(|t| !t.passed).map(|t| (s, t)))
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

/// The report for a terminal.
pub fn text(reports: &[ProjectReport], style: Style) -> String {
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
        let failure = r.first_failure();
        for s in &r.stages {
            let passed = s.tests.iter().filter(|t| t.passed).count();
            let _ = writeln!(
                out,
                "  {} Stage {}: {} ({passed}/{})",
                style.tick(s.passed()),
                s.number,
                s.title,
                s.tests.len()
            );
            if let Some((stage, test)) = failure.filter(|(stage, _)| stage.number == s.number) {
                let _ = writeln!(out, "      first failure: {}", test.name);
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
                if !stage.hint.is_empty() {
                    let _ = writeln!(
                        out,
                        "      hint: {}",
                        stage.hint.replace('\n', "\n            ")
                    );
                }
                let _ = writeln!(
                    out,
                    "      more: cargo xtask hint {} {}",
                    r.slug, stage.number
                );
            }
        }
        let _ = writeln!(out, "{}", r.summary());
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
                "- {mark} Stage {}: {} ({passed}/{})",
                s.number,
                s.title,
                s.tests.len()
            );
        }
        if let Some((stage, test)) = r.first_failure() {
            let message = test
                .message
                .as_deref()
                .unwrap_or("(no message)")
                .replace("```", "'''");
            let _ = writeln!(
                out,
                "\n<details><summary>First failure: <code>{}</code></summary>\n\n```text\n{message}\n```\n\nHint: {}\n\n</details>",
                test.name, stage.hint
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
                    tests: vec![t("stage1_a::x", true)],
                },
                StageReport {
                    number: 2,
                    title: "Track".into(),
                    hint: "Use a map.".into(),
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
