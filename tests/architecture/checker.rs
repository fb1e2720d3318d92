//! The checker: reads a tree of sources, builds the module graph and
//! reports every problem the architecture test names.

use std::collections::{BTreeMap, BTreeSet};

use syn::visit::Visit;

use super::graph::{cycles, distance};
use super::parse::{Collector, Parsed, module_of};
use super::{LAYERS, MAX_LINES};

/// A module: its path from the crate root (`["job", "attempt"]`).
pub type Module = Vec<String>;

/// The module `path` names: the longest module prefix, followed through
/// re-exports to where the item is defined.
fn resolve(path: &[String], modules: &BTreeSet<Module>, parsed: &BTreeMap<Module, Parsed>) -> Option<Module> {
    let mut path = path.to_vec();
    for _ in 0..16 {
        let module = (0..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|prefix| modules.contains(prefix))?;
        let next = path.get(module.len());
        match next.and_then(|name| parsed.get(&module)?.exports.get(name)) {
            Some(origin) => {
                let mut followed = origin.clone();
                followed.extend(path[module.len() + 1..].iter().cloned());
                path = followed;
            }
            None => return Some(module),
        }
    }
    None
}

fn layer(module: &Module) -> Option<(&'static str, u8)> {
    let folder = module.first()?;
    LAYERS.iter().copied().find(|(name, _)| name == folder)
}

/// What the checker found in a tree.
pub struct Report {
    /// Every problem, one line each.
    pub problems: Vec<String>,
    /// Who imports whom, module by module (outside tests).
    pub edges: BTreeMap<Module, BTreeSet<Module>>,
}

/// Checks the tree of `files` (paths relative to `src/`, and sources).
pub fn check(files: &[(String, String)]) -> Report {
    let mut problems = Vec::new();
    let sources: BTreeMap<Module, &str> = files
        .iter()
        .filter_map(|(path, source)| Some((module_of(path)?, source.as_str())))
        .collect();
    let mut modules: BTreeSet<Module> = sources.keys().cloned().collect();
    let mut parsed: BTreeMap<Module, Parsed> = BTreeMap::new();
    for (module, source) in &sources {
        let file = match syn::parse_file(source) {
            Ok(file) => file,
            Err(e) => {
                problems.push(format!("{}: does not parse: {e}", module.join("::")));
                continue;
            }
        };
        let mut collector = Collector {
            module,
            modules: &modules,
            parsed: Parsed::default(),
        };
        collector.visit_file(&file);
        parsed.insert(module.clone(), collector.parsed);
    }
    // Test-only modules, and everything under them, are not part of the graph.
    let test_only: Vec<Module> = parsed
        .iter()
        .flat_map(|(module, p)| {
            p.test_children.iter().map(move |child| {
                let mut path = module.clone();
                path.push(child.clone());
                path
            })
        })
        .collect();
    modules.retain(|m| !test_only.iter().any(|t| m.starts_with(t)));
    parsed.retain(|m, _| modules.contains(m));

    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, p) in &parsed {
        problems.extend(p.problems.iter().cloned());
        if !module.is_empty() && layer(module).is_none() {
            problems.push(format!(
                "{}: every module belongs to a folder of the LAYERS table",
                module.join("::")
            ));
        }
        for reference in &p.references {
            let Some(target) = resolve(reference, &modules, &parsed) else {
                continue;
            };
            if target == *module || target.is_empty() {
                continue;
            }
            edges.entry(module.clone()).or_default().insert(target);
        }
    }
    for (from, targets) in &edges {
        for to in targets {
            let (Some((from_folder, from_rank)), Some((to_folder, to_rank))) = (layer(from), layer(to)) else {
                continue;
            };
            if from_folder != to_folder && to_rank >= from_rank {
                problems.push(format!(
                    "{} imports {}: {from_folder}/ (rank {from_rank}) may import only folders below it, \
                     and {to_folder}/ has rank {to_rank}",
                    from.join("::"),
                    to.join("::")
                ));
            }
        }
    }
    for cycle in cycles(&modules, &edges) {
        let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
        problems.push(format!("import cycle among: {}", names.join(", ")));
    }
    let mut names = BTreeSet::new();
    for module in &modules {
        names.extend(module.iter().cloned());
    }
    for a in &names {
        for b in names.range::<String, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)) {
            if distance(a, b) == 1 {
                problems.push(format!("module names {a:?} and {b:?} differ by one letter"));
            }
        }
    }
    for (path, source) in files {
        let lines = source.lines().count();
        if lines > MAX_LINES {
            problems.push(format!("src/{path} has {lines} lines; split it (at most {MAX_LINES})"));
        }
    }
    Report { problems, edges }
}
