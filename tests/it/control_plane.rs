//! The local control plane is a real one: ready, serving the APIs the operator
//! needs, and enforcing RBAC.

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;

use std::time::Duration;

use crate::support::{TestEnv, kubectl, wait_until};

#[tokio::test]
async fn kubectl_sees_a_ready_plane_with_the_apis_we_use() {
    let ready = kubectl(&["get", "--raw", "/readyz"]);
    assert!(ready.status.success(), "kubectl get --raw /readyz failed: {ready:?}");
    assert_eq!(String::from_utf8_lossy(&ready.stdout).trim(), "ok");

    let resources = kubectl(&["api-resources", "--output", "name"]);
    assert!(
        resources.status.success(),
        "kubectl api-resources failed: {resources:?}"
    );
    let names = String::from_utf8_lossy(&resources.stdout);
    for wanted in [
        "leases.coordination.k8s.io",
        "events",
        "events.events.k8s.io",
        "serviceaccounts",
        "customresourcedefinitions.apiextensions.k8s.io",
    ] {
        assert!(
            names.lines().any(|l| l == wanted),
            "{wanted} missing from api-resources:\n{names}"
        );
    }
}

#[tokio::test]
async fn rbac_denies_a_service_account_without_roles() {
    let env = TestEnv::new("rbac").await;

    // The admin can list pods here, so a denial below is about the identity.
    let admin_pods: Api<Pod> = env.api();
    admin_pods.list(&ListParams::default()).await.expect("admin lists pods");

    let token = env.service_account_token("nobody").await;
    let client = env.client_with_token(&token).await;
    let pods: Api<Pod> = Api::namespaced(client, &env.namespace);
    match pods.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "expected Forbidden, got {status:?}");
            // Authenticated as the ServiceAccount (not anonymous, not 401)...
            let user = format!("system:serviceaccount:{}:nobody", env.namespace);
            assert!(status.message.contains(&user), "denial names {user}: {status:?}");
        }
        other => panic!("a ServiceAccount with no role listed pods: {other:?}"),
    }
}

#[tokio::test]
async fn kubectl_auth_agrees_that_a_bare_service_account_is_denied() {
    let env = TestEnv::new("can-i").await;
    env.service_account_token("bare").await;
    let user = format!("system:serviceaccount:{}:bare", env.namespace);

    // The ServiceAccount becomes visible to the API before we ask about it.
    wait_until("ServiceAccount bare to be listed", Duration::from_secs(10), || async {
        let out = env.kubectl(&["get", "serviceaccount", "bare", "--output", "name"]);
        out.status.success().then_some(())
    })
    .await;

    let denied = env.kubectl(&["auth", "can-i", "list", "pods", "--as", &user]);
    assert_eq!(String::from_utf8_lossy(&denied.stdout).trim(), "no", "{denied:?}");
    let allowed = env.kubectl(&["auth", "can-i", "list", "pods"]);
    assert_eq!(String::from_utf8_lossy(&allowed.stdout).trim(), "yes", "{allowed:?}");
}
