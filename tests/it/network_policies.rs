//! The NetworkPolicies `deploy/` ships: each selects its Deployment's pods
//! and admits ingress on the ports the pods really have, no more (the API
//! server's acceptance is in `deploy::deploy_is_accepted_server_side`).

use crate::deploy::kustomize;

#[test]
fn network_policies_admit_only_the_intake_port_and_the_scraped_admin_port() {
    let documents = serde_saphyr::from_multiple::<serde_json::Value>(&kustomize("")).expect("YAML documents");
    let policy = |name: &str| {
        documents
            .iter()
            .find(|d| d["kind"] == "NetworkPolicy" && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("NetworkPolicy {name} missing from deploy/"))
            .clone()
    };
    // Each selects the pods of its Deployment, and lists ingress only.
    let deployment_labels = |name: &str| {
        documents
            .iter()
            .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == name)
            .map(|d| d["spec"]["template"]["metadata"]["labels"].clone())
            .unwrap_or_else(|| panic!("Deployment {name} missing"))
    };
    // A named port the pods do not have would admit nothing, silently.
    let container_ports = |name: &str| -> Vec<serde_json::Value> {
        documents
            .iter()
            .filter(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == name)
            .flat_map(|d| {
                d["spec"]["template"]["spec"]["containers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
            .map(|p| p["name"].clone())
            .collect()
    };
    for name in ["pendingjob-operator", "pendingjob-intake"] {
        let policy = policy(name);
        assert_eq!(
            policy["spec"]["podSelector"]["matchLabels"],
            deployment_labels(name),
            "{name}"
        );
        assert_eq!(policy["spec"]["policyTypes"], serde_json::json!(["Ingress"]), "{name}");
        for rule in policy["spec"]["ingress"].as_array().cloned().unwrap_or_default() {
            for port in rule["ports"].as_array().cloned().unwrap_or_default() {
                assert!(
                    container_ports(name).contains(&port["port"]),
                    "{name}: no port {}",
                    port["port"]
                );
            }
        }
    }
    let operator = policy("pendingjob-operator")["spec"]["ingress"].clone();
    assert_eq!(
        operator,
        serde_json::json!([{
            "from": [{"namespaceSelector": {"matchLabels": {"pendingjob.dev/scrape-metrics": "true"}}}],
            "ports": [{"port": "http-admin", "protocol": "TCP"}],
        }]),
        "the operator admits only scrapers, on its admin port"
    );
    let intake = policy("pendingjob-intake")["spec"]["ingress"].clone();
    assert_eq!(
        intake,
        serde_json::json!([{"ports": [{"port": "http", "protocol": "TCP"}]}]),
        "the intake admits anyone, on its port only"
    );
}
