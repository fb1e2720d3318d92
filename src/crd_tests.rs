use super::*;

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
