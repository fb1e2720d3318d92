//! What the controller's cache keeps of a job: only what decisions and calls
//! need.
//!
//! A reflector holds every job in memory. Payloads are kept apart, as
//! request bodies within a budget, and only for jobs with calls to make
//! ([`super::payloads`]). `managedFields` and the last-applied annotation (a
//! second copy of the payload) serve no decision, so neither is kept. A
//! finished job keeps little more than its phase.

use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::reflector::Store;

use super::payloads::Payloads;
use crate::api::{Destination, PendingJob};

/// The controller's cache: slim jobs, and the payloads of unfinished ones.
#[derive(Clone)]
pub struct JobCache {
    /// The jobs, as [`slim`] leaves them.
    pub store: Store<PendingJob>,
    /// Their payloads.
    pub payloads: Arc<Payloads>,
    /// The Destinations jobs refer to.
    pub destinations: Store<Destination>,
}

/// The annotation in which client-side `kubectl apply` keeps a copy of the object.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops from `job` what no decision reads.
pub fn slim(job: &mut PendingJob) {
    job.managed_fields_mut().clear();
    job.annotations_mut().remove(LAST_APPLIED);
    job.spec.payload = None;
    if let Some(status) = job.status.as_mut().filter(|s| s.phase.is_terminal()) {
        status.conditions.clear();
        status.last_error = None;
        job.spec.target.headers.clear();
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ManagedFieldsEntry, Time};

    use super::*;
    use crate::api::{PendingJobStatus, Phase};
    use crate::job::plan::{Facts, decide};

    fn job(phase: Phase) -> PendingJob {
        let mut job: PendingJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "pendingjob.dev/v1alpha1", "kind": "PendingJob",
            "metadata": {
                "name": "a", "namespace": "ns", "uid": "u",
                "annotations": {LAST_APPLIED: "{\"big\": true}", "team": "payments"},
            },
            "spec": {
                "target": {"url": "http://api.example/x", "headers": {"X-Trace": "t"}},
                "payload": {"big": "x".repeat(1000)},
            },
        }))
        .expect("job");
        job.metadata.managed_fields = Some(vec![ManagedFieldsEntry::default()]);
        job.status = Some(PendingJobStatus {
            phase,
            attempts: 2,
            last_error: Some("HTTP 503".into()),
            conditions: vec![Condition {
                type_: "Succeeded".into(),
                status: "False".into(),
                reason: "Retrying".into(),
                message: "m".into(),
                last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
                observed_generation: None,
            }],
            ..PendingJobStatus::default()
        });
        job
    }

    #[test]
    fn slim_keeps_what_decisions_read() {
        for phase in [Phase::Pending, Phase::Retrying, Phase::Succeeded, Phase::Failed] {
            let full = job(phase);
            let mut slimmed = full.clone();
            slim(&mut slimmed);
            assert!(slimmed.managed_fields().is_empty());
            assert_eq!(slimmed.annotations().len(), 1, "other annotations stay");
            assert_eq!(slimmed.spec.payload, None);
            assert_eq!(slimmed.spec.target.url, full.spec.target.url);
            assert_eq!(slimmed.uid(), full.uid());
            let (before, after) = (full.status.clone().unwrap(), slimmed.status.clone().unwrap());
            let now = jiff::Timestamp::now();
            assert_eq!(
                decide(&Facts::of(&slimmed, &after, None), now),
                decide(&Facts::of(&full, &before, None), now),
                "{phase:?}"
            );
            assert_eq!(after.phase, before.phase);
            assert_eq!(after.conditions.is_empty(), phase.is_terminal(), "{phase:?}");
            let headers_kept = slimmed.spec.target.headers == full.spec.target.headers;
            assert_eq!(
                headers_kept,
                !phase.is_terminal(),
                "calls still to make need the headers: {phase:?}"
            );
        }
    }
}
