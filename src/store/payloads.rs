//! Payloads and headers of unfinished jobs, kept within a byte budget, so a
//! due job is called from the cache with no read of its own.
//!
//! The reflector keeps slim jobs (see [`super::cache`]); each payload and
//! set of headers the watch delivers is taken out of its job here first. A
//! job that still has calls to make keeps them (the payload as the exact
//! bytes of the request body) while the budget allows; a finished or deleted
//! job gives its bytes back. What does not fit is read with the job at call
//! time ([`crate::job::attempt`]), so the budget bounds memory, never
//! delivery, whatever size of headers tenants write.
//!
//! A relist (the watch restarting from a fresh list) may not tell of jobs
//! deleted meanwhile: payloads the new list did not show are dropped when it
//! ends, as the reflector drops their jobs.
//!
//! The bodies of a large backlog live as long as their jobs wait, among the
//! short-lived allocations of the watch, so glibc keeps their pages once
//! they are freed. When a backlog of at least 1 MiB has shrunk to a quarter,
//! freed memory is given back (`malloc_trim`): measured at 10,000 jobs of
//! 1 KiB, RSS 53 MiB after the drain instead of 70.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use kube::ResourceExt;
use kube::runtime::watcher::Event;

use super::uid;
use crate::api::PendingJob;
use crate::delivery::trace_context::TraceContext;

/// What a job's call sends of its own: its body, its extra headers and its
/// trace context.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Request {
    /// The payload's JSON; `None` for a job without a payload.
    pub body: Option<Bytes>,
    /// `spec.target.headers`.
    pub headers: BTreeMap<String, String>,
    /// The trace its calls continue (its trace-context annotations), boxed:
    /// most jobs have none.
    pub trace: Option<Box<TraceContext>>,
}

impl Request {
    fn bytes(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(name, value)| name.len() + value.len()).sum();
        let trace = self.trace.as_ref().map_or(0, |_| size_of::<TraceContext>());
        self.body.as_ref().map_or(0, Bytes::len) + headers + trace
    }
}

/// The trace job `job`'s annotations name, if valid.
fn trace_of(job: &PendingJob) -> Option<Box<TraceContext>> {
    TraceContext::from_annotations(job.metadata.annotations.as_ref()).map(Box::new)
}

/// Requests by job uid, and the bytes they hold in all.
#[derive(Debug)]
pub struct Payloads {
    budget: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    by_uid: HashMap<u128, Kept>,
    bytes: usize,
    /// The most bytes held since memory was last given back.
    high_water: usize,
    /// Counts lists; a payload is marked with the list that last showed it.
    list: u64,
}

#[derive(Debug)]
struct Kept {
    generation: Option<i64>,
    request: Request,
    list: u64,
}

impl Kept {
    fn bytes(&self) -> usize {
        self.request.bytes()
    }
}

impl Payloads {
    /// Keeps at most `budget` bytes of payloads.
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            state: Mutex::default(),
        }
    }

    /// Takes the payload and headers out of the job in `event`, keeping them
    /// while the job has calls to make and the budget allows, and returns
    /// the event.
    pub fn observe(&self, mut event: Event<PendingJob>) -> Event<PendingJob> {
        let mut state = self.state();
        match &mut event {
            Event::Apply(job) | Event::InitApply(job) => {
                let list = state.list;
                state.keep(job, self.budget, list);
            }
            Event::Delete(job) => {
                job.spec.payload = None;
                job.spec.target.headers.clear();
                if let Some(uid) = job.uid().and_then(|spelled| uid::parse(&spelled)) {
                    state.remove(uid);
                }
            }
            Event::Init => state.list += 1,
            Event::InitDone => state.drop_unlisted(),
        }
        state.high_water = state.high_water.max(state.bytes);
        if release_due(state.high_water, state.bytes) {
            state.high_water = state.bytes;
            drop(state);
            release_freed_memory();
        }
        event
    }

    /// The body and headers of job `uid` at `generation`, or `None` when
    /// they are not kept.
    pub fn request(&self, uid: &str, generation: Option<i64>) -> Option<Request> {
        self.state()
            .by_uid
            .get(&uid::parse(uid)?)
            .filter(|kept| kept.generation == generation)
            .map(|kept| kept.request.clone())
    }

    /// Bytes held in all.
    pub fn bytes(&self) -> usize {
        self.state().bytes
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether to give freed memory back to the system: once a backlog of at
/// least [`RELEASE_AFTER`] bytes has mostly gone (its jobs called and
/// finished), since the allocator keeps the freed pages otherwise.
fn release_due(high_water: usize, bytes: usize) -> bool {
    high_water >= RELEASE_AFTER && bytes <= high_water / 4
}

/// Payload bytes a backlog must have reached for its end to give memory back.
const RELEASE_AFTER: usize = 1 << 20;

/// Returns the allocator's free pages to the system (glibc's `malloc_trim`).
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl State {
    fn keep(&mut self, job: &mut PendingJob, budget: usize, list: u64) {
        let payload = job.spec.payload.take();
        let headers = std::mem::take(&mut job.spec.target.headers);
        // A uid the API server would not spell so is never kept: its job's
        // payload is read at call time.
        let Some(uid) = job.uid().and_then(|spelled| uid::parse(&spelled)) else {
            return;
        };
        self.remove(uid);
        let finished = job.status.as_ref().is_some_and(|s| s.phase.is_terminal());
        if finished {
            return;
        }
        let kept = Kept {
            generation: job.metadata.generation,
            request: Request {
                body: body_of(payload.as_ref()),
                headers,
                trace: trace_of(job),
            },
            list,
        };
        if self.bytes + kept.bytes() > budget {
            return;
        }
        self.bytes += kept.bytes();
        self.by_uid.insert(uid, kept);
    }

    fn remove(&mut self, uid: u128) {
        if let Some(kept) = self.by_uid.remove(&uid) {
            self.bytes -= kept.bytes();
        }
    }

    fn drop_unlisted(&mut self) {
        let list = self.list;
        let mut freed = 0;
        self.by_uid.retain(|_, kept| {
            let listed = kept.list == list;
            if !listed {
                freed += kept.bytes();
            }
            listed
        });
        self.bytes -= freed;
    }
}

/// The request body of a job with `payload`: the payload's JSON.
pub fn body_of(payload: Option<&serde_json::Value>) -> Option<Bytes> {
    // A JSON value always serializes. The buffer grew by doubling: kept as
    // it is, a 1 KiB body would hold 2 KiB.
    payload
        .and_then(|payload| serde_json::to_vec(payload).ok())
        .map(|body| Bytes::from(body.into_boxed_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{PendingJobStatus, Phase};

    /// The uid of the job named `name`, in the API server's spelling.
    fn uid_of(name: &str) -> String {
        uid::spell(u128::from(name.as_bytes()[0]))
    }

    fn job(name: &str, generation: i64, phase: Phase, payload: serde_json::Value) -> PendingJob {
        let mut job: PendingJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "pendingjob.dev/v1alpha1", "kind": "PendingJob",
            "metadata": {"name": name, "namespace": "ns", "uid": uid_of(name), "generation": generation},
            "spec": {"target": {"url": "http://api.example/x"}, "payload": payload},
        }))
        .expect("job");
        job.status = Some(PendingJobStatus {
            phase,
            ..PendingJobStatus::default()
        });
        job
    }

    fn body(payloads: &Payloads, name: &str, generation: i64) -> Option<Option<Bytes>> {
        payloads
            .request(&uid_of(name), Some(generation))
            .map(|request| request.body)
    }

    fn applied(payloads: &Payloads, job: PendingJob) -> PendingJob {
        match payloads.observe(Event::Apply(job)) {
            Event::Apply(job) => job,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_jobs_trace_is_kept_with_its_payload_as_its_annotations_say_now() {
        use crate::api::TRACEPARENT_ANNOTATION;
        let payloads = Payloads::new(1024);
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut traced = job("a", 1, Phase::Pending, serde_json::json!({}));
        traced
            .annotations_mut()
            .insert(TRACEPARENT_ANNOTATION.into(), parent.into());
        applied(&payloads, traced.clone());
        let kept = payloads.request(&uid_of("a"), Some(1)).expect("kept");
        assert_eq!(
            kept.trace.expect("a trace").trace_id(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        traced
            .annotations_mut()
            .insert(TRACEPARENT_ANNOTATION.into(), "garbage".into());
        applied(&payloads, traced);
        assert_eq!(payloads.request(&uid_of("a"), Some(1)).expect("kept").trace, None);
    }

    #[test]
    fn an_unfinished_job_leaves_its_body_here_and_none_in_the_job() {
        let payloads = Payloads::new(1024);
        let job = applied(&payloads, job("a", 1, Phase::Pending, serde_json::json!({"n": 1})));
        assert_eq!(job.spec.payload, None, "the cache never holds a payload");
        assert_eq!(body(&payloads, "a", 1), Some(Some(Bytes::from_static(b"{\"n\":1}"))));
        assert_eq!(body(&payloads, "a", 2), None, "another generation has another payload");
        assert_eq!(body(&payloads, "b", 1), None);
        assert_eq!(payloads.bytes(), 7);
    }

    #[test]
    fn a_job_without_a_payload_is_kept_with_no_body() {
        let payloads = Payloads::new(0);
        applied(&payloads, job("a", 1, Phase::Pending, serde_json::Value::Null));
        assert_eq!(body(&payloads, "a", 1), Some(None));
    }

    #[test]
    fn finished_and_deleted_jobs_give_their_bytes_back() {
        let payloads = Payloads::new(1024);
        applied(&payloads, job("a", 1, Phase::Retrying, serde_json::json!([1, 2])));
        applied(&payloads, job("b", 1, Phase::Pending, serde_json::json!([3])));
        applied(&payloads, job("a", 1, Phase::Succeeded, serde_json::json!([1, 2])));
        assert_eq!(body(&payloads, "a", 1), None);
        assert_eq!(payloads.bytes(), 3);
        payloads.observe(Event::Delete(job("b", 1, Phase::Pending, serde_json::json!([3]))));
        assert_eq!(body(&payloads, "b", 1), None);
        assert_eq!(payloads.bytes(), 0);
    }

    #[test]
    fn a_payload_over_the_budget_is_not_kept_and_a_new_version_replaces_the_old() {
        let payloads = Payloads::new(10);
        applied(&payloads, job("a", 1, Phase::Pending, serde_json::json!("12345678")));
        applied(&payloads, job("b", 1, Phase::Pending, serde_json::json!("1")));
        assert_eq!(payloads.bytes(), 10);
        assert_eq!(body(&payloads, "b", 1), None, "over the budget: read at call time");
        applied(&payloads, job("a", 2, Phase::Pending, serde_json::json!("1")));
        assert_eq!(body(&payloads, "a", 2), Some(Some(Bytes::from_static(b"\"1\""))));
        assert_eq!(payloads.bytes(), 3);
    }

    #[test]
    fn memory_is_given_back_once_a_large_backlog_has_mostly_gone() {
        let mib = 1 << 20;
        let cases = [
            (0, 0, false),
            (mib - 1, 0, false),
            (mib, 0, true),
            (4 * mib, 2 * mib, false),
            (4 * mib, mib, true),
            (32 * mib, 8 * mib, true),
            (32 * mib, 9 * mib, false),
        ];
        for (high_water, bytes, due) in cases {
            assert_eq!(release_due(high_water, bytes), due, "{high_water} -> {bytes}");
        }
    }

    #[test]
    fn a_relist_drops_payloads_of_jobs_it_no_longer_shows() {
        let payloads = Payloads::new(1024);
        applied(&payloads, job("gone", 1, Phase::Pending, serde_json::json!(1)));
        applied(&payloads, job("kept", 1, Phase::Pending, serde_json::json!(2)));
        payloads.observe(Event::Init);
        payloads.observe(Event::InitApply(job("kept", 1, Phase::Pending, serde_json::json!(2))));
        assert!(
            body(&payloads, "gone", 1).is_some(),
            "the old list stands until the new one is done"
        );
        payloads.observe(Event::InitDone);
        assert_eq!(body(&payloads, "gone", 1), None);
        assert!(body(&payloads, "kept", 1).is_some());
        assert_eq!(payloads.bytes(), 1);
    }

    #[test]
    fn headers_are_kept_beside_the_body_within_the_same_budget() {
        let payloads = Payloads::new(20);
        let with_headers = |uid: &str, value: &str| {
            let mut job = job(uid, 1, Phase::Pending, serde_json::json!(1));
            job.spec.target.headers.insert("X-Team".into(), value.into());
            job
        };
        let job = applied(&payloads, with_headers("a", "pay"));
        assert!(job.spec.target.headers.is_empty(), "the cache never holds headers");
        let request = payloads.request(&uid_of("a"), Some(1)).expect("kept");
        assert_eq!(request.headers["X-Team"], "pay");
        assert_eq!(payloads.bytes(), 1 + 6 + 3);
        // Large headers count against the budget like a large payload.
        applied(&payloads, with_headers("b", &"x".repeat(4096)));
        assert_eq!(
            payloads.request(&uid_of("b"), Some(1)),
            None,
            "over the budget: read at call time"
        );
        assert_eq!(payloads.bytes(), 10);
    }
}
