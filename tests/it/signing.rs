//! Standard Webhooks signatures, checked by a receiver we did not write
//! (`standardwebhooks` for `v1`, `cryptography` for `v1a`; see
//! [`crate::receivers`]): one key, a rotation with both receivers' views,
//! Ed25519 with the public key from status, retries that keep the id, a body
//! altered in flight, dead letters, and keys that never leak.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pendingjob_operator::api::{Destination, Phase};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::destinations::{apply_json, assert_no_leaks, destination, job_to, ready, secret};
use crate::jobs::{SOON, job, setup, status, wait_status};
use crate::processes::Operator;
use crate::receivers::{Receiver, public_key};
use crate::support::{TestEnv, wait_until};
use crate::targets::Target;

/// How long a Secret's value is used before it is read again (the bound a
/// rotation is used within), and a margin for the job's 1 s retries.
const SECRET_BOUND: Duration = Duration::from_secs(30 + 10);

/// A `whsec_` key of 32 bytes made from `seed`; the base64 holds "SECRET"
/// nowhere, so the leak checks grep for the base64 itself.
fn whsec(seed: u8) -> String {
    format!("whsec_{}", STANDARD.encode([seed; 32]))
}

fn signing_secret(name: &str, keys: &str) -> serde_json::Value {
    secret(name, "Opaque", json!({ "keys": keys }))
}

fn signing_destination(name: &str, url: &str, secret: &str) -> serde_json::Value {
    destination(
        name,
        json!({"url": url, "signing": {"standardWebhooks": {"secretKeyRef": {"name": secret, "key": "keys"}}}}),
    )
}

async fn uid(env: &TestEnv, name: &str) -> String {
    job(env, name).await.metadata.uid.expect("uid")
}

async fn succeeded(env: &TestEnv, name: &str, within: Duration) -> i32 {
    wait_status(env, name, "Succeeded", within, |s| s.phase == Phase::Succeeded)
        .await
        .attempts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_signatures_verify_with_standardwebhooks_through_a_key_rotation() {
    let env = setup("signing-v1").await;
    let (old, new) = (whsec(1), whsec(2));
    let knows_old = Receiver::start(&["--must", &old]);
    // The overlap: a receiver that knows only the new key, and one that
    // knows only the old key, must both accept the same call.
    let overlap = Receiver::start(&["--must", &new, "--must", &old, "--refuse-status", "503"]);
    // After the old key is removed: the new key verifies, the old does not.
    let rotated = Receiver::start(&["--must", &new, "--must-not", &old, "--refuse-status", "503"]);
    let operator = Operator::start(&env.namespace, &[]);
    apply_json(&env, &signing_secret("signing", &old));
    apply_json(&env, &signing_destination("one-key", &knows_old.base, "signing"));
    apply_json(&env, &job_to("first", "one-key", "/hooks"));
    assert_eq!(succeeded(&env, "first", SOON).await, 1);
    let id = uid(&env, "first").await;
    let seen = knows_old.records_of(&id);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["must"], json!([true]), "standardwebhooks verifies the call");
    assert_eq!(
        seen[0]["idempotency-key"],
        json!(id),
        "webhook-id is the Idempotency-Key"
    );
    assert!(!id.contains('.'), "webhook-id {id} has no dot");
    assert_eq!(
        seen[0]["body"],
        json!(r#"{"n":1}"#),
        "the exact bytes signed are the bytes sent"
    );

    apply_json(&env, &signing_secret("signing", &format!("{old}\n{new}")));
    let changed = Instant::now();
    apply_json(&env, &signing_destination("overlap", &overlap.base, "signing"));
    apply_json(&env, &job_to("during", "overlap", "/hooks"));
    succeeded(&env, "during", SECRET_BOUND).await;
    let used_after = changed.elapsed();
    let during = overlap.records_of(&uid(&env, "during").await);
    let last = during.last().expect("calls");
    assert_eq!(last["must"], json!([true, true]), "both keys sign: {last}");
    assert_eq!(
        last["webhook-signature"]
            .as_str()
            .expect("signature")
            .split(' ')
            .count(),
        2
    );
    assert!(
        used_after <= SECRET_BOUND,
        "the added key was used after {used_after:?}"
    );

    apply_json(&env, &signing_secret("signing", &new));
    apply_json(&env, &signing_destination("rotated", &rotated.base, "signing"));
    apply_json(&env, &job_to("after", "rotated", "/hooks"));
    succeeded(&env, "after", SECRET_BOUND).await;
    let after = rotated.records_of(&uid(&env, "after").await);
    assert_eq!(after.last().expect("calls")["must_not"], json!([false]));

    let bare = |key: &str| key.trim_start_matches("whsec_").to_owned();
    assert_no_leaks(&env, &operator, &[&bare(&old), &bare(&new)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1a_signatures_verify_with_the_public_key_from_status_and_retries_keep_their_id() {
    let env = setup("signing-v1a").await;
    let seed = format!("whsk_{}", STANDARD.encode([3u8; 32]));
    // The public key as `cryptography` derives it, not as we do.
    let public = public_key(&seed);
    let receiver = Receiver::start(&["--ed25519", &public, "--fail-first", "2"]);
    let operator = Operator::start(&env.namespace, &[]);
    apply_json(&env, &signing_secret("ed", &seed));
    apply_json(&env, &signing_destination("ed", &receiver.base, "ed"));
    let shown = wait_until("the Destination to show its public key", SOON, || async {
        let destination = env.api::<Destination>().get("ed").await.expect("get");
        destination.status.and_then(|s| s.signing).map(|s| s.public_keys)
    })
    .await;
    assert_eq!(shown, vec![public.clone()]);
    let mut retried = job_to("retried", "ed", "/hooks");
    retried["spec"]["retryPolicy"] = json!({"initialDelaySeconds": 2, "maxDelaySeconds": 2});
    apply_json(&env, &retried);
    assert_eq!(succeeded(&env, "retried", SOON).await, 3);
    let id = uid(&env, "retried").await;
    let calls = receiver.records_of(&id);
    assert_eq!(calls.len(), 3, "{calls:?}");
    let times: Vec<i64> = calls
        .iter()
        .map(|c| {
            c["webhook-timestamp"]
                .as_str()
                .expect("timestamp")
                .parse()
                .expect("seconds")
        })
        .collect();
    for call in &calls {
        assert_eq!(call["v1a"], json!(true), "cryptography's Ed25519 verifies {call}");
        assert_eq!(call["webhook-id"], json!(id), "the id is the same on every retry");
    }
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "each attempt has its own time: {times:?}"
    );
    assert_eq!(
        calls.iter().map(|c| c["status"].as_i64()).collect::<Vec<_>>(),
        [Some(503), Some(503), Some(200)]
    );
    assert_no_leaks(&env, &operator, &[seed.trim_start_matches("whsk_")]).await;
}

/// Forwards loopback connections to `upstream`, rewriting `from` to `to`
/// (as long) in what the client sends: a body altered in flight.
async fn altering_proxy(upstream: String, from: &'static [u8], to: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.split();
                let (mut server_read, mut server_write) = server.split();
                let up = async {
                    let mut buffer = vec![0u8; 64 * 1024];
                    while let Ok(n) = client_read.read(&mut buffer).await {
                        if n == 0 {
                            break;
                        }
                        let mut chunk = buffer[..n].to_vec();
                        if let Some(at) = chunk.windows(from.len()).position(|w| w == from) {
                            chunk[at..at + to.len()].copy_from_slice(to);
                        }
                        if server_write.write_all(&chunk).await.is_err() {
                            break;
                        }
                    }
                };
                let down = tokio::io::copy(&mut server_read, &mut client_write);
                let _ = tokio::join!(up, down);
            });
        }
    });
    format!("http://{address}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_altered_in_flight_fails_verification() {
    let env = setup("signing-altered").await;
    let key = whsec(4);
    let receiver = Receiver::start(&["--must", &key]);
    let proxy = altering_proxy(receiver.base.trim_start_matches("http://").to_owned(), b"100", b"900").await;
    let _operator = Operator::start(&env.namespace, &[]);
    apply_json(&env, &signing_secret("signing", &key));
    apply_json(&env, &signing_destination("via-proxy", &proxy, "signing"));
    let mut altered = job_to("altered", "via-proxy", "/hooks");
    altered["spec"]["payload"] = json!({"amount": 100});
    apply_json(&env, &altered);
    let failed = wait_status(&env, "altered", "Failed", SOON, |s| s.phase == Phase::Failed).await;
    assert_eq!(failed.last_status_code, Some(401), "the receiver refused it");
    let calls = receiver.records_of(&uid(&env, "altered").await);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        calls[0]["body"],
        json!(r#"{"amount":900}"#),
        "the proxy altered the body"
    );
    assert_eq!(calls[0]["must"], json!([false]), "and the signature no longer verifies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_through_a_signing_destination_are_signed() {
    let env = setup("signing-dead-letter").await;
    let key = whsec(5);
    let receiver = Receiver::start(&["--must", &key]);
    let refusing = Target::start(StatusCode::BAD_REQUEST).await;
    let _operator = Operator::start(&env.namespace, &[]);
    apply_json(&env, &signing_secret("signing", &key));
    apply_json(&env, &signing_destination("letters", &receiver.base, "signing"));
    apply_json(
        &env,
        &json!({"apiVersion": "pendingjob.dev/v1alpha1", "kind": "PendingJob", "metadata": {"name": "doomed"},
                "spec": {"target": {"url": format!("{}/refuse", refusing.base)}, "payload": {"n": 1},
                         "deadLetter": {"destinationRef": {"name": "letters"}}}}),
    );
    wait_status(&env, "doomed", "its dead letter delivered", SOON, |s| {
        s.dead_letter.as_ref().is_some_and(|d| d.delivered)
    })
    .await;
    let id = format!("{}/dead-letter", uid(&env, "doomed").await);
    let letters = receiver.records_of(&id);
    assert_eq!(letters.len(), 1, "{:?}", receiver.records());
    assert_eq!(letters[0]["must"], json!([true]), "the dead letter verifies");
    assert_eq!(letters[0]["idempotency-key"], json!(id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_key_makes_the_destination_not_ready_without_printing_it() {
    let env = setup("signing-malformed").await;
    let receiver = Receiver::start(&[]);
    let operator = Operator::start(&env.namespace, &[]);
    let short = format!("whsec_{}", STANDARD.encode(b"short-key-8"));
    apply_json(&env, &signing_secret("signing", &format!("{} {short}", whsec(6))));
    apply_json(&env, &signing_destination("bad-key", &receiver.base, "signing"));
    apply_json(&env, &job_to("held", "bad-key", "/hooks"));
    let (_, reason, message) = wait_until("bad-key to be not Ready", SOON, || async {
        ready(&env, "bad-key").await.filter(|(status, ..)| status == "False")
    })
    .await;
    assert_eq!(reason, "SigningKeyInvalid");
    assert!(message.contains("key 2") && message.contains("signing"), "{message}");
    assert_eq!(
        status(&env, "held").await.attempts,
        0,
        "its job waits, spending nothing"
    );
    assert!(receiver.records().is_empty());
    let bare = short.trim_start_matches("whsec_").to_owned();
    assert_no_leaks(&env, &operator, &[&bare, whsec(6).trim_start_matches("whsec_")]).await;
}
