use super::*;
use crate::api::PendingJobStatus;

const UID: &str = "0b5e7a4c-3f1d-4e2a-9c8b-7d6e5f4a3b2c";

fn job(name: &str, phase: Phase, resource_version: &str) -> PendingJob {
    let mut job: PendingJob = serde_json::from_value(serde_json::json!({
        "apiVersion": "pendingjob.dev/v1alpha1", "kind": "PendingJob",
        "metadata": {"name": name, "namespace": "ns", "uid": UID, "resourceVersion": resource_version},
        "spec": {"target": {"url": "http://api.example/x"}},
    }))
    .expect("job");
    job.status = Some(PendingJobStatus {
        phase,
        ..PendingJobStatus::default()
    });
    job
}

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + second).expect("time")
}

const FOREVER: Settled<'static> = &|_| Some(None);

#[test]
fn a_settled_finished_job_leaves_the_cache_and_an_unsettled_one_comes_back() {
    let finished = Finished::default();
    let kept = finished.observe(Event::Apply(job("a", Phase::Succeeded, "7")), FOREVER);
    assert!(matches!(kept, Some(Event::Delete(_))), "the cache drops it");
    assert_eq!(finished.counts(), vec![(("ns".to_owned(), Phase::Succeeded), 1)]);
    // A redrive: the whole job goes back to the controller.
    let back = finished.observe(Event::Apply(job("a", Phase::Failed, "8")), &|_| None);
    assert!(matches!(back, Some(Event::Apply(_))));
    assert!(finished.is_empty());
    // Unfinished jobs are never kept, whatever `settled` says.
    let pending = finished.observe(Event::Apply(job("b", Phase::Retrying, "9")), FOREVER);
    assert!(matches!(pending, Some(Event::Apply(_))));
    assert!(finished.is_empty());
}

#[test]
fn only_exact_uids_and_resource_versions_are_kept() {
    let finished = Finished::default();
    let mut odd = job("a", Phase::Succeeded, "07");
    assert!(matches!(
        finished.observe(Event::Apply(odd.clone()), FOREVER),
        Some(Event::Apply(_))
    ));
    odd.metadata.resource_version = Some("7".into());
    odd.metadata.uid = Some(UID.to_uppercase());
    assert!(matches!(
        finished.observe(Event::Apply(odd), FOREVER),
        Some(Event::Apply(_))
    ));
    assert!(finished.is_empty());
}

#[test]
fn a_relist_forgets_jobs_it_no_longer_shows() {
    let finished = Finished::default();
    let ttl: Settled<'_> = &|_| Some(Some(at(10)));
    for event in [
        Event::Init,
        Event::InitApply(job("a", Phase::Succeeded, "1")),
        Event::InitDone,
    ] {
        finished.observe(event, ttl);
    }
    finished.observe(Event::InitApply(job("b", Phase::Failed, "2")), ttl);
    assert_eq!(finished.len(), 2);
    // A new list shows only `b`, and its InitApply never reaches the cache.
    assert!(finished.observe(Event::Init, ttl).is_some());
    assert!(
        finished
            .observe(Event::InitApply(job("b", Phase::Failed, "3")), ttl)
            .is_none()
    );
    finished.observe(Event::InitDone, ttl);
    assert_eq!(finished.counts(), vec![(("ns".to_owned(), Phase::Failed), 1)]);
    let due = finished.take_due(at(10), 10);
    assert_eq!(due.len(), 1, "the forgotten job's deletion went with it");
    assert_eq!((due[0].key.1.as_str(), due[0].resource_version.as_str()), ("b", "3"));
}

#[test]
fn deletions_come_due_in_order_once_each_and_a_failed_one_is_retried() {
    let finished = Finished::default();
    for (name, second) in [("late", 30), ("early", 10), ("never", -1)] {
        let delete_at = (second >= 0).then(|| at(second));
        finished.observe(Event::Apply(job(name, Phase::Succeeded, "5")), &|_| Some(delete_at));
    }
    assert_eq!(finished.next_deletion(), Some(at(10)));
    assert!(finished.take_due(at(9), 10).is_empty());
    let due = finished.take_due(at(40), 10);
    let names: Vec<&str> = due.iter().map(|d| d.key.1.as_str()).collect();
    assert_eq!(names, ["early", "late"]);
    assert_eq!(due[0].uid, UID);
    assert!(finished.take_due(at(40), 10).is_empty(), "taken once");
    assert_eq!(finished.len(), 3, "kept until the delete is seen");
    finished.retry_at(&due[0], at(45));
    assert_eq!(finished.next_deletion(), Some(at(45)));
    // A job changed meanwhile is not retried from the old version.
    finished.observe(Event::Apply(job("late", Phase::Succeeded, "6")), &|_| {
        Some(Some(at(99)))
    });
    finished.retry_at(&due[1], at(46));
    assert_eq!(finished.take_due(at(60), 10).len(), 1);
    finished.observe(Event::Delete(job("early", Phase::Succeeded, "5")), FOREVER);
    assert_eq!(finished.len(), 2);
    assert_eq!(finished.next_deletion(), Some(at(99)));
}
