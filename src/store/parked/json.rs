//! How a kept job is written down: its slim JSON, less what every job
//! shares or its entry holds, and read back whole.

use kube::{Resource, ResourceExt};
use serde_json::Value;

use crate::api::PendingJob;
use crate::store::uid;

/// `job` as kept: its JSON without `apiVersion` and `kind`, which every
/// job shares, its uid and namespace, which its entry holds, and the
/// spec's and status's fields that are `false` or 0, which read back as
/// their defaults. `spec.notBefore` keeps its
/// full precision: a `Time` writes whole seconds, and a job must never go
/// back with an earlier one.
pub(super) fn to_json(job: &PendingJob) -> Option<Vec<u8>> {
    let mut value = serde_json::to_value(job).ok()?;
    let fields = value.as_object_mut()?;
    fields.remove("apiVersion");
    fields.remove("kind");
    if let Some(Value::Object(metadata)) = fields.get_mut("metadata") {
        metadata.remove("uid");
        metadata.remove("namespace");
    }
    if let Some(not_before) = &job.spec.not_before {
        *fields.get_mut("spec")?.get_mut("notBefore")? = not_before.0.to_string().into();
    }
    for part in ["spec", "status"] {
        if let Some(Value::Object(part)) = fields.get_mut(part) {
            part.retain(|_, field| !matches!(field, Value::Bool(false)) && field.as_u64() != Some(0));
        }
    }
    serde_json::to_vec(&value).ok()
}

/// The job with `uid` in `namespace` kept as `bytes` by [`to_json`].
pub(super) fn from_json(bytes: &[u8], uid: u128, namespace: &str) -> serde_json::Result<PendingJob> {
    let mut value: Value = serde_json::from_slice(bytes)?;
    if let Some(fields) = value.as_object_mut() {
        fields.insert("apiVersion".into(), PendingJob::api_version(&()).into());
        fields.insert("kind".into(), PendingJob::kind(&()).into());
        if let Some(Value::Object(metadata)) = fields.get_mut("metadata") {
            metadata.insert("uid".into(), uid::spell(uid).into());
            if !namespace.is_empty() {
                metadata.insert("namespace".into(), namespace.into());
            }
        }
    }
    serde_json::from_value(value)
}

/// Whether `bytes` read back as `job`, with `uid`.
pub(super) fn reads_back(bytes: &[u8], uid: u128, job: &PendingJob) -> bool {
    let namespace = job.namespace().unwrap_or_default();
    from_json(bytes, uid, &namespace)
        .is_ok_and(|back| back.metadata == job.metadata && back.spec == job.spec && back.status == job.status)
}
