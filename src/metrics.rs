//! Prometheus metrics, served at `/metrics` in the OpenMetrics text format.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::crd::Phase;
use crate::lifecycle::Outcome;

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
    /// The job phase.
    pub phase: String,
}

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    /// Attempts by outcome.
    pub attempts: Family<OutcomeLabels, Counter>,
    /// Duration of each HTTP call to a target.
    pub attempt_duration: Histogram,
    /// Jobs in the watch cache by phase (set when scraped).
    pub jobs: Family<PhaseLabels, Gauge>,
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
        registry.register("jobs", "PendingJobs by phase", jobs.clone());
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
        let leader = Gauge::default();
        registry.register("leader", "1 while this instance is the leader", leader.clone());
        Self {
            registry,
            attempts,
            attempt_duration,
            jobs,
            attempts_started,
            attempts_in_flight,
            unrecorded_attempts,
            status_write_errors,
            reconcile_errors,
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

    /// Sets `pendingjob_jobs` from the phases of all known jobs.
    pub fn set_jobs_by_phase(&self, phases: impl IntoIterator<Item = Phase>) {
        let mut counts = [0_i64; 4];
        for phase in phases {
            counts[phase_index(phase)] += 1;
        }
        for phase in [Phase::Pending, Phase::Retrying, Phase::Succeeded, Phase::Failed] {
            let labels = PhaseLabels {
                phase: format!("{phase:?}"),
            };
            self.jobs.get_or_create(&labels).set(counts[phase_index(phase)]);
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

fn phase_index(phase: Phase) -> usize {
    match phase {
        Phase::Pending => 0,
        Phase::Retrying => 1,
        Phase::Succeeded => 2,
        Phase::Failed => 3,
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
        metrics.set_jobs_by_phase([Phase::Retrying, Phase::Retrying, Phase::Succeeded]);
        metrics.leader.set(1);
        let text = metrics.encode().expect("encodes");
        for line in [
            "pendingjob_attempts_total{outcome=\"delivered\"} 1",
            "pendingjob_attempt_duration_seconds_count 1",
            "pendingjob_jobs{phase=\"Retrying\"} 2",
            "pendingjob_jobs{phase=\"Succeeded\"} 1",
            "pendingjob_jobs{phase=\"Failed\"} 0",
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
