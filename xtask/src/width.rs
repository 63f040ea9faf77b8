//! `cargo xtask book --check-width`: every built page opened in headless Chromium at a desktop's
//! 1280 px and a phone's 390 px, and every element wider than its box reported.
//!
//! The measuring is done in the page by `book/width-check.js`, which the book carries and which
//! wakes only when the address ends in `#width-check=1280,390`: the page loads itself in a frame
//! of each width (headless Chromium will not make its window narrower than 500 px, a frame can
//! be any width), each frame waits for mermaid to draw and measures, and the page writes the
//! findings as JSON into itself; `chromium --headless --dump-dom` hands the page back. One
//! Chromium per page, two at a time: slower than one browser driven over the DevTools protocol,
//! but it needs no client for that protocol, and a page cannot disturb the next.
//!
//! What may scroll: at 390 px a code block (`pre`) may scroll sideways, on purpose: code and
//! transcripts cannot be wrapped without changing what they say, and at 40 columns most could
//! not be written at all. Nothing else may be wider than its box, at either width, and at
//! 1280 px not even a code block.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The widths checked, in CSS pixels: a desktop browser, and a phone.
pub const WIDTHS: [u32; 2] = [1280, 390];

/// The width below which a code block may scroll (see the module's documentation).
const CODE_MAY_SCROLL_BELOW: u32 = 800;

/// How long one page may take in the browser's virtual time (mermaid draws within it).
const VIRTUAL_TIME_MS: u32 = 20_000;

/// Pages not checked: `print.html` is every chapter again on one page, `toc.html` the sidebar
/// for readers without JavaScript, `404.html` links its scripts from the site's root, which only
/// a web server resolves.
const SKIPPED: [&str; 3] = ["print.html", "toc.html", "404.html"];

#[derive(Debug, Deserialize)]
struct Report {
    results: Vec<Findings>,
}

#[derive(Debug, Deserialize)]
struct Findings {
    width: u32,
    overflows: Vec<Overflow>,
    broken_diagrams: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Overflow {
    element: String,
    tag: String,
    kind: String,
    content: i64,
    #[serde(rename = "box")]
    box_width: i64,
}

/// The first Chromium found on PATH.
pub fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
    .find(|p| p.is_file())
}

/// Checks every page of the built book at `build`; prints plainly that it is skipped where
/// Chromium is absent.
pub fn check(build: &Path) -> Result<()> {
    let Some(chromium) = chromium() else {
        println!(
            "  width check skipped: Chromium is not installed (Debian: apt-get install chromium)"
        );
        return Ok(());
    };
    let mut pages: Vec<PathBuf> = crate::walk::files_with_extension(build, "html")?
        .into_iter()
        .filter(|p| {
            let rel = p.strip_prefix(build).unwrap_or(p);
            !SKIPPED.iter().any(|s| rel == Path::new(s))
        })
        .collect();
    pages.sort();
    let next = Mutex::new(pages.iter());
    let problems = Mutex::new(Vec::new());
    let allowed = Mutex::new(0usize);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let Some(page) = next.lock().expect("not poisoned").next() else {
                        break;
                    };
                    let rel = page
                        .strip_prefix(build)
                        .unwrap_or(page)
                        .display()
                        .to_string();
                    let found = match measure(&chromium, page) {
                        Ok(report) => report
                            .results
                            .iter()
                            .flat_map(|f| judge(&rel, f.width, f, &allowed))
                            .collect(),
                        Err(e) => vec![format!("{rel}: {e:#}")],
                    };
                    problems.lock().expect("not poisoned").extend(found);
                }
            });
        }
    });
    let mut problems = problems.into_inner().expect("not poisoned");
    problems.sort();
    let allowed = allowed.into_inner().expect("not poisoned");
    if !problems.is_empty() {
        bail!(
            "{} pages checked at {WIDTHS:?} px; wider than their box:\n  {}",
            pages.len(),
            problems.join("\n  ")
        );
    }
    println!(
        "  {} pages at {WIDTHS:?} px: nothing wider than its box ({allowed} code blocks scroll \
         at phone width, as allowed)",
        pages.len()
    );
    Ok(())
}

/// The problems in one page's findings; counts in `allowed` the code blocks that may scroll.
fn judge(rel: &str, width: u32, findings: &Findings, allowed: &Mutex<usize>) -> Vec<String> {
    let mut out = Vec::new();
    for o in &findings.overflows {
        if o.tag == "pre" && o.kind == "scrolls" && width < CODE_MAY_SCROLL_BELOW {
            *allowed.lock().expect("not poisoned") += 1;
            continue;
        }
        out.push(format!(
            "{rel} at {width} px: {} {} ({} px of content in {} px)",
            o.element, o.kind, o.content, o.box_width
        ));
    }
    for source in &findings.broken_diagrams {
        out.push(format!(
            "{rel}: a mermaid diagram did not render (a syntax error?): {source}"
        ));
    }
    out
}

/// Opens `page` and reads what `width-check.js` wrote into it, for every width.
fn measure(chromium: &Path, page: &Path) -> Result<Report> {
    let widths = WIDTHS.map(|w| w.to_string()).join(",");
    let url = format!("file://{}#width-check={widths}", page.display());
    let output = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--mute-audio",
        ])
        .arg("--window-size=1400,1000")
        .arg(format!("--virtual-time-budget={VIRTUAL_TIME_MS}"))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .context("running chromium")?;
    let dom = String::from_utf8_lossy(&output.stdout);
    let report: Report = serde_json::from_str(&result_of(&dom).with_context(|| {
        format!(
            "the page reported nothing (is width-check.js in book.toml's additional-js?); \
             chromium {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or("")
        )
    })?)
    .context("reading the width check's JSON")?;
    if report.results.len() != WIDTHS.len() {
        bail!(
            "the page measured {} widths of {}",
            report.results.len(),
            WIDTHS.len()
        );
    }
    Ok(report)
}

/// The text of `<pre id="width-check-result">` in a dumped DOM, unescaped.
fn result_of(dom: &str) -> Option<String> {
    let start = dom.find("<pre id=\"width-check-result\">")?;
    let rest = &dom[start..];
    let body = &rest[rest.find('>')? + 1..rest.find("</pre>")?];
    Some(
        body.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&nbsp;", "\u{a0}")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_result_out_of_the_dom() {
        let dom = r#"<html><body><p>x</p><pre id="width-check-result">{"a":"&lt;b&gt; &amp; c"}</pre></body></html>"#;
        assert_eq!(result_of(dom).as_deref(), Some(r#"{"a":"<b> & c"}"#));
        assert_eq!(result_of("<html></html>"), None);
    }

    #[test]
    fn code_may_scroll_only_at_phone_width() {
        let findings = Findings {
            width: 390,
            overflows: vec![Overflow {
                element: "pre".into(),
                tag: "pre".into(),
                kind: "scrolls".into(),
                content: 700,
                box_width: 358,
            }],
            broken_diagrams: vec![],
        };
        let allowed = Mutex::new(0);
        assert!(judge("a.html", 390, &findings, &allowed).is_empty());
        assert_eq!(*allowed.lock().unwrap(), 1);
        assert_eq!(judge("a.html", 1280, &findings, &allowed).len(), 1);
    }
}
