//! What an exercise gives a learner, held to the solution, and what it asks of them, explained:
//! the checks rustlings' own `dev check` makes, for this workbook's layout.
//!
//! - **Every stub has its hint.** Each `todo!()` has exactly one `// TODO:` comment before it, in
//!   its function and after the previous `todo!()`, with a hint on that line or the comment lines
//!   that follow it.
//! - **What is given is the solution's.** A file with no `todo!()` (but `lib.rs`, the crate's own
//!   page, which says which crate it is) is the solution's file, byte for byte once the solution's
//!   crate name is replaced by the exercise's and the solution's unit tests (a last
//!   `#[cfg(test)]` module) are left out. In a file with stubs, every function whose body has
//!   no `todo!()` is given: its signature, attributes and body are the solution's, token for token
//!   (comments and doc comments may differ). A function the solution lacks is an error too.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;
use syn::visit::Visit;

/// The marker of a stub's hint.
pub const TODO_MARK: &str = "// TODO:";

/// The defects found in `exercise` (its `src/`) against `solution`'s, one line each.
pub fn check(
    exercise: &Path,
    solution: &Path,
    ex_crate: &str,
    sol_crate: &str,
) -> Result<Vec<String>> {
    let mut defects = Vec::new();
    for file in crate::walk::files_with_extension(&exercise.join("src"), "rs")? {
        let rel = file.strip_prefix(exercise).unwrap_or(&file);
        let shown = rel.display().to_string();
        let ex_text = std::fs::read_to_string(&file)?;
        let sol_path = solution.join(rel);
        let sol_text = std::fs::read_to_string(&sol_path)
            .with_context(|| format!("reading {}", sol_path.display()))?;
        defects.extend(hints(&ex_text).into_iter().map(|d| format!("{shown}:{d}")));
        if !has_todo(&ex_text) {
            if rel.file_name().is_some_and(|n| n != "lib.rs")
                && ex_text != without_tests(&sol_text).replace(sol_crate, ex_crate)
            {
                defects.push(format!(
                    "{shown}: has no todo!(), so it is given in full, but differs from the \
                     solution's (compare them with `diff`)"
                ));
            }
            continue;
        }
        let ex_fns = functions(&ex_text, ex_crate).with_context(|| format!("parsing {shown}"))?;
        let sol_fns = functions(&sol_text, sol_crate)
            .with_context(|| format!("parsing {}", sol_path.display()))?;
        for (key, ex) in &ex_fns {
            if ex.stub {
                continue;
            }
            match sol_fns.get(key) {
                None => defects.push(format!(
                    "{shown}: `{key}` is given (it has no todo!()) but the solution has no such \
                     function"
                )),
                Some(sol) if sol.text != ex.text => defects.push(format!(
                    "{shown}: `{key}` is given (it has no todo!()) but differs from the \
                     solution's"
                )),
                Some(_) => {}
            }
        }
    }
    Ok(defects)
}

/// A solution's file without its unit tests (a last `#[cfg(test)]` module), which the exercise
/// does not have.
fn without_tests(text: &str) -> String {
    match text.rfind("\n#[cfg(test)]\nmod ") {
        Some(at) => format!("{}\n", text[..at].trim_end()),
        None => text.to_owned(),
    }
}

/// Whether `text` holds a `todo!()` outside comments.
fn has_todo(text: &str) -> bool {
    text.lines().any(|l| code_part(l).contains("todo!()"))
}

/// The part of a line before a `//` comment (good enough for this workbook's stubs, which put no
/// `//` in strings on a `todo!()` line).
fn code_part(line: &str) -> &str {
    line.split_once("//").map_or(line, |(code, _)| code)
}

/// The line-numbered defects of the `// TODO:` hints in `text`.
fn hints(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut defects = Vec::new();
    let mut since = 0; // The first line after the previous todo!() or function start.
    for (i, line) in lines.iter().enumerate() {
        let code = code_part(line);
        if is_fn_start(code) {
            since = i;
        }
        if !code.contains("todo!()") {
            continue;
        }
        let marks: Vec<usize> = (since..i)
            .filter(|&j| lines[j].trim_start().starts_with("// TODO"))
            .collect();
        match marks.as_slice() {
            [] => defects.push(format!(
                "{}: todo!() with no `{TODO_MARK}` hint before it",
                i + 1
            )),
            [j] => {
                let mark = lines[*j].trim_start();
                if !mark.starts_with(TODO_MARK) {
                    defects.push(format!(
                        "{}: write the hint as `{TODO_MARK} ...`, not `{mark}`",
                        j + 1
                    ));
                } else if !hint_has_text(&lines[*j..i]) {
                    defects.push(format!("{}: `{TODO_MARK}` with no hint after it", j + 1));
                }
            }
            _ => defects.push(format!(
                "{}: todo!() with {} `// TODO` comments before it (one per todo!(): split the \
                 stub, or make one comment of them)",
                i + 1,
                marks.len()
            )),
        }
        since = i + 1;
    }
    defects
}

fn is_fn_start(code: &str) -> bool {
    code.split_whitespace().any(|w| w == "fn")
}

/// Whether the comment block starting at `block[0]` (a `// TODO:` line) says something.
fn hint_has_text(block: &[&str]) -> bool {
    let first = block[0].trim_start().trim_start_matches(TODO_MARK).trim();
    !first.is_empty()
        || block[1..]
            .iter()
            .map(|l| l.trim_start())
            .take_while(|l| l.starts_with("//"))
            .any(|l| !l.trim_start_matches('/').trim().is_empty())
}

/// A function of a file: its normalised text, and whether it is a stub.
struct Function {
    text: String,
    stub: bool,
}

/// Every function of a file (free, in an `impl`, in a module), keyed by where it is.
fn functions(text: &str, crate_name: &str) -> Result<BTreeMap<String, Function>> {
    let file = syn::parse_file(text)?;
    let mut visitor = Functions {
        crate_name,
        scope: Vec::new(),
        out: BTreeMap::new(),
    };
    visitor.visit_file(&file);
    Ok(visitor.out)
}

struct Functions<'a> {
    crate_name: &'a str,
    scope: Vec<String>,
    out: BTreeMap<String, Function>,
}

impl Functions<'_> {
    fn add(&mut self, name: &syn::Ident, attrs: &[syn::Attribute], rest: TokenStream) {
        let mut tokens = TokenStream::new();
        for attr in attrs.iter().filter(|a| !a.path().is_ident("doc")) {
            attr.to_tokens(&mut tokens);
        }
        tokens.extend(rest);
        let stub = mentions_todo(tokens.clone());
        let key = self
            .scope
            .iter()
            .cloned()
            .chain([format!("fn {name}")])
            .collect::<Vec<_>>()
            .join(": ");
        let text = crate::api::rename_crate(tokens, self.crate_name).to_string();
        self.out.insert(key, Function { text, stub });
    }
}

impl<'ast> Visit<'ast> for Functions<'_> {
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        let mut rest = f.sig.to_token_stream();
        f.block.to_tokens(&mut rest);
        self.add(&f.sig.ident, &f.attrs, rest);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        let mut rest = f.sig.to_token_stream();
        f.block.to_tokens(&mut rest);
        self.add(&f.sig.ident, &f.attrs, rest);
    }

    fn visit_item_impl(&mut self, imp: &'ast syn::ItemImpl) {
        let self_ty = imp.self_ty.to_token_stream().to_string();
        let header = match &imp.trait_ {
            Some((_, path, _)) => format!("impl {} for {self_ty}", path.to_token_stream()),
            None => format!("impl {self_ty}"),
        };
        self.scope.push(header);
        syn::visit::visit_item_impl(self, imp);
        self.scope.pop();
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        self.scope.push(format!("mod {}", m.ident));
        syn::visit::visit_item_mod(self, m);
        self.scope.pop();
    }
}

/// Whether `tokens` call `todo!`.
fn mentions_todo(tokens: TokenStream) -> bool {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    trees.iter().enumerate().any(|(i, tree)| match tree {
        TokenTree::Ident(ident) => {
            ident == "todo"
                && matches!(trees.get(i + 1), Some(TokenTree::Punct(p)) if p.as_char() == '!')
        }
        TokenTree::Group(group) => mentions_todo(group.stream()),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hint_per_todo() {
        let ok = "fn a() {\n    // TODO: do it.\n    todo!()\n}\nfn b() {\n    // TODO:\n    // - stage 1: x\n    todo!()\n}\n";
        assert_eq!(hints(ok), Vec::<String>::new());
        let bare = "fn a() {\n    // TODO\n    todo!()\n}\n";
        assert_eq!(hints(bare).len(), 1, "{:?}", hints(bare));
        let none = "fn a() {\n    todo!()\n}\nfn b() {\n    // TODO:\n    todo!()\n}\n";
        assert_eq!(hints(none).len(), 2, "{:?}", hints(none));
        let two = "fn a() {\n    // TODO: x\n    // TODO: y\n    todo!()\n}\n";
        assert_eq!(hints(two).len(), 1);
        // A hint before the function belongs to no stub.
        let outside = "// TODO: x\nfn a() {\n    todo!()\n}\n";
        assert_eq!(hints(outside).len(), 1);
    }

    #[test]
    fn given_functions_are_the_solutions() {
        let sol = "/// Doc.\nfn given(x: u8) -> u8 { other_solution::f(x) + 1 }\nimpl S { fn stub() -> u8 { 2 } }";
        let ex =
            "fn given(x: u8) -> u8 { other::f(x) + 1 }\nimpl S { fn stub() -> u8 { todo!() } }";
        let (ex, sol) = (
            functions(ex, "other").unwrap(),
            functions(sol, "other_solution").unwrap(),
        );
        assert!(ex["impl S: fn stub"].stub);
        assert!(!ex["fn given"].stub);
        assert_eq!(ex["fn given"].text, sol["fn given"].text);
        let changed = functions("fn given(x: u8) -> u8 { x + 2 }", "other").unwrap();
        assert_ne!(changed["fn given"].text, sol["fn given"].text);
    }
}
