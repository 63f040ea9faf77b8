//! `cargo xtask hint`: the stages of a project and the hints for each, read from the chapter's
//! `hints.md`, whose `## Stage N: Title` headings are also where stage titles come from.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::projects::{self, Project};

/// One stage, as `hints.md` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Its number, as in the test modules' `stageN_` prefix.
    pub number: u32,
    /// Its title.
    pub title: String,
    /// The hints, in markdown.
    pub hints: String,
}

impl Stage {
    /// The first paragraph of the hints: what the grader prints under a failing stage whose
    /// failing test has no hint of its own.
    pub fn first_hint(&self) -> String {
        self.paragraphs().next().unwrap_or("").to_owned()
    }

    /// The hint the grader prints under `test` (`module::name` or `name`) when it fails: the
    /// first paragraph that names it as ``For `name`: ...`` (several names may stand before the
    /// colon, ``For `a` and `b`: ...``), else the stage's first paragraph.
    pub fn hint_for(&self, test: &str) -> String {
        let name = test.rsplit("::").next().unwrap_or(test);
        self.paragraphs()
            .find(|p| {
                p.strip_prefix("For ")
                    .and_then(|rest| rest.split_once(':'))
                    .is_some_and(|(names, _)| {
                        names.split('`').skip(1).step_by(2).any(|n| n == name)
                    })
            })
            .map_or_else(|| self.first_hint(), str::to_owned)
    }

    fn paragraphs(&self) -> impl Iterator<Item = &str> {
        self.hints
            .trim()
            .split("\n\n")
            .map(str::trim)
            .filter(|p| !p.is_empty())
    }
}

/// Reads the stages of `project`; none when the file is missing.
pub fn stages(root: &Path, project: &Project) -> Vec<Stage> {
    std::fs::read_to_string(project.hints_path(root))
        .map(|md| parse(&md))
        .unwrap_or_default()
}

/// Parses `## Stage N: Title` sections.
pub fn parse(markdown: &str) -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    let mut in_stage = false;
    for line in markdown.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            in_stage = false;
            let parsed = heading
                .strip_prefix("Stage ")
                .and_then(|rest| rest.split_once(':'))
                .and_then(|(n, title)| Some((n.trim().parse().ok()?, title.trim())));
            if let Some((number, title)) = parsed {
                stages.push(Stage {
                    number,
                    title: title.to_owned(),
                    hints: String::new(),
                });
                in_stage = true;
            }
            continue;
        }
        if in_stage && let Some(stage) = stages.last_mut() {
            stage.hints.push_str(line);
            stage.hints.push('\n');
        }
    }
    stages
}

/// Prints the hints for one stage, or the list of stages.
pub fn run(root: &Path, name: &str, stage: Option<u32>) -> Result<()> {
    let project = projects::find_existing(name, root)?;
    let stages = stages(root, &project);
    if stages.is_empty() {
        bail!(
            "no hints found for {} (expected {})",
            project.slug,
            project.hints_path(root).display()
        );
    }
    let text = match stage {
        None => {
            let list: String = stages
                .iter()
                .map(|s| format!("  {}. {}\n", s.number, s.title))
                .collect();
            format!(
                "{} {}: stages\n{list}\nHints for one stage: cargo xtask hint {} STAGE\n",
                project.number, project.title, project.slug
            )
        }
        Some(n) => {
            let s = stages
                .iter()
                .find(|s| s.number == n)
                .with_context(|| format!("{} has stages 1 to {}", project.slug, stages.len()))?;
            format!("Stage {}: {}\n\n{}\n", s.number, s.title, s.hints.trim())
        }
    };
    crate::emit(&text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stage_sections() {
        let md = "# Hints\nintro\n\n## Stage 1: Send\nFirst para\nstill.\n\nMore.\n## Notes\nx\n## Stage 2: Track\nTwo\n";
        let stages = parse(md);
        assert_eq!(stages.len(), 2);
        assert_eq!(stages[0].title, "Send");
        assert_eq!(stages[0].first_hint(), "First para\nstill.");
        assert!(!stages[0].hints.contains('x'));
        assert_eq!(stages[1].number, 2);
    }

    #[test]
    fn a_hint_can_name_the_tests_it_is_for() {
        let md = "## Stage 1: Serve\nStart with the loop.\n\nFor `pipelined` and `inline`: three commands came in one write.\n\nFor `other`: no.\n";
        let stage = &parse(md)[0];
        assert_eq!(
            stage.hint_for("stage1_serve::inline"),
            "For `pipelined` and `inline`: three commands came in one write."
        );
        assert_eq!(stage.hint_for("stage1_serve::other"), "For `other`: no.");
        assert_eq!(
            stage.hint_for("stage1_serve::unnamed"),
            "Start with the loop."
        );
    }
}
