//! Fair shares of the global call slots between namespaces.
//!
//! A namespace holds at most `share` of the pool's slots, even while it is
//! alone: a call in flight cannot be taken back without an unrecorded
//! attempt, so the rest must stay free for a namespace that comes later.
//! When several namespaces wait, each freed slot goes to the next one in
//! turn (round robin), and within a namespace to its calls in arrival order.
//!
//! A waiter that gives up (its future is dropped) leaves no slot behind,
//! even if one was handed to it in the same instant. Bookkeeping exists only
//! for namespaces that hold or wait for a slot, so it is bounded by the
//! calls in flight and waiting, not by how many namespaces there ever were.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

/// One of the pool's slots, held by a namespace; given back on drop.
#[derive(Debug)]
pub struct Share {
    pool: Arc<Pool>,
    namespace: String,
}

impl Drop for Share {
    fn drop(&mut self) {
        self.pool.release(&self.namespace);
    }
}

/// The pool: `size` slots, at most `share` to one namespace.
#[derive(Debug)]
pub struct Pool {
    share: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    free: usize,
    /// Slots held, by namespace; only namespaces holding one are here.
    held: HashMap<String, usize>,
    /// Each waiting namespace's calls, in arrival order.
    waiting: HashMap<String, VecDeque<oneshot::Sender<()>>>,
    /// Namespaces with waiting calls, in turn; each appears once.
    turns: VecDeque<String>,
}

impl Pool {
    /// `size` slots (at least 1), at most `share` (at least 1, at most
    /// `size`) held by one namespace.
    pub fn new(size: usize, share: usize) -> Arc<Self> {
        let size = size.max(1);
        Arc::new(Self {
            share: share.clamp(1, size),
            state: Mutex::new(State {
                free: size,
                ..State::default()
            }),
        })
    }

    /// The most slots one namespace may hold.
    pub fn share(&self) -> usize {
        self.share
    }

    /// Waits for a slot for a call of `namespace`.
    pub async fn acquire(self: &Arc<Self>, namespace: &str) -> Share {
        loop {
            let (granted, receiver) = oneshot::channel();
            {
                let mut state = self.lock();
                let queue = state.waiting.entry(namespace.to_owned()).or_default();
                // A namespace with calls waiting has its turn already.
                let has_turn = !queue.is_empty();
                // Waiters that gave up are skipped when their turn comes;
                // clear them out as the queue doubles, so they cannot pile up.
                if queue.len().is_power_of_two() {
                    queue.retain(|waiter| !waiter.is_closed());
                }
                queue.push_back(granted);
                if !has_turn {
                    state.turns.push_back(namespace.to_owned());
                }
                self.hand_out(&mut state);
            }
            let mut waiter = Waiter {
                pool: self.clone(),
                namespace: namespace.to_owned(),
                receiver,
                done: false,
            };
            let received = (&mut waiter.receiver).await;
            waiter.done = true;
            if received.is_ok() {
                return Share {
                    pool: self.clone(),
                    namespace: namespace.to_owned(),
                };
            }
            // Not reached: the pool drops a sender only by sending on it.
        }
    }

    /// How many slots `namespace` holds now.
    #[cfg(test)]
    fn held(&self, namespace: &str) -> usize {
        self.lock().held.get(namespace).copied().unwrap_or(0)
    }

    fn release(&self, namespace: &str) {
        let mut state = self.lock();
        state.free += 1;
        if let Some(held) = state.held.get_mut(namespace) {
            *held -= 1;
            if *held == 0 {
                state.held.remove(namespace);
            }
        }
        self.hand_out(&mut state);
    }

    /// Gives free slots to waiting calls, one namespace after another,
    /// skipping namespaces that hold their share already.
    fn hand_out(&self, state: &mut State) {
        let mut passes = state.turns.len();
        while state.free > 0 && passes > 0 {
            let Some(namespace) = state.turns.pop_front() else {
                return;
            };
            if state.held.get(&namespace).copied().unwrap_or(0) >= self.share {
                // At its share: it waits for one of its own calls to end.
                state.turns.push_back(namespace);
                passes -= 1;
                continue;
            }
            let Some(queue) = state.waiting.get_mut(&namespace) else {
                passes = state.turns.len();
                continue;
            };
            let mut given = false;
            while let Some(waiter) = queue.pop_front() {
                if waiter.send(()).is_ok() {
                    given = true;
                    break;
                }
            }
            let more = !queue.is_empty();
            if !more {
                state.waiting.remove(&namespace);
            }
            if given {
                state.free -= 1;
                *state.held.entry(namespace.clone()).or_default() += 1;
            }
            if more {
                state.turns.push_back(namespace);
            }
            passes = state.turns.len();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A call waiting for a slot. Dropped before it took the slot handed to it,
/// it gives that slot back.
struct Waiter {
    pool: Arc<Pool>,
    namespace: String,
    receiver: oneshot::Receiver<()>,
    done: bool,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if !self.done {
            self.receiver.close();
            if self.receiver.try_recv().is_ok() {
                self.pool.release(&self.namespace);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn pending<T>(future: &mut (impl Future<Output = T> + Unpin)) -> bool {
        tokio::time::timeout(Duration::from_millis(1), future).await.is_err()
    }

    #[tokio::test(start_paused = true)]
    async fn a_namespace_alone_holds_at_most_its_share() {
        let pool = Pool::new(4, 2);
        let held = [pool.acquire("a").await, pool.acquire("a").await];
        let mut third = Box::pin(pool.acquire("a"));
        assert!(pending(&mut third).await, "a holds its share");
        // Another namespace finds the rest free at once.
        let other = [pool.acquire("b").await, pool.acquire("b").await];
        assert_eq!((pool.held("a"), pool.held("b")), (2, 2));
        drop(other);
        assert!(pending(&mut third).await, "b's slots are not a's to take");
        drop(held);
        let _third = third.await;
        assert_eq!(pool.held("a"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn freed_slots_go_round_the_waiting_namespaces() {
        let pool = Pool::new(2, 2);
        let mut held: VecDeque<Share> = [pool.acquire("a").await, pool.acquire("a").await].into();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for namespace in ["a", "a", "a", "b", "c"] {
            let (pool, order) = (pool.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let share = pool.acquire(namespace).await;
                order.lock().unwrap().push(namespace);
                share
            }));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Each freed slot goes to the next namespace in turn; in each, to
        // its first waiter.
        for _ in 0..5 {
            drop(held.pop_front());
            tokio::time::sleep(Duration::from_millis(1)).await;
            let granted = waiters.iter().position(|w| w.is_finished()).expect("one was granted");
            held.push_back(waiters.remove(granted).await.unwrap());
        }
        assert_eq!(*order.lock().unwrap(), ["a", "b", "c", "a", "a"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gives_up_leaves_no_slot_behind() {
        let pool = Pool::new(1, 1);
        let held = pool.acquire("a").await;
        let mut gone = Box::pin(pool.acquire("b"));
        assert!(pending(&mut gone).await);
        // The slot is handed to the waiter, which is dropped before it runs.
        drop(held);
        drop(gone);
        let _next = tokio::time::timeout(Duration::from_secs(1), pool.acquire("c"))
            .await
            .expect("the slot handed to a dropped waiter came back");
        // Many that give up while every slot is held do not pile up.
        for _ in 0..100 {
            let mut gone = Box::pin(pool.acquire("d"));
            assert!(pending(&mut gone).await);
        }
        assert!(pool.lock().waiting["d"].len() <= 64, "cleared as the queue doubles");
        assert_eq!(
            pool.lock().turns.iter().filter(|n| *n == "d").count(),
            1,
            "one turn each"
        );
        // One that gives up while others hold every slot is skipped.
        let mut skipped = Box::pin(pool.acquire("d"));
        assert!(pending(&mut skipped).await);
        drop(skipped);
        let mut after = Box::pin(pool.acquire("e"));
        assert!(pending(&mut after).await);
        drop(_next);
        let _e = tokio::time::timeout(Duration::from_secs(1), after)
            .await
            .expect("e is next");
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_kept_for_namespaces_that_are_done() {
        let pool = Pool::new(3, 2);
        for namespace in ["a", "b", "c", "d"] {
            drop(pool.acquire(namespace).await);
        }
        let state = pool.lock();
        assert_eq!(state.free, 3);
        assert!(state.held.is_empty() && state.waiting.is_empty() && state.turns.is_empty());
    }

    #[test]
    fn the_share_is_within_the_pool() {
        assert_eq!(Pool::new(16, 8).share(), 8);
        assert_eq!(Pool::new(4, 10).share(), 4);
        assert_eq!(Pool::new(4, 0).share(), 1);
        assert_eq!(Pool::new(0, 0).share(), 1);
    }
}
