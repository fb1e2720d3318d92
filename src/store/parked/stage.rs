//! The one stage through which the controller's cache sees job events:
//! watch events, with jobs that can wait kept in [`Parked`], and those
//! that wake handed back between them.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use jiff::Timestamp;
use kube::runtime::watcher::{self, Event};

use super::Parked;
use crate::api::PendingJob;

/// An input of [`events`]: a watch event, or a look at what is due.
// One at a time is in flight: boxing the event would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Input {
    Watched(Result<Event<PendingJob>, watcher::Error>),
    Wake,
    End,
}

/// The watch `events` as the controller's cache should see them: jobs
/// that `waits` says can wait are kept in `parked`, and handed back as
/// `Apply` events when they wake. Ends when `events` ends.
pub fn events<S, W>(
    events: S,
    parked: Arc<Parked>,
    waits: W,
) -> impl Stream<Item = Result<Event<PendingJob>, watcher::Error>> + Send + 'static
where
    S: Stream<Item = Result<Event<PendingJob>, watcher::Error>> + Send + 'static,
    W: Fn(&PendingJob) -> Option<Option<Timestamp>> + Send + 'static,
{
    let wakes = futures::stream::unfold(parked.clone(), |parked| async move {
        parked.next_wake().await;
        Some((Input::Wake, parked))
    });
    let watched = events
        .map(Input::Watched)
        .chain(futures::stream::once(async { Input::End }));
    futures::stream::select(watched, wakes)
        .take_while(|input| std::future::ready(!matches!(input, Input::End)))
        .flat_map(move |input| {
            let now = Timestamp::now();
            let out: Vec<_> = match input {
                Input::Watched(Ok(event)) => {
                    let list_done = matches!(event, Event::InitDone);
                    let seen = parked.observe(event, &waits, now);
                    // Those that came due during the list go back after it.
                    let woken = if list_done { parked.wake(now) } else { Vec::new() };
                    seen.into_iter().chain(woken).map(Ok).collect()
                }
                Input::Watched(Err(error)) => vec![Err(error)],
                Input::Wake => parked.wake(now).into_iter().map(Ok).collect(),
                Input::End => Vec::new(),
            };
            futures::stream::iter(out)
        })
}
