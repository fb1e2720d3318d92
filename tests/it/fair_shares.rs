//! Fair shares: one namespace's hanging targets, however many host names and
//! Destinations they use, hold at most its share of the call slots, so a
//! healthy job in another namespace is called at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::json;
use tokio::io::AsyncReadExt;

use crate::destinations::{apply_json, destination, job_to};
use crate::jobs::SOON;
use crate::processes::Operator;
use crate::scale::black_hole;
use crate::support::{TestEnv, install_crds, kubectl, kubectl_stdin, unique_name, wait_until};
use crate::targets::Target;

/// A raw-URL job to `url` in `namespace`, with a 30 s timeout.
fn raw_job(namespace: &str, name: &str, url: &str) {
    let job = json!({"apiVersion": "pendingjob.dev/v1alpha1", "kind": "PendingJob", "metadata": {"name": name},
                     "spec": {"target": {"url": url, "timeoutSeconds": 30}, "payload": {}}});
    let out = kubectl_stdin(
        &["apply", "--namespace", namespace, "-f", "-"],
        &serde_json::to_string(&job).expect("json"),
    );
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_hanging_every_slot_it_can_leaves_the_rest_to_others() {
    install_crds();
    // Alone: the operator watches every namespace, as deployed.
    let greedy = TestEnv::alone("greedy").await;
    let other = unique_name("healthy");
    assert!(kubectl(&["create", "namespace", &other]).status.success());
    let (hanging, accepted, _listener) = black_hole().await;
    let port = hanging
        .trim_start_matches("http://127.0.0.1:")
        .split('/')
        .next()
        .expect("port")
        .to_owned();
    // 16 slots in all: a namespace may hold 8 (the default, half).
    let _operator = Operator::start_cluster_wide(&["--max-concurrent-dispatches", "16"]);

    // A Destination's maxConcurrency of 16 cannot raise its share past 8.
    apply_json(
        &greedy,
        &destination(
            "hang",
            json!({"url": format!("http://127.0.0.1:{port}"), "maxConcurrency": 16}),
        ),
    );
    for n in 0..20 {
        let mut job = job_to(&format!("dest-{n}"), "hang", "/hang");
        job["spec"]["target"]["timeoutSeconds"] = json!(30);
        apply_json(&greedy, &job);
    }
    // More, by raw URL under other names for the same listener.
    for host in ["localhost", "127.0.0.1"] {
        for n in 0..6 {
            raw_job(
                &greedy.namespace,
                &format!("raw-{host}-{n}").replace('.', "-"),
                &format!("http://{host}:{port}/hang"),
            );
        }
    }
    wait_until("the greedy namespace to hold its share of 8 calls", SOON, || async {
        (accepted.load(Ordering::SeqCst) >= 8).then_some(())
    })
    .await;

    let healthy = Target::start(StatusCode::OK).await;
    apply_json_in(&other, &destination("ok", json!({"url": healthy.base})));
    let applied = Instant::now();
    apply_json_in(&other, &job_to("ok", "ok", "/ok"));
    let called = wait_until("the healthy namespace's job to be called", SOON, || async {
        healthy.seen().first().map(|seen| seen.at)
    })
    .await;
    let delay = called.saturating_duration_since(applied);
    eprintln!(
        "fair shares: a healthy job in another namespace was called {:.3} s after its apply, \
         beside {} hanging calls of one namespace (26 jobs queued)",
        delay.as_secs_f64(),
        accepted.load(Ordering::SeqCst)
    );
    assert!(
        delay < Duration::from_millis(1500),
        "the healthy job waited {delay:?} for a slot"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        8,
        "the greedy namespace held more than its share"
    );
}

fn apply_json_in(namespace: &str, manifest: &serde_json::Value) {
    let out = kubectl_stdin(
        &["apply", "--namespace", namespace, "-f", "-"],
        &serde_json::to_string(manifest).expect("json"),
    );
    assert!(out.status.success(), "{out:?}");
}

/// A server that holds every connection open until its client hangs up,
/// and keeps the number open now and the most ever open at once.
async fn holder() -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding");
    let url = format!("http://{}/hold", listener.local_addr().expect("address"));
    let (open, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (now, most) = (open.clone(), peak.clone());
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let count = now.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(count, Ordering::SeqCst);
            let now = now.clone();
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                // Read the request and never answer; the client's timeout ends it.
                while matches!(socket.read(&mut buffer).await, Ok(n) if n > 0) {}
                now.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (url, open, peak, task)
}

/// Dead-letter calls take call slots as attempts do: a namespace whose failed
/// jobs send their dead letters to a target that never answers has no more
/// of them in flight than its share, however long they hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_take_call_slots_too() {
    let env = crate::jobs::setup("dead-letter-slots").await;
    let refusing = Target::start(StatusCode::BAD_REQUEST).await;
    let (hanging, open, peak, _listener) = holder().await;
    // All ten fail at their first attempt, before the operator starts, so
    // the dead letters queue behind none of the attempts.
    let manifests: Vec<serde_json::Value> = (0..10)
        .map(|n| {
            json!({"apiVersion": "pendingjob.dev/v1alpha1", "kind": "PendingJob", "metadata": {"name": format!("fails-{n}")},
                   "spec": {"target": {"url": format!("{}/refused", refusing.base)}, "payload": {"n": n},
                            "retryPolicy": {"maxAttempts": 1}, "deadLetter": {"url": hanging}}})
        })
        .collect();
    apply_json(&env, &json!({"apiVersion": "v1", "kind": "List", "items": manifests}));
    // One namespace watched: the whole pool of 4 is its share. The target
    // alone would take 10 at once.
    let _operator = Operator::start(
        &env.namespace,
        &["--max-concurrent-dispatches", "4", "--max-concurrent-per-target", "10"],
    );
    wait_until("every job to fail", SOON, || async {
        let jobs = env
            .api::<pendingjob_operator::api::PendingJob>()
            .list(&Default::default())
            .await
            .ok()?;
        (jobs.items.len() == 10
            && jobs.items.iter().all(|j| {
                j.status
                    .as_ref()
                    .is_some_and(|s| s.phase == pendingjob_operator::api::Phase::Failed)
            }))
        .then_some(())
    })
    .await;
    wait_until("the dead letters to hold every slot", SOON, || async {
        (open.load(Ordering::SeqCst) >= 4).then_some(())
    })
    .await;
    // The first four time out after 10 s and are recorded; the next four take
    // their slots. Never are more open at once than there are slots.
    assert_eq!(refusing.seen().len(), 10, "one attempt per job");
    wait_until(
        "the first dead letters to time out and others to follow",
        SOON,
        || async {
            let jobs = env
                .api::<pendingjob_operator::api::PendingJob>()
                .list(&Default::default())
                .await
                .ok()?;
            let recorded: i64 = jobs
                .items
                .iter()
                .filter_map(|j| j.status.as_ref()?.dead_letter.as_ref().map(|d| i64::from(d.attempts)))
                .sum();
            (recorded >= 4 && open.load(Ordering::SeqCst) >= 4).then_some(())
        },
    )
    .await;
    assert_eq!(peak.load(Ordering::SeqCst), 4, "dead letters went past the call slots");
}
