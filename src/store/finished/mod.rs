//! Finished jobs that need nothing until they change: kept compact, apart
//! from the controller's cache.
//!
//! A finished job whose dead letter (if any) is delivered and whose redrive
//! (if any) is acted on waits only for its time to live, or for nothing.
//! Such a job leaves the controller's cache and is kept here as about 100
//! bytes: its name, uid, resourceVersion, phase and the time it is due to
//! be deleted. That is all TTL deletion and the job gauges read. A watch
//! event that shows the job needing something again (a redrive, say) brings
//! the whole object, which goes back to the controller: nothing here is
//! ever decided from.
//!
//! Invariants:
//! - A job is either here or in the controller's cache, never both: [`Finished::observe`]
//!   turns the watch event of a job it keeps into a delete for the cache.
//! - A job deleted, or missing from a relist, leaves at once.
//! - A job is kept only when its uid and resourceVersion round-trip
//!   exactly, so a deletion's preconditions name the very object seen.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::watcher::Event;
use tokio::sync::Notify;

use super::uid;
use crate::api::{JobKey, PendingJob, Phase};

/// A kept job, its name aside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    uid: u128,
    resource_version: u64,
    /// Milliseconds since the epoch at which it is deleted; `i64::MAX` for never.
    delete_at: i64,
    phase: Phase,
    /// The list that last showed it.
    listed: u32,
}

/// What decides whether a finished job can be kept here: `None` when it
/// needs the controller, else `Some` of when it is to be deleted, if ever.
pub type Settled<'a> = &'a dyn Fn(&PendingJob) -> Option<Option<Timestamp>>;

/// A job due for deletion: what a precondition-guarded delete names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    /// Its namespace and name.
    pub key: JobKey,
    /// Its uid, as the API server spells it.
    pub uid: String,
    /// The resourceVersion it was kept at.
    pub resource_version: String,
}

#[derive(Default)]
struct Inner {
    /// By namespace, then name.
    jobs: HashMap<Box<str>, HashMap<Box<str>, Entry>>,
    /// `(delete_at, namespace, name)` of those with a deletion time.
    expiring: BTreeSet<(i64, Box<str>, Box<str>)>,
    /// The current list, counted from 1; 0 before any.
    list: u32,
}

/// The compact store of finished jobs.
#[derive(Default)]
pub struct Finished {
    inner: Mutex<Inner>,
    /// Told when the next deletion comes sooner than it did.
    sooner: Notify,
}

impl Finished {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes in one watch event: keeps the job when `settled` says so, and
    /// returns the event the controller's cache should see instead (a delete
    /// for a job kept here; nothing for one listed), or the event itself.
    pub fn observe(&self, event: Event<PendingJob>, settled: Settled<'_>) -> Option<Event<PendingJob>> {
        let mut inner = self.lock();
        let next = inner.next_at();
        let seen = inner.apply(event, settled);
        if inner.next_at() < next {
            self.sooner.notify_one();
        }
        seen
    }

    /// How many jobs are kept, by namespace and phase.
    pub fn counts(&self) -> Vec<((String, Phase), i64)> {
        let inner = self.lock();
        let mut counts = Vec::new();
        for (namespace, jobs) in &inner.jobs {
            for phase in [Phase::Succeeded, Phase::Failed] {
                let n = jobs.values().filter(|e| e.phase == phase).count();
                if n > 0 {
                    counts.push(((namespace.to_string(), phase), i64::try_from(n).unwrap_or(i64::MAX)));
                }
            }
        }
        counts
    }

    /// How many jobs are kept.
    pub fn len(&self) -> usize {
        self.lock().jobs.values().map(HashMap::len).sum()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resolves when the next deletion comes sooner than it did (at once
    /// when it did since the last call).
    pub async fn sooner(&self) {
        self.sooner.notified().await;
    }

    /// When the next kept job is due for deletion, if any is.
    pub fn next_deletion(&self) -> Option<Timestamp> {
        let inner = self.lock();
        let (at, _, _) = inner.expiring.first()?;
        Timestamp::from_millisecond(*at).ok()
    }

    /// Takes at most `most` jobs due for deletion at `now` off the schedule,
    /// for one delete each. They stay kept until their delete is seen; one
    /// whose delete failed is handed back with [`Finished::retry_at`].
    pub fn take_due(&self, now: Timestamp, most: usize) -> Vec<Due> {
        let mut inner = self.lock();
        let mut due = Vec::new();
        while due.len() < most {
            if inner
                .expiring
                .first()
                .is_none_or(|(at, _, _)| *at > now.as_millisecond())
            {
                break;
            }
            let Some((_, namespace, name)) = inner.expiring.pop_first() else {
                break;
            };
            if let Some(entry) = inner.jobs.get(&namespace).and_then(|jobs| jobs.get(&name)) {
                due.push(Due {
                    uid: uid::spell(entry.uid),
                    resource_version: entry.resource_version.to_string(),
                    key: (namespace.into(), name.into()),
                });
            }
        }
        due
    }

    /// Puts `due` back on the schedule at `at`, unless it changed meanwhile.
    pub fn retry_at(&self, due: &Due, at: Timestamp) {
        let mut inner = self.lock();
        let (namespace, name) = (due.key.0.as_str(), due.key.1.as_str());
        let Some(entry) = inner.jobs.get_mut(namespace).and_then(|jobs| jobs.get_mut(name)) else {
            return;
        };
        if entry.resource_version.to_string() != due.resource_version || entry.delete_at == i64::MAX {
            return;
        }
        entry.delete_at = at.as_millisecond();
        let at = entry.delete_at;
        inner.expiring.insert((at, namespace.into(), name.into()));
        drop(inner);
        self.sooner.notify_one();
    }
}

impl Inner {
    /// When the next deletion is due; `i64::MAX` for none.
    fn next_at(&self) -> i64 {
        self.expiring.first().map_or(i64::MAX, |(at, _, _)| *at)
    }

    fn apply(&mut self, event: Event<PendingJob>, settled: Settled<'_>) -> Option<Event<PendingJob>> {
        match event {
            Event::Apply(job) => match compact(&job, settled, self.list) {
                Some(entry) => {
                    self.keep(&job, entry);
                    Some(Event::Delete(job))
                }
                None => {
                    self.remove(&job);
                    Some(Event::Apply(job))
                }
            },
            Event::Delete(job) => {
                self.remove(&job);
                Some(Event::Delete(job))
            }
            Event::Init => {
                self.list += 1;
                Some(Event::Init)
            }
            Event::InitApply(job) => match compact(&job, settled, self.list) {
                Some(entry) => {
                    self.keep(&job, entry);
                    None
                }
                None => {
                    self.remove(&job);
                    Some(Event::InitApply(job))
                }
            },
            Event::InitDone => {
                self.forget_unlisted();
                Some(Event::InitDone)
            }
        }
    }

    fn keep(&mut self, job: &PendingJob, entry: Entry) {
        let (namespace, name) = (job.namespace().unwrap_or_default(), job.name_any());
        let jobs = self.jobs.entry(namespace.as_str().into()).or_default();
        let old = jobs.insert(name.as_str().into(), entry);
        if let Some(old) = old.filter(|old| old.delete_at != i64::MAX) {
            self.expiring
                .remove(&(old.delete_at, namespace.as_str().into(), name.as_str().into()));
        }
        if entry.delete_at != i64::MAX {
            self.expiring.insert((entry.delete_at, namespace.into(), name.into()));
        }
    }

    fn remove(&mut self, job: &PendingJob) {
        let (namespace, name) = (job.namespace().unwrap_or_default(), job.name_any());
        let Some(jobs) = self.jobs.get_mut(namespace.as_str()) else {
            return;
        };
        let old = jobs.remove(name.as_str());
        if jobs.is_empty() {
            self.jobs.remove(namespace.as_str());
        }
        if let Some(old) = old.filter(|old| old.delete_at != i64::MAX) {
            self.expiring.remove(&(old.delete_at, namespace.into(), name.into()));
        }
    }

    fn forget_unlisted(&mut self) {
        let list = self.list;
        let expiring = &mut self.expiring;
        for (namespace, jobs) in &mut self.jobs {
            jobs.retain(|name, entry| {
                let listed = entry.listed == list;
                if !listed && entry.delete_at != i64::MAX {
                    expiring.remove(&(entry.delete_at, namespace.clone(), name.clone()));
                }
                listed
            });
        }
        self.jobs.retain(|_, jobs| !jobs.is_empty());
        for jobs in self.jobs.values_mut() {
            jobs.shrink_to_fit();
        }
        self.jobs.shrink_to_fit();
    }
}

/// `job` as kept here, when `settled` allows and its identity round-trips.
fn compact(job: &PendingJob, settled: Settled<'_>, list: u32) -> Option<Entry> {
    let phase = job.status.as_ref()?.phase;
    if !phase.is_terminal() {
        return None;
    }
    let delete_at = settled(job)?;
    let uid = job.uid().and_then(|uid| uid::parse(&uid))?;
    let resource_version = job.resource_version()?;
    let parsed: u64 = resource_version.parse().ok()?;
    (parsed.to_string() == resource_version).then_some(Entry {
        uid,
        resource_version: parsed,
        // Never early: a deletion due within a millisecond waits for its end.
        delete_at: delete_at.map_or(i64::MAX, |at| {
            at.as_millisecond() + i64::from(at.subsec_nanosecond() % 1_000_000 > 0)
        }),
        phase,
        listed: list,
    })
}

#[cfg(test)]
mod tests;
