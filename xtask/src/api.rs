//! Comparing the public API of an exercise crate with its solution's, item by item.
//!
//! The learner's stubs must offer exactly the solution's public surface, or the solution's
//! documentation, the book and the suite would describe a different program. Bodies and doc
//! comments may differ; everything a caller can name may not.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use proc_macro2::{Group, Ident, TokenStream, TokenTree};
use quote::ToTokens;
use syn::{Attribute, ImplItem, Item, Visibility};

/// Every public item of a crate, keyed by `file: item name`, valued by its normalised text.
pub type Surface = BTreeMap<String, String>;

/// Reads the public surface of the crate whose sources are in `src`, writing `crate_name` as
/// `crate` so that two crates of different names compare equal.
pub fn surface(src: &Path, crate_name: &str) -> Result<Surface> {
    let mut out = Surface::new();
    for file in crate::walk::files_with_extension(src, "rs")? {
        let text = std::fs::read_to_string(&file)?;
        let syntax =
            syn::parse_file(&text).with_context(|| format!("parsing {}", file.display()))?;
        let rel = file
            .strip_prefix(src)
            .unwrap_or(&file)
            .display()
            .to_string();
        collect(&syntax.items, &rel, "", crate_name, &mut out);
    }
    Ok(out)
}

/// The differences between two surfaces, one line each; empty when they match.
pub fn diff(exercise: &Surface, solution: &Surface) -> Vec<String> {
    let mut out = Vec::new();
    for (key, sol) in solution {
        match exercise.get(key) {
            None => out.push(format!("missing from the exercise: {key}")),
            Some(ex) if ex != sol => out.push(format!(
                "differs: {key}\n    exercise: {ex}\n    solution: {sol}"
            )),
            Some(_) => {}
        }
    }
    for key in exercise.keys().filter(|k| !solution.contains_key(*k)) {
        out.push(format!("only in the exercise: {key}"));
    }
    out
}

fn is_pub(vis: &Visibility) -> bool {
    matches!(vis, Visibility::Public(_))
}

fn strip_docs(attrs: &mut Vec<Attribute>) {
    attrs.retain(|a| !a.path().is_ident("doc"));
}

fn text(tokens: impl ToTokens, crate_name: &str) -> String {
    rename_crate(tokens.to_token_stream(), crate_name).to_string()
}

/// Replaces the identifier `crate_name` where it starts a path (`heartbeat::protocol`) with
/// `crate`; a string, a longer name or a variable of the same name is left alone.
pub(crate) fn rename_crate(tokens: TokenStream, crate_name: &str) -> TokenStream {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    let starts_path = |i: usize| {
        matches!(
            (trees.get(i + 1), trees.get(i + 2)),
            (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b))) if a.as_char() == ':' && b.as_char() == ':'
        )
    };
    trees
        .iter()
        .enumerate()
        .map(|(i, tree)| match tree {
            TokenTree::Ident(ident) if *ident == crate_name && starts_path(i) => {
                TokenTree::Ident(Ident::new("crate", ident.span()))
            }
            TokenTree::Group(group) => {
                let inner = rename_crate(group.stream(), crate_name);
                let mut renamed = Group::new(group.delimiter(), inner);
                renamed.set_span(group.span());
                TokenTree::Group(renamed)
            }
            other => other.clone(),
        })
        .collect()
}

fn collect(items: &[Item], file: &str, prefix: &str, crate_name: &str, out: &mut Surface) {
    for item in items {
        let mut item = item.clone();
        let (name, public) = match &mut item {
            Item::Struct(i) => (i.ident.to_string(), is_pub(&i.vis)),
            Item::Enum(i) => (i.ident.to_string(), is_pub(&i.vis)),
            Item::Type(i) => (i.ident.to_string(), is_pub(&i.vis)),
            Item::Const(i) => (i.ident.to_string(), is_pub(&i.vis)),
            Item::Static(i) => (i.ident.to_string(), is_pub(&i.vis)),
            Item::Trait(i) => (i.ident.to_string(), is_pub(&i.vis)),
            Item::Use(i) => (text(&i.tree, crate_name), is_pub(&i.vis)),
            Item::Fn(f) => {
                if is_pub(&f.vis) {
                    let key = format!("{file}: {prefix}fn {}", f.sig.ident);
                    out.insert(key, text(&f.sig, crate_name));
                }
                continue;
            }
            Item::Mod(m) => {
                if is_pub(&m.vis) {
                    let name = format!("{prefix}{}::", m.ident);
                    out.insert(format!("{file}: mod {}", m.ident), "pub mod".into());
                    if let Some((_, inner)) = &m.content {
                        collect(inner, file, &name, crate_name, out);
                    }
                }
                continue;
            }
            Item::Impl(imp) => {
                collect_impl(imp, file, prefix, crate_name, out);
                continue;
            }
            _ => continue,
        };
        if !public {
            continue;
        }
        strip_item_docs(&mut item);
        out.insert(format!("{file}: {prefix}{name}"), text(&item, crate_name));
    }
}

fn strip_item_docs(item: &mut Item) {
    match item {
        Item::Struct(i) => {
            strip_docs(&mut i.attrs);
            for field in i.fields.iter_mut() {
                strip_docs(&mut field.attrs);
            }
        }
        Item::Enum(i) => {
            strip_docs(&mut i.attrs);
            for variant in &mut i.variants {
                strip_docs(&mut variant.attrs);
                for field in variant.fields.iter_mut() {
                    strip_docs(&mut field.attrs);
                }
            }
        }
        Item::Type(i) => strip_docs(&mut i.attrs),
        Item::Const(i) => strip_docs(&mut i.attrs),
        Item::Static(i) => strip_docs(&mut i.attrs),
        Item::Trait(i) => {
            strip_docs(&mut i.attrs);
            for inner in &mut i.items {
                if let syn::TraitItem::Fn(f) = inner {
                    strip_docs(&mut f.attrs);
                    f.default = None;
                }
            }
        }
        Item::Use(i) => strip_docs(&mut i.attrs),
        _ => {}
    }
}

fn collect_impl(
    imp: &syn::ItemImpl,
    file: &str,
    prefix: &str,
    crate_name: &str,
    out: &mut Surface,
) {
    let self_ty = text(&imp.self_ty, crate_name);
    let header = match &imp.trait_ {
        Some((_, path, _)) => format!("impl {} for {self_ty}", text(path, crate_name)),
        None => format!("impl {self_ty}"),
    };
    if imp.trait_.is_some() {
        // A trait implementation is public surface as a whole (callers can rely on it).
        out.insert(format!("{file}: {prefix}{header}"), header.clone());
        return;
    }
    for item in &imp.items {
        match item {
            ImplItem::Fn(f) if is_pub(&f.vis) => {
                let key = format!("{file}: {prefix}{header}: fn {}", f.sig.ident);
                out.insert(key, text(&f.sig, crate_name));
            }
            ImplItem::Const(c) if is_pub(&c.vis) => {
                let mut c = c.clone();
                strip_docs(&mut c.attrs);
                out.insert(
                    format!("{file}: {prefix}{header}: const {}", c.ident),
                    text(&c, crate_name),
                );
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn surface_of(code: &str, crate_name: &str) -> Surface {
        let mut out = Surface::new();
        collect(
            &syn::parse_file(code).unwrap().items,
            "lib.rs",
            "",
            crate_name,
            &mut out,
        );
        out
    }

    #[test]
    fn bodies_and_docs_may_differ_signatures_may_not() {
        let sol = surface_of(
            "/// Doc.\npub fn f(x: u8) -> u8 { x + 1 }\npub struct S { /// a\n pub a: u8, b: u8 }\nfn private() {}\nimpl S { pub fn g(&self) -> my_solution::T { 1 } fn h() {} }",
            "my_solution",
        );
        let ex = surface_of(
            "pub fn f(x: u8) -> u8 { todo!() }\npub struct S { pub a: u8, b: u8 }\nimpl S { pub fn g(&self) -> my::T { todo!() } }",
            "my",
        );
        assert_eq!(diff(&ex, &sol), Vec::<String>::new());
        let strings = surface_of("pub const M: &str = \"my_solution rules\";", "my_solution");
        assert_eq!(
            strings.values().next().unwrap(),
            "pub const M : & str = \"my_solution rules\" ;"
        );
        let wrong = surface_of(
            "pub fn f(x: u16) -> u8 { todo!() }\npub struct S { pub a: u8 }",
            "my",
        );
        let d = diff(&wrong, &sol);
        assert_eq!(d.len(), 3, "{d:#?}");
    }
}
