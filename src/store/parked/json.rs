//! How a kept job is written down: its slim JSON, less what every job
//! shares or its entry holds, deflated ([`super::deflate`]), and read back
//! whole.

use std::sync::OnceLock;

use kube::{Resource, ResourceExt};
use serde_json::{Map, Value};

use super::deflate::{InflateError, deflate, inflate};
use crate::api::{PendingJob, PendingJobSpec, PendingJobStatus};
use crate::store::uid;

/// Why kept bytes did not read back as a job.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReadError {
    #[error(transparent)]
    Inflate(#[from] InflateError),
    #[error("kept JSON is not a job: {0}")]
    Json(#[from] serde_json::Error),
}

/// `job` as kept: its JSON without `apiVersion` and `kind`, which every
/// job shares, its uid and namespace, which its entry holds, and the
/// spec's and status's fields that are `false`, 0 or their defaults (the
/// retry policy and method the API server filled in), which read back as
/// such. `spec.notBefore` keeps its full precision: a `Time` writes whole
/// seconds, and a job must never go back with an earlier one. Deflated.
pub(super) fn to_json(job: &PendingJob) -> Option<Box<[u8]>> {
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
    let (spec, status) = defaults();
    for (part, defaults) in [("spec", spec), ("status", status)] {
        if let Some(Value::Object(part)) = fields.get_mut(part) {
            part.retain(|_, field| !matches!(field, Value::Bool(false)) && field.as_u64() != Some(0));
            drop_defaults(part, defaults);
        }
    }
    deflate(&serde_json::to_vec(&value).ok()?)
}

/// The JSON of a spec and of a status that omit every field they may:
/// what each field reads back as when it is left out.
fn defaults() -> (&'static Value, &'static Value) {
    static DEFAULTS: OnceLock<(Value, Value)> = OnceLock::new();
    let (spec, status) = DEFAULTS.get_or_init(|| {
        let spec = serde_json::from_value::<PendingJobSpec>(serde_json::json!({"target": {}}))
            .and_then(serde_json::to_value)
            .unwrap_or(Value::Null);
        let status = serde_json::to_value(PendingJobStatus::default()).unwrap_or(Value::Null);
        (spec, status)
    });
    (spec, status)
}

/// Removes from `fields` each field equal to its default in `defaults`, and
/// within objects, their fields that are; an object itself stays (it may be
/// required). [`reads_back`] checks the result all the same.
fn drop_defaults(fields: &mut Map<String, Value>, defaults: &Value) {
    fields.retain(|name, field| match (field, defaults.get(name)) {
        (Value::Object(inner), Some(default @ Value::Object(_))) => {
            drop_defaults(inner, default);
            !(inner.is_empty() && default.as_object().is_some_and(Map::is_empty))
        }
        (field, Some(default)) => field != default,
        (_, None) => true,
    });
}

/// The job with `uid` in `namespace` kept as `bytes` by [`to_json`].
pub(super) fn from_json(bytes: &[u8], uid: u128, namespace: &str) -> Result<PendingJob, ReadError> {
    let mut value: Value = serde_json::from_slice(&inflate(bytes)?)?;
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
    Ok(serde_json::from_value(value)?)
}

/// Whether `bytes` read back as `job`, with `uid`.
pub(super) fn reads_back(bytes: &[u8], uid: u128, job: &PendingJob) -> bool {
    let namespace = job.namespace().unwrap_or_default();
    from_json(bytes, uid, &namespace)
        .is_ok_and(|back| back.metadata == job.metadata && back.spec == job.spec && back.status == job.status)
}
