//! How fresh the job must be before a call: fresh enough for the promise, and
//! no fresher, so that the controller's own cache serves it when it can and
//! the API server's watch cache otherwise, never a quorum read of etcd.
//!
//! Before a call, the job must show, as of resourceVersion X (its floor):
//! - every status this instance wrote for it in this term: X is the
//!   resourceVersion its last such write returned;
//! - everything written before the term began, by an earlier leader: X is the
//!   revision of a consistent list made when the term began.
//!
//! Any write of this term comes after the term began, so when both apply the
//! first one is the later.
//!
//! The controller's cache is fresh enough for a job when it holds the job at
//! resourceVersion X or later, or when its watch has delivered some job at X
//! or later: a watch delivers changes in order, so the cache then holds every
//! change up to X (see [`Freshness::observe`]). Since
//! Kubernetes 1.35 resourceVersions of one resource are comparable (KEP-5504:
//! positive decimal integers, ordered as numbers); [`at_least`] compares them
//! that way and answers `None` for any other form, and then the job is read
//! "not older than" X, which the API server serves from its watch cache once
//! that has caught up with X.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use kube::api::ListParams;
use kube::runtime::watcher::Event;
use kube::{Api, ResourceExt};

use crate::api::{JobKey, PendingJob};
use crate::leadership::term::Term;

/// What reads before calls must not be older than, per term and per job,
/// and how far the controller's cache has caught up.
#[derive(Debug, Default)]
pub struct Freshness {
    term_start: tokio::sync::Mutex<Option<(Term, String)>>,
    written: Mutex<HashMap<JobKey, (Term, String)>>,
    watched: Mutex<Watched>,
    /// Set while status writes fail: the cache answers nothing then.
    writes_failing: AtomicBool,
}

/// The latest resourceVersion the cache is known to hold every change up to.
#[derive(Debug, Default)]
struct Watched {
    applied: Option<String>,
    /// Of a list under way: its latest object, held once the list is done.
    listing: Option<String>,
}

impl Freshness {
    /// Notes how far the cache has caught up, from an `event` the reflector
    /// has just applied: a watched change, or the end of a list, which
    /// replaces the cache with a state at least as recent as its latest object.
    pub fn observe(&self, event: &Event<PendingJob>) {
        let mut watched = self.watched.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            Event::Apply(job) | Event::Delete(job) => {
                latest(&mut watched.applied, job.resource_version());
            }
            Event::Init => watched.listing = None,
            Event::InitApply(job) => latest(&mut watched.listing, job.resource_version()),
            Event::InitDone => {
                let listed = watched.listing.take();
                latest(&mut watched.applied, listed);
            }
        }
    }

    /// Notes whether the API server answered a status write (`landed`), or
    /// the write failed. While writes fail, the cache is
    /// never fresh enough: every call then needs a read first, which fails
    /// as well while the API server is unreachable. So an outage stops new
    /// calls whose outcome could not be recorded, instead of letting a
    /// fast-failing write free the slot for the next call from the cache.
    pub fn write_landed(&self, landed: bool) {
        self.writes_failing.store(!landed, Ordering::Relaxed);
    }

    /// Whether the cache holds a job, cached at `version`, as of `floor`.
    pub fn cached_as_of(&self, version: Option<&str>, floor: &str) -> bool {
        if self.writes_failing.load(Ordering::Relaxed) {
            return false;
        }
        let watched = self.watched.lock().unwrap_or_else(PoisonError::into_inner);
        [version, watched.applied.as_deref()]
            .into_iter()
            .flatten()
            .any(|version| at_least(version, floor) == Some(true))
    }

    /// The resourceVersion a read of `job` in `term` must not be older than;
    /// `scope` lists the jobs the controller watches, once per term.
    pub async fn floor(&self, scope: &Api<PendingJob>, job: &JobKey, term: Term) -> Result<String, kube::Error> {
        if let Some(written) = self.written(job, term) {
            return Ok(written);
        }
        let mut start = self.term_start.lock().await;
        if let Some((started, revision)) = start.as_ref()
            && *started == term
        {
            return Ok(revision.clone());
        }
        // A consistent list answers with the store's current revision.
        let list = scope.list_metadata(&ListParams::default().limit(1)).await?;
        let revision = list.metadata.resource_version.unwrap_or_default();
        *start = Some((term, revision.clone()));
        Ok(revision)
    }

    /// Remembers that a write of `job` in `term` left it at `resource_version`.
    pub fn wrote(&self, job: JobKey, term: Term, resource_version: String) {
        self.map().insert(job, (term, resource_version));
    }

    /// Forgets a job that was deleted.
    pub fn forget(&self, job: &JobKey) {
        self.map().remove(job);
    }

    fn written(&self, job: &JobKey, term: Term) -> Option<String> {
        self.map()
            .get(job)
            .filter(|(written_in, _)| *written_in == term)
            .map(|(_, resource_version)| resource_version.clone())
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<JobKey, (Term, String)>> {
        self.written.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Raises `latest` to `version` when that is later.
fn latest(latest: &mut Option<String>, version: Option<String>) {
    if let Some(version) = version
        && latest
            .as_deref()
            .is_none_or(|seen| at_least(&version, seen) == Some(true))
    {
        *latest = Some(version);
    }
}

/// Whether resourceVersion `version` is `floor` or later; `None` when either
/// is not a well-formed comparable resourceVersion (KEP-5504).
pub fn at_least(version: &str, floor: &str) -> Option<bool> {
    fn well_formed(rv: &str) -> bool {
        !rv.is_empty() && !rv.starts_with('0') && rv.bytes().all(|b| b.is_ascii_digit())
    }
    if !well_formed(version) || !well_formed(floor) {
        return None;
    }
    // Without leading zeros, a longer number is larger; equal lengths compare
    // digit by digit.
    Some((version.len(), version) >= (floor.len(), floor))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(version: &str) -> PendingJob {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "pendingjob.dev/v1alpha1", "kind": "PendingJob",
            "metadata": {"name": "a", "resourceVersion": version},
            "spec": {"target": {"url": "http://api.example/x"}},
        }))
        .expect("job")
    }

    #[test]
    fn the_cache_is_fresh_as_of_its_own_version_or_the_latest_change_watched() {
        let freshness = Freshness::default();
        assert!(freshness.cached_as_of(Some("12"), "12"));
        assert!(!freshness.cached_as_of(Some("11"), "12"));
        assert!(!freshness.cached_as_of(None, "12"));
        freshness.observe(&Event::Apply(at("20")));
        assert!(
            freshness.cached_as_of(Some("11"), "20"),
            "the watch has delivered every change up to 20"
        );
        assert!(!freshness.cached_as_of(Some("11"), "21"));
        freshness.observe(&Event::Delete(at("19")));
        assert!(freshness.cached_as_of(None, "20"), "the latest change never goes back");
        assert!(
            !freshness.cached_as_of(Some("opaque"), "opaque"),
            "unknown forms are never fresh"
        );
    }

    #[test]
    fn a_list_counts_once_it_is_done() {
        let freshness = Freshness::default();
        freshness.observe(&Event::Init);
        freshness.observe(&Event::InitApply(at("30")));
        freshness.observe(&Event::InitApply(at("25")));
        assert!(
            !freshness.cached_as_of(None, "30"),
            "the cache still holds the previous list"
        );
        freshness.observe(&Event::InitDone);
        assert!(freshness.cached_as_of(None, "30"));
        assert!(!freshness.cached_as_of(None, "31"));
    }

    #[test]
    fn resource_versions_compare_as_numbers_of_any_length() {
        let cases = [
            ("42", "42", Some(true)),
            ("43", "42", Some(true)),
            ("41", "42", Some(false)),
            ("100", "99", Some(true)),
            ("99", "100", Some(false)),
            (
                "123456789012345678901234567890",
                "123456789012345678901234567889",
                Some(true),
            ),
            ("", "1", None),
            ("1", "", None),
            ("0", "1", None),
            ("007", "7", None),
            ("12a", "1", None),
            ("-1", "1", None),
            ("1", "opaque/v2", None),
        ];
        for (version, floor, expected) in cases {
            assert_eq!(at_least(version, floor), expected, "{version} >= {floor}");
        }
    }

    #[test]
    fn a_write_sets_the_floor_of_its_job_for_its_term_only() {
        let freshness = Freshness::default();
        let job = ("ns".to_owned(), "a".to_owned());
        assert_eq!(freshness.written(&job, 1), None);
        freshness.wrote(job.clone(), 1, "42".into());
        assert_eq!(freshness.written(&job, 1).as_deref(), Some("42"));
        assert_eq!(freshness.written(&job, 2), None, "a new term starts from its own list");
        assert_eq!(freshness.written(&("ns".to_owned(), "b".to_owned()), 1), None);
        freshness.forget(&job);
        assert_eq!(freshness.written(&job, 1), None);
    }
}
