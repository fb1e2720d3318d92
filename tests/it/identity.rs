//! Kubernetes identity as auth (`spec.auth.serviceAccountToken`): the token
//! the operator mints is verified by PyJWT against the real API server's
//! OIDC discovery keys, and by a TokenReview; it is kept between calls, and
//! mock-api2 checks its audience. The token never leaks.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::PostParams;
use pendingjob_operator::api::Phase;
use serde_json::json;

use crate::destinations::{apply_json, assert_no_leaks, destination, job_to};
use crate::jobs::{SOON, setup, wait_status};
use crate::processes::{MockApi2, Operator};
use crate::receivers::Receiver;
use crate::support::{TestEnv, admin_client, unique_name};

const AUDIENCE: &str = "https://receiver.pendingjob.test";

fn service_account(env: &TestEnv, name: &str) {
    apply_json(
        env,
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}),
    );
}

fn identity_destination(name: &str, url: &str, account: &str, audience: &str) -> serde_json::Value {
    destination(
        name,
        json!({"url": url, "auth": {"serviceAccountToken": {
            "serviceAccountName": account, "audience": audience, "expirationSeconds": 600}}}),
    )
}

/// The API server's OIDC discovery: its issuer, and its JWKS in a file.
fn discovery(env: &TestEnv) -> (String, std::path::PathBuf) {
    let raw = |path: &str| {
        let out = env.kubectl(&["get", "--raw", path]);
        assert!(
            out.status.success(),
            "GET {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON")
    };
    let configuration = raw("/.well-known/openid-configuration");
    let issuer = configuration["issuer"].as_str().expect("issuer").to_owned();
    assert!(
        configuration["jwks_uri"]
            .as_str()
            .is_some_and(|uri| uri.ends_with("/openid/v1/jwks")),
        "{configuration}"
    );
    let jwks = std::env::temp_dir().join(format!("{}.json", unique_name("jwks")));
    std::fs::write(&jwks, raw("/openid/v1/jwks").to_string()).expect("writing the JWKS");
    (issuer, jwks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_tokens_verify_with_the_clusters_keys_and_a_token_review() {
    let env = setup("identity").await;
    service_account(&env, "caller");
    let (issuer, jwks) = discovery(&env);
    let receiver = Receiver::start(&[
        "--jwks",
        jwks.to_str().expect("path"),
        "--issuer",
        &issuer,
        "--audience",
        AUDIENCE,
    ]);
    let operator = Operator::start(&env.namespace, &[]);
    apply_json(
        &env,
        &identity_destination("identity", &receiver.base, "caller", AUDIENCE),
    );
    for name in ["first", "second"] {
        apply_json(&env, &job_to(name, "identity", "/hooks"));
        let done = wait_status(&env, name, "Succeeded", SOON, |s| s.phase == Phase::Succeeded).await;
        assert_eq!(done.attempts, 1);
    }
    let calls = receiver.records();
    assert_eq!(calls.len(), 2, "{calls:?}");
    let claims = &calls[0]["jwt"]["claims"];
    assert_eq!(
        claims["sub"],
        json!(format!("system:serviceaccount:{}:caller", env.namespace)),
        "PyJWT verified {claims}"
    );
    assert_eq!(claims["aud"], json!([AUDIENCE]));
    assert_eq!(claims["iss"], json!(issuer));
    let lifetime = claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat");
    assert!(lifetime <= 600, "a lifetime of {lifetime} s is past expirationSeconds");
    let token = calls[0]["jwt"]["token"].as_str().expect("token").to_owned();
    assert_eq!(
        calls[1]["jwt"]["token"],
        json!(token),
        "the token is kept between calls"
    );

    let review = TokenReview {
        spec: TokenReviewSpec {
            token: token.clone(),
            audiences: Some(vec![AUDIENCE.to_owned()]),
        },
        ..TokenReview::default()
    };
    let reviewed = kube::Api::<TokenReview>::all(admin_client().await)
        .create(&PostParams::default(), &review)
        .await
        .expect("TokenReview")
        .status
        .expect("status");
    assert_eq!(reviewed.authenticated, Some(true), "{reviewed:?}");
    assert_eq!(
        reviewed.user.and_then(|u| u.username),
        Some(format!("system:serviceaccount:{}:caller", env.namespace))
    );
    assert_no_leaks(&env, &operator, &[&token]).await;
    let _ = std::fs::remove_file(jwks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_api2_checks_the_audience_and_a_missing_account_holds_jobs() {
    let env = setup("identity-mock").await;
    service_account(&env, "caller");
    let api2 = MockApi2::start(&["--jwt-audience", AUDIENCE]);
    let _operator = Operator::start(&env.namespace, &[]);
    apply_json(&env, &identity_destination("right", &api2.base, "caller", AUDIENCE));
    apply_json(
        &env,
        &identity_destination("wrong", &api2.base, "caller", "https://elsewhere.test"),
    );
    apply_json(&env, &identity_destination("nobody", &api2.base, "missing", AUDIENCE));
    apply_json(&env, &job_to("to-right", "right", "/api2/simulate"));
    apply_json(&env, &job_to("to-wrong", "wrong", "/api2/simulate"));
    apply_json(&env, &job_to("to-nobody", "nobody", "/api2/simulate"));
    wait_status(&env, "to-right", "Succeeded", SOON, |s| s.phase == Phase::Succeeded).await;
    let refused = wait_status(&env, "to-wrong", "Failed", SOON, |s| s.phase == Phase::Failed).await;
    assert_eq!(
        refused.last_status_code,
        Some(401),
        "mock-api2 refused another audience"
    );
    let (_, reason, message) = crate::support::wait_until("nobody to be not Ready", SOON, || async {
        crate::destinations::ready(&env, "nobody")
            .await
            .filter(|(status, ..)| status == "False")
    })
    .await;
    assert_eq!(reason, "ServiceAccountNotFound", "{message}");
    assert!(message.contains("missing"), "{message}");
    let held = crate::jobs::status(&env, "to-nobody").await;
    assert_eq!(held.attempts, 0, "its job waits without spending attempts");
    let stats = api2.stats().await;
    assert_eq!((stats.total_requests, stats.unauthorized), (2, 1));
    // The account exists from now on: the job goes out.
    service_account(&env, "missing");
    // Its failed TokenRequests back off (1 s, 2 s … 1 min): within two SOONs.
    wait_status(&env, "to-nobody", "Succeeded", 2 * SOON, |s| {
        s.phase == Phase::Succeeded
    })
    .await;
}
