//! What the controller's cache keeps of a job: only what decisions and calls
//! need.
//!
//! A reflector holds every job in memory, so what it holds must not follow
//! what tenants write. Of the metadata it keeps only what the operator reads
//! (name, namespace, uid, resourceVersion, generation, creation and deletion
//! times, and the redrive annotation, bounded); labels, other annotations,
//! finalizers, owner references and `managedFields` are dropped. Payloads
//! and headers are kept apart, within a budget, and only for jobs with calls
//! to make ([`super::payloads`]). A finished job keeps little more than its
//! phase.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::Store;

use super::finished::Finished;
use super::parked::Parked;
use super::payloads::Payloads;
use crate::api::{Destination, PendingJob, RETRY_ANNOTATION};

/// The controller's cache: slim jobs, and the payloads of unfinished ones.
#[derive(Clone)]
pub struct JobCache {
    /// The jobs, as [`slim`] leaves them, but those kept in `finished`
    /// and `parked`.
    pub store: Store<PendingJob>,
    /// Finished jobs that need nothing but their deletion, kept compact.
    pub finished: Arc<Finished>,
    /// Unfinished jobs that wait long, kept serialized.
    pub parked: Arc<Parked>,
    /// Their payloads.
    pub payloads: Arc<Payloads>,
    /// The Destinations jobs refer to.
    pub destinations: Store<Destination>,
}

/// The longest redrive annotation kept as it is; a longer one is kept as its
/// SHA-256, which tells a new value from the last as well.
pub const MAX_RETRY_VALUE: usize = 253;

/// Drops from `job` what no decision reads.
pub fn slim(job: &mut PendingJob) {
    let mut meta = std::mem::take(&mut job.metadata);
    let retry = meta
        .annotations
        .take()
        .and_then(|mut annotations| annotations.remove(RETRY_ANNOTATION))
        .map(|value| bounded(&value));
    job.metadata = ObjectMeta {
        annotations: retry.map(|value| BTreeMap::from([(RETRY_ANNOTATION.to_owned(), value)])),
        ..read_metadata(meta)
    };
    job.spec.payload = None;
    job.spec.target.headers.clear();
    if let Some(status) = job.status.as_mut().filter(|s| s.phase.is_terminal()) {
        status.conditions.clear();
        status.last_error = None;
    }
}

/// Drops from `destination` the metadata nothing reads (labels,
/// annotations, `managedFields` and the like): 10,000 Destinations applied
/// with `kubectl apply` would otherwise each keep a second copy of their
/// spec in an annotation.
pub fn slim_destination(destination: &mut Destination) {
    destination.metadata = read_metadata(std::mem::take(&mut destination.metadata));
}

/// The metadata the operator reads of any object: name, namespace, uid,
/// resourceVersion, generation, creation and deletion times.
fn read_metadata(meta: ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        resource_version: meta.resource_version,
        generation: meta.generation,
        creation_timestamp: meta.creation_timestamp,
        deletion_timestamp: meta.deletion_timestamp,
        ..ObjectMeta::default()
    }
}

/// `value`, or `sha256:<hex>` of it when it is longer than [`MAX_RETRY_VALUE`].
fn bounded(value: &str) -> String {
    if value.len() <= MAX_RETRY_VALUE {
        return value.to_owned();
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, value.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ManagedFieldsEntry, Time};
    use kube::ResourceExt;

    use super::*;
    use crate::api::{PendingJobStatus, Phase};
    use crate::job::plan::{Facts, decide};

    fn job(phase: Phase) -> PendingJob {
        let mut job: PendingJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "pendingjob.dev/v1alpha1", "kind": "PendingJob",
            "metadata": {
                "name": "a", "namespace": "ns", "uid": "u",
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"big\": true}",
                                "team": "payments", RETRY_ANNOTATION: "1"},
                "labels": {"team": "payments"},
                "finalizers": ["example.com/hold"],
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
            assert_eq!(
                slimmed.annotations(),
                &BTreeMap::from([(RETRY_ANNOTATION.to_owned(), "1".to_owned())]),
                "only the redrive annotation stays"
            );
            assert!(slimmed.labels().is_empty() && slimmed.finalizers().is_empty());
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
            assert!(
                slimmed.spec.target.headers.is_empty(),
                "headers are kept with the payload"
            );
        }
    }

    #[test]
    fn a_long_redrive_value_is_kept_as_its_digest() {
        let mut job = job(Phase::Failed);
        let long = "x".repeat(200_000);
        job.annotations_mut().insert(RETRY_ANNOTATION.into(), long.clone());
        let mut other = job.clone();
        other
            .annotations_mut()
            .insert(RETRY_ANNOTATION.into(), long.clone() + "y");
        slim(&mut job);
        slim(&mut other);
        let kept = &job.annotations()[RETRY_ANNOTATION];
        assert!(kept.starts_with("sha256:") && kept.len() == 71, "{kept}");
        assert_ne!(
            kept,
            &other.annotations()[RETRY_ANNOTATION],
            "a new value is a new redrive"
        );
        assert_eq!(bounded(&"y".repeat(MAX_RETRY_VALUE)), "y".repeat(MAX_RETRY_VALUE));
    }
}
