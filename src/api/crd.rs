//! The CustomResourceDefinitions as served, and as checked in at `crds/`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{CustomResourceDefinition, JSON};
use kube::CustomResourceExt;

use super::destination::Destination;
use super::pending_job::PendingJob;

/// The CRD as served to the API server.
///
/// Compared with what kube-derive generates, it also defaults `status` to
/// `{phase: Pending}`: the API server applies that default when it reads an
/// object without a status, so a new job shows `Pending` before any write.
pub fn crd() -> CustomResourceDefinition {
    let mut crd = PendingJob::crd();
    for version in &mut crd.spec.versions {
        let status = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|s| s.properties.as_mut())
            .and_then(|p| p.get_mut("status"));
        if let Some(status) = status {
            status.default = Some(JSON(serde_json::json!({ "phase": "Pending" })));
        }
    }
    crd
}

/// The CRD as YAML, as checked in at `crds/pendingjob.yaml`.
pub fn crd_yaml() -> Result<String, serde_saphyr::ser::Error> {
    serde_saphyr::to_string(&crd())
}

/// The Destination CRD as YAML, as checked in at `crds/destination.yaml`.
pub fn destination_crd_yaml() -> Result<String, serde_saphyr::ser::Error> {
    serde_saphyr::to_string(&Destination::crd())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::contract::MAX_PAYLOAD_BYTES;

    fn checked_in(file: &str) -> String {
        let path = format!("{}/crds/{file}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
    }

    #[test]
    fn checked_in_destination_crd_matches_the_code() {
        let generated = destination_crd_yaml().expect("CRD renders as YAML");
        assert!(
            checked_in("destination.yaml") == generated,
            "crds/destination.yaml has drifted from the Rust types; regenerate it with `make crds`"
        );
    }

    #[test]
    fn checked_in_crd_matches_the_code() {
        let generated = crd_yaml().expect("CRD renders as YAML");
        assert!(
            checked_in("pendingjob.yaml") == generated,
            "crds/pendingjob.yaml has drifted from the Rust types; regenerate it with `make crds`"
        );
    }

    #[test]
    fn checked_in_crd_parses_back_to_the_same_object() {
        let parsed: serde_json::Value = serde_saphyr::from_str(&checked_in("pendingjob.yaml")).expect("YAML");
        assert_eq!(parsed, serde_json::to_value(crd()).expect("CRD as JSON"));
    }

    #[test]
    fn payload_policy_enforces_max_payload_bytes() {
        let policy = checked_in("payload-limit.yaml");
        assert!(
            policy.contains(&format!("variables.payloadBytes <= {MAX_PAYLOAD_BYTES}\"")),
            "{policy}"
        );
        assert!(
            policy.contains(&format!("the limit is {MAX_PAYLOAD_BYTES}")),
            "{policy}"
        );
    }

    #[test]
    fn status_defaults_to_pending_in_the_schema() {
        let crd = serde_json::to_value(crd()).expect("CRD as JSON");
        let status = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"];
        assert_eq!(status["default"], serde_json::json!({"phase": "Pending"}));
    }
}
