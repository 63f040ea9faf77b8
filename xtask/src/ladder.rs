//! The stage ladder: every stage can be passed with only what it and the stages before it ask
//! the learner to write.
//!
//! The source of truth is the book: the "you write" column of each chapter's `stages.md` names,
//! in backticks, the functions a stage assigns (`resp::parse_request`, `Store::ttl`, `sweep`), a
//! type, for every stubbed method of it (`Store`), or a module, for every stub in its file
//! (`agent.rs`). A function is written at the earliest stage that names it; a name of the
//! function itself wins over its type's, and its type's over its module's. Every `todo!()` in the
//! exercise must be assigned, so the book cannot forget a function.
//!
//! The check builds one tree per project: the solution, in which the body of every function the
//! exercise stubs becomes "the solution's body if the ladder is at this function's stage or
//! later, else `todo!()`", the level read from `WORKBOOK_LADDER_STAGE` once per function. Each
//! stage k's tests then run against that one binary at level k, so a test that needs a function
//! of a later stage meets the same "not yet implemented" a learner would, at the cost of one
//! build and one run of the suite.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{Block, ImplItem, Item, Type};

use crate::check;
use crate::projects::Project;
use crate::tree::stage_workspace;

/// The variable the merged binary reads its ladder level from.
pub const LEVEL_VAR: &str = "WORKBOOK_LADDER_STAGE";

/// A function whose body in the exercise is only `todo!()`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stub {
    /// Its file, relative to `src/` (`store.rs`, `bin/x.rs`).
    pub file: String,
    /// The type of the `impl` block it is in, if any.
    pub owner: Option<String>,
    /// Its name.
    pub name: String,
}

impl Stub {
    fn module(&self) -> &str {
        let stem = self.file.rsplit('/').next().unwrap_or(&self.file);
        stem.strip_suffix(".rs").unwrap_or(stem)
    }

    /// `store.rs: Store::ttl`, for messages.
    pub fn describe(&self) -> String {
        match &self.owner {
            Some(owner) => format!("{}: {owner}::{}", self.file, self.name),
            None => format!("{}: {}", self.file, self.name),
        }
    }
}

/// Every stubbed function of the crate whose sources are in `src`.
pub fn stubs(src: &Path) -> Result<Vec<Stub>> {
    let mut out = Vec::new();
    for file in crate::walk::files_with_extension(src, "rs")? {
        let text = std::fs::read_to_string(&file)?;
        let syntax =
            syn::parse_file(&text).with_context(|| format!("parsing {}", file.display()))?;
        let rel = relative(src, &file);
        visit(&syntax.items, &mut |owner, name, block| {
            if is_todo(block) {
                out.push(Stub {
                    file: rel.clone(),
                    owner: owner.map(str::to_owned),
                    name: name.to_owned(),
                });
            }
        });
    }
    out.sort();
    Ok(out)
}

fn relative(src: &Path, file: &Path) -> String {
    file.strip_prefix(src).unwrap_or(file).display().to_string()
}

/// Calls `f(owner, name, body)` for every free function and method in `items`, nested modules
/// included.
fn visit(items: &[Item], f: &mut dyn FnMut(Option<&str>, &str, &Block)) {
    for item in items {
        match item {
            Item::Fn(func) => f(None, &func.sig.ident.to_string(), &func.block),
            Item::Impl(imp) => {
                let owner = type_name(&imp.self_ty);
                for item in &imp.items {
                    if let ImplItem::Fn(func) = item {
                        f(owner.as_deref(), &func.sig.ident.to_string(), &func.block);
                    }
                }
            }
            Item::Mod(module) => {
                if let Some((_, items)) = &module.content {
                    visit(items, f);
                }
            }
            _ => {}
        }
    }
}

/// The same walk, with the bodies mutable.
fn visit_mut(items: &mut [Item], f: &mut dyn FnMut(Option<&str>, &str, &mut Block)) {
    for item in items {
        match item {
            Item::Fn(func) => f(None, &func.sig.ident.to_string(), &mut func.block),
            Item::Impl(imp) => {
                let owner = type_name(&imp.self_ty);
                for item in &mut imp.items {
                    if let ImplItem::Fn(func) = item {
                        f(
                            owner.as_deref(),
                            &func.sig.ident.to_string(),
                            &mut func.block,
                        );
                    }
                }
            }
            Item::Mod(module) => {
                if let Some((_, items)) = &mut module.content {
                    visit_mut(items, f);
                }
            }
            _ => {}
        }
    }
}

/// `Store` for `impl Store`, `impl<T> Store<T>` and `impl Display for Store`.
fn type_name(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(path) => path.path.segments.last().map(|s| s.ident.to_string()),
        Type::Reference(reference) => type_name(&reference.elem),
        _ => None,
    }
}

/// Whether a body is nothing but `todo!(...)`.
fn is_todo(block: &Block) -> bool {
    let [statement] = block.stmts.as_slice() else {
        return false;
    };
    let mac = match statement {
        syn::Stmt::Macro(m) => &m.mac,
        syn::Stmt::Expr(syn::Expr::Macro(m), _) => &m.mac,
        _ => return false,
    };
    mac.path.is_ident("todo")
}

/// The names each stage's "you write" cell gives in backticks, by stage number.
pub fn mentions(stages_md: &str) -> BTreeMap<u32, Vec<String>> {
    let mut out = BTreeMap::new();
    for line in stages_md.lines() {
        let cells = table_cells(line);
        let (Some(first), Some(last)) = (cells.first(), cells.last()) else {
            continue;
        };
        if cells.len() < 2 {
            continue;
        }
        let Some(number) = first
            .split('.')
            .next()
            .and_then(|n| n.trim().parse::<u32>().ok())
        else {
            continue;
        };
        let names = last
            .split('`')
            .skip(1)
            .step_by(2)
            .map(|name| name.trim().trim_end_matches("()").to_owned())
            .filter(|name| !name.is_empty())
            .collect();
        out.insert(number, names);
    }
    out
}

/// The cells of a markdown table row, split at `|` outside backticks; empty for other lines.
fn table_cells(line: &str) -> Vec<String> {
    let line = line.trim();
    let Some(inner) = line.strip_prefix('|') else {
        return Vec::new();
    };
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut in_code = false;
    for c in inner.chars() {
        match c {
            '`' => {
                in_code = !in_code;
                cell.push(c);
            }
            '|' if !in_code => cells.push(std::mem::take(&mut cell).trim().to_owned()),
            _ => cell.push(c),
        }
    }
    if !cell.trim().is_empty() {
        cells.push(cell.trim().to_owned());
    }
    cells
}

/// How a name in the book refers to a stub: to the function itself, or to its type.
fn refers(name: &str, stub: &Stub) -> Option<Specificity> {
    match name.rsplit_once("::") {
        Some((prefix, last)) if last == stub.name => {
            let prefix = prefix.rsplit("::").next().unwrap_or(prefix);
            let owner_or_module = stub.owner.as_deref() == Some(prefix) || stub.module() == prefix;
            owner_or_module.then_some(Specificity::Function)
        }
        // `resp::RequestParser`: a type named with its module.
        Some((prefix, last)) if stub.owner.as_deref() == Some(last) => {
            let prefix = prefix.rsplit("::").next().unwrap_or(prefix);
            (stub.module() == prefix).then_some(Specificity::Type)
        }
        Some(_) => None,
        None if name == stub.name => Some(Specificity::Function),
        None if stub.owner.as_deref() == Some(name) => Some(Specificity::Type),
        None if stub.module() == name.strip_suffix(".rs").unwrap_or(name) => {
            Some(Specificity::Module)
        }
        None => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Specificity {
    Module,
    Type,
    Function,
}

/// Each stub's stage: the earliest stage naming the function, else the earliest naming its
/// type. Fails with the list of stubs no stage names.
pub fn assign(stubs: &[Stub], mentions: &BTreeMap<u32, Vec<String>>) -> Result<Vec<(Stub, u32)>> {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for stub in stubs {
        let best = mentions
            .iter()
            .flat_map(|(stage, names)| {
                names
                    .iter()
                    .filter_map(move |name| refers(name, stub).map(|s| (s, *stage)))
            })
            // The most specific reference first, then the earliest stage.
            .max_by_key(|(specificity, stage)| (*specificity, std::cmp::Reverse(*stage)));
        match best {
            Some((_, stage)) => out.push((stub.clone(), stage)),
            None => missing.push(stub.describe()),
        }
    }
    if !missing.is_empty() {
        bail!(
            "no stage of stages.md names these stubbed functions in its \"you write\" column \
             (name each in backticks, as `module::function`, `Type::method`, `function`, its \
             `Type` or its file, `module.rs`):\n  {}",
            missing.join("\n  ")
        );
    }
    Ok(out)
}

/// The body the merged tree gives a stub of stage `stage`: its panic names it, so that a
/// failure says which later function a stage reached.
fn gated(stub: &Stub, stage: u32, body: &Block) -> Block {
    let var = LEVEL_VAR;
    let name = format!("{} of stage {stage}", stub.describe());
    let tokens: TokenStream = quote! {
        {
            let __ladder_level = {
                static LEVEL: ::std::sync::OnceLock<u32> = ::std::sync::OnceLock::new();
                *LEVEL.get_or_init(|| {
                    ::std::env::var(#var)
                        .ok()
                        .and_then(|level| level.parse().ok())
                        .unwrap_or(u32::MAX)
                })
            };
            if __ladder_level >= #stage #body else { ::core::todo!("{}", #name) }
        }
    };
    syn::parse2(tokens).expect("the gated body is a block")
}

/// Writes the merged tree of `project` under `target/xtask/ladder/` and returns its manifest.
fn merged_tree(root: &Path, project: &Project, assigned: &[(Stub, u32)]) -> Result<PathBuf> {
    let workspace = root.join("target/xtask/ladder").join(project.slug);
    let workspace_manifest = stage_workspace(
        root,
        &root.join("solutions").join(project.dir_name()),
        &workspace,
        &project.dir_name(),
    )?;
    let crate_dir = workspace.join(project.dir_name());

    // A package and binary name of its own, so that building it in the shared target directory
    // never replaces the solution's binary there; the library keeps its name for `main.rs`.
    let manifest_path = crate_dir.join("Cargo.toml");
    let manifest = std::fs::read_to_string(&manifest_path)?;
    let solution = format!("\"{}\"", project.solution_package());
    if !manifest.contains(&solution) {
        bail!("{} does not name {solution}", manifest_path.display());
    }
    std::fs::write(
        &manifest_path,
        manifest.replace(&solution, &format!("\"{}\"", ladder_package(project))),
    )?;

    let src = crate_dir.join("src");
    let mut by_file: BTreeMap<&str, Vec<&(Stub, u32)>> = BTreeMap::new();
    for entry in assigned {
        by_file.entry(&entry.0.file).or_default().push(entry);
    }
    for (file, entries) in by_file {
        let path = src.join(file);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("the exercise stubs functions in {file}, which the solution does not have")
        })?;
        let mut syntax =
            syn::parse_file(&text).with_context(|| format!("parsing {}", path.display()))?;
        let mut found = vec![false; entries.len()];
        visit_mut(&mut syntax.items, &mut |owner, name, block| {
            for (i, (stub, stage)) in entries.iter().map(|e| (&e.0, e.1)).enumerate() {
                if stub.owner.as_deref() == owner && stub.name == name && !found[i] {
                    found[i] = true;
                    *block = gated(stub, stage, block);
                    break;
                }
            }
        });
        let absent: Vec<String> = entries
            .iter()
            .zip(&found)
            .filter(|(_, found)| !**found)
            .map(|(entry, _)| entry.0.describe())
            .collect();
        if !absent.is_empty() {
            bail!(
                "the exercise stubs functions that the solution does not have in the same file \
                 and impl: {}",
                absent.join(", ")
            );
        }
        std::fs::write(&path, syntax.into_token_stream().to_string())?;
    }
    Ok(workspace_manifest)
}

fn ladder_package(project: &Project) -> String {
    format!("{}-ladder", project.slug)
}

/// Each stub with its stage, from the book and the exercise.
pub fn assignments(root: &Path, project: &Project) -> Result<Vec<(Stub, u32)>> {
    let stages_md = root
        .join("book/src")
        .join(project.dir_name())
        .join("stages.md");
    let text = std::fs::read_to_string(&stages_md)
        .with_context(|| format!("reading {}", stages_md.display()))?;
    let stubs = stubs(&root.join("exercises").join(project.dir_name()).join("src"))?;
    assign(&stubs, &mentions(&text)).with_context(|| format!("in {}", stages_md.display()))
}

/// `verify`'s step: every stage but the last passes with the bodies of its own and earlier
/// stages only (the last stage has every body: that is the solution, which verify runs anyway).
pub fn check(root: &Path, project: &Project) -> Result<()> {
    let assigned = assignments(root, project)?;
    let manifest = merged_tree(root, project, &assigned)?;
    let package = ladder_package(project);
    let mut command = grading::build_command(crate::tree::cargo().get_program(), &package, false);
    let output = command
        .current_dir(root)
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(root.join("target"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo build")?;
    if !output.status.success() {
        bail!(
            "the ladder tree of {} does not compile: the errors are above",
            project.slug
        );
    }
    let binary = grading::executable(&output.stdout, &package)
        .context("cargo built the ladder tree but reported no executable")?;

    let stages = crate::hints::stages(root, project);
    let last = stages.iter().map(|s| s.number).max().unwrap_or(0);
    let mut failures = Vec::new();
    for stage in stages.iter().map(|s| s.number).filter(|n| *n < last) {
        let level = stage.to_string();
        let outcomes = check::run_suite_with(
            root,
            project,
            &binary,
            &format!("the ladder at stage {stage}"),
            Some(&format!("stage{stage}_")),
            &[(LEVEL_VAR, level.as_str())],
        )?;
        let own: Vec<_> = outcomes
            .iter()
            .filter(|o| o.name.starts_with(&format!("stage{stage}_")))
            .collect();
        if own.is_empty() {
            failures.push(format!("stage {stage}: no test ran"));
        }
        for outcome in own.iter().filter(|o| !o.passed) {
            let message = outcome.message.as_deref().unwrap_or("").trim();
            let mut reached: Vec<&str> = message
                .lines()
                .flat_map(|line| line.split("not yet implemented: ").skip(1))
                .map(|stub| stub.split(" at ").next().unwrap_or(stub).trim())
                .collect();
            reached.sort_unstable();
            reached.dedup();
            let why = if reached.is_empty() {
                message.lines().next().unwrap_or("").to_owned()
            } else {
                format!("it reached {}", reached.join(", "))
            };
            failures.push(format!(
                "stage {stage}: {} fails with only the functions of stages 1 to {stage}: {why}",
                outcome.name
            ));
        }
    }
    if !failures.is_empty() {
        bail!(
            "{}: a stage needs a function that stages.md assigns to a later stage (or a test \
             belongs to a later stage):\n  {}",
            project.slug,
            failures.join("\n  ")
        );
    }
    println!(
        "{}: {} stubbed functions over {} stages; each stage passes with its own and the earlier ones",
        project.slug,
        assigned.len(),
        last
    );
    Ok(())
}

/// `cargo xtask ladder <project>`: the check on one project, and each stub's stage.
pub fn run(root: &Path, project: &Project, show: bool) -> Result<()> {
    if show {
        for (stub, stage) in assignments(root, project)? {
            println!("stage {stage}: {}", stub.describe());
        }
        return Ok(());
    }
    check(root, project)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stub(file: &str, owner: Option<&str>, name: &str) -> Stub {
        Stub {
            file: file.into(),
            owner: owner.map(Into::into),
            name: name.into(),
        }
    }

    #[test]
    fn reads_the_you_write_column_around_pipes_in_code() {
        let md = "| stage | checks | you write |\n|---|---|---|\n\
                  | 1. First | `a|b` parsed | `resp::parse`, `Reply::encode()` |\n\
                  | 2. Then | more | `Store`; sharding |\n";
        let m = mentions(md);
        assert_eq!(m[&1], vec!["resp::parse", "Reply::encode"]);
        assert_eq!(m[&2], vec!["Store"]);
    }

    #[test]
    fn the_function_wins_over_its_type_and_the_earliest_stage_wins() {
        let stubs = vec![
            stub("store.rs", Some("Store"), "get"),
            stub("store.rs", Some("Store"), "ttl"),
            stub("resp.rs", None, "parse"),
        ];
        let mut m = BTreeMap::new();
        m.insert(1, vec!["resp::parse".to_owned()]);
        m.insert(2, vec!["Store".to_owned()]);
        m.insert(4, vec!["Store::ttl".to_owned()]);
        m.insert(5, vec!["parse".to_owned()]);
        m.insert(6, vec!["store::Store".to_owned(), "store.rs".to_owned()]);
        let got = assign(&stubs, &m).unwrap();
        let stage = |name: &str| got.iter().find(|(s, _)| s.name == name).unwrap().1;
        assert_eq!((stage("parse"), stage("get"), stage("ttl")), (1, 2, 4));
    }

    #[test]
    fn an_unnamed_stub_is_an_error_naming_it() {
        let err = assign(&[stub("a.rs", None, "lost")], &BTreeMap::new()).unwrap_err();
        assert!(format!("{err:#}").contains("a.rs: lost"));
    }

    #[test]
    fn finds_todo_bodies_only() {
        let file: syn::File = syn::parse_str(
            "fn a() { todo!() } fn b() -> u8 { 1 } impl X { fn c(&self) { todo!(\"x\"); } }",
        )
        .unwrap();
        let mut seen = Vec::new();
        visit(&file.items, &mut |owner, name, block| {
            if is_todo(block) {
                seen.push(format!("{owner:?} {name}"));
            }
        });
        assert_eq!(seen, vec!["None a", "Some(\"X\") c"]);
    }

    #[test]
    fn a_gated_body_still_parses_as_a_function() {
        let body: Block = syn::parse_str("{ 1 + 1 }").unwrap();
        let gated = gated(&stub("a.rs", None, "f"), 3, &body);
        let text = gated.to_token_stream().to_string();
        assert!(text.contains(LEVEL_VAR) && text.contains("3u32"));
    }
}
