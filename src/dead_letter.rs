//! `spec.deadLetter`: where a JSON record of a job goes when it fails, so
//! someone hears of it without reading its status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::crd::DestinationRef;

/// A URL or a Destination (in the job's namespace): exactly one.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.url) != has(self.destinationRef)")
    .message("exactly one of url and destinationRef must be set"))]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// Absolute http:// or https:// URL that receives the record (POST).
    #[x_kube(validation = Rule::new(
        "isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''"
    ).message("must be an absolute http:// or https:// URL"))]
    #[schemars(length(min = 1, max = 2048))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A Destination that receives the record (POST to its URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_ref: Option<DestinationRef>,
}

/// Whether the dead-letter record was delivered.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterStatus {
    /// True once the receiver answered 2xx.
    pub delivered: bool,
    /// Calls made to the receiver.
    pub attempts: i32,
    /// When it was delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_time: Option<Time>,
    /// Why the last call failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}
