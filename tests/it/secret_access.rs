//! Secrets only by right (`crds/secret-access.yaml`): a tenant who may write
//! Destinations but not read a Secret cannot make the operator send that
//! Secret anywhere, by naming it in a new Destination or in an update of one.
//! The tenant is a ServiceAccount, played through impersonation.

use axum::http::StatusCode;
use pendingjob_operator::api::Phase;
use serde_json::json;

use crate::destinations::{apply_json, destination, job_to, ready, secret};
use crate::jobs::{SOON, setup, wait_status};
use crate::processes::Operator;
use crate::support::{TestEnv, kubeconfig_file, kubectl_stdin, unique_name, wait_until};
use crate::targets::Target;

const VALUE: &str = "db-SECRET-value-7";

/// A ServiceAccount that may write Destinations and PendingJobs in the test
/// namespace and nothing else; returns the user name to impersonate.
fn tenant(env: &TestEnv) -> String {
    apply_json(
        env,
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "tenant"}}),
    );
    apply_json(
        env,
        &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "tenant"},
                "rules": [{"apiGroups": ["pendingjob.dev"], "resources": ["destinations", "pendingjobs"],
                           "verbs": ["create", "get", "list", "update", "patch"]}]}),
    );
    apply_json(
        env,
        &binding("RoleBinding", "tenant", "Role", "tenant", "tenant", &env.namespace),
    );
    format!("system:serviceaccount:{}:tenant", env.namespace)
}

/// `kubectl apply` of `manifest` as `user`: Ok, or Err with kubectl's stderr.
fn apply_as(env: &TestEnv, user: &str, manifest: &serde_json::Value) -> Result<(), String> {
    let out = kubectl_stdin(
        &["apply", "--namespace", &env.namespace, "--as", user, "-f", "-"],
        &serde_json::to_string(manifest).expect("json"),
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Asserts that `user` may not apply `manifest`, with a refusal that names
/// `field`, the object and the missing permission.
fn assert_refused(env: &TestEnv, user: &str, manifest: &serde_json::Value, field: &str, object: &str) {
    let refused = apply_as(env, user, manifest).expect_err("the Destination is refused");
    let permission = if object.starts_with("configmap") {
        "get configmaps"
    } else {
        "get secrets"
    };
    for part in [field, "Forbidden", object, user, permission] {
        assert!(refused.contains(part), "{part:?} missing from the refusal: {refused}");
    }
}

#[tokio::test]
async fn a_tenant_cannot_name_a_secret_it_may_not_read() {
    let env = setup("secret-access").await;
    let user = tenant(&env);
    let target = Target::start(StatusCode::OK).await;
    let _operator = Operator::start(&env.namespace, &[]);
    apply_json(&env, &secret("db", "Opaque", json!({"password": VALUE})));
    let steal = destination(
        "steal",
        json!({"url": target.base, "auth": {"bearerToken": {"secretKeyRef": {"name": "db", "key": "password"}}}}),
    );
    // The API server applies a new policy once it has loaded it.
    let refused = wait_until("the secret-access policy to be active", SOON, || async {
        apply_as(&env, &user, &steal).err()
    })
    .await;
    assert!(refused.contains("spec.auth.bearerToken.secretKeyRef.name"), "{refused}");
    assert_refused(
        &env,
        &user,
        &steal,
        "spec.auth.bearerToken.secretKeyRef.name",
        "secret \"db\"",
    );
    // The same Secret sent as OAuth2 client credentials to a token URL of the tenant's.
    let by_token_url = destination(
        "steal-oauth2",
        json!({"url": target.base, "auth": {"oauth2ClientCredentials": {
            "tokenUrl": format!("{}/token", target.base),
            "clientId": {"secretKeyRef": {"name": "db", "key": "password"}},
            "clientSecret": {"secretKeyRef": {"name": "db", "key": "password"}}}}}),
    );
    assert_refused(
        &env,
        &user,
        &by_token_url,
        "spec.auth.oauth2ClientCredentials.clientId.secretKeyRef.name",
        "secret \"db\"",
    );
    for (field, spec) in [
        (
            "spec.headers[].valueFrom.secretKeyRef.name",
            json!({"headers": [{"name": "X-Key", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]}),
        ),
        (
            "spec.auth.basic.secretName",
            json!({"auth": {"basic": {"secretName": "db"}}}),
        ),
        (
            "spec.tls.clientCertificate.secretName",
            json!({"tls": {"clientCertificate": {"secretName": "db"}}}),
        ),
        (
            "spec.tls.ca.secretKeyRef.name",
            json!({"tls": {"ca": {"secretKeyRef": {"name": "db", "key": "ca.crt"}}}}),
        ),
    ] {
        let mut spec = spec;
        spec["url"] = json!(target.base);
        assert_refused(&env, &user, &destination("steal", spec), field, "secret \"db\"");
    }
    let ca_from_config_map = destination(
        "ca",
        json!({"url": target.base, "tls": {"ca": {"configMapKeyRef": {"name": "bundle", "key": "ca.crt"}}}}),
    );
    assert_refused(
        &env,
        &user,
        &ca_from_config_map,
        "spec.tls.ca.configMapKeyRef.name",
        "configmap \"bundle\"",
    );
    // It holds for a Secret that does not exist yet: the check is by name.
    let later = destination(
        "later",
        json!({"url": target.base, "auth": {"bearerToken": {"secretKeyRef": {"name": "made-later", "key": "t"}}}}),
    );
    assert_refused(
        &env,
        &user,
        &later,
        "spec.auth.bearerToken.secretKeyRef.name",
        "secret \"made-later\"",
    );

    // An update counts too: the tenant cannot point a Destination that names
    // the Secret (made by someone who may read it) at a server of its own.
    apply_json(
        &env,
        &destination(
            "shared",
            json!({"url": "http://api.example/", "auth": {"bearerToken": {"secretKeyRef": {"name": "db", "key": "password"}}}}),
        ),
    );
    let redirected = destination(
        "shared",
        json!({"url": target.base, "auth": {"bearerToken": {"secretKeyRef": {"name": "db", "key": "password"}}}}),
    );
    assert_refused(
        &env,
        &user,
        &redirected,
        "spec.auth.bearerToken.secretKeyRef.name",
        "secret \"db\"",
    );

    // Jobs the tenant may create find no Destination that carries the Secret.
    // A job to a plain Destination of the same target shows the operator
    // is calling it meanwhile.
    apply_as(&env, &user, &job_to("to-steal", "steal", "/x")).expect("the tenant may create jobs");
    apply_as(&env, &user, &destination("plain", json!({"url": target.base}))).expect("no Secret, no check");
    apply_as(&env, &user, &job_to("to-plain", "plain", "/plain")).expect("the tenant may create jobs");
    wait_status(&env, "to-plain", "delivered", SOON, |s| s.phase == Phase::Succeeded).await;
    let seen = target.seen();
    assert!(seen.iter().all(|s| s.path == "/plain"), "{seen:?}");
    assert!(
        seen.iter().all(|s| !format!("{:?}", s.headers).contains(VALUE)),
        "the Secret's value reached the tenant's target: {seen:?}"
    );

    // With the right to get that one Secret, the same Destination is admitted.
    apply_json(
        &env,
        &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "read-db"},
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["db"], "verbs": ["get"]}]}),
    );
    apply_json(
        &env,
        &binding("RoleBinding", "read-db", "Role", "read-db", "tenant", &env.namespace),
    );
    wait_until("the tenant's right to get Secret db to apply", SOON, || async {
        apply_as(&env, &user, &steal).ok()
    })
    .await;
    assert_refused(
        &env,
        &user,
        &later,
        "spec.auth.bearerToken.secretKeyRef.name",
        "secret \"made-later\"",
    );
}

/// Signing keys and ServiceAccount tokens by right too: a tenant may name
/// neither a Secret it may not get as signing keys, nor a ServiceAccount it
/// may not mint tokens for; with the right to mint for that one account,
/// the same Destination is admitted.
#[tokio::test]
async fn a_tenant_cannot_sign_with_a_secret_or_mint_for_an_account_it_may_not_use() {
    let env = setup("token-access").await;
    let user = tenant(&env);
    apply_json(
        &env,
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "payments"}}),
    );
    let signing = destination(
        "signing",
        json!({"url": "http://api.example/", "signing": {"standardWebhooks": {"secretKeyRef": {"name": "db", "key": "keys"}}}}),
    );
    wait_until("the secret-access policy to be active", SOON, || async {
        apply_as(&env, &user, &signing).err()
    })
    .await;
    assert_refused(
        &env,
        &user,
        &signing,
        "spec.signing.standardWebhooks.secretKeyRef.name",
        "secret \"db\"",
    );
    let minting = destination(
        "minting",
        json!({"url": "http://api.example/", "auth": {"serviceAccountToken": {"serviceAccountName": "payments", "audience": "api"}}}),
    );
    let refused = apply_as(&env, &user, &minting).expect_err("refused");
    for part in [
        "spec.auth.serviceAccountToken.serviceAccountName",
        "Forbidden",
        "serviceaccount \"payments\"",
        &user,
        "create serviceaccounts/token",
    ] {
        assert!(refused.contains(part), "{part:?} missing from the refusal: {refused}");
    }
    apply_json(
        &env,
        &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "mint-payments"},
                "rules": [{"apiGroups": [""], "resources": ["serviceaccounts/token"], "resourceNames": ["payments"],
                           "verbs": ["create"]}]}),
    );
    apply_json(
        &env,
        &binding(
            "RoleBinding",
            "mint-payments",
            "Role",
            "mint-payments",
            "tenant",
            &env.namespace,
        ),
    );
    wait_until("the tenant's right to mint for payments to apply", SOON, || async {
        apply_as(&env, &user, &minting).ok()
    })
    .await;
    // Another account of the namespace is still refused.
    let mut other = minting.clone();
    other["spec"]["auth"]["serviceAccountToken"]["serviceAccountName"] = json!("default");
    assert!(
        apply_as(&env, &user, &other).is_err(),
        "minting for default was admitted"
    );
}

/// The operator's reads of Secrets narrowed to one namespace, as
/// `deploy/base/rbac.yaml` says: the cluster-wide role without Secrets, and
/// `pendingjob-operator-credentials` bound in namespace A only. A's
/// Destination is Ready and its job delivered with the token; B's is not
/// Ready (Forbidden) and its job waits, uncalled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_secret_reads_can_be_narrowed_to_chosen_namespaces() {
    crate::deploy::install_deploy();
    let a = setup("narrow-a").await;
    let b = setup("narrow-b").await;
    let account = "narrow-operator";
    let token = a.service_account_token(account).await;
    let cluster_binding = unique_name("narrow-operator");
    apply_json(
        &a,
        &binding(
            "ClusterRoleBinding",
            &cluster_binding,
            "ClusterRole",
            "pendingjob-operator",
            account,
            &a.namespace,
        ),
    );
    apply_json(
        &a,
        &binding(
            "RoleBinding",
            "credentials",
            "ClusterRole",
            "pendingjob-operator-credentials",
            account,
            &a.namespace,
        ),
    );
    let kubeconfig = kubeconfig_file(Some(&token), None);
    let target = Target::start(StatusCode::OK).await;
    let mut operators = Vec::new();
    for env in [&a, &b] {
        apply_json(env, &secret("token", "Opaque", json!({"token": VALUE})));
        apply_json(
            env,
            &destination(
                "api",
                json!({"url": target.base, "auth": {"bearerToken": {"secretKeyRef": {"name": "token", "key": "token"}}}}),
            ),
        );
        apply_json(env, &job_to("call", "api", &format!("/{}", env.namespace)));
        let args = ["--leader-election", "false"];
        operators.push(Operator::start_with_kubeconfig(
            &env.namespace,
            &args,
            Some(&kubeconfig),
        ));
    }
    wait_status(&a, "call", "delivered", SOON, |s| s.phase == Phase::Succeeded).await;
    let (_, reason, message) = wait_until("B's Destination to be not Ready", SOON, || async {
        ready(&b, "api").await.filter(|(status, ..)| status == "False")
    })
    .await;
    assert_eq!(reason, "Forbidden", "{message}");
    assert!(message.contains(&format!("{}/token", b.namespace)), "{message}");
    let seen = target.seen();
    assert_eq!(seen.len(), 1, "only A's job was called: {seen:?}");
    assert_eq!(seen[0].path, format!("/{}", a.namespace));
    assert_eq!(seen[0].header("authorization"), Some(format!("Bearer {VALUE}")));
    assert_eq!(crate::jobs::status(&b, "call").await.attempts, 0, "B's job waits");
    let deleted = crate::support::kubectl(&["delete", "clusterrolebinding", &cluster_binding]);
    assert!(deleted.status.success(), "{deleted:?}");
}

/// A `kind` (RoleBinding or ClusterRoleBinding) `name` of `role_kind`
/// `role` to ServiceAccount `account` of `namespace`.
fn binding(kind: &str, name: &str, role_kind: &str, role: &str, account: &str, namespace: &str) -> serde_json::Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": {"name": name},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
           "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]})
}
