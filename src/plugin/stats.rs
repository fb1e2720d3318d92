//! `kubectl pj stats`: counts by phase and by Destination, and the oldest
//! due job, over the jobs one list returned.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use jiff::Timestamp;

use super::when;
use crate::api::{PendingJob, Phase};

/// The column of jobs that call a raw URL.
pub const NO_DESTINATION: &str = "(url)";

/// Counts over a set of jobs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Jobs by phase.
    pub by_phase: BTreeMap<Phase, usize>,
    /// Jobs by namespace/Destination, then by phase.
    pub by_destination: BTreeMap<(String, String), BTreeMap<Phase, usize>>,
    /// The due job that has waited longest: namespace, name, due since.
    pub oldest_due: Option<(String, String, Timestamp)>,
    /// All jobs counted.
    pub total: usize,
}

const PHASES: [Phase; 5] = [
    Phase::Pending,
    Phase::Retrying,
    Phase::Suspended,
    Phase::Succeeded,
    Phase::Failed,
];

impl Stats {
    /// Adds `job`, seen at `now`.
    pub fn add(&mut self, job: &PendingJob, now: Timestamp) {
        let status = job.status.clone().unwrap_or_default();
        let phase = if job.spec.suspend && !status.phase.is_terminal() {
            Phase::Suspended
        } else {
            status.phase
        };
        self.total += 1;
        *self.by_phase.entry(phase).or_default() += 1;
        let namespace = job.metadata.namespace.clone().unwrap_or_default();
        let destination = job
            .spec
            .destination_ref
            .as_ref()
            .map_or_else(|| NO_DESTINATION.to_owned(), |d| d.name.clone());
        *self
            .by_destination
            .entry((namespace.clone(), destination))
            .or_default()
            .entry(phase)
            .or_default() += 1;
        if phase.is_terminal() || phase == Phase::Suspended {
            return;
        }
        let due = status
            .next_retry_time
            .map(|t| t.0)
            .or_else(|| job.spec.not_before.as_ref().map(|t| t.0))
            .or_else(|| job.metadata.creation_timestamp.as_ref().map(|t| t.0));
        if let Some(due) = due.filter(|due| *due <= now)
            && self.oldest_due.as_ref().is_none_or(|(_, _, oldest)| due < *oldest)
        {
            self.oldest_due = Some((namespace, job.metadata.name.clone().unwrap_or_default(), due));
        }
    }

    /// The report, as printed; `all_namespaces` adds the namespace column.
    #[must_use]
    pub fn render(&self, all_namespaces: bool, now: Timestamp) -> String {
        let mut out = String::new();
        let counts = |by: &BTreeMap<Phase, usize>| {
            PHASES
                .iter()
                .map(|p| format!("{:>10}", by.get(p).copied().unwrap_or(0)))
                .collect::<String>()
        };
        let header: String = PHASES
            .iter()
            .map(|p| format!("{:>10}", format!("{p:?}").to_uppercase()))
            .collect();
        let _ = writeln!(
            out,
            "{:<32}{header}",
            if all_namespaces {
                "NAMESPACE/DESTINATION"
            } else {
                "DESTINATION"
            }
        );
        for ((namespace, destination), by) in &self.by_destination {
            let name = if all_namespaces {
                format!("{namespace}/{destination}")
            } else {
                destination.clone()
            };
            let _ = writeln!(out, "{name:<32}{}", counts(by));
        }
        let _ = writeln!(
            out,
            "{:<32}{}",
            format!("TOTAL ({})", self.total),
            counts(&self.by_phase)
        );
        let _ = match &self.oldest_due {
            Some((namespace, name, due)) => writeln!(
                out,
                "\nOldest due job: {namespace}/{name}, due since {}",
                when(*due, now)
            ),
            None => writeln!(out, "\nOldest due job: none (no job is due)"),
        };
        out
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn job(namespace: &str, name: &str, destination: Option<&str>, status: serde_json::Value) -> PendingJob {
        let mut spec = json!({"target": {"url": "http://x"}});
        if let Some(d) = destination {
            spec = json!({"destinationRef": {"name": d}, "target": {"path": "/"}});
        }
        serde_json::from_value(json!({
            "apiVersion": "pendingjob.dev/v1alpha1", "kind": "PendingJob",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": "2026-12-02T14:00:00Z"},
            "spec": spec, "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn jobs_are_counted_by_phase_and_destination_and_the_oldest_due_is_found() {
        let now: Timestamp = "2026-12-02T15:00:00Z".parse().unwrap();
        let mut stats = Stats::default();
        for job in [
            job("shop", "a", Some("api2"), json!({"phase": "Succeeded"})),
            job(
                "shop",
                "b",
                Some("api2"),
                json!({"phase": "Retrying", "nextRetryTime": "2026-12-02T14:58:00.000000Z"}),
            ),
            job(
                "shop",
                "c",
                Some("api2"),
                json!({"phase": "Retrying", "nextRetryTime": "2026-12-02T14:59:00.000000Z"}),
            ),
            // Ahead: not due.
            job(
                "shop",
                "d",
                None,
                json!({"phase": "Retrying", "nextRetryTime": "2026-12-02T15:10:00.000000Z"}),
            ),
            job("bank", "e", None, json!({"phase": "Failed"})),
        ] {
            stats.add(&job, now);
        }
        assert_eq!(stats.total, 5);
        assert_eq!(stats.by_phase.get(&Phase::Retrying), Some(&3));
        assert_eq!(
            stats.by_destination[&("shop".into(), "api2".into())][&Phase::Retrying],
            2
        );
        assert_eq!(
            stats.oldest_due,
            Some(("shop".into(), "b".into(), "2026-12-02T14:58:00Z".parse().unwrap()))
        );
        let text = stats.render(true, now);
        assert!(text.contains("shop/api2"), "{text}");
        assert!(text.contains("bank/(url)"), "{text}");
        assert!(
            text.contains("Oldest due job: shop/b, due since 2026-12-02T14:58:00Z (2m0s ago)"),
            "{text}"
        );
    }
}
