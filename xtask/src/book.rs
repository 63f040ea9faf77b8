//! `cargo xtask book`: build (or serve) the book, installing mdbook when it is missing, and check
//! that no internal link is broken.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::tree::cargo;

/// The mdbook version installed when none is found.
pub const MDBOOK_VERSION: &str = "0.5.4";

/// Builds the book (or serves it with `serve`), then checks its links.
pub fn run(root: &Path, serve: bool, open: bool) -> Result<()> {
    let mdbook = ensure_mdbook()?;
    let book = root.join("book");
    if serve {
        eprintln!("serving the book on http://127.0.0.1:3000 (Ctrl-C stops)");
        let mut command = Command::new(&mdbook);
        command.arg("serve").arg(&book).args(["-n", "127.0.0.1"]);
        if open {
            command.arg("--open");
        }
        let status = command.status().context("running mdbook serve")?;
        if !status.success() {
            bail!("mdbook serve failed ({status})");
        }
        return Ok(());
    }
    build(root, &mdbook)?;
    let index = book.join("build/index.html");
    println!("the book is at {}", index.display());
    if open {
        let _ = Command::new("xdg-open").arg(&index).status();
    }
    Ok(())
}

/// Builds the book with `mdbook` and checks its internal links.
pub fn build(root: &Path, mdbook: &Path) -> Result<()> {
    let book = root.join("book");
    let status = Command::new(mdbook)
        .arg("build")
        .arg(&book)
        .status()
        .context("running mdbook build")?;
    if !status.success() {
        bail!("mdbook build failed ({status})");
    }
    let broken = broken_links(&book.join("build"))?;
    if !broken.is_empty() {
        bail!(
            "the book has broken internal links:\n  {}",
            broken.join("\n  ")
        );
    }
    Ok(())
}

/// The path of an mdbook binary, installing one with cargo when none is on PATH or in cargo's
/// bin directory.
pub fn ensure_mdbook() -> Result<PathBuf> {
    if let Some(found) = find_mdbook() {
        return Ok(found);
    }
    eprintln!(
        "mdbook not found: installing mdbook {MDBOOK_VERSION} with cargo (a few minutes, once)..."
    );
    let status = cargo()
        .args(["install", "--locked", "mdbook", "--version", MDBOOK_VERSION])
        .status()
        .context("running cargo install mdbook")?;
    if !status.success() {
        bail!(
            "cargo install mdbook failed ({status}); install it by hand with `cargo install --locked mdbook`"
        );
    }
    find_mdbook().context("mdbook was installed but cannot be found in cargo's bin directory")
}

fn find_mdbook() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("mdbook"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    on_path
        .into_iter()
        .chain(cargo_home.map(|h| h.join("bin/mdbook")))
        .find(|p| p.is_file())
}

/// Every relative `href` or `src` in the built HTML that names a file that does not exist.
pub fn broken_links(build: &Path) -> Result<Vec<String>> {
    let mut broken = Vec::new();
    for page in crate::walk::files_with_extension(build, "html")? {
        let html = std::fs::read_to_string(&page)?;
        let dir = page.parent().unwrap_or(build);
        for link in links(&html) {
            let target = link.split(['#', '?']).next().unwrap_or("");
            if target.is_empty() {
                continue;
            }
            // A root-absolute link (mdbook's 404 page uses them) resolves from the book's root.
            let mut path = match target.strip_prefix('/') {
                Some(from_root) => build.join(from_root),
                None => dir.join(target),
            };
            if target.ends_with('/') {
                path = path.join("index.html");
            }
            if !path.exists() {
                let rel = page.strip_prefix(build).unwrap_or(&page);
                broken.push(format!("{}: {link}", rel.display()));
            }
        }
    }
    Ok(broken)
}

/// The relative link targets of `href="..."` and `src="..."` attributes.
fn links(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href=\"", "src=\""] {
        let mut rest = html;
        while let Some(start) = rest.find(attr) {
            rest = &rest[start + attr.len()..];
            let Some(end) = rest.find('"') else { break };
            let link = &rest[..end];
            let external = ["http:", "https:", "mailto:", "javascript:", "data:", "//"]
                .iter()
                .any(|p| link.starts_with(p));
            if !external && !link.starts_with('#') && !link.contains("{{") {
                out.push(link.to_owned());
            }
            rest = &rest[end..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_only_relative_links() {
        let html = r##"<a href="a.html#x">a</a><a href="https://x">x</a><a href="#top">t</a><img src="img/p.svg">"##;
        assert_eq!(links(html), ["a.html#x", "img/p.svg"]);
    }
}
