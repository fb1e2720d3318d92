//! `pendingjob.dev/require-destination=true` on a namespace: raw URLs are
//! refused there, for the job's call and for its dead letter.

use serde_json::json;

use crate::destinations::{apply_json, job_to};
use crate::jobs::{SOON, setup};
use crate::support::{kubectl_stdin, wait_until};

#[tokio::test]
async fn a_labelled_namespace_refuses_raw_urls_and_takes_destinations() {
    let env = setup("dest-required").await;
    let labelled = env.kubectl(&[
        "label",
        "namespace",
        &env.namespace,
        "pendingjob.dev/require-destination=true",
    ]);
    assert!(labelled.status.success(), "{labelled:?}");
    let raw = json!({"apiVersion": "pendingjob.dev/v1alpha1", "kind": "PendingJob", "metadata": {"name": "raw"},
                     "spec": {"target": {"url": "http://api.example/x"}}});
    // The policy applies once the API server has loaded it and the label.
    let refused = wait_until("the require-destination policy to refuse a raw URL", SOON, || async {
        let out = kubectl_stdin(
            &["apply", "--dry-run=server", "--namespace", &env.namespace, "-f", "-"],
            &serde_json::to_string(&raw).expect("json"),
        );
        (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
    })
    .await;
    assert!(
        refused.contains("spec.target.url") && refused.contains("requires jobs to call a Destination"),
        "{refused}"
    );
    apply_json(&env, &job_to("named", "somewhere", "/x"));
    // A dead letter is a call too, and it carries the payload.
    let with_dead_letter = |dead_letter: serde_json::Value| {
        let mut job = job_to("with-dead-letter", "somewhere", "/x");
        job["spec"]["deadLetter"] = dead_letter;
        job
    };
    let raw = with_dead_letter(json!({"url": "http://api.example/dead"}));
    let out = kubectl_stdin(
        &["apply", "--dry-run=server", "--namespace", &env.namespace, "-f", "-"],
        &serde_json::to_string(&raw).expect("json"),
    );
    let refused = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && refused.contains("spec.deadLetter.url") && refused.contains("dead letters"),
        "{out:?}"
    );
    apply_json(
        &env,
        &with_dead_letter(json!({"destinationRef": {"name": "somewhere"}})),
    );
}
