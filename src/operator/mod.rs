//! The operator process: wait for the API, join the leader election, wire
//! the watches, caches and both controllers together, report readiness, and
//! shut down gracefully. It decides nothing itself; every layer below does.

pub mod clients;

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt, TryStreamExt};
use kube::api::ListParams;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::api::{Destination, PendingJob};
use crate::delivery::Delivery;
use crate::delivery::clients::HttpClients;
use crate::delivery::slots::Slots;
use crate::destination::credentials::Credentials;
use crate::destination::forget::Forget;
use crate::destination::reconciler as destinations;
use crate::destination::secrets;
use crate::job::context::{Calls, Context};
use crate::job::expire;
use crate::job::plan::{self, Facts};
use crate::job::reconciler::{error_policy, reconcile};
use crate::leadership::campaign::LeaseSettings;
use crate::leadership::election::Election;
use crate::leadership::term::Tenure;
use crate::observe::admin::Admin;
use crate::observe::metrics::Metrics;
use crate::store::cache::{self, JobCache};
use crate::store::finished::Finished;
use crate::store::listing::InitialList;
use crate::store::parked::{self, Parked};
use crate::store::payloads::{self, Payloads};
use clients::Clients;

/// Reconciles at once; each only decides and starts a task, so this bounds
/// work on the cache, not calls.
const RECONCILE_CONCURRENCY: u16 = 64;
/// How often to retry listing PendingJobs at start-up (no CRD yet, API down).
const STARTUP_RETRY: Duration = Duration::from_secs(5);
/// How often the readiness task re-checks the controller's cache.
const READY_POLL: Duration = Duration::from_millis(200);
/// How long to wait for the Lease to be released on exit.
pub const LEASE_RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Seconds after which the API server ends each watch, and the watcher starts
/// a new one from where it was. The watcher also gives up on a watch that has
/// been silent that long (plus 5 s), so a connection that died without a word
/// (a partition) delays new events by about a minute, not kube's default 5.
const WATCH_TIMEOUT_SECONDS: u32 = 60;
/// A cache of the Destinations in `namespace` (all when `None`), and the
/// watch that keeps it, for their controller to run.
fn watch_destinations(
    client: &Client,
    namespace: Option<&str>,
    initial_list: InitialList,
    (credentials, delivery): (Arc<Credentials>, Arc<Delivery>),
) -> (
    Store<Destination>,
    impl Stream<Item = Result<Destination, watcher::Error>> + Send + 'static,
) {
    let api: Api<Destination> = match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let (store, writer) = reflector::store();
    // Forget sees each event before the cache, which still shows what it replaces.
    let mut forget = Forget::new(credentials, delivery, store.clone());
    let config = initial_list.apply(watcher::Config::default().timeout(WATCH_TIMEOUT_SECONDS));
    let watch = watcher(api, config)
        .default_backoff()
        .modify(cache::slim_destination)
        .inspect_ok(move |event| forget.observe(event))
        .reflect(writer)
        .applied_objects();
    (store, watch)
}

/// What `run` needs to know.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Only watch this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    /// Most calls to targets in flight at once.
    pub max_concurrent_dispatches: u16,
    /// Most calls in flight at once to one target (scheme, host and port).
    pub max_concurrent_per_target: u16,
    /// Most calls in flight for one namespace.
    pub max_concurrent_per_namespace: u16,
    /// After SIGTERM, how long in-flight attempts may take to finish and be recorded.
    pub shutdown_grace: Duration,
    /// Leader election; `None` runs as the only instance.
    pub lease: Option<LeaseSettings>,
    /// This instance's name, in Events and the Lease.
    pub identity: String,
    /// Most bytes of payloads kept in memory (see [`crate::store::payloads`]).
    pub payload_cache_bytes: usize,
    /// How the caches are filled when their watches start.
    pub initial_list: InitialList,
    /// How long after finishing a job that sets no `ttlSecondsAfterFinished`
    /// is deleted; `None` keeps it.
    pub default_ttl: Option<Duration>,
}

/// Runs the controller until `shutdown` turns true; then lets in-flight
/// attempts finish and be recorded for at most `settings.shutdown_grace`, and
/// releases the Lease.
pub async fn run(
    clients: Clients,
    http: HttpClients,
    settings: Settings,
    admin: Admin,
    shutdown: watch::Receiver<bool>,
) {
    let jobs = |client: &Client| -> Api<PendingJob> {
        match &settings.namespace {
            Some(namespace) => Api::namespaced(client.clone(), namespace),
            None => Api::all(client.clone()),
        }
    };
    let api = jobs(&clients.watch);
    if !wait_for_api(&jobs(&clients.requests), shutdown.clone()).await {
        return;
    }
    let initial_list = settings.initial_list.resolve(&jobs(&clients.requests)).await;
    let election = match &settings.lease {
        Some(lease) => Election::join(clients.requests.clone(), lease.clone()),
        None => Election::none(),
    };
    let leadership = election.leadership.clone();
    info!(
        namespace = ?settings.namespace,
        calls = settings.max_concurrent_dispatches,
        calls_per_namespace = settings.max_concurrent_per_namespace,
        calls_per_target = settings.max_concurrent_per_target,
        %initial_list,
        "controller starting"
    );

    let slots = Slots::new(
        usize::from(settings.max_concurrent_dispatches),
        usize::from(settings.max_concurrent_per_namespace),
        usize::from(settings.max_concurrent_per_target),
    );
    let (store, writer) = reflector::store();
    let payloads = Arc::new(Payloads::new(settings.payload_cache_bytes));
    let delivery = Arc::new(Delivery::new(http, slots));
    let credentials = Arc::new(Credentials::new(
        clients.requests.clone(),
        delivery.clients.clone(),
        admin.metrics.credential_reads.clone(),
    ));
    tokio::spawn(sweep_secret_values(credentials.clone()));
    let (destinations, destination_events) = watch_destinations(
        &clients.watch,
        settings.namespace.as_deref(),
        initial_list,
        (credentials.clone(), delivery.clone()),
    );
    let (destination_changes, changed_destinations) = tokio::sync::mpsc::unbounded_channel();
    let finished = Arc::new(Finished::default());
    let parked = Arc::new(Parked::default());
    let cache = JobCache {
        store: store.clone(),
        finished: finished.clone(),
        parked: parked.clone(),
        payloads: payloads.clone(),
        destinations: destinations.clone(),
    };
    let destination_ctx = Arc::new(destinations::Context {
        client: clients.requests.clone(),
        leadership: leadership.clone(),
        credentials: credentials.clone(),
        delivery: delivery.clone(),
    });
    let ctx = Arc::new(
        Context::new(
            clients.requests,
            settings.namespace.clone(),
            cache,
            Calls {
                delivery,
                credentials,
                destination_changes,
            },
            admin.metrics.clone(),
            &settings.identity,
            leadership.clone(),
        )
        .with_default_ttl(settings.default_ttl),
    );
    admin
        .metrics
        .calls_limit
        .set(i64::from(settings.max_concurrent_dispatches));
    tokio::spawn(follow_leadership(leadership.subscribe(), admin.metrics.clone()));
    // Reconciles only decide and start tasks; they never wait on a target.
    let config = controller::Config::default().concurrency(RECONCILE_CONCURRENCY);
    let watch = initial_list.apply(watcher::Config::default().timeout(WATCH_TIMEOUT_SECONDS));
    let default_ttl = settings.default_ttl;
    let settled = move |job: &PendingJob| {
        let status = job.status.clone().unwrap_or_default();
        let settled = plan::settled(&Facts::of(job, &status, default_ttl), jiff::Timestamp::now());
        if let Some(delete_at) = settled {
            let (namespace, name) = (job.namespace().unwrap_or_default(), job.name_any());
            debug!(%namespace, %name, decision = %"Kept", ?delete_at, "finished: kept compact until it changes");
        }
        settled
    };
    let waits = move |job: &PendingJob| {
        let status = job.status.clone().unwrap_or_default();
        plan::waits(&Facts::of(job, &status, default_ttl), jiff::Timestamp::now())
    };
    let watched = watcher(api, watch)
        .default_backoff()
        .map_ok(move |event| payloads.observe(event))
        // Finished jobs with nothing owed leave the cache for the compact store.
        .try_filter_map(move |event| std::future::ready(Ok(finished.observe(event, &settled))))
        .modify(cache::slim);
    // Jobs that wait long leave it too, until shortly before they are due.
    let jobs = parked::stage::events(watched, parked.clone(), waits)
        .reflect(writer)
        .inspect_ok({
            let ctx = ctx.clone();
            move |event| {
                ctx.freshness.observe(event);
                match event {
                    // A job kept apart keeps what its next attempt must know.
                    watcher::Event::Delete(job) if !parked.contains(job) => {
                        ctx.forget_deleted(&job.namespace().unwrap_or_default(), &job.name_any());
                    }
                    // A list parses every job whole, most of them finished and
                    // kept compact after: give the pages it left back.
                    watcher::Event::InitDone => payloads::release_freed_memory(),
                    _ => {}
                }
            }
        })
        .applied_objects();
    let controller = Controller::for_stream(jobs, store.clone()).with_config(config);
    admin.set_store(ctx.cache.clone());
    tokio::spawn(expire::run(ctx.clone()));
    tokio::spawn({
        let parked = ctx.cache.parked.clone();
        async move { parked.release_after_bursts().await }
    });
    tokio::spawn(mark_ready_when_synced(store, admin.clone()));

    // Destinations: their Ready condition, written by the leader.
    tokio::spawn(
        Controller::for_stream(destination_events, destinations)
            .reconcile_all_on(leadership_gained(leadership.subscribe()))
            .reconcile_on(futures::stream::unfold(
                changed_destinations,
                |mut changed| async move { changed.recv().await.map(|destination| (destination, changed)) },
            ))
            .graceful_shutdown_on(signalled(shutdown.clone()))
            .run(destinations::reconcile, destinations::error_policy, destination_ctx)
            .for_each(|result| {
                if let Err(error) = result {
                    debug!(%error, "Destination controller");
                }
                std::future::ready(())
            }),
    );

    let stopping = signalled(shutdown.clone());
    let controller = controller
        .reconcile_all_on(leadership_gained(leadership.subscribe()))
        .graceful_shutdown_on(stopping)
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|result| {
            match result {
                Ok(_) => {}
                // A requeue for a job deleted meanwhile: nothing left to do.
                Err(controller::Error::ObjectNotFound(job)) => {
                    debug!(%job, "job deleted before its requeue");
                    ctx.forget_deleted(job.namespace.as_deref().unwrap_or_default(), &job.name);
                }
                Err(error) => warn!(%error, "controller"),
            }
            std::future::ready(())
        });
    let grace = settings.shutdown_grace;
    let grace_elapsed = async {
        signalled(shutdown.clone()).await;
        admin.set_ready(false);
        info!(?grace, "shutting down: no new attempts; waiting for in-flight ones");
        tokio::time::sleep(grace).await;
    };
    let drained = async {
        controller.await;
        ctx.drain().await;
    };
    tokio::select! {
        () = drained => info!("controller stopped; every attempt started was recorded"),
        () = grace_elapsed => warn!(?grace, "grace period over with attempts still in flight; they will be retried"),
    }
    admin.set_ready(false);
    election.release(LEASE_RELEASE_TIMEOUT).await;
}

/// Waits until PendingJobs can be listed (the CRD is installed and the API
/// server answers). Returns false if `shutdown` came first.
async fn wait_for_api(api: &Api<PendingJob>, shutdown: watch::Receiver<bool>) -> bool {
    let stop = signalled(shutdown);
    tokio::pin!(stop);
    loop {
        match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => return true,
            Err(error) => warn!(
                %error,
                "cannot list PendingJobs (is the CRD installed? `kubectl apply --server-side -f crds/`); retrying"
            ),
        }
        tokio::select! {
            () = &mut stop => return false,
            () = tokio::time::sleep(STARTUP_RETRY) => {}
        }
    }
}

/// Reports ready on `/readyz` once the controller's cache has synced.
async fn mark_ready_when_synced(store: Store<PendingJob>, admin: Admin) {
    // Re-poll: the store's readiness wakes only its latest waiter, and the
    // controller itself waits on it too.
    loop {
        match tokio::time::timeout(READY_POLL, store.wait_until_ready()).await {
            Ok(Ok(())) => {
                info!("controller cache synced; ready");
                return admin.set_ready(true);
            }
            Ok(Err(error)) => return warn!(%error, "controller cache never synced"),
            Err(_) => {}
        }
    }
}

/// Drops Secret values past their time every [`secrets::VALUE_TTL`]: a
/// lock and a pass over the values held, no API request. Many small values
/// dropped at once leave pages the allocator keeps unless told.
async fn sweep_secret_values(credentials: Arc<Credentials>) {
    const MANY: usize = 1_000;
    let mut every = tokio::time::interval(secrets::VALUE_TTL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if credentials.secrets.sweep() >= MANY {
            payloads::release_freed_memory();
        }
    }
}

/// Resolves once `shutdown` is true (or its sender is gone).
async fn signalled(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// One item each time this instance starts a term as the leader.
fn leadership_gained(tenure: watch::Receiver<Option<Tenure>>) -> impl Stream<Item = ()> + Send {
    futures::stream::unfold(tenure, |mut tenure| async move {
        loop {
            tenure.changed().await.ok()?;
            if tenure.borrow_and_update().is_some() {
                return Some(((), tenure));
            }
        }
    })
}

/// Keeps the leader gauge and the log in step with the election.
/// The elector publishes on every look at the Lease, so a standby would log
/// every retry period; only a change of term is logged.
async fn follow_leadership(mut tenure: watch::Receiver<Option<Tenure>>, metrics: Arc<Metrics>) {
    let mut logged = None;
    loop {
        let term = tenure.borrow_and_update().map(|t| t.term);
        metrics.leader.set(i64::from(term.is_some()));
        if logged != Some(term) {
            info!(leader = term.is_some(), ?term, "leadership");
            logged = Some(term);
        }
        if tenure.changed().await.is_err() {
            metrics.leader.set(0);
            return;
        }
    }
}
