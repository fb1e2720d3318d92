//! pendingjob-operator: durable, retried background calls to flaky downstream
//! APIs, driven by a `PendingJob` custom resource.
