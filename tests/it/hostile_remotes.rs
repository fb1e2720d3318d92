//! What a broken or hostile remote cannot do to the operator: a token
//! endpoint that answers without end is cut off, with memory bounded, and
//! one that keeps failing is asked again with a backoff per Destination,
//! not by every job that waits for it.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::destinations::{apply_json, assert_no_leaks, basic_secret, destination, job_to, ready, secret};
use crate::jobs::{SOON, setup, status};
use crate::processes::Operator;
use crate::support::{TestEnv, wait_until};

/// A chunk of an endless answer.
static CHUNK: [u8; 65_536] = [b' '; 65_536];
/// Where an endless answer stops if the client never does: 1 GiB.
const ENDLESS_CHUNKS: usize = 16_384;

/// How a token endpoint answers.
#[derive(Clone, Copy)]
enum Answer {
    /// 200 with a body that never ends (well, after 1 GiB).
    Endless,
    /// This status, with a small error body.
    Status(StatusCode),
}

/// A token endpoint on a free loopback port that counts the requests it
/// gets; it stops when dropped.
struct TokenEndpoint {
    url: String,
    requests: Arc<AtomicUsize>,
    server: tokio::task::JoinHandle<()>,
}

impl TokenEndpoint {
    async fn start(answer: Answer) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/oauth/token", listener.local_addr().expect("address"));
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let app = axum::Router::new().fallback(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async move { respond(answer) }
        });
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self { url, requests, server }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn respond(answer: Answer) -> Response {
    match answer {
        Answer::Endless => {
            let head =
                futures::stream::once(async { Ok::<_, Infallible>(Bytes::from_static(b"{\"access_token\": \"")) });
            let tail = futures::stream::iter((0..ENDLESS_CHUNKS).map(|_| Ok(Bytes::from_static(&CHUNK))));
            let body = Body::from_stream(futures::StreamExt::chain(head, tail));
            ([("content-type", "application/json")], body).into_response()
        }
        Answer::Status(code) => (code, "{\"error\": \"temporarily_unavailable\"}").into_response(),
    }
}

impl Drop for TokenEndpoint {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A Destination `name` whose OAuth2 tokens come from `token_url`, and the
/// Secret with its client credentials.
fn apply_oauth2_destination(env: &TestEnv, name: &str, token_url: &str) {
    apply_json(
        env,
        &secret("client", "Opaque", json!({"id": "shop", "secret": "cs-SECRET-hostile"})),
    );
    let key = |key: &str| json!({"secretKeyRef": {"name": "client", "key": key}});
    let auth = json!({"oauth2ClientCredentials": {"tokenUrl": token_url, "clientId": key("id"), "clientSecret": key("secret")}});
    // Nothing listens on port 1: no job gets as far as a call anyway.
    apply_json(
        env,
        &destination(name, json!({"url": "http://127.0.0.1:1/api", "auth": auth})),
    );
}

/// Waits until Destination `name` is not Ready because its token fetch
/// failed, and returns the condition's message.
async fn token_failed(env: &TestEnv, name: &str) -> String {
    let (_, _, message) = wait_until(
        &format!("destination {name} to show TokenRequestFailed"),
        SOON,
        || async {
            ready(env, name)
                .await
                .filter(|(status, reason, _)| status == "False" && reason == "TokenRequestFailed")
        },
    )
    .await;
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_token_answer_is_cut_off_and_memory_stays_bounded() {
    let env = setup("token-endless").await;
    let endpoint = TokenEndpoint::start(Answer::Endless).await;
    let operator = Operator::start(&env.namespace, &[]);
    apply_oauth2_destination(&env, "endless", &endpoint.url);
    apply_json(&env, &job_to("waits", "endless", "/x"));
    let message = token_failed(&env, "endless").await;
    assert!(message.contains("the answer is larger than 64 KiB"), "{message}");
    assert!(endpoint.requests() >= 1, "the endpoint was asked");
    // Idle, the operator holds about 15-30 MiB; before the cap, 779-889 MiB
    // within 15 s. The shipped limit is 256 Mi.
    let rss = operator.rss_mib();
    assert!(rss < 64.0, "operator RSS {rss:.1} MiB after an endless token answer");
    eprintln!("operator RSS after an endless token answer: {rss:.1} MiB");
    assert_eq!(
        status(&env, "waits").await.attempts,
        0,
        "the job waits, spending nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_token_endpoint_is_asked_with_a_backoff_not_by_every_waiting_job() {
    let env = setup("token-failing").await;
    let endpoint = TokenEndpoint::start(Answer::Status(StatusCode::SERVICE_UNAVAILABLE)).await;
    let _operator = Operator::start(&env.namespace, &[]);
    apply_oauth2_destination(&env, "failing", &endpoint.url);
    let jobs: Vec<_> = (0..20)
        .map(|n| job_to(&format!("waits-{n}"), "failing", "/x"))
        .collect();
    apply_json(&env, &json!({"apiVersion": "v1", "kind": "List", "items": jobs}));
    let message = token_failed(&env, "failing").await;
    assert!(
        message.contains("HTTP 503") && message.contains("temporarily_unavailable"),
        "{message}"
    );
    // A window, not a wait: each of the 20 jobs looks at its destination
    // every second, so without a backoff the endpoint would be asked about
    // 20 times a second; with one, at most once per step (1, 2, 4 s …).
    let window = Duration::from_secs(6);
    let before = endpoint.requests();
    tokio::time::sleep(window).await;
    let asked = endpoint.requests() - before;
    eprintln!("token requests in {window:?} for 20 waiting jobs: {asked}");
    assert!(asked <= 4, "{asked} token requests in {window:?} for 20 waiting jobs");
    for n in 0..20 {
        assert_eq!(status(&env, &format!("waits-{n}")).await.attempts, 0);
    }
}

/// A target that answers 401 with every header it got, and basic
/// credentials decoded, in the body.
async fn echoing_target() -> (String, tokio::task::JoinHandle<()>) {
    use base64::Engine as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let app = axum::Router::new().fallback(|headers: axum::http::HeaderMap| async move {
        let mut echo = String::from("refused:");
        for (name, value) in &headers {
            let value = value.to_str().unwrap_or_default();
            echo.push_str(&format!(" {name}={value}"));
            if let Some(basic) = value.strip_prefix("Basic ") {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(basic)
                    .unwrap_or_default();
                echo.push_str(&format!(" decoded={}", String::from_utf8_lossy(&decoded)));
            }
        }
        (StatusCode::UNAUTHORIZED, echo)
    });
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    (url, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_a_target_echoes_back_are_never_recorded() {
    const TOKEN: &str = "tok-SECRET-echo";
    const KEY: &str = "key-SECRET-echo";
    const PASSWORD: &str = "pw-SECRET-echo";
    let env = setup("echo").await;
    let (url, _server) = echoing_target().await;
    let operator = Operator::start(&env.namespace, &[]);
    apply_json(&env, &secret("api", "Opaque", json!({"token": TOKEN, "key": KEY})));
    apply_json(&env, &basic_secret(PASSWORD));
    let from = |key: &str| json!({"secretKeyRef": {"name": "api", "key": key}});
    apply_json(
        &env,
        &destination(
            "bearer",
            json!({"url": url, "auth": {"bearerToken": from("token")}, "headers": [{"name": "X-Key", "valueFrom": from("key")}]}),
        ),
    );
    apply_json(
        &env,
        &destination("basic", json!({"url": url, "auth": {"basic": {"secretName": "basic"}}})),
    );
    for name in ["bearer", "basic"] {
        let mut job = job_to(name, name, "/echo");
        job["spec"]["retryPolicy"]["maxAttempts"] = json!(1);
        apply_json(&env, &job);
    }
    for name in ["bearer", "basic"] {
        let failed = wait_until(&format!("{name} to fail"), SOON, || async {
            let status = status(&env, name).await;
            (status.phase == pendingjob_operator::api::Phase::Failed).then_some(status)
        })
        .await;
        let error = failed.last_error.unwrap_or_default();
        assert!(error.contains("refused:") && error.contains("[redacted]"), "{error}");
    }
    assert_no_leaks(
        &env,
        &operator,
        &[TOKEN, KEY, PASSWORD, "shop:pw-SECRET", "c2hvcDpwdy1TRUNSRVQtZWNobw"],
    )
    .await;
}
