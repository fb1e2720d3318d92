//! The job controller's task registry: at most one task per job at a time
//! (its attempt or its dead letter), each tracked so that shutdown can wait
//! for the ones in flight.
//!
//! A task is any future: the registry never names what it runs, so it sits
//! below everything that spawns.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::TaskTracker;

use crate::api::JobKey;

/// What [`Tasks::spawn`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spawned {
    /// The task runs.
    Started,
    /// The job has a task already; none was started.
    Busy,
    /// The operator is stopping; none was started.
    Stopping,
}

/// The jobs' tasks.
pub struct Tasks {
    /// Jobs with a task.
    running: Arc<Mutex<HashSet<JobKey>>>,
    tracker: TaskTracker,
    /// Cancelled at shutdown: tasks not yet calling give up.
    stopping: CancellationToken,
}

impl Default for Tasks {
    fn default() -> Self {
        Self {
            running: Arc::default(),
            tracker: TaskTracker::new(),
            stopping: CancellationToken::new(),
        }
    }
}

impl Tasks {
    /// Runs `task` for job `key`, unless the job has a task already or the
    /// operator is stopping. The job counts as busy until the task ends,
    /// even if it panics.
    pub fn spawn<F>(&self, key: JobKey, task: F) -> Spawned
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if self.stopping.is_cancelled() {
            return Spawned::Stopping;
        }
        if !lock(&self.running).insert(key.clone()) {
            return Spawned::Busy;
        }
        let busy = Busy {
            running: self.running.clone(),
            key,
        };
        self.tracker.spawn(async move {
            let _busy = busy;
            task.await;
        });
        Spawned::Started
    }

    /// True while job `key` has a task.
    pub fn is_running(&self, key: &JobKey) -> bool {
        lock(&self.running).contains(key)
    }

    /// Resolves once shutdown has begun.
    pub fn stopped(&self) -> WaitForCancellationFuture<'_> {
        self.stopping.cancelled()
    }

    /// Starts no more tasks; waits for those running to end.
    pub async fn drain(&self) {
        self.stopping.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Marks a job as having its task until dropped.
struct Busy {
    running: Arc<Mutex<HashSet<JobKey>>>,
    key: JobKey,
}

impl Drop for Busy {
    fn drop(&mut self) {
        lock(&self.running).remove(&self.key);
    }
}

fn lock(running: &Mutex<HashSet<JobKey>>) -> MutexGuard<'_, HashSet<JobKey>> {
    running.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> JobKey {
        ("ns".to_owned(), name.to_owned())
    }

    #[tokio::test]
    async fn one_task_per_job_and_none_once_stopping() {
        let tasks = Tasks::default();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let first = tasks.spawn(key("a"), async move {
            let _ = released.await;
        });
        assert_eq!(first, Spawned::Started);
        assert!(tasks.is_running(&key("a")));
        assert_eq!(tasks.spawn(key("a"), async {}), Spawned::Busy);
        assert_eq!(tasks.spawn(key("b"), async {}), Spawned::Started);
        release.send(()).expect("the task waits");
        tasks.drain().await;
        assert!(!tasks.is_running(&key("a")) && !tasks.is_running(&key("b")));
        assert_eq!(tasks.spawn(key("a"), async {}), Spawned::Stopping);
    }

    #[tokio::test]
    async fn a_task_that_panics_frees_its_job() {
        let tasks = Tasks::default();
        tasks.spawn(key("a"), async { panic!("a task's bug") });
        tasks.drain().await;
        assert!(!tasks.is_running(&key("a")));
    }
}
