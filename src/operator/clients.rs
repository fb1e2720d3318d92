//! The operator's two Kubernetes clients: one for long watches, one for
//! everything else, each with timeouts so that no API call can hang.

use std::time::Duration;

use kube::Client;

/// Idle time after which any read on the watch client fails: above the
/// watcher's own idle timeout.
const WATCH_READ_TIMEOUT: Duration = Duration::from_secs(70);

/// Failure to set the operator up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes client could not be built.
    #[error("building the Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// The two Kubernetes clients: one for long watches, one for everything else.
#[derive(Clone)]
pub struct Clients {
    /// For the controller's list and watch; idle-bounded by `WATCH_READ_TIMEOUT` (70 s).
    pub watch: Client,
    /// For reads, status writes, the Lease and Events; every call bounded by the API timeout.
    pub requests: Client,
}

impl Clients {
    /// Both clients from one configuration, so that no API call can hang:
    /// a half-open connection fails a request after `api_timeout`.
    pub fn new(config: kube::Config, api_timeout: Duration) -> Result<Self, Error> {
        let bounded = |read_timeout: Duration| {
            let mut config = config.clone();
            config.connect_timeout = Some(api_timeout);
            config.read_timeout = Some(read_timeout);
            config.write_timeout = Some(api_timeout);
            // The read timeout counts from each request, not from when a
            // pooled connection went idle.
            config.reset_reader_on_write = true;
            Client::try_from(config)
        };
        Ok(Self {
            watch: bounded(WATCH_READ_TIMEOUT)?,
            requests: bounded(api_timeout)?,
        })
    }
}
