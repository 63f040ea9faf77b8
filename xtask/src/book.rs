//! `cargo xtask book`: build (or serve) the book, installing mdbook and the mdbook-mermaid
//! preprocessor when they are missing, and check that no internal link is broken;
//! `--check-width` then opens every page in headless Chromium (see [`crate::width`]).
//!
//! Diagrams are mermaid code blocks. mdbook-mermaid turns each into a `<pre class="mermaid">`
//! that mermaid's script draws in the reader's browser; that script is carried inside the
//! mdbook-mermaid binary, which writes it into `book/` before each build (`mdbook-mermaid
//! install`), so the book serves it itself and nothing is fetched when it is read.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::tree::cargo;

/// The mdbook version installed when none is found.
pub const MDBOOK_VERSION: &str = "0.5.4";

/// The mdbook-mermaid version installed when none is found: 0.17 is the first built on
/// `mdbook-preprocessor` 0.5, the interface of mdbook 0.5 (0.16 and older speak mdbook 0.4's).
pub const MDBOOK_MERMAID_VERSION: &str = "0.17.1";

/// The files `mdbook-mermaid install` writes into `book/`; `book.toml` lists them as
/// `additional-js`. They come from the installed binary, so they are not checked in.
const MERMAID_ASSETS: [&str; 2] = ["mermaid.min.js", "mermaid-init.js"];

/// Builds the book (or serves it with `serve`), then checks its links, and with `check_width`
/// the width of every page.
pub fn run(root: &Path, serve: bool, open: bool, check_width: bool) -> Result<()> {
    let mdbook = ensure_mdbook()?;
    let book = root.join("book");
    if serve {
        install_mermaid_assets(&book)?;
        eprintln!("serving the book on http://127.0.0.1:3000 (Ctrl-C stops)");
        let mut command = Command::new(&mdbook);
        command
            .arg("serve")
            .arg(&book)
            .args(["-n", "127.0.0.1"])
            .env("PATH", tool_path()?);
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
    if check_width {
        crate::width::check(&book.join("build"))?;
    }
    if open {
        let _ = Command::new("xdg-open").arg(&index).status();
    }
    Ok(())
}

/// Builds the book with `mdbook` (and the mermaid preprocessor, installed when missing) and
/// checks its internal links.
pub fn build(root: &Path, mdbook: &Path) -> Result<()> {
    let book = root.join("book");
    install_mermaid_assets(&book)?;
    let status = Command::new(mdbook)
        .arg("build")
        .arg(&book)
        .env("PATH", tool_path()?)
        .status()
        .context("running mdbook build")?;
    if !status.success() {
        bail!("mdbook build failed ({status})");
    }
    let build = book.join("build");
    let built: Vec<String> = std::fs::read_dir(&build)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    for asset in MERMAID_ASSETS {
        // mdbook 0.5 names a copied asset with a hash of its content: `mermaid-1a2b3c4d.min.js`.
        let (stem, ext) = asset.split_once('.').unwrap_or((asset, ""));
        let copied = built.iter().any(|name| {
            name == asset
                || name
                    .strip_prefix(stem)
                    .and_then(|rest| rest.strip_prefix('-'))
                    .and_then(|rest| rest.split_once('.'))
                    .is_some_and(|(hash, rest)| {
                        hash.chars().all(|c| c.is_ascii_hexdigit()) && rest == ext
                    })
        });
        if !copied {
            bail!("the built book lacks {asset}: is it in book.toml's additional-js?");
        }
    }
    let broken = broken_links(&build)?;
    if !broken.is_empty() {
        bail!(
            "the book has broken internal links:\n  {}",
            broken.join("\n  ")
        );
    }
    Ok(())
}

/// Writes mermaid's script, as the installed mdbook-mermaid carries it, into `book/`, replacing
/// any older copy (so that the script always matches the preprocessor's version).
fn install_mermaid_assets(book: &Path) -> Result<()> {
    let mermaid = ensure_tool("mdbook-mermaid", MDBOOK_MERMAID_VERSION)?;
    for asset in MERMAID_ASSETS {
        let _ = std::fs::remove_file(book.join(asset));
    }
    let output = Command::new(&mermaid)
        .arg("install")
        .arg(book)
        .output()
        .context("running mdbook-mermaid install")?;
    if !output.status.success() {
        bail!(
            "mdbook-mermaid install failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// PATH with cargo's bin directory added, so that mdbook finds the `mdbook-mermaid` that
/// [`ensure_tool`] may have installed there even when PATH lacks it.
fn tool_path() -> Result<OsString> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = cargo_home() {
        dirs.push(home.join("bin"));
    }
    Ok(std::env::join_paths(dirs)?)
}

/// The path of an mdbook binary, installing one with cargo when none is on PATH or in cargo's
/// bin directory.
pub fn ensure_mdbook() -> Result<PathBuf> {
    ensure_tool("mdbook", MDBOOK_VERSION)
}

/// The path of `tool`, installing `version` of it with `cargo install --locked` when none is
/// on PATH or in cargo's bin directory.
fn ensure_tool(tool: &str, version: &str) -> Result<PathBuf> {
    if let Some(found) = find_tool(tool) {
        return Ok(found);
    }
    eprintln!("{tool} not found: installing {tool} {version} with cargo (a few minutes, once)...");
    let status = cargo()
        .args(["install", "--locked", tool, "--version", version])
        .status()
        .with_context(|| format!("running cargo install {tool}"))?;
    if !status.success() {
        bail!(
            "cargo install {tool} failed ({status}); install it by hand with \
             `cargo install --locked {tool} --version {version}`"
        );
    }
    find_tool(tool).with_context(|| {
        format!("{tool} was installed but cannot be found in cargo's bin directory")
    })
}

fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
}

fn find_tool(tool: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(tool))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(cargo_home().map(|h| h.join("bin").join(tool)))
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
