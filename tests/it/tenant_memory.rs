//! Memory independent of what tenants write: the job cache keeps only what
//! the operator reads, so large labels, annotations and headers on many jobs
//! cost no more than the payload budget.

use axum::http::StatusCode;
use pendingjob_operator::api::Phase;
use serde_json::json;

use crate::jobs::{SOON, setup, wait_status};
use crate::processes::Operator;
use crate::support::{http_get, kubectl_stdin, wait_until};
use crate::targets::Target;

/// A job to `url` with 200 KiB of annotations, 30 headers of 4,000 bytes and
/// 40 labels; due an hour from now unless `due`.
fn bulky_job(name: &str, url: &str, due: bool) -> serde_json::Value {
    let headers: serde_json::Map<String, serde_json::Value> = (0..30)
        .map(|n| (format!("X-Bulk-{n}"), json!("h".repeat(4000))))
        .collect();
    let labels: serde_json::Map<String, serde_json::Value> = (0..40)
        .map(|n| (format!("example.com/bulk-{n}"), json!("l".repeat(63))))
        .collect();
    let mut job = json!({
        "apiVersion": "pendingjob.dev/v1alpha1", "kind": "PendingJob",
        "metadata": {"name": name, "labels": labels, "annotations": {"example.com/notes": "a".repeat(200 * 1024)}},
        "spec": {"target": {"url": url, "headers": headers}, "payload": {"n": 1}},
    });
    if !due {
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
        job["spec"]["notBefore"] = json!(later.round(jiff::Unit::Second).expect("round").to_string());
    }
    job
}

/// `pendingjob_jobs{namespace, phase="Pending"}` as the operator shows it.
async fn pending_jobs(admin: &str, namespace: &str) -> usize {
    let (_, text) = http_get(&format!("{admin}/metrics")).await;
    let series = format!("pendingjob_jobs{{namespace=\"{namespace}\",phase=\"Pending\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series).and_then(|n| n.trim().parse().ok()))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulky_metadata_and_headers_do_not_grow_the_operator() {
    const JOBS: usize = 200;
    let env = setup("tenant-memory").await;
    let target = Target::start(StatusCode::OK).await;
    let url = format!("{}/bulk", target.base);
    // A 4 MiB budget for payloads and headers.
    let operator = Operator::start(&env.namespace, &["--payload-cache-mib", "4"]);
    let admin = operator.admin_url().await;
    let create = |jobs: Vec<serde_json::Value>| {
        let list = json!({"apiVersion": "v1", "kind": "List", "items": jobs});
        let out = kubectl_stdin(
            &["create", "--namespace", &env.namespace, "-f", "-"],
            &serde_json::to_string(&list).expect("json"),
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    create(vec![bulky_job("warm-up", &url, false)]);
    wait_until("the operator to show the first job", SOON, || async {
        (pending_jobs(&admin, &env.namespace).await == 1).then_some(())
    })
    .await;
    let before = operator.rss_mib();
    for batch in 0..JOBS / 20 {
        create(
            (0..20)
                .map(|n| bulky_job(&format!("bulky-{batch}-{n}"), &url, false))
                .collect(),
        );
    }
    wait_until("the operator to show every job", SOON, || async {
        (pending_jobs(&admin, &env.namespace).await == JOBS + 1).then_some(())
    })
    .await;
    let grown = operator.rss_mib() - before;
    eprintln!(
        "tenant memory: {JOBS} jobs with 200 KiB annotations, 117 KiB headers and 40 labels each \
         grew the operator by {grown:.1} MiB (payload budget 4 MiB; {:.0} MiB written)",
        JOBS as f64 * 320.0 / 1024.0
    );
    // Before the cache kept only what the operator reads: 62-63 MiB for
    // the annotations of 300 jobs alone.
    assert!(grown < 16.0, "the operator grew by {grown:.1} MiB");

    // Beyond the budget, a due job's headers are read at call time.
    create(vec![bulky_job("due", &url, true)]);
    wait_status(&env, "due", "Succeeded", SOON, |s| s.phase == Phase::Succeeded).await;
    let seen = target.seen();
    assert_eq!(seen.len(), 1, "only the due job was called");
    assert_eq!(
        seen[0].header("X-Bulk-29").map(|v| v.len()),
        Some(4000),
        "its headers went with it"
    );
}

/// Deleting a Destination drops what the operator held for it: made again
/// under the same name, it gets a token of its own, not the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_destination_leaves_no_token_behind() {
    use crate::destinations::{apply_json, destination, job_to, secret};
    use crate::processes::MockApi2;

    let env = setup("dest-forget").await;
    let api2 = MockApi2::start(&["--oauth2-client", "shop-app:cs-SECRET-forget"]);
    let _operator = Operator::start(&env.namespace, &[]);
    apply_json(
        &env,
        &secret(
            "oauth",
            "Opaque",
            json!({"id": "shop-app", "secret": "cs-SECRET-forget"}),
        ),
    );
    let payments = destination(
        "payments",
        json!({"url": api2.base, "auth": {"oauth2ClientCredentials": {
            "tokenUrl": format!("{}/oauth2/token", api2.base),
            "clientId": {"secretKeyRef": {"name": "oauth", "key": "id"}},
            "clientSecret": {"secretKeyRef": {"name": "oauth", "key": "secret"}}}}}),
    );
    apply_json(&env, &payments);
    for name in ["first", "second"] {
        apply_json(&env, &job_to(name, "payments", "/api2/simulate"));
        wait_status(&env, name, "Succeeded", SOON, |s| s.phase == Phase::Succeeded).await;
    }
    assert_eq!(
        api2.stats().await.tokens_issued,
        1,
        "one token while the Destination lives"
    );
    let deleted = env.kubectl(&["delete", "destination", "payments", "--wait=true"]);
    assert!(deleted.status.success(), "{deleted:?}");
    apply_json(&env, &payments);
    apply_json(&env, &job_to("third", "payments", "/api2/simulate"));
    wait_status(&env, "third", "Succeeded", SOON, |s| s.phase == Phase::Succeeded).await;
    assert_eq!(
        api2.stats().await.tokens_issued,
        2,
        "the Destination made again fetched its own token"
    );
}
