use futures::StreamExt;

use super::deflate::inflate;
use super::json::{from_json, reads_back, to_json};
use super::*;
use crate::api::PendingJobStatus;

const UID: &str = "0b5e7a4c-3f1d-4e2a-9c8b-7d6e5f4a3b2c";
const OTHER: &str = "1b5e7a4c-3f1d-4e2a-9c8b-7d6e5f4a3b2c";

fn job(uid: &str, resource_version: &str) -> PendingJob {
    let mut job: PendingJob = serde_json::from_value(serde_json::json!({
        "apiVersion": "pendingjob.dev/v1alpha1", "kind": "PendingJob",
        "metadata": {"name": "a", "namespace": "ns", "uid": uid, "resourceVersion": resource_version,
                     "creationTimestamp": "2027-01-15T08:00:00Z"},
        "spec": {"target": {"url": "http://api.example/x"}, "notBefore": "2027-01-15T09:00:00.123456789Z"},
    }))
    .expect("job");
    job.status = Some(PendingJobStatus {
        phase: Phase::Pending,
        ..PendingJobStatus::default()
    });
    job
}

/// Field by field: JSON alone would hide a `Time` that lost its fraction.
fn same(a: &PendingJob, b: &PendingJob) -> bool {
    a.metadata == b.metadata && a.spec == b.spec && a.status == b.status
}

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + second).expect("time")
}

/// Due at second 100, or never, or now.
const LATER: Waits<'static> = &|_| Some(Some(at(100)));
const FOREVER: Waits<'static> = &|_| Some(None);
const NOW: Waits<'static> = &|_| None;

fn resource_version(event: &Event<PendingJob>) -> Option<String> {
    match event {
        Event::Apply(job) | Event::Delete(job) | Event::InitApply(job) => job.resource_version(),
        Event::Init | Event::InitDone => None,
    }
}

#[test]
fn a_waiting_job_leaves_the_cache_and_goes_back_before_it_is_due_as_it_was() {
    let parked = Parked::default();
    let seen = job(UID, "7");
    let kept = parked.observe(Event::Apply(seen.clone()), LATER, at(0));
    assert!(matches!(kept, Some(Event::Delete(_))), "the cache drops it");
    assert!(parked.contains(&seen));
    assert_eq!(parked.counts(), HashMap::from([(("ns".to_owned(), Phase::Pending), 1)]));
    let lead = i64::try_from(LEAD.as_secs()).expect("lead");
    assert!(parked.wake(at(99 - lead)).is_empty(), "not yet");
    let woken = parked.wake(at(100 - lead));
    assert!(
        matches!(woken.as_slice(), [Event::Apply(back)] if same(back, &seen)),
        "{woken:?}"
    );
    assert!(parked.is_empty() && !parked.contains(&seen));
}

#[test]
fn a_job_due_within_the_lead_or_needing_the_controller_stays_in_the_cache() {
    let parked = Parked::default();
    let soon: Waits<'static> = &|_| Some(Some(at(10)));
    for waits in [soon, NOW] {
        let seen = parked.observe(Event::Apply(job(UID, "7")), waits, at(0));
        assert!(matches!(seen, Some(Event::Apply(_))));
    }
    let mut odd = job("not-a-uid", "7");
    assert!(matches!(
        parked.observe(Event::Apply(odd.clone()), LATER, at(0)),
        Some(Event::Apply(_))
    ));
    odd.metadata.uid = None;
    assert!(matches!(
        parked.observe(Event::Apply(odd), LATER, at(0)),
        Some(Event::Apply(_))
    ));
    assert!(parked.is_empty());
}

#[test]
fn a_change_that_needs_the_controller_brings_the_new_version_back_at_once() {
    let parked = Parked::default();
    parked.observe(Event::Apply(job(UID, "7")), LATER, at(0));
    let changed = parked.observe(Event::Apply(job(UID, "8")), NOW, at(1));
    assert!(
        matches!(&changed, Some(Event::Apply(job)) if job.resource_version().as_deref() == Some("8")),
        "{changed:?}"
    );
    assert!(parked.is_empty());
    assert!(parked.wake(at(1_000)).is_empty(), "the old version never comes back");
    // A newer version that still waits replaces the one kept.
    parked.observe(Event::Apply(job(UID, "9")), FOREVER, at(2));
    parked.observe(Event::Apply(job(UID, "10")), LATER, at(3));
    let woken = parked.wake(at(1_000));
    assert_eq!(
        woken.iter().map(resource_version).collect::<Vec<_>>(),
        [Some("10".to_owned())]
    );
}

#[test]
fn a_suspended_job_waits_for_a_change_and_a_deleted_one_leaves() {
    let parked = Parked::default();
    parked.observe(Event::Apply(job(UID, "7")), FOREVER, at(0));
    parked.observe(Event::Apply(job(OTHER, "8")), LATER, at(0));
    assert!(parked.wake(at(1_000_000)).len() == 1, "only the one with a time wakes");
    assert_eq!(parked.len(), 1);
    let gone = parked.observe(Event::Delete(job(UID, "9")), NOW, at(0));
    assert!(matches!(gone, Some(Event::Delete(_))));
    assert!(parked.is_empty());
}

#[test]
fn a_relist_keeps_what_it_shows_forgets_the_rest_and_wakes_nothing_until_it_ends() {
    let parked = Parked::default();
    parked.observe(Event::Apply(job(UID, "7")), LATER, at(0));
    parked.observe(Event::Apply(job(OTHER, "8")), LATER, at(0));
    assert!(matches!(parked.observe(Event::Init, NOW, at(0)), Some(Event::Init)));
    let listed = parked.observe(Event::InitApply(job(UID, "7")), LATER, at(0));
    assert!(listed.is_none(), "a kept job is not listed into the cache");
    assert!(
        parked.wake(at(1_000)).is_empty(),
        "the end of the list would drop it from the cache"
    );
    assert!(matches!(
        parked.observe(Event::InitDone, NOW, at(0)),
        Some(Event::InitDone)
    ));
    assert_eq!(parked.len(), 1, "the job missing from the list is forgotten");
    assert_eq!(parked.wake(at(1_000)).len(), 1);
}

#[tokio::test]
async fn the_stage_hands_a_job_back_between_watch_events_when_it_wakes() {
    let parked = Arc::new(Parked::default());
    let due = Timestamp::now() + LEAD + jiff::SignedDuration::from_millis(300);
    let (events, watched) = futures::channel::mpsc::unbounded();
    let stage = stage::events(watched, parked.clone(), move |_: &PendingJob| Some(Some(due)));
    tokio::pin!(stage);
    let seen = job(UID, "7");
    events.unbounded_send(Ok(Event::Apply(seen.clone()))).expect("send");
    let first = stage.next().await.expect("event").expect("ok");
    assert!(matches!(first, Event::Delete(_)), "{first:?}");
    let back = tokio::time::timeout(Duration::from_secs(10), stage.next())
        .await
        .expect("woken in time")
        .expect("event")
        .expect("ok");
    assert!(matches!(back, Event::Apply(ref job) if same(job, &seen)), "{back:?}");
    assert!(Timestamp::now() + LEAD >= due, "not before its lead");
    drop(events);
    assert!(stage.next().await.is_none(), "ends with the watch");
}

#[test]
fn a_kept_job_is_its_compact_json_and_reads_back_whole() {
    let mut seen = job(UID, "7");
    if let Some(status) = seen.status.as_mut() {
        status.next_retry_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(at(100)));
    }
    let plain = serde_json::to_vec(&seen).expect("json");
    let kept = to_json(&seen).expect("kept");
    let text = String::from_utf8(inflate(&kept).expect("inflates")).expect("utf-8");
    for gone in [
        "apiVersion",
        "kind",
        UID,
        "\"ns\"",
        "\"suspend\"",
        "\"attempts\"",
        "\"retryCount\"",
        // Defaults the API server filled in.
        "\"method\"",
        "\"initialDelaySeconds\"",
        "\"multiplier\"",
    ] {
        assert!(!text.contains(gone), "{gone} in {text}");
    }
    assert!(
        text.len() + 120 < plain.len(),
        "{} of {} bytes",
        text.len(),
        plain.len()
    );
    assert!(
        kept.len() * 2 < text.len(),
        "deflated to {} of {} bytes",
        kept.len(),
        text.len()
    );
    let number = uid::parse(UID).expect("uid");
    assert!(reads_back(&kept, number, &seen));
    assert!(same(&from_json(&kept, number, "ns").expect("back"), &seen));
    // A field whose 0 is not its default does not read back: such a job stays in the cache.
    if let Some(status) = seen.status.as_mut() {
        status.observed_generation = Some(0);
    }
    let parked = Parked::default();
    assert!(matches!(
        parked.observe(Event::Apply(seen), LATER, at(0)),
        Some(Event::Apply(_))
    ));
}
