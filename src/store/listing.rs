//! How the controller's cache fills when a watch starts: the initial list.
//!
//! - `paged` (the default): a list, 100 jobs a page, then a watch from the
//!   list's resourceVersion. Every API server serves it.
//! - `stream`: a streaming list (KEP-3157, `sendInitialEvents=true`). The API
//!   server sends every object as a watch event from its watch cache, then a
//!   bookmark: no page round trips. It needs the `WatchList` feature gate,
//!   beta and on by default since Kubernetes 1.32; an older server never
//!   sends the bookmark the watcher waits for, and the cache never syncs.
//!
//! Measured on our 2-core machine with 10,000 jobs of 1 KiB (`make bench`'s
//! drain, run by hand with each choice): `stream` synced the cache in about
//! 1.2 s against 1.4 s, drained at 0.75-0.93 of the tight client's rate
//! against 0.80-0.90 (within the noise of the run), and left the operator
//! 9 MiB larger (62.6 against 53.7 MiB). Paged stays the default: it works
//! everywhere and keeps memory lower.

use std::fmt;

use kube::runtime::watcher;

/// Jobs per page of a paged initial list: a page is parsed whole, payloads
/// and all, before the cache slims it, so small pages keep the start-up peak
/// low (100 jobs of 64 KiB: 6.4 MB).
pub const PAGE_SIZE: u32 = 100;

/// The `--initial-list` choice.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InitialList {
    /// A paged list, then a watch.
    #[default]
    Paged,
    /// A streaming list (Kubernetes 1.32 and later).
    Stream,
}

impl fmt::Display for InitialList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Paged => "paged",
            Self::Stream => "stream",
        })
    }
}

impl InitialList {
    /// The watcher configuration for this choice.
    #[must_use]
    pub fn apply(self, config: watcher::Config) -> watcher::Config {
        match self {
            Self::Stream => config.streaming_lists(),
            Self::Paged => config.page_size(PAGE_SIZE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use InitialList::{Paged, Stream};

    #[test]
    fn the_flag_takes_the_words_the_log_prints() {
        use clap::ValueEnum;
        for choice in [Paged, Stream] {
            assert_eq!(InitialList::from_str(&choice.to_string(), false), Ok(choice));
        }
        assert!(InitialList::from_str("auto", false).is_err());
    }

    #[test]
    fn the_watcher_is_configured_for_the_choice() {
        let stream = Stream.apply(watcher::Config::default());
        assert_eq!(
            stream.initial_list_strategy,
            watcher::InitialListStrategy::StreamingList
        );
        let paged = Paged.apply(watcher::Config::default());
        assert_eq!(paged.initial_list_strategy, watcher::InitialListStrategy::ListWatch);
        assert_eq!(paged.page_size, Some(PAGE_SIZE));
    }
}
