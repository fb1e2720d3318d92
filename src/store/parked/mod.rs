//! Unfinished jobs with nothing to do for a while: kept serialized, apart
//! from the controller's cache, until shortly before they are due.
//!
//! A job scheduled an hour ahead, retrying after a long backoff, or
//! suspended needs nothing until a time, or until it changes. The cache
//! would hold it as a whole object, with the controller's keys and timers
//! beside it, several times its JSON. Such a job leaves the cache and is
//! kept here as its slim JSON (what [`super::cache::slim`] leaves),
//! deflated against what kept jobs share ([`deflate`]), and its wake-up
//! time: [`LEAD`] before it is due, it goes back to the cache as it
//! was watched, and the controller takes it from there. Its payload stays
//! in [`super::payloads`], since it has a call to make.
//!
//! Invariants:
//! - A job is either here or in the controller's cache, never both:
//!   [`Parked::observe`] turns the watch event of a job it keeps into a
//!   delete for the cache, and a job that goes back leaves here first.
//! - Every event reaches the cache through one stage ([`stage::events`]), in order:
//!   a job that wakes is handed back between two watch events, never
//!   during a list (the cache would drop it with the list's end), so a
//!   newer watched version can never be overwritten by the one kept here.
//! - A job is kept only when its JSON reads back as the very object seen,
//!   so what goes back is what was watched.
//! - A job deleted, changed to need the controller, or missing from a
//!   relist, leaves at once.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::watcher::Event;
use tokio::sync::Notify;
use tracing::{debug, warn};

use super::uid;
use crate::api::{PendingJob, Phase};
use json::{from_json, reads_back, to_json};

/// How long before it is due a kept job goes back to the controller's
/// cache; a job due sooner than this is never kept.
pub const LEAD: Duration = Duration::from_secs(30);

/// Jobs kept after which freed memory is given back ([`Parked::release_after_bursts`]).
pub const BURST: u64 = 1_000;
/// How often [`Parked::release_after_bursts`] looks.
const BURST_LOOK: Duration = Duration::from_secs(2);

/// What decides whether an unfinished job can wait here: `None` when it
/// needs the controller, else `Some` of when it is next due, if ever
/// without a change.
pub type Waits<'a> = &'a dyn Fn(&PendingJob) -> Option<Option<Timestamp>>;

/// A kept job.
#[derive(Debug)]
struct Entry {
    namespace: Arc<str>,
    phase: Phase,
    /// Milliseconds since the epoch at which it goes back; `i64::MAX` for never.
    wake_at: i64,
    /// The list that last showed it.
    listed: u32,
    /// Its slim JSON, deflated.
    job: Box<[u8]>,
}

#[derive(Default)]
struct Inner {
    /// By uid.
    jobs: HashMap<u128, Entry>,
    /// `(wake_at, uid)` of those with a wake-up time.
    waking: BTreeSet<(i64, u128)>,
    /// The namespaces entries name, each once.
    namespaces: HashSet<Arc<str>>,
    /// The current list, counted from 1; 0 before any.
    list: u32,
    /// Whether a list is under way.
    listing: bool,
    /// How many times a job was kept, ever.
    kept: u64,
}

/// The store of unfinished jobs that wait.
#[derive(Default)]
pub struct Parked {
    inner: Mutex<Inner>,
    /// Told when the next wake-up comes sooner than it did, or a list ended.
    sooner: Notify,
}

impl Parked {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes in one watch event: keeps the job when `waits` says it waits
    /// past [`LEAD`] from `now`, and returns the event the controller's
    /// cache should see instead (a delete for a job kept here; nothing for
    /// one listed), or the event itself.
    pub fn observe(&self, event: Event<PendingJob>, waits: Waits<'_>, now: Timestamp) -> Option<Event<PendingJob>> {
        let mut inner = self.lock();
        let next = inner.next_at();
        let seen = inner.apply(event, waits, now);
        if inner.next_at() < next {
            self.sooner.notify_one();
        }
        seen
    }

    /// The jobs whose time has come at `now`, as watch events for the
    /// cache; none while a list is under way.
    pub fn wake(&self, now: Timestamp) -> Vec<Event<PendingJob>> {
        let mut inner = self.lock();
        if inner.listing {
            return Vec::new();
        }
        let mut woken = Vec::new();
        while let Some(&(at, uid)) = inner.waking.first()
            && at <= now.as_millisecond()
        {
            inner.waking.pop_first();
            if let Some(entry) = inner.jobs.remove(&uid) {
                match from_json(&entry.job, uid, &entry.namespace) {
                    Ok(job) => woken.push(Event::Apply(job)),
                    // Never so: it was kept only once it read back.
                    Err(error) => warn!(%error, namespace = %entry.namespace, "a kept job did not read back"),
                }
            }
        }
        woken
    }

    /// Resolves when a kept job may be due to wake: at the earliest
    /// wake-up time, or when that came sooner, or when a list ended.
    pub async fn next_wake(&self) {
        let at = self.lock().next_at();
        let sleep = async {
            if at == i64::MAX {
                return std::future::pending().await;
            }
            let wait = Timestamp::now().duration_until(Timestamp::from_millisecond(at).unwrap_or(Timestamp::MAX));
            tokio::time::sleep(Duration::try_from(wait).unwrap_or_default()).await;
        };
        tokio::select! {
            () = sleep => {}
            () = self.sooner.notified() => {}
        }
    }

    /// Whether `job` is kept here.
    pub fn contains(&self, job: &PendingJob) -> bool {
        let uid = job.uid().and_then(|uid| uid::parse(&uid));
        uid.is_some_and(|uid| self.lock().jobs.contains_key(&uid))
    }

    /// How many jobs are kept, by namespace and phase.
    pub fn counts(&self) -> HashMap<(String, Phase), i64> {
        let mut counts = HashMap::new();
        for entry in self.lock().jobs.values() {
            *counts.entry((entry.namespace.to_string(), entry.phase)).or_default() += 1;
        }
        counts
    }

    /// How many jobs are kept.
    pub fn len(&self) -> usize {
        self.lock().jobs.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Gives freed memory back once a burst of at least [`BURST`] jobs
    /// has been kept: each arrived whole, and left the cache for a few
    /// hundred bytes here, among allocations that live on, so the
    /// allocator would keep the pages they freed. Looks every
    /// [`BURST_LOOK`]; runs for good.
    pub async fn release_after_bursts(&self) {
        let mut every = tokio::time::interval(BURST_LOOK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut last, mut since_release) = (0, 0);
        loop {
            every.tick().await;
            let kept = self.lock().kept;
            let new = kept - last;
            last = kept;
            since_release += new;
            // At the burst's end, or every ten bursts' worth while it lasts.
            if since_release >= BURST && (new == 0 || since_release >= 10 * BURST) {
                super::payloads::release_freed_memory();
                since_release = 0;
            }
        }
    }
}

impl Inner {
    /// When the next job wakes; `i64::MAX` for none, or while listing.
    fn next_at(&self) -> i64 {
        match self.waking.first() {
            Some((at, _)) if !self.listing => *at,
            _ => i64::MAX,
        }
    }

    fn apply(&mut self, event: Event<PendingJob>, waits: Waits<'_>, now: Timestamp) -> Option<Event<PendingJob>> {
        match event {
            Event::Apply(job) => {
                if self.keep(&job, waits, now) {
                    Some(Event::Delete(job))
                } else {
                    Some(Event::Apply(job))
                }
            }
            Event::Delete(job) => {
                self.remove(&job);
                Some(Event::Delete(job))
            }
            Event::Init => {
                self.list += 1;
                self.listing = true;
                Some(Event::Init)
            }
            Event::InitApply(job) => (!self.keep(&job, waits, now)).then_some(Event::InitApply(job)),
            Event::InitDone => {
                self.listing = false;
                self.forget_unlisted();
                Some(Event::InitDone)
            }
        }
    }

    /// Keeps `job` when it waits long enough and reads back; otherwise
    /// makes sure it is not kept. Whether it is kept.
    fn keep(&mut self, job: &PendingJob, waits: Waits<'_>, now: Timestamp) -> bool {
        let Some(uid) = job.uid().and_then(|uid| uid::parse(&uid)) else {
            return false;
        };
        self.remove_uid(uid);
        let Some(wake_at) = wake_at(job, waits, now) else {
            return false;
        };
        let Some(bytes) = to_json(job).filter(|bytes| reads_back(bytes, uid, job)) else {
            return false;
        };
        let namespace = job.namespace().unwrap_or_default();
        debug!(%namespace, name = %job.name_any(), decision = %"Parked", wake_at = %Wake(wake_at), "waiting: kept apart until shortly before it is due");
        let namespace = match self.namespaces.get(namespace.as_str()) {
            Some(known) => known.clone(),
            None => {
                let new: Arc<str> = namespace.into();
                self.namespaces.insert(new.clone());
                new
            }
        };
        let entry = Entry {
            namespace,
            phase: job.status.as_ref().map(|s| s.phase).unwrap_or_default(),
            wake_at,
            listed: self.list,
            job: bytes,
        };
        if wake_at != i64::MAX {
            self.waking.insert((wake_at, uid));
        }
        self.jobs.insert(uid, entry);
        self.kept += 1;
        true
    }

    fn remove(&mut self, job: &PendingJob) {
        if let Some(uid) = job.uid().and_then(|uid| uid::parse(&uid)) {
            self.remove_uid(uid);
        }
    }

    fn remove_uid(&mut self, uid: u128) {
        if let Some(old) = self.jobs.remove(&uid)
            && old.wake_at != i64::MAX
        {
            self.waking.remove(&(old.wake_at, uid));
        }
    }

    fn forget_unlisted(&mut self) {
        let (list, waking) = (self.list, &mut self.waking);
        self.jobs.retain(|uid, entry| {
            let listed = entry.listed == list;
            if !listed && entry.wake_at != i64::MAX {
                waking.remove(&(entry.wake_at, *uid));
            }
            listed
        });
        self.jobs.shrink_to_fit();
        self.namespaces.retain(|namespace| Arc::strong_count(namespace) > 1);
        self.namespaces.shrink_to_fit();
    }
}

/// When `job` goes back to the cache, in milliseconds since the epoch
/// (`i64::MAX` for never without a change), if it can wait here at all.
fn wake_at(job: &PendingJob, waits: Waits<'_>, now: Timestamp) -> Option<i64> {
    let Some(due) = waits(job)? else {
        return Some(i64::MAX);
    };
    let lead = jiff::SignedDuration::try_from(LEAD).ok()?;
    let wake = due.checked_sub(lead).ok()?;
    (wake > now).then(|| wake.as_millisecond())
}

/// A wake-up time, for the log.
struct Wake(i64);

impl std::fmt::Display for Wake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match Timestamp::from_millisecond(self.0) {
            Ok(at) if self.0 != i64::MAX => at.fmt(f),
            _ => f.write_str("on a change"),
        }
    }
}

mod deflate;
mod json;
pub mod stage;

#[cfg(test)]
mod tests;
