//! `cargo xtask watch <project>`: grade again on every save, the way rustlings' watch mode does.

use std::io::{BufRead, IsTerminal};
use std::path::{Component, Path};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result};
use notify::{EventKind, RecursiveMode, Watcher};

use crate::check;
use crate::projects;
use crate::report::{self, Style};
use crate::tree::Tree;

/// How long to wait after a change for the editor's other writes before grading.
const SETTLE: Duration = Duration::from_millis(300);

enum Wake {
    Changed,
    Quit,
}

/// Grades `name`'s exercise, then again after every change to its files, until `q` is typed.
pub fn run(root: &Path, name: &str) -> Result<()> {
    let project = projects::find_existing(name, root)?;
    let dir = root.join("exercises").join(project.dir_name());
    let (tx, rx) = mpsc::channel();
    let changes = tx.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let relevant = matches!(
            event.kind,
            EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
        ) && event.paths.iter().any(|p| is_source(p));
        if relevant {
            let _ = changes.send(Wake::Changed);
        }
    })
    .context("cannot watch files on this system")?;
    watcher
        .watch(&dir, RecursiveMode::Recursive)
        .with_context(|| format!("watching {}", dir.display()))?;
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(line) if line.trim().eq_ignore_ascii_case("q") => {
                    let _ = tx.send(Wake::Quit);
                    return;
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    loop {
        let report = check::grade(root, &project, &Tree::Exercises);
        // Clear the screen and home the cursor, so each grade replaces the last.
        let mut screen = String::from("\x1b[2J\x1b[H");
        screen.push_str(&report::text(
            std::slice::from_ref(&report),
            Style { color },
        ));
        screen.push_str(&format!(
            "\nwatching {} for changes: save a file to grade again; q then Enter quits\n",
            dir.strip_prefix(root).unwrap_or(&dir).display()
        ));
        crate::emit(&screen);
        match rx.recv() {
            Ok(Wake::Changed) => {}
            Ok(Wake::Quit) | Err(_) => return Ok(()),
        }
        // An editor saves in several writes: wait until they settle, then grade once.
        loop {
            match rx.recv_timeout(SETTLE) {
                Ok(Wake::Changed) => {}
                Ok(Wake::Quit) => return Ok(()),
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
    }
}

/// A file whose change can change the grade: Rust sources and manifests, outside `target/`.
fn is_source(path: &Path) -> bool {
    let in_target = path
        .components()
        .any(|c| c == Component::Normal("target".as_ref()));
    let kind = path.extension().and_then(|e| e.to_str());
    !in_target && matches!(kind, Some("rs" | "toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sources_wake_it() {
        assert!(is_source(Path::new("exercises/01-heartbeat/src/server.rs")));
        assert!(is_source(Path::new("exercises/01-heartbeat/Cargo.toml")));
        assert!(!is_source(Path::new(
            "exercises/01-heartbeat/src/.server.rs.swp"
        )));
        assert!(!is_source(Path::new(
            "exercises/01-heartbeat/target/debug/x.rs"
        )));
    }
}
