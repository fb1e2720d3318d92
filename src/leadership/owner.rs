//! Who owns the leader Lease: the operator's own ServiceAccount, read from
//! the token the kubelet mounts in its pod. The install (kustomize or Helm)
//! makes that ServiceAccount, so deleting the install deletes it, and the
//! garbage collector then deletes the Lease too, even one a leader wrote
//! while it was shutting down. No API call and no extra RBAC: the token's
//! claims name the account and its uid.
//!
//! Outside a pod, or with a token of another namespace than the Lease's
//! (an owner must be in the same namespace), there is no owner, and the
//! Lease is made as before.

use base64::Engine as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde::Deserialize;

/// Where the kubelet mounts the pod's ServiceAccount token.
pub const MOUNTED_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

#[derive(Deserialize)]
struct Claims {
    #[serde(rename = "kubernetes.io")]
    kubernetes: Option<KubernetesClaims>,
}

#[derive(Deserialize)]
struct KubernetesClaims {
    namespace: String,
    serviceaccount: Named,
}

#[derive(Deserialize)]
struct Named {
    name: String,
    uid: String,
}

/// The owner reference for a Lease in `namespace`, from the mounted token.
#[must_use]
pub fn from_mounted_token(namespace: &str) -> Option<OwnerReference> {
    let token = std::fs::read_to_string(MOUNTED_TOKEN).ok()?;
    of_token(&token, namespace)
}

/// The ServiceAccount the JWT `token` was issued to, as an owner of an
/// object in `namespace`; `None` for another namespace or an unreadable token.
#[must_use]
pub fn of_token(token: &str, namespace: &str) -> Option<OwnerReference> {
    let payload = token.trim().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims = serde_json::from_slice::<Claims>(&bytes).ok()?.kubernetes?;
    (claims.namespace == namespace).then(|| OwnerReference {
        api_version: "v1".to_owned(),
        kind: "ServiceAccount".to_owned(),
        name: claims.serviceaccount.name,
        uid: claims.serviceaccount.uid,
        ..OwnerReference::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(claims: &serde_json::Value) -> String {
        let part = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.signature",
            part(&serde_json::json!({"alg": "RS256"})),
            part(claims)
        )
    }

    #[test]
    fn the_tokens_service_account_owns_a_lease_of_its_namespace_only() {
        let claims = serde_json::json!({
            "sub": "system:serviceaccount:pendingjob-system:pendingjob-operator",
            "kubernetes.io": {"namespace": "pendingjob-system",
                              "serviceaccount": {"name": "pendingjob-operator", "uid": "0c6e-uid"},
                              "pod": {"name": "p", "uid": "pod-uid"}},
        });
        let owner = of_token(&token(&claims), "pendingjob-system").expect("an owner");
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("ServiceAccount", "pendingjob-operator", "0c6e-uid")
        );
        assert_eq!(
            owner.controller, None,
            "not a controller: the Lease is the operator's own"
        );
        assert!(
            of_token(&token(&claims), "elsewhere").is_none(),
            "an owner must share the namespace"
        );
        assert!(of_token("not-a-jwt", "pendingjob-system").is_none());
        assert!(of_token(&token(&serde_json::json!({"sub": "x"})), "pendingjob-system").is_none());
    }
}
