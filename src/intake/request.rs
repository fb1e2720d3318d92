//! The pure part of the intake: which job a request makes, under which
//! name, and whether a retried request is the same one.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use ring::digest::{SHA256, digest};

use crate::api::{DestinationRef, Method, PendingJob, PendingJobSpec, RetryPolicy, Target};
use crate::delivery::trace_context::TraceContext;

/// Who created a job through the intake (the TokenReview's username).
pub const CREATED_BY: &str = "pendingjob.dev/created-by";
/// The client's Idempotency-Key, as sent.
pub const IDEMPOTENCY_KEY: &str = "pendingjob.dev/idempotency-key";
/// SHA-256 of what the request asked for: a retry must ask for the same.
pub const REQUEST_DIGEST: &str = "pendingjob.dev/request-sha256";
/// Name prefix of the jobs the intake creates.
const PREFIX: &str = "intake-";

/// What a POST asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRequest {
    /// The job's namespace.
    pub namespace: String,
    /// The Destination to call.
    pub destination: String,
    /// Path appended to the destination's URL; none calls the URL itself.
    pub path: Option<String>,
    /// HTTP method.
    pub method: Method,
    /// No attempt before this time.
    pub not_before: Option<Time>,
    /// The client's Idempotency-Key.
    pub idempotency_key: Option<String>,
    /// The payload, as sent.
    pub payload: serde_json::Value,
    /// The trace the job's calls continue (not part of what was asked: a
    /// retry in another trace is the same request).
    pub trace: Option<TraceContext>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl JobRequest {
    /// This request, its job continuing `trace`.
    pub fn traced(self, trace: Option<TraceContext>) -> Self {
        Self { trace, ..self }
    }

    /// The job's name: fixed by the Idempotency-Key (with the namespace and
    /// destination), so a retried POST names the same job; `None` lets the
    /// API server generate one.
    pub fn name(&self) -> Option<String> {
        let key = self.idempotency_key.as_ref()?;
        let scoped = format!("{}\n{}\n{key}", self.namespace, self.destination);
        let sum = digest(&SHA256, scoped.as_bytes());
        Some(format!("{PREFIX}{}", &hex(sum.as_ref())[..40]))
    }

    /// SHA-256 of everything the request asks for, payload included.
    pub fn digest(&self) -> String {
        let asked = serde_json::json!({
            "destination": self.destination,
            "path": self.path,
            "method": self.method,
            "notBefore": self.not_before,
            "payload": self.payload,
        });
        hex(digest(&SHA256, asked.to_string().as_bytes()).as_ref())
    }

    /// The job to create, recording `user` as its creator.
    pub fn job(&self, user: &str) -> PendingJob {
        let mut annotations = BTreeMap::from([
            (CREATED_BY.to_owned(), user.to_owned()),
            (REQUEST_DIGEST.to_owned(), self.digest()),
        ]);
        if let Some(key) = &self.idempotency_key {
            annotations.insert(IDEMPOTENCY_KEY.to_owned(), key.clone());
        }
        if let Some(trace) = &self.trace {
            annotations.extend(trace.annotations());
        }
        let name = self.name();
        PendingJob {
            metadata: ObjectMeta {
                generate_name: name.is_none().then(|| PREFIX.to_owned()),
                name,
                namespace: Some(self.namespace.clone()),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            },
            spec: PendingJobSpec {
                target: Target {
                    url: None,
                    path: self.path.clone(),
                    method: self.method,
                    headers: BTreeMap::new(),
                    timeout_seconds: 10,
                },
                destination_ref: Some(DestinationRef {
                    name: self.destination.clone(),
                }),
                payload: Some(self.payload.clone()),
                retry_policy: RetryPolicy::default(),
                suspend: false,
                not_before: self.not_before.clone(),
                ttl_seconds_after_finished: None,
                dead_letter: None,
            },
            status: None,
        }
    }

    /// True when `existing` was created by the same request.
    pub fn same_as(&self, existing: &PendingJob) -> bool {
        existing
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REQUEST_DIGEST))
            .is_some_and(|d| *d == self.digest())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(key: Option<&str>, payload: serde_json::Value) -> JobRequest {
        JobRequest {
            namespace: "shop".into(),
            destination: "payments".into(),
            path: Some("/charges".into()),
            method: Method::Post,
            not_before: None,
            idempotency_key: key.map(str::to_owned),
            payload,
            trace: None,
        }
    }

    #[test]
    fn the_key_names_the_job_within_its_namespace_and_destination() {
        let a = request(Some("order-42"), serde_json::json!({"n": 1}));
        let name = a.name().expect("named");
        assert!(name.starts_with("intake-") && name.len() == 47, "{name}");
        assert_eq!(
            request(Some("order-42"), serde_json::json!({"n": 2})).name(),
            Some(name.clone())
        );
        assert_ne!(
            request(Some("order-43"), serde_json::json!({"n": 1})).name(),
            Some(name.clone())
        );
        let elsewhere = JobRequest {
            namespace: "other".into(),
            ..a.clone()
        };
        assert_ne!(elsewhere.name(), Some(name));
        assert_eq!(request(None, serde_json::json!({})).name(), None);
    }

    #[test]
    fn a_retry_is_the_same_request_only_with_the_same_payload() {
        let first = request(Some("k"), serde_json::json!({"amount": 1}));
        let job = first.job("system:serviceaccount:shop:ui");
        assert!(first.same_as(&job));
        assert!(!request(Some("k"), serde_json::json!({"amount": 2})).same_as(&job));
        let annotations = job.metadata.annotations.expect("annotations");
        assert_eq!(annotations[CREATED_BY], "system:serviceaccount:shop:ui");
        assert_eq!(annotations[IDEMPOTENCY_KEY], "k");
        assert_eq!(job.spec.target.path.as_deref(), Some("/charges"));
    }
}
