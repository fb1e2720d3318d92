//! Reading one module: the paths it names and the items it re-exports,
//! test code excluded.

use std::collections::{BTreeMap, BTreeSet};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

use super::checker::Module;

/// What one module says of itself.
#[derive(Default)]
pub struct Parsed {
    /// Items it re-exports (`pub use`): name -> the absolute path it stands for.
    pub exports: BTreeMap<String, Vec<String>>,
    /// Every crate-relative path it names, made absolute.
    pub references: BTreeSet<Vec<String>>,
    /// Child modules it declares for tests only (`#[cfg(test)] mod x;`).
    pub test_children: BTreeSet<String>,
    /// Problems found while reading it.
    pub problems: Vec<String>,
}

/// The module a file under `src/` holds, or `None` for the binaries.
pub fn module_of(relative: &str) -> Option<Module> {
    let relative = relative.strip_suffix(".rs")?;
    if relative == "main" || relative.starts_with("bin/") {
        return None;
    }
    let mut parts: Vec<String> = relative.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    Some(parts)
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg")
            && matches!(&attr.meta, syn::Meta::List(list) if list.tokens.to_string().trim() == "test")
    })
}

fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    use syn::Item;
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

/// Collects the paths of one module, skipping test code.
pub struct Collector<'a> {
    pub module: &'a Module,
    /// Every module of the crate, to tell a child module from an outside crate.
    pub modules: &'a BTreeSet<Module>,
    pub parsed: Parsed,
}

impl Collector<'_> {
    /// `segments` made absolute, when they name something of this crate.
    fn absolute(&self, segments: &[String]) -> Option<Vec<String>> {
        let (first, rest) = segments.split_first()?;
        let mut base = match first.as_str() {
            "crate" => Vec::new(),
            "self" => self.module.clone(),
            "super" => {
                let mut base = self.module.clone();
                let mut rest = rest;
                base.pop()?;
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop()?;
                    rest = &rest[1..];
                }
                base.extend(rest.iter().cloned());
                return Some(base);
            }
            // A child module, named without `self::` (2018 paths).
            name => {
                let mut child = self.module.clone();
                child.push(name.to_owned());
                if !self.modules.contains(&child) {
                    return None;
                }
                child.extend(rest.iter().cloned());
                return Some(child);
            }
        };
        base.extend(rest.iter().cloned());
        Some(base)
    }

    fn reference(&mut self, segments: &[String]) {
        if let Some(path) = self.absolute(segments) {
            self.parsed.references.insert(path);
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree, exported: bool) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree, exported);
                prefix.pop();
            }
            syn::UseTree::Name(n) => self.use_leaf(prefix, &n.ident, &n.ident, exported),
            syn::UseTree::Rename(r) => self.use_leaf(prefix, &r.ident, &r.rename, exported),
            syn::UseTree::Glob(_) => {
                if exported {
                    self.parsed.problems.push(format!(
                        "{}: `pub use {}::*`: re-export items by name, so imports can be followed",
                        self.module.join("::"),
                        prefix.join("::")
                    ));
                }
                let path = prefix.clone();
                self.reference(&path);
            }
            syn::UseTree::Group(g) => {
                for tree in &g.items {
                    self.use_tree(prefix, tree, exported);
                }
            }
        }
    }

    fn use_leaf(&mut self, prefix: &[String], ident: &syn::Ident, name: &syn::Ident, exported: bool) {
        let mut path = prefix.to_vec();
        // `use a::b::{self}` names `a::b`.
        if ident != "self" {
            path.push(ident.to_string());
        }
        let Some(absolute) = self.absolute(&path) else {
            return;
        };
        if exported {
            let name = if ident == "self" && name == "self" {
                prefix.last().cloned().unwrap_or_default()
            } else {
                name.to_string()
            };
            self.parsed.exports.insert(name, absolute.clone());
        }
        self.parsed.references.insert(absolute);
    }

    /// Paths inside a macro call, which `syn` does not parse: any run of
    /// `ident :: ident …` in its tokens.
    fn tokens(&mut self, tokens: TokenStream) {
        let mut run: Vec<String> = Vec::new();
        let mut colons = 0;
        for token in tokens {
            match token {
                TokenTree::Ident(ident) if run.is_empty() || colons == 2 => {
                    run.push(ident.to_string());
                    colons = 0;
                }
                TokenTree::Punct(p) if p.as_char() == ':' && !run.is_empty() && colons < 2 => colons += 1,
                other => {
                    self.flush(&mut run);
                    colons = 0;
                    if let TokenTree::Group(group) = other {
                        self.tokens(group.stream());
                    } else if let TokenTree::Ident(ident) = other {
                        run.push(ident.to_string());
                    }
                }
            }
        }
        self.flush(&mut run);
    }

    fn flush(&mut self, run: &mut Vec<String>) {
        if run.len() > 1 {
            let segments = std::mem::take(run);
            self.reference(&segments);
        }
        run.clear();
    }
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        if let syn::Item::Mod(m) = item
            && m.attrs.iter().any(|a| a.path().is_ident("path"))
        {
            self.parsed.problems.push(format!(
                "{}: `#[path]` on mod {}: lay files out as their modules (folder/mod.rs, folder/tests.rs)",
                self.module.join("::"),
                m.ident
            ));
        }
        if is_cfg_test(item_attrs(item)) {
            if let syn::Item::Mod(m) = item
                && m.content.is_none()
            {
                self.parsed.test_children.insert(m.ident.to_string());
            }
            return;
        }
        syn::visit::visit_item(self, item);
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        let exported = !matches!(item.vis, syn::Visibility::Inherited);
        self.use_tree(&mut Vec::new(), &item.tree, exported);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if segments.len() > 1 {
            self.reference(&segments);
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }
}
