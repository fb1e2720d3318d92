//! Test support for integration tests against a real kube-apiserver.
//!
//! The cluster comes from `KUBECONFIG` (`make test` starts a local control
//! plane and sets it). Each test gets a namespace of its own, so tests run in
//! parallel without seeing each other. Waiting is always for a condition with a
//! deadline, never a fixed sleep.
//!
//! Namespaces are not deleted afterwards: the local plane runs no
//! kube-controller-manager, so a deleted namespace would stay `Terminating`
//! anyway. `make test` throws the whole plane away when it is done.

use std::future::Future;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// How long a test waits for the control plane to answer at all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How often `wait_until` re-checks a condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Lease flags for tests that watch leadership change hands: a 4 s Lease, a
/// 2 s renew deadline, and a try every second.
pub const FAST_LEASE: [&str; 6] = [
    "--lease-duration-seconds",
    "4",
    "--lease-renew-deadline-seconds",
    "2",
    "--lease-retry-period-seconds",
    "1",
];

/// Tests run in parallel on a small machine. A test that loads it heavily
/// runs alone, so that the timing bounds other tests assert still hold.
static LOAD: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// A test's turn on the machine: shared with other tests, or alone.
#[allow(dead_code)] // Held for its drop only.
enum Turn {
    Shared(tokio::sync::RwLockReadGuard<'static, ()>),
    Alone(tokio::sync::RwLockWriteGuard<'static, ()>),
}

/// One test's view of the cluster: an admin client and a fresh namespace.
pub struct TestEnv {
    /// Client with the kubeconfig's (admin) credentials.
    pub client: Client,
    /// The namespace created for this test.
    pub namespace: String,
    _turn: Turn,
}

impl TestEnv {
    /// Connects to the cluster in `KUBECONFIG` and creates a namespace for the
    /// test named `name`. Panics with an explanation when there is no cluster:
    /// these tests are never skipped.
    pub async fn new(name: &str) -> Self {
        Self::create(name, Turn::Shared(LOAD.read().await)).await
    }

    /// Like [`TestEnv::new`], for a test that loads the machine: it waits for
    /// the tests running and runs alone.
    pub async fn alone(name: &str) -> Self {
        Self::create(name, Turn::Alone(LOAD.write().await)).await
    }

    async fn create(name: &str, turn: Turn) -> Self {
        let client = admin_client().await;
        let namespace = unique_name(name);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(namespace.clone()),
                labels: Some([("pendingjob.dev/test".to_owned(), name.to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating test namespace {namespace}: {e}"));
        Self {
            client,
            namespace,
            _turn: turn,
        }
    }

    /// A typed API for namespaced resources in this test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Creates a ServiceAccount in the test namespace and returns a short-lived
    /// token for it, obtained through the TokenRequest API.
    pub async fn service_account_token(&self, name: &str) -> String {
        let accounts: Api<ServiceAccount> = self.api();
        let account = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        accounts
            .create(&PostParams::default(), &account)
            .await
            .unwrap_or_else(|e| panic!("creating ServiceAccount {name}: {e}"));
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(600),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .unwrap_or_else(|e| panic!("requesting a token for ServiceAccount {name}: {e}"))
            .status
            .unwrap_or_else(|| panic!("TokenRequest for {name} returned no status"))
            .token
            .unwrap_or_else(|| panic!("TokenRequest for {name} returned no token"))
    }

    /// A short-lived token for ServiceAccount `name` (made already) for
    /// `audience`, through the TokenRequest API.
    pub async fn token_for_audience(&self, name: &str, audience: &str) -> String {
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: Some(vec![audience.to_owned()]),
                expiration_seconds: Some(600),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        self.api::<ServiceAccount>()
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .unwrap_or_else(|e| panic!("requesting a token for ServiceAccount {name}: {e}"))
            .status
            .and_then(|status| status.token)
            .unwrap_or_else(|| panic!("TokenRequest for {name} returned no token"))
    }

    /// A client for the same cluster that authenticates with `token` only.
    pub async fn client_with_token(&self, token: &str) -> Client {
        let mut config = kubeconfig_config().await;
        config.auth_info = AuthInfo {
            token: Some(token.to_owned().into()),
            ..AuthInfo::default()
        };
        Client::try_from(config).expect("building a token-authenticated client")
    }

    /// Runs the pinned `kubectl` against this cluster, in this namespace.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        kubectl(&[&["--namespace", &self.namespace], args].concat())
    }
}

/// The `kubectl` to run: `$KUBECTL` (set by `make test`), else the one in `PATH`.
fn kubectl_program() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_owned())
}

/// Runs `kubectl` with `KUBECONFIG` as set.
pub fn kubectl(args: &[&str]) -> Output {
    let program = kubectl_program();
    Command::new(&program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program} {args:?}: {e} (run the tests through `make test`)"))
}

/// Waits until `check` yields `Some`, re-checking every 100 ms, and panics
/// with `what` when `timeout` passes first.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// A DNS-1123 name unique within this test run: `<prefix>-<pid>-<counter>`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{n}-{:x}", std::process::id(), nanos % 0xfff)
}

async fn kubeconfig_config() -> Config {
    if std::env::var_os("KUBECONFIG").is_none() {
        panic!(
            "KUBECONFIG is not set, so there is no cluster to test against. Run `make test`, which \
             starts a local control plane, or `make cluster-up` and `eval \"$(make -s cluster-env)\"`."
        );
    }
    let kubeconfig = Kubeconfig::read().unwrap_or_else(|e| panic!("reading KUBECONFIG: {e}"));
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("loading KUBECONFIG: {e}"))
}

/// An admin client for the cluster in `KUBECONFIG`, checked to be reachable.
pub async fn admin_client() -> Client {
    let config = kubeconfig_config().await;
    let server = config.cluster_url.clone();
    let client = Client::try_from(config).expect("building a Kubernetes client");
    match tokio::time::timeout(CONNECT_TIMEOUT, client.apiserver_version()).await {
        Ok(Ok(_)) => client,
        Ok(Err(e)) => panic!("the control plane at {server} did not answer: {e}. Is it running (`make cluster-up`)?"),
        Err(_) => panic!("the control plane at {server} did not answer within {CONNECT_TIMEOUT:?}"),
    }
}

/// The root of the repository (for `crds/` and `examples/`).
pub fn repo_path(relative: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Installs `crds/` the way most users do (`kubectl apply --server-side -f
/// crds/`; on the fresh plane of `make test`, this is the first install) and
/// waits for the CRD to be established. Idempotent; runs once per process.
pub fn install_crds() {
    static INSTALLED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    INSTALLED.get_or_init(|| {
        let crds = repo_path("crds");
        let crds = crds.to_str().expect("utf-8 path");
        let applied = kubectl(&["apply", "--server-side", "--force-conflicts", "-f", crds]);
        assert!(applied.status.success(), "kubectl apply -f crds/ failed: {applied:?}");
        let established = kubectl(&[
            "wait",
            "--for=condition=Established",
            "crd/pendingjobs.pendingjob.dev",
            "crd/destinations.pendingjob.dev",
            "--timeout=30s",
        ]);
        assert!(established.status.success(), "CRDs not established: {established:?}");
    });
}

/// Runs `kubectl` with `stdin` as its standard input.
pub fn kubectl_stdin(args: &[&str], stdin: &str) -> Output {
    use std::io::Write as _;
    let program = kubectl_program();
    let mut child = Command::new(&program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin.as_bytes())
        .expect("writing kubectl's stdin");
    child.wait_with_output().expect("waiting for kubectl")
}

/// The tests' kubeconfig, flattened, as JSON.
fn kubeconfig_json() -> serde_json::Value {
    let view = kubectl(&["config", "view", "--raw", "--minify", "--flatten", "--output", "json"]);
    assert!(view.status.success(), "kubectl config view: {view:?}");
    serde_json::from_slice(&view.stdout).expect("kubeconfig JSON")
}

/// `host:port` of the tests' API server.
pub fn api_server_address() -> String {
    let view = kubeconfig_json();
    let server = view["clusters"][0]["cluster"]["server"].as_str().expect("server URL");
    server.trim_start_matches("https://").trim_end_matches('/').to_owned()
}

/// Writes a kubeconfig for the tests' cluster that authenticates with
/// `token` alone (or with the tests' own credentials when `None`), and
/// points at `server` instead, when given.
pub fn kubeconfig_file(token: Option<&str>, server: Option<&str>) -> std::path::PathBuf {
    let view = kubeconfig_json();
    let cluster = &view["clusters"][0]["cluster"];
    let user = token.map_or_else(|| view["users"][0]["user"].clone(), |t| serde_json::json!({"token": t}));
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {
            "server": server.map_or_else(|| cluster["server"].clone(), |s| s.into()),
            "certificate-authority-data": cluster["certificate-authority-data"],
        }}],
        "users": [{"name": "test", "user": user}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        "current-context": "test",
    });
    let dir = std::env::temp_dir().join("pendingjob-it");
    std::fs::create_dir_all(&dir).expect("creating the temp directory");
    let path = dir.join(format!("{}.kubeconfig", unique_name("kubeconfig")));
    std::fs::write(&path, serde_json::to_vec(&kubeconfig).expect("JSON")).expect("writing the kubeconfig");
    path
}

/// The value of the metric line that starts with `series` (name and labels).
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

/// Who holds Lease `lease` in the test namespace, if anyone.
pub async fn lease_holder(env: &TestEnv, lease: &str) -> Option<String> {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = env.api();
    leases
        .get_opt(lease)
        .await
        .expect("get Lease")
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

/// `GET url`: the status code and body.
pub async fn http_get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// The port in the first `127.0.0.1:PORT` of a log line.
pub fn loopback_port(line: &str) -> Option<String> {
    let port: String = line
        .split("127.0.0.1:")
        .nth(1)?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (!port.is_empty()).then_some(port)
}
