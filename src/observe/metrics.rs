//! Prometheus metrics, served at `/metrics` in the OpenMetrics text format.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use std::sync::atomic::AtomicU64;

use super::gauges::JobGauges;
use crate::delivery::outcome::Outcome;

/// What an attempt's outcome was, as a label.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum OutcomeLabel {
    /// 2xx.
    delivered,
    /// Failed, worth retrying.
    retryable,
    /// Failed for good.
    rejected,
}

impl From<&Outcome> for OutcomeLabel {
    fn from(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Delivered { .. } => OutcomeLabel::delivered,
            Outcome::Retryable { .. } => OutcomeLabel::retryable,
            Outcome::Rejected { .. } => OutcomeLabel::rejected,
        }
    }
}

/// Labels of `pendingjob_attempts_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// The attempt's outcome.
    pub outcome: OutcomeLabel,
}

/// Why an attempt's outcome was never recorded (so its call may be repeated).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum DropReason {
    /// This instance stopped leading during the call or before its write landed.
    lost_leadership,
    /// Someone else advanced the job's status first.
    superseded,
    /// The job that was called was deleted (or recreated under its name).
    deleted,
}

/// Labels of `pendingjob_unrecorded_attempts_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    /// Why the outcome was dropped.
    pub reason: DropReason,
}

/// Labels of `pendingjob_status_write_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteErrorLabels {
    /// A short class of the error: conflict, refused, forbidden, throttled, server_error, unreachable, other.
    pub reason: &'static str,
}

/// Labels of `pendingjob_jobs`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// The job's namespace.
    pub namespace: String,
    /// The job phase.
    pub phase: String,
}

/// Labels of `pendingjob_dead_letters_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeadLetterLabels {
    /// `delivered`, or `failed` for a call that will be retried.
    pub result: &'static str,
}

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    /// Attempts by outcome.
    pub attempts: Family<OutcomeLabels, Counter>,
    /// Duration of each HTTP call to a target.
    pub attempt_duration: Histogram,
    /// Jobs in the watch cache by namespace and phase (set when scraped,
    /// by the leader only, so summing over replicas counts each job once).
    pub jobs: Family<PhaseLabels, Gauge>,
    /// Seconds the most overdue job is past its due time (leader only).
    pub oldest_due_seconds: Gauge<f64, AtomicU64>,
    /// The most calls in flight at once (`--max-concurrent-dispatches`).
    pub calls_limit: Gauge,
    /// Seconds from a job's creation to the call the target accepted.
    pub delivery_duration: Histogram,
    /// Finished jobs deleted because their time to live was up.
    pub ttl_deletions: Counter,
    /// Dead-letter calls, by result.
    pub dead_letters: Family<DeadLetterLabels, Counter>,
    /// Calls started.
    pub attempts_started: Counter,
    /// Attempts started and not yet recorded or dropped.
    pub attempts_in_flight: Gauge,
    /// Attempts whose outcome was dropped unrecorded, by reason.
    pub unrecorded_attempts: Family<DropLabels, Counter>,
    /// Status writes that failed and will be retried, by reason.
    pub status_write_errors: Family<WriteErrorLabels, Counter>,
    /// Kubernetes errors of reconciles and of the reads before calls.
    pub reconcile_errors: Counter,
    /// Reads (`get`) of the Secrets and ConfigMaps Destinations name.
    pub credential_reads: Counter,
    /// 1 while this instance holds the leader Lease.
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("pendingjob");
        let attempts = Family::<OutcomeLabels, Counter>::default();
        registry.register("attempts", "Calls made to targets, by outcome", attempts.clone());
        let attempt_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "attempt_duration_seconds",
            "Duration of calls to targets",
            attempt_duration.clone(),
        );
        let jobs = Family::<PhaseLabels, Gauge>::default();
        registry.register("jobs", "PendingJobs by namespace and phase (leader only)", jobs.clone());
        let oldest_due_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "oldest_due_seconds",
            "How long the most overdue job has been due without a call (leader only)",
            oldest_due_seconds.clone(),
        );
        let calls_limit = Gauge::default();
        registry.register("calls_limit", "Most calls in flight at once", calls_limit.clone());
        let delivery_duration = Histogram::new(exponential_buckets(0.05, 2.0, 20));
        registry.register(
            "delivery_duration_seconds",
            "From a job's creation to the call its target accepted",
            delivery_duration.clone(),
        );
        let ttl_deletions = Counter::default();
        registry.register(
            "ttl_deletions",
            "Finished jobs deleted as their ttlSecondsAfterFinished was up",
            ttl_deletions.clone(),
        );
        let dead_letters = Family::<DeadLetterLabels, Counter>::default();
        registry.register("dead_letters", "Dead-letter calls, by result", dead_letters.clone());
        let attempts_started = Counter::default();
        registry.register("attempts_started", "Calls to targets started", attempts_started.clone());
        let attempts_in_flight = Gauge::default();
        registry.register(
            "attempts_in_flight",
            "Attempts started and not yet recorded in status or dropped",
            attempts_in_flight.clone(),
        );
        let unrecorded_attempts = Family::<DropLabels, Counter>::default();
        registry.register(
            "unrecorded_attempts",
            "Attempts whose outcome was never recorded, by reason; their call may be repeated",
            unrecorded_attempts.clone(),
        );
        let status_write_errors = Family::<WriteErrorLabels, Counter>::default();
        registry.register(
            "status_write_errors",
            "Status writes that failed and are retried (the call is not), by reason",
            status_write_errors.clone(),
        );
        let reconcile_errors = Counter::default();
        registry.register(
            "reconcile_errors",
            "Kubernetes errors of reconciles and of the reads before calls",
            reconcile_errors.clone(),
        );
        let credential_reads = Counter::default();
        registry.register(
            "credential_reads",
            "Reads of the Secrets and ConfigMaps Destinations name (get; values are kept 30 s)",
            credential_reads.clone(),
        );
        let leader = Gauge::default();
        registry.register("leader", "1 while this instance is the leader", leader.clone());
        Self {
            registry,
            attempts,
            attempt_duration,
            jobs,
            oldest_due_seconds,
            calls_limit,
            delivery_duration,
            ttl_deletions,
            dead_letters,
            attempts_started,
            attempts_in_flight,
            unrecorded_attempts,
            status_write_errors,
            reconcile_errors,
            credential_reads,
            leader,
        }
    }
}

impl Metrics {
    /// Counts one attempt and its duration.
    pub fn observe_attempt(&self, outcome: &Outcome, seconds: f64) {
        self.attempts
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
        self.attempt_duration.observe(seconds);
    }

    /// A call is about to start.
    pub fn attempt_started(&self) {
        self.attempts_started.inc();
        self.attempts_in_flight.inc();
    }

    /// An attempt's outcome is now in the job's status.
    pub fn attempt_recorded(&self) {
        self.attempts_in_flight.dec();
    }

    /// An attempt's outcome was dropped unrecorded.
    pub fn attempt_dropped(&self, reason: DropReason) {
        self.attempts_in_flight.dec();
        self.unrecorded_attempts.get_or_create(&DropLabels { reason }).inc();
    }

    /// A status write failed; its outcome stays owed.
    pub fn status_write_failed(&self, reason: &'static str) {
        self.status_write_errors
            .get_or_create(&WriteErrorLabels { reason })
            .inc();
    }

    /// Sets the job gauges from `gauges`, or clears them on a standby
    /// (`None`), which reports none.
    pub fn set_job_gauges(&self, gauges: Option<&JobGauges>) {
        self.jobs.clear();
        let Some(gauges) = gauges else {
            self.oldest_due_seconds.set(0.0);
            return;
        };
        for ((namespace, phase), count) in &gauges.by_phase {
            let labels = PhaseLabels {
                namespace: namespace.clone(),
                phase: format!("{phase:?}"),
            };
            self.jobs.get_or_create(&labels).set(*count);
        }
        self.oldest_due_seconds.set(gauges.oldest_due_seconds);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_metric() {
        let metrics = Metrics::default();
        metrics.attempt_started();
        metrics.observe_attempt(&Outcome::Delivered { code: 200 }, 0.02);
        metrics.attempt_started();
        metrics.attempt_dropped(DropReason::lost_leadership);
        metrics.status_write_failed("refused");
        let mut gauges = JobGauges::default();
        gauges.by_phase.insert(("shop".into(), crate::api::Phase::Retrying), 2);
        gauges.oldest_due_seconds = 1.5;
        metrics.set_job_gauges(Some(&gauges));
        metrics.leader.set(1);
        let text = metrics.encode().expect("encodes");
        for line in [
            "pendingjob_attempts_total{outcome=\"delivered\"} 1",
            "pendingjob_attempt_duration_seconds_count 1",
            "pendingjob_jobs{namespace=\"shop\",phase=\"Retrying\"} 2",
            "pendingjob_oldest_due_seconds 1.5",
            "pendingjob_reconcile_errors_total 0",
            "pendingjob_attempts_started_total 2",
            "pendingjob_attempts_in_flight 1",
            "pendingjob_unrecorded_attempts_total{reason=\"lost_leadership\"} 1",
            "pendingjob_status_write_errors_total{reason=\"refused\"} 1",
            "pendingjob_leader 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
        }
    }
}
