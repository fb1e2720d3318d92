//! How fresh the read before a call must be: fresh enough for the promise,
//! and no fresher, so that the API server can serve it from its watch cache
//! instead of a quorum read of etcd.
//!
//! A read "not older than" resourceVersion X is served from the watch cache
//! once that cache has caught up with X. Before a call, the read must show:
//! - every status this instance wrote for the job in this term: X is the
//!   resourceVersion its last such write returned;
//! - everything written before the term began, by an earlier leader: X is the
//!   revision of a consistent list made when the term began.
//!
//! Any write of this term comes after the term began, so when both apply the
//! first one is the later. No two resourceVersions are ever compared.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use kube::Api;
use kube::api::ListParams;

use crate::crd::PendingJob;
use crate::fence::JobKey;
use crate::leader::Term;

/// What reads before calls must not be older than, per term and per job.
#[derive(Debug, Default)]
pub struct Freshness {
    term_start: tokio::sync::Mutex<Option<(Term, String)>>,
    written: Mutex<HashMap<JobKey, (Term, String)>>,
}

impl Freshness {
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

#[cfg(test)]
mod tests {
    use super::*;

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
