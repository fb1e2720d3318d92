//! The egress policy: a raw URL into a denied range, as an IP literal or as a
//! name that resolves there, fails its job with a clear error, and no
//! connection is ever made; the unspecified addresses, which reach
//! loopback, are denied whatever the flags say.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::StatusCode;
use pendingjob_operator::api::Phase;

use crate::jobs::{SOON, apply, job_yaml, setup, wait_status};
use crate::processes::Operator;
use crate::targets::Target;

/// A TCP listener on a free loopback port that counts the connections it
/// accepts; it stops when dropped.
struct Listener {
    port: u16,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((_stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        Self { port, accepted, task }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn denied_addresses_fail_their_jobs_and_are_never_connected_to() {
    let env = setup("egress").await;
    let listener = Listener::start().await;
    // The default (link-local) plus loopback, where the test's listener is.
    let _operator = Operator::start(
        &env.namespace,
        &["--deny-cidrs", "169.254.0.0/16,fe80::/10,127.0.0.0/8,::1/128"],
    );
    let port = listener.port;
    let jobs = [
        (
            "metadata",
            "http://169.254.169.254/latest/meta-data".to_owned(),
            "169.254.0.0/16",
        ),
        ("literal", format!("http://127.0.0.1:{port}/calls"), "127.0.0.0/8"),
        ("by-name", format!("http://localhost:{port}/calls"), "/"),
    ];
    for (name, url, _) in &jobs {
        apply(&env, &job_yaml(name, url, "initialDelaySeconds: 1")).await;
    }
    for (name, _, range) in &jobs {
        let failed = wait_status(&env, name, "Failed", SOON, |s| s.phase == Phase::Failed).await;
        assert_eq!(failed.attempts, 1, "{name}: refused once, for good");
        let error = failed.last_error.unwrap_or_default();
        assert!(
            error.contains("egress policy") && error.contains("no connection was made") && error.contains(range),
            "{name}: {error}"
        );
        let reason = &failed
            .conditions
            .iter()
            .find(|c| c.type_ == "Failed")
            .expect("Failed")
            .reason;
        assert_eq!(reason, "Rejected", "{name}");
    }
    assert_eq!(
        listener.accepted.load(Ordering::SeqCst),
        0,
        "a denied address was connected to"
    );
}

#[tokio::test]
async fn unspecified_addresses_are_never_connected_to_whatever_the_flags_say() {
    let env = setup("egress-unspecified").await;
    let target = Target::start(StatusCode::OK).await;
    // No range denied: only the built-in rule stands between these jobs and
    // the target on loopback.
    let _operator = Operator::start(&env.namespace, &["--deny-cidrs", ""]);
    let port = target.base.rsplit(':').next().expect("port").to_owned();
    let control = format!("http://127.0.0.1:{port}/control");
    apply(&env, &job_yaml("control", &control, "initialDelaySeconds: 1")).await;
    let spellings = [
        ("zeros", "0.0.0.0"),
        ("zero", "0"),
        ("hex", "0x0"),
        ("this-network", "0.1.2.3"),
        ("v6", "[::]"),
        ("v6-long", "[0:0:0:0:0:0:0:0]"),
        ("mapped", "[::ffff:0.0.0.0]"),
    ];
    for (name, host) in spellings {
        let url = format!("http://{host}:{port}/{name}");
        apply(&env, &job_yaml(name, &url, "initialDelaySeconds: 1")).await;
    }
    wait_status(&env, "control", "Succeeded", SOON, |s| s.phase == Phase::Succeeded).await;
    for (name, host) in spellings {
        let failed = wait_status(&env, name, "Failed", SOON, |s| s.phase == Phase::Failed).await;
        assert_eq!(failed.attempts, 1, "{name} ({host}): refused once, for good");
        let error = failed.last_error.unwrap_or_default();
        assert!(
            error.contains("always denied") && error.contains("no connection was made"),
            "{name} ({host}): {error}"
        );
    }
    let paths: Vec<String> = target.seen().iter().map(|s| s.path.clone()).collect();
    assert_eq!(paths, ["/control"], "only the control job reached the target");
}
