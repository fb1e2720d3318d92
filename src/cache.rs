//! What the controller's cache keeps of a job: only what decisions need.
//!
//! A reflector holds every job in memory. A job's payload is read afresh
//! before each call ([`crate::attempt`]), and `managedFields` and the
//! last-applied annotation (a second copy of the payload) serve no decision,
//! so none of them is kept. A finished job keeps little more than its phase.

use kube::ResourceExt;

use crate::crd::PendingJob;

/// The annotation in which client-side `kubectl apply` keeps a copy of the object.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops from `job` what no decision reads.
pub fn slim(job: &mut PendingJob) {
    job.managed_fields_mut().clear();
    job.annotations_mut().remove(LAST_APPLIED);
    job.spec.payload = None;
    job.spec.target.headers.clear();
    if let Some(status) = job.status.as_mut().filter(|s| s.phase.is_terminal()) {
        status.conditions.clear();
        status.last_error = None;
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ManagedFieldsEntry, Time};

    use super::*;
    use crate::crd::{PendingJobStatus, Phase};
    use crate::lifecycle::decide;

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
            assert_eq!(decide(&after, now), decide(&before, now), "{phase:?}");
            assert_eq!(after.phase, before.phase);
            assert_eq!(after.conditions.is_empty(), phase.is_terminal(), "{phase:?}");
        }
    }
}
