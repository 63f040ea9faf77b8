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
    /// The first paragraph of the hints: what the grader prints under a failing stage.
    pub fn first_hint(&self) -> String {
        self.hints
            .trim()
            .split("\n\n")
            .next()
            .unwrap_or("")
            .trim()
            .to_owned()
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
}
