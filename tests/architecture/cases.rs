//! The checker's own tests: each problem it names, on a small tree.

use super::MAX_LINES;
use super::checker::check;

/// A small tree for the checker's own tests: `files` beside a lib.rs.
fn tree(files: &[(&str, &str)]) -> Vec<(String, String)> {
    files.iter().map(|(p, s)| ((*p).to_owned(), (*s).to_owned())).collect()
}

#[test]
fn an_import_from_a_higher_folder_is_refused() {
    let problems = check(&tree(&[
        ("lib.rs", "pub mod api; pub mod job;"),
        ("api/mod.rs", "use crate::job::plan::decide;"),
        ("job/mod.rs", "pub mod plan;"),
        ("job/plan.rs", "pub fn decide() {}"),
    ]))
    .problems;
    assert!(
        problems.iter().any(|p| p.starts_with("api imports job::plan")),
        "{problems:?}"
    );
}

#[test]
fn folders_of_one_rank_may_not_import_each_other() {
    let problems = check(&tree(&[
        ("lib.rs", "pub mod delivery; pub mod leadership;"),
        (
            "delivery/mod.rs",
            "fn f() { let _ = crate::leadership::Term::default(); }",
        ),
        ("leadership/mod.rs", "pub type Term = u64;"),
    ]))
    .problems;
    assert!(
        problems.iter().any(|p| p.starts_with("delivery imports leadership")),
        "{problems:?}"
    );
}

#[test]
fn a_cycle_inside_a_folder_is_refused() {
    let problems = check(&tree(&[
        ("lib.rs", "pub mod job;"),
        ("job/mod.rs", "pub mod attempt; pub mod context;"),
        ("job/attempt.rs", "use super::context::Context; pub fn run() {}"),
        (
            "job/context.rs",
            "pub struct Context; fn f() { tracing::info!(\"{:?}\", super::attempt::run()); }",
        ),
    ]))
    .problems;
    assert!(
        problems.contains(&"import cycle among: job::attempt, job::context".to_owned()),
        "{problems:?}"
    );
}

#[test]
fn re_exports_are_followed_and_tests_are_ignored() {
    let problems = check(&tree(&[
        ("lib.rs", "pub mod api; pub mod job;"),
        (
            "api/mod.rs",
            "mod job_status; mod pending_job; pub use pending_job::{PendingJob}; pub use job_status::Phase; \
             #[cfg(test)] mod tests;",
        ),
        ("api/job_status.rs", "pub enum Phase { Pending }"),
        // Through the re-export to api::job_status, not to api itself: no cycle.
        (
            "api/pending_job.rs",
            "use crate::api::Phase; pub struct PendingJob(Phase); \
             #[cfg(test)] mod more { use crate::job::Thing; }",
        ),
        // Tests may use anything.
        ("api/tests.rs", "use crate::job::Thing;"),
        ("job/mod.rs", "use crate::api::PendingJob; pub struct Thing;"),
    ]))
    .problems;
    assert!(problems.is_empty(), "{problems:?}");
    let glob = check(&tree(&[
        ("lib.rs", "pub mod api;"),
        ("api/mod.rs", "mod a; pub use a::*;"),
        ("api/a.rs", ""),
    ]))
    .problems;
    assert!(glob.iter().any(|p| p.contains("re-export items by name")), "{glob:?}");
    let moved = check(&tree(&[
        ("lib.rs", "pub mod api;"),
        ("api/mod.rs", "#[cfg(test)] #[path = \"api_tests.rs\"] mod tests;"),
    ]))
    .problems;
    assert!(moved.iter().any(|p| p.contains("`#[path]` on mod tests")), "{moved:?}");
}

#[test]
fn names_one_letter_apart_and_long_files_are_refused() {
    let long = "// x\n".repeat(MAX_LINES + 1);
    let problems = check(&tree(&[
        ("lib.rs", "pub mod destination;"),
        ("destination/mod.rs", "pub mod destinations;"),
        ("destination/destinations.rs", &long),
    ]))
    .problems;
    assert!(
        problems
            .iter()
            .any(|p| p.contains("\"destination\" and \"destinations\" differ by one letter")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&format!("destinations.rs has {} lines", MAX_LINES + 1))),
        "{problems:?}"
    );
}
