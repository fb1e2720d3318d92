//! Calls run off the reconcile path, within a global limit and a limit per
//! target: a target that hangs holds only its own share.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pendingjob_operator::api::{PendingJob, Phase};
use tokio::net::TcpListener;

use crate::jobs::{SOON, job_yaml, setup};
use crate::processes::{MockApi2, Operator};
use crate::support::{kubectl_stdin, wait_until};

/// A listener that accepts connections and never answers; counts them.
pub(crate) async fn black_hole() -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
    let url = format!("http://{}/hang", listener.local_addr().expect("address"));
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (url, accepted, task)
}

/// `count` jobs named `prefix-N` calling `url`, applied in one `kubectl apply`.
fn apply_many(namespace: &str, prefix: &str, url: &str, count: usize) {
    let manifests: String = (0..count)
        .map(|n| {
            job_yaml(&format!("{prefix}-{n}"), url, "initialDelaySeconds: 1").replace(
                &format!("    url: {url}\n"),
                &format!("    url: {url}\n    timeoutSeconds: 30\n"),
            ) + "---\n"
        })
        .collect();
    let out = kubectl_stdin(&["apply", "--namespace", namespace, "-f", "-"], &manifests);
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_target_holds_only_its_share_of_the_calls() {
    let env = setup("isolation").await;
    let (hanging, accepted, _listener) = black_hole().await;
    let healthy = MockApi2::start(&[]);
    // The global limit at 16, the per-target limit at its default (4).
    let _operator = Operator::start(&env.namespace, &["--max-concurrent-dispatches", "16"]);

    apply_many(&env.namespace, "hang", &hanging, 40);
    wait_until("the hanging target's share to be taken", SOON, || async {
        (accepted.load(Ordering::SeqCst) >= 4).then_some(())
    })
    .await;
    let started = Instant::now();
    apply_many(&env.namespace, "ok", &healthy.simulate_url(), 40);
    let api = env.api::<PendingJob>();
    wait_until(
        "every healthy job to succeed within 10 s",
        Duration::from_secs(10),
        || async {
            let jobs = api.list(&Default::default()).await.expect("list");
            let done = jobs
                .items
                .iter()
                .filter(|j| j.metadata.name.as_deref().is_some_and(|n| n.starts_with("ok-")))
                .filter(|j| j.status.as_ref().is_some_and(|s| s.phase == Phase::Succeeded))
                .count();
            (done == 40).then_some(())
        },
    )
    .await;
    eprintln!(
        "isolation: 40 healthy jobs Succeeded {:.2} s after their apply, beside 40 hanging ones",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(healthy.stats().await.total_requests, 40);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        4,
        "the hanging target got exactly its share of calls, no more"
    );
}

/// Jobs that exist before the operator starts reach it through the initial
/// list, streamed or paged alike: each is called once and Succeeds, and the
/// log says which list filled the cache. On an API server that does not
/// serve streaming lists (`make test` runs the oldest plane of the window
/// with the WatchList gate off and sets PENDINGJOB_TEST_STREAMING_LISTS=refused),
/// `stream` says so at start and falls back to paged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_created_before_start_are_delivered_with_either_initial_list() {
    let served = match std::env::var("PENDINGJOB_TEST_STREAMING_LISTS").as_deref() {
        Ok("served") | Err(_) => true,
        Ok("refused") => false,
        Ok(other) => panic!("PENDINGJOB_TEST_STREAMING_LISTS={other}: expected served or refused"),
    };
    for strategy in ["stream", "paged"] {
        let env = setup(&format!("list-{strategy}")).await;
        let api2 = MockApi2::start(&[]);
        // More than one page of the paged list (100 jobs).
        apply_many(&env.namespace, "early", &api2.simulate_url(), 120);
        let operator = Operator::start(&env.namespace, &["--initial-list", strategy]);
        let api = env.api::<PendingJob>();
        wait_until(&format!("120 jobs to succeed ({strategy} list)"), SOON, || async {
            let jobs = api.list(&Default::default()).await.expect("list");
            let done = jobs
                .items
                .iter()
                .filter(|j| {
                    j.status
                        .as_ref()
                        .is_some_and(|s| s.phase == Phase::Succeeded && s.attempts == 1)
                })
                .count();
            (done == 120).then_some(())
        })
        .await;
        let stats = api2.stats().await;
        assert_eq!(stats.total_requests, 120, "one call per job ({strategy})");
        assert_eq!(stats.unique_keys, 120, "every job called ({strategy})");
        let log = operator.log_text();
        let fell_back = log.contains("falling back to paged lists");
        let used = if strategy == "stream" && !served {
            "paged"
        } else {
            strategy
        };
        assert!(
            log.contains(&format!("initial_list={used}")),
            "the log names the {used} list"
        );
        assert_eq!(
            fell_back,
            strategy == "stream" && !served,
            "--initial-list={strategy} on a server that {} streaming lists: the fallback is logged only where they are refused",
            if served { "serves" } else { "refuses" }
        );
        operator.kill();
    }
}

/// A destination's status counts its calls in flight: with `maxConcurrency`
/// 3 and calls that take 20 s, `kubectl get destinations` shows 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_shows_its_calls_in_flight() {
    use crate::destinations::{apply_json, destination, job_to};
    let env = setup("in-flight").await;
    let slow = MockApi2::start(&["--latency-ms", "20000"]);
    let _operator = Operator::start(&env.namespace, &[]);
    apply_json(
        &env,
        &destination("slow", serde_json::json!({"url": slow.base, "maxConcurrency": 3})),
    );
    for n in 0..5 {
        apply_json(&env, &job_to(&format!("slow-{n}"), "slow", "/api2/simulate"));
    }
    wait_until("the destination to show 3 calls in flight", SOON, || async {
        let status = env
            .api::<pendingjob_operator::api::Destination>()
            .get("slow")
            .await
            .ok()?
            .status?;
        (status.in_flight == Some(3)).then_some(())
    })
    .await;
    let table = String::from_utf8_lossy(&env.kubectl(&["get", "destinations", "slow"]).stdout).into_owned();
    assert!(table.contains("IN FLIGHT"), "{table}");
    assert_eq!(slow.stats().await.max_in_flight, 3, "maxConcurrency holds");
}
