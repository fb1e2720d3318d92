//! The job gauges computed from the cache when `/metrics` is scraped: jobs
//! by namespace and phase, and how overdue the most overdue job is, the lag
//! alerts watch. Pure, table-tested.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::api::{PendingJob, Phase};

/// What the job gauges show.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobGauges {
    /// Jobs by namespace and phase.
    pub by_phase: BTreeMap<(String, Phase), i64>,
    /// Seconds the most overdue job has been due; 0 when none is.
    pub oldest_due_seconds: f64,
}

/// When `job` is due for a call, if it waits for one: its next retry, or
/// for a job never attempted its creation (or `notBefore`). Finished and
/// suspended jobs are due for nothing.
pub fn due_time(job: &PendingJob) -> Option<Timestamp> {
    let status = job.status.clone().unwrap_or_default();
    if status.phase.is_terminal() || status.phase == Phase::Suspended || job.spec.suspend {
        return None;
    }
    if let Some(next) = &status.next_retry_time {
        return Some(next.0);
    }
    let created = job.metadata.creation_timestamp.as_ref().map(|t| t.0)?;
    Some(match &job.spec.not_before {
        Some(not_before) if status.attempts == 0 => created.max(not_before.0),
        _ => created,
    })
}

/// The gauges of `jobs` at `now`.
pub fn job_gauges<'a>(jobs: impl IntoIterator<Item = &'a PendingJob>, now: Timestamp) -> JobGauges {
    let mut gauges = JobGauges::default();
    for job in jobs {
        let namespace = job.metadata.namespace.clone().unwrap_or_default();
        let phase = job.status.as_ref().map(|s| s.phase).unwrap_or_default();
        *gauges.by_phase.entry((namespace, phase)).or_default() += 1;
        if let Some(due) = due_time(job).filter(|due| *due < now) {
            let overdue = due.duration_until(now).as_secs_f64();
            gauges.oldest_due_seconds = gauges.oldest_due_seconds.max(overdue);
        }
    }
    gauges
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};

    use super::*;
    use crate::api::PendingJobStatus;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    fn job(namespace: &str, created: i64, status: PendingJobStatus) -> PendingJob {
        let mut job: PendingJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "pendingjob.dev/v1alpha1", "kind": "PendingJob",
            "metadata": {"name": "a", "namespace": namespace},
            "spec": {"target": {"url": "http://api.example/x"}},
        }))
        .expect("job");
        job.metadata.creation_timestamp = Some(Time(at(created)));
        job.status = Some(status);
        job
    }

    fn retrying(due: i64) -> PendingJobStatus {
        PendingJobStatus {
            phase: Phase::Retrying,
            attempts: 1,
            next_retry_time: Some(MicroTime(at(due))),
            ..PendingJobStatus::default()
        }
    }

    #[test]
    fn oldest_due_table() {
        let succeeded = PendingJobStatus {
            phase: Phase::Succeeded,
            ..PendingJobStatus::default()
        };
        let suspended = PendingJobStatus {
            phase: Phase::Suspended,
            ..retrying(-100)
        };
        let mut scheduled = job("a", -50, PendingJobStatus::default());
        scheduled.spec.not_before = Some(Time(at(10)));
        let cases: Vec<(Vec<PendingJob>, f64)> = vec![
            (vec![], 0.0),
            (vec![job("a", -5, PendingJobStatus::default())], 5.0),
            (vec![job("a", -500, retrying(-7)), job("b", -500, retrying(30))], 7.0),
            (vec![job("a", -500, succeeded), job("a", -500, suspended)], 0.0),
            (vec![scheduled], 0.0),
        ];
        for (jobs, oldest) in cases {
            assert_eq!(job_gauges(&jobs, at(0)).oldest_due_seconds, oldest, "{jobs:?}");
        }
    }

    #[test]
    fn phases_are_counted_per_namespace() {
        let jobs = [
            job("a", 0, retrying(5)),
            job("a", 0, retrying(5)),
            job("b", 0, PendingJobStatus::default()),
        ];
        let gauges = job_gauges(&jobs, at(0));
        assert_eq!(gauges.by_phase.get(&("a".into(), Phase::Retrying)), Some(&2));
        assert_eq!(gauges.by_phase.get(&("b".into(), Phase::Pending)), Some(&1));
    }
}
