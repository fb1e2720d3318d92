//! Helpers for tests that create PendingJobs and watch their status.

use std::time::Duration;

use pendingjob_operator::api::{PendingJob, PendingJobStatus};

use crate::support::{TestEnv, install_crds, kubectl_stdin, wait_until};

/// Upper bound for anything the operator should do promptly.
pub const SOON: Duration = Duration::from_secs(30);

/// A fresh namespace on a cluster with the PendingJob API installed.
pub async fn setup(name: &str) -> TestEnv {
    install_crds();
    TestEnv::new(name).await
}

/// A job manifest for `url` with the given `retryPolicy` lines (YAML, indented by 4).
pub fn job_yaml(name: &str, url: &str, retry_policy: &str) -> String {
    format!(
        "apiVersion: pendingjob.dev/v1alpha1\nkind: PendingJob\nmetadata:\n  name: {name}\nspec:\n  target:\n    url: {url}\n  payload:\n    name: {name}\n  retryPolicy:\n    {retry_policy}\n"
    )
}

/// `kubectl apply` of `yaml` in the test namespace; returns the job's UID.
pub async fn apply(env: &TestEnv, yaml: &str) -> String {
    let out = kubectl_stdin(&["apply", "--namespace", &env.namespace, "-f", "-"], yaml);
    assert!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = yaml
        .lines()
        .find_map(|l| l.strip_prefix("  name: "))
        .expect("manifest has metadata.name");
    job(env, name).await.metadata.uid.expect("uid")
}

pub async fn job(env: &TestEnv, name: &str) -> PendingJob {
    env.api::<PendingJob>().get(name).await.expect("get PendingJob")
}

pub async fn status(env: &TestEnv, name: &str) -> PendingJobStatus {
    job(env, name).await.status.unwrap_or_default()
}

/// Waits until the job's status satisfies `ok`, and returns it.
pub async fn wait_status(
    env: &TestEnv,
    name: &str,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&PendingJobStatus) -> bool,
) -> PendingJobStatus {
    wait_until(&format!("{name}: {what}"), timeout, || async {
        let status = status(env, name).await;
        ok(&status).then_some(status)
    })
    .await
}
