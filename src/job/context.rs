//! What the job controller's reconciles and tasks share: the API client,
//! the cache, what calls are made with, leadership, metrics and Events, and
//! the task registry.
//!
//! It names no task: tasks are futures handed to [`Tasks::spawn`], so the
//! reconciler, the attempt, the dead letter and the amendments all sit above
//! it and none of them above another through it.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client};
use tokio::sync::mpsc::UnboundedSender;
use tracing::debug;

use super::plan::{self, Decision, Facts};
use super::tasks::Tasks;
use crate::api::{Destination, FIELD_MANAGER, JobKey, PendingJob};
use crate::delivery::Delivery;
use crate::destination::credentials::Credentials;
use crate::leadership::election::Leadership;
use crate::observe::metrics::Metrics;
use crate::store::cache::JobCache;
use crate::store::freshness::Freshness;

/// What attempts call with, shared with the Destination controller, and
/// where changes of a destination's circuit or counts are told.
pub struct Calls {
    /// Clients, slots, pacing, breakers and counts.
    pub delivery: Arc<Delivery>,
    /// Destinations' Secrets, TLS and tokens.
    pub credentials: Arc<Credentials>,
    /// Told of each destination whose status should show a change.
    pub destination_changes: UnboundedSender<ObjectRef<Destination>>,
}

/// Shared state of the reconciler and of the jobs' tasks.
pub struct Context {
    pub(crate) client: Client,
    /// The namespace watched; all when `None`.
    namespace: Option<String>,
    pub(crate) cache: JobCache,
    pub(crate) delivery: Arc<Delivery>,
    pub(crate) credentials: Arc<Credentials>,
    destination_changes: UnboundedSender<ObjectRef<Destination>>,
    pub(crate) leadership: Leadership,
    pub(crate) freshness: Freshness,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) recorder: Recorder,
    /// How long after finishing a job without a TTL of its own is deleted.
    pub(crate) default_ttl: Option<Duration>,
    pub(crate) tasks: Tasks,
}

impl Context {
    /// A context whose attempts run only while `leadership` holds, make their
    /// calls with `calls`, and whose Events name `identity` as the reporting
    /// instance. Every call `client` makes must have a timeout; `namespace`
    /// is the one watched (all when `None`), and `cache` holds it.
    pub fn new(
        client: Client,
        namespace: Option<String>,
        cache: JobCache,
        Calls {
            delivery,
            credentials,
            destination_changes,
        }: Calls,
        metrics: Arc<Metrics>,
        identity: &str,
        leadership: Leadership,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: Some(identity.to_owned()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            namespace,
            cache,
            delivery,
            credentials,
            destination_changes,
            leadership,
            freshness: Freshness::default(),
            metrics,
            default_ttl: None,
            tasks: Tasks::default(),
        }
    }

    /// Deletes finished jobs that set no TTL `ttl` after they finish.
    #[must_use]
    pub fn with_default_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// Forgets a job that was deleted.
    pub fn forget_deleted(&self, namespace: &str, name: &str) {
        self.freshness.forget(&(namespace.to_owned(), name.to_owned()));
    }

    /// Starts no more attempts; waits for those in flight to be recorded.
    pub async fn drain(&self) {
        self.tasks.drain().await;
    }

    pub(crate) fn api(&self, namespace: &str) -> Api<PendingJob> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// The jobs the controller watches.
    pub(crate) fn scope(&self) -> Api<PendingJob> {
        match &self.namespace {
            Some(namespace) => self.api(namespace),
            None => Api::all(self.client.clone()),
        }
    }

    /// The cached job `key`, if any.
    pub(crate) fn cached(&self, key: &JobKey) -> Option<Arc<PendingJob>> {
        self.cache.store.get(&ObjectRef::new(&key.1).within(&key.0))
    }

    /// Has `destination`'s status show what changed: its circuit's state,
    /// or its first call in flight or job waiting.
    pub(crate) fn destination_changed(&self, destination: ObjectRef<Destination>) {
        // Gone only at shutdown, when no status needs writing.
        let _ = self.destination_changes.send(destination);
    }

    /// What to do with `job` now.
    pub(crate) fn decide(&self, key: &JobKey, job: &PendingJob) -> Decision {
        let status = job.status.clone().unwrap_or_default();
        let decision = plan::decide(&Facts::of(job, &status, self.default_ttl), Timestamp::now());
        debug!(namespace = %key.0, name = %key.1, ?decision, attempts = status.attempts, "decided");
        decision
    }

    /// The action for a job that is not due for a call now, or `None` when it is.
    pub(crate) fn not_now(&self, key: &JobKey, job: &PendingJob) -> Option<Action> {
        match self.decide(key, job) {
            Decision::Attempt => None,
            Decision::Wait(remaining) => Some(Action::requeue(remaining)),
            Decision::Idle | Decision::Delete | Decision::Amend(_) | Decision::DeadLetter => {
                Some(Action::await_change())
            }
        }
    }
}
