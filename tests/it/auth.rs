//! Destinations' credentials checked by the target itself: mock-api2
//! verifies a bearer token, basic credentials, OAuth2 tokens it issued, and
//! client certificates (mTLS), and answers 401 or refuses the handshake
//! otherwise. No secret value leaks on the way.

use std::path::{Path, PathBuf};

use pendingjob_operator::api::Phase;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::json;

use crate::destinations::{apply_json, assert_no_leaks, basic_secret, destination, job_to, ready, secret};
use crate::jobs::{SOON, setup, status, wait_status};
use crate::processes::{MockApi2, Operator};
use crate::support::{TestEnv, unique_name, wait_until};

const TOKEN: &str = "tok-SECRET-mock-bearer";
const PASSWORD: &str = "pw-SECRET-mock-basic";
const CLIENT_SECRET: &str = "cs-SECRET-mock-oauth2";

/// Waits for `name` to succeed, and returns its attempts.
async fn succeeded(env: &TestEnv, name: &str) -> i32 {
    wait_status(env, name, "Succeeded", SOON, |s| s.phase == Phase::Succeeded)
        .await
        .attempts
}

async fn wait_ready(env: &TestEnv, name: &str) {
    wait_until(&format!("destination {name} to be Ready"), SOON, || async {
        ready(env, name).await.filter(|(status, ..)| status == "True")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_accepts_bearer_and_basic_credentials_from_secrets_and_refuses_wrong_ones() {
    let env = setup("auth-static").await;
    let bearer = MockApi2::start(&["--bearer-token", TOKEN]);
    let basic = MockApi2::start(&["--basic-auth", &format!("shop:{PASSWORD}")]);
    let operator = Operator::start(&env.namespace, &[]);
    apply_json(
        &env,
        &secret("token", "Opaque", json!({"token": TOKEN, "stale": "tok-old"})),
    );
    apply_json(&env, &basic_secret(PASSWORD));
    let bearer_from = |key: &str| json!({"bearerToken": {"secretKeyRef": {"name": "token", "key": key}}});
    apply_json(
        &env,
        &destination("bearer", json!({"url": bearer.base, "auth": bearer_from("token")})),
    );
    apply_json(
        &env,
        &destination("stale", json!({"url": bearer.base, "auth": bearer_from("stale")})),
    );
    apply_json(
        &env,
        &destination(
            "basic",
            json!({"url": basic.base, "auth": {"basic": {"secretName": "basic"}}}),
        ),
    );
    apply_json(&env, &job_to("with-bearer", "bearer", "/api2/simulate"));
    apply_json(&env, &job_to("with-basic", "basic", "/api2/simulate"));
    apply_json(&env, &job_to("with-stale", "stale", "/api2/simulate"));

    assert_eq!(succeeded(&env, "with-bearer").await, 1);
    assert_eq!(succeeded(&env, "with-basic").await, 1);
    let refused = wait_status(&env, "with-stale", "Failed", SOON, |s| s.phase == Phase::Failed).await;
    assert_eq!(refused.last_status_code, Some(401), "the mock refused the wrong token");
    let (bearer_stats, basic_stats) = (bearer.stats().await, basic.stats().await);
    assert_eq!((bearer_stats.total_requests, bearer_stats.unauthorized), (2, 1));
    assert_eq!((basic_stats.total_requests, basic_stats.unauthorized), (1, 0));
    assert_no_leaks(&env, &operator, &[TOKEN, PASSWORD]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_tokens_are_fetched_once_kept_and_fetched_again_after_a_revoke() {
    let env = setup("auth-oauth2").await;
    let api2 = MockApi2::start(&["--oauth2-client", &format!("shop-app:{CLIENT_SECRET}")]);
    let operator = Operator::start(&env.namespace, &[]);
    apply_json(
        &env,
        &secret(
            "oauth",
            "Opaque",
            json!({"client-id": "shop-app", "client-secret": CLIENT_SECRET}),
        ),
    );
    let credentials = json!({"oauth2ClientCredentials": {
        "tokenUrl": format!("{}/oauth2/token", api2.base),
        "clientId": {"secretKeyRef": {"name": "oauth", "key": "client-id"}},
        "clientSecret": {"secretKeyRef": {"name": "oauth", "key": "client-secret"}},
        "scopes": ["payments:write"],
    }});
    apply_json(
        &env,
        &destination("payments", json!({"url": api2.base, "auth": credentials})),
    );
    wait_ready(&env, "payments").await;
    for name in ["first", "second"] {
        apply_json(&env, &job_to(name, "payments", "/api2/simulate"));
        assert_eq!(succeeded(&env, name).await, 1, "{name}");
    }
    let stats = api2.stats().await;
    assert_eq!(stats.tokens_issued, 1, "one token serves every call until it expires");
    assert_eq!(stats.unauthorized, 0);

    // The mock revokes the token: the next call is refused once, the token
    // is fetched again, and the retry goes through.
    api2.post("/oauth2/revoke").await;
    apply_json(&env, &job_to("after-revoke", "payments", "/api2/simulate"));
    assert_eq!(
        succeeded(&env, "after-revoke").await,
        2,
        "one refused attempt, then one with the new token"
    );
    let stats = api2.stats().await;
    assert_eq!((stats.tokens_issued, stats.unauthorized), (2, 1));
    assert_eq!(stats.total_requests, 4, "one call per attempt");
    assert_no_leaks(&env, &operator, &[CLIENT_SECRET, "mock-token-"]).await;
}

/// A test CA, and PEM files of a server certificate for 127.0.0.1 and a
/// client certificate, both signed by it, in a directory of their own.
pub(crate) struct Pki {
    dir: PathBuf,
    pub(crate) ca: String,
    client_cert: String,
    client_key: String,
}

impl Pki {
    pub(crate) fn new() -> Self {
        let dir = std::env::temp_dir().join("pendingjob-it").join(unique_name("pki"));
        std::fs::create_dir_all(&dir).expect("creating the PKI directory");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "pendingjob test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key")).expect("CA");
        let leaf = |name: &str, sans: Vec<String>| {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(sans).expect("params");
            params.distinguished_name.push(DnType::CommonName, name);
            let cert = params.signed_by(&key, &ca).expect("signing");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf("mock-api2", vec!["127.0.0.1".into()]);
        let (client_cert, client_key) = leaf("pendingjob-operator", Vec::new());
        let pki = Self {
            dir,
            ca: ca.pem(),
            client_cert,
            client_key,
        };
        for (file, pem) in [
            ("ca.crt", &pki.ca),
            ("server.crt", &server_cert),
            ("server.key", &server_key),
        ] {
            std::fs::write(pki.path(file), pem).expect("writing PEM");
        }
        pki
    }

    pub(crate) fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// A client for the test itself, trusting the CA and presenting the
    /// client certificate.
    fn test_client(&self) -> reqwest::Client {
        let roots = reqwest::Certificate::from_pem_bundle(self.ca.as_bytes()).expect("CA PEM");
        let identity = reqwest::Identity::from_pem(format!("{}\n{}", self.client_cert, self.client_key).as_bytes())
            .expect("identity PEM");
        reqwest::Client::builder()
            .tls_certs_only(roots)
            .identity(identity)
            .build()
            .expect("test client")
    }
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_with_a_ca_from_a_config_map_reaches_a_target_that_requires_client_certificates() {
    let env = setup("auth-mtls").await;
    let pki = Pki::new();
    let (cert, key, ca) = (pki.path("server.crt"), pki.path("server.key"), pki.path("ca.crt"));
    let args = [
        "--tls-cert",
        arg(&cert),
        "--tls-key",
        arg(&key),
        "--client-ca",
        arg(&ca),
    ];
    let api2 = MockApi2::start_with(&args, pki.test_client());
    assert!(api2.base.starts_with("https://127.0.0.1:"), "{}", api2.base);
    let operator = Operator::start(&env.namespace, &[]);
    apply_json(
        &env,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "test-ca"}, "data": {"ca.crt": pki.ca}}),
    );
    apply_json(
        &env,
        &secret(
            "client-cert",
            "kubernetes.io/tls",
            json!({"tls.crt": pki.client_cert, "tls.key": pki.client_key}),
        ),
    );
    let ca_ref = json!({"configMapKeyRef": {"name": "test-ca", "key": "ca.crt"}});
    apply_json(
        &env,
        &destination(
            "mutual",
            json!({"url": api2.base, "tls": {"ca": ca_ref, "clientCertificate": {"secretName": "client-cert"}}}),
        ),
    );
    // The same server without a client certificate: the handshake is refused.
    apply_json(
        &env,
        &destination("anonymous", json!({"url": api2.base, "tls": {"ca": ca_ref}})),
    );
    wait_ready(&env, "mutual").await;
    apply_json(&env, &job_to("mutual-call", "mutual", "/api2/simulate"));
    apply_json(&env, &job_to("anonymous-call", "anonymous", "/api2/simulate"));

    assert_eq!(succeeded(&env, "mutual-call").await, 1);
    let refused = wait_status(
        &env,
        "anonymous-call",
        "Retrying after a refused handshake",
        SOON,
        |s| s.phase == Phase::Retrying,
    )
    .await;
    let error = refused.last_error.unwrap_or_default();
    assert!(
        error.to_lowercase().contains("certificate") || error.contains("tls"),
        "{error}"
    );
    let stats = api2.stats().await;
    assert_eq!(
        stats.total_requests, 1,
        "only the call with a client certificate got through"
    );
    assert_eq!(status(&env, "mutual-call").await.last_status_code, Some(200));
    let key_line = pki.client_key.lines().nth(1).expect("a PEM body line").to_owned();
    assert_no_leaks(&env, &operator, &[key_line.as_str()]).await;
}
