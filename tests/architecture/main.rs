//! The architecture test: `src/` is in folders by concept, and imports run
//! one way, down the table below. It reads the crate's own source with `syn`
//! (every `use`, every path, and the paths inside macro calls; test code
//! excluded), follows re-exports to the module that defines an item, and
//! fails on:
//! - an import from a folder of the same or a higher rank;
//! - an import cycle between modules, within a folder too;
//! - a module outside the folders of the table, or a folder missing from it;
//! - two module names that differ by one letter, or a `#[path]` that hides
//!   where a module lives;
//! - a source file longer than [`MAX_LINES`].
//!
//! The binaries (`src/main.rs`, `src/bin/`) only wire things up and may use
//! every folder; they are not part of the graph.

mod cases;
mod checker;
mod graph;
mod parse;

use std::collections::BTreeSet;
use std::path::Path;

use checker::check;
use parse::module_of;

/// The allowed directions, bottom first: a module may import from a folder
/// of a lower rank, and from the modules of its own folder as long as no
/// cycle forms. Folders of one rank may not import each other.
const LAYERS: &[(&str, u8)] = &[
    // The resources' types, names and limits: a leaf.
    ("api", 0),
    // Terms, the Lease campaign, the election handle.
    ("leadership", 1),
    // One safe HTTP call: clients, egress, outcomes, slots, pacing, breakers.
    ("delivery", 1),
    // Credentials, routing, the Destination controller.
    ("destination", 2),
    // What the watches tell us: job cache, payloads, listing, freshness.
    ("store", 3),
    // Metrics, gauges, logging, the admin server.
    ("observe", 4),
    // The PendingJob controller.
    ("job", 5),
    // API 1, the HTTP intake.
    ("intake", 5),
    // kubectl pj: reads what the operator records; imports only api.
    ("plugin", 5),
    // The process: wires everything.
    ("operator", 6),
];

/// Longest source file, in lines.
const MAX_LINES: usize = 400;

fn source_tree(root: &Path) -> Vec<(String, String)> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|entry| entry.expect("directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path
                    .strip_prefix(root)
                    .expect("under src")
                    .to_string_lossy()
                    .into_owned();
                let source =
                    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
                out.push((relative, source));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn src_follows_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = source_tree(&src);
    let report = check(&files);
    let problems = &report.problems;
    assert!(
        problems.is_empty(),
        "the architecture is broken:\n  {}",
        problems.join("\n  ")
    );
    // The checker sees the imports it must: a few known ones, through
    // `use` lists, re-exports and `super::`.
    for (from, to) in [
        ("job::attempt", "delivery::call"),
        ("job::attempt", "api::pending_job"),
        ("job::reconciler", "job::attempt"),
        ("destination::route", "delivery::slots"),
        ("operator", "job::reconciler"),
        ("leadership::election", "leadership::term"),
    ] {
        let path = |m: &str| m.split("::").map(str::to_owned).collect::<Vec<_>>();
        assert!(
            report
                .edges
                .get(&path(from))
                .is_some_and(|seen| seen.contains(&path(to))),
            "the checker missed {from} -> {to}; it saw {:?}",
            report.edges.get(&path(from))
        );
    }
    // The table and the tree name the same folders.
    let folders: BTreeSet<String> = files
        .iter()
        .filter_map(|(path, _)| module_of(path)?.first().cloned())
        .collect();
    let table: BTreeSet<String> = LAYERS.iter().map(|(name, _)| (*name).to_owned()).collect();
    assert_eq!(folders, table, "src/ folders and the LAYERS table differ");
}
