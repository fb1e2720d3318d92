//! The `Destination` custom resource: a downstream API that jobs call by
//! name, with what it takes to call it safely: credentials from Secrets,
//! TLS, a rate limit, a concurrency cap, a circuit breaker, and a pause.
//!
//! Secrets and ConfigMaps are referenced by name and read from the
//! Destination's own namespace; their values never appear in any object the
//! operator writes. As for `PendingJob`, doc comments become the CRD's
//! descriptions and CEL rules make the API server name the field at fault.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A downstream API that jobs call by name: its base URL, and how to
/// authenticate, secure, pace and protect the calls made to it.
// kube-derive's repeated printcolumn(...) entries look alike to this lint.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "pendingjob.dev",
    version = "v1alpha1",
    kind = "Destination",
    plural = "destinations",
    shortname = "dest",
    namespaced,
    status = "DestinationStatus",
    doc = "A downstream API that PendingJobs call by name (spec.destinationRef): base URL, \
           credentials from Secrets, TLS, rate limit, concurrency cap, circuit breaker and suspend.",
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.url"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Circuit", type_ = "string", json_path = ".status.circuit"),
    printcolumn(name = "In Flight", type_ = "integer", json_path = ".status.inFlight"),
    printcolumn(name = "Waiting", type_ = "integer", json_path = ".status.waitingJobs"),
    printcolumn(name = "Suspended", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
// The rare options are boxed: 10,000 cached Destinations each hold the
// spec inline, most with no TLS or OAuth2 settings.
#[serde(rename_all = "camelCase")]
pub struct DestinationSpec {
    /// Base http:// or https:// URL; a job's `target.path` is appended to it.
    #[x_kube(validation = Rule::new(
        "isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''"
    ).message("must be an absolute http:// or https:// URL"))]
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
    /// Headers sent with every call, each a plain value or a Secret's key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub headers: Vec<DestinationHeader>,
    /// How calls authenticate: at most one kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    /// TLS settings for https:// URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Box<Tls>>,
    /// Most calls per second, with a burst.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Most calls in flight at once to this destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_concurrency: Option<i32>,
    /// Stops calling while the destination keeps failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
    /// True stops all calls to the destination; its jobs wait and keep
    /// their schedule, without spending attempts.
    #[serde(default)]
    pub suspend: bool,
    /// Signs every call (dead-letter records included), so a receiver can
    /// check that it is ours and unaltered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<Box<Signing>>,
}

/// How calls are signed.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Signing {
    /// Standard Webhooks (standardwebhooks.com): `webhook-id`,
    /// `webhook-timestamp` and `webhook-signature` headers over
    /// `id.timestamp.body`.
    pub standard_webhooks: StandardWebhooks,
}

/// Standard Webhooks signing keys.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StandardWebhooks {
    /// A Secret's key holding one or more keys, separated by whitespace:
    /// `whsec_` (24 to 64 random bytes, base64) signs `v1,` with
    /// HMAC-SHA256; `whsk_` (a 32-byte Ed25519 seed, base64) signs `v1a,`.
    /// Every key signs, so a key is rotated by adding the new one, waiting
    /// out the overlap receivers need, and removing the old one.
    pub secret_key_ref: KeyRef,
}

/// A header sent with every call: exactly one of `value` and `valueFrom`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.value) != has(self.valueFrom)")
    .message("exactly one of value and valueFrom must be set"))]
#[serde(rename_all = "camelCase")]
pub struct DestinationHeader {
    /// Header name.
    #[x_kube(validation = Rule::new(
        "self.matches('^[A-Za-z0-9!#$%&*+.^_|~-]+$') && !(self.lowerAscii() in ['idempotency-key', 'content-type', 'content-length', 'host', 'authorization'])"
    ).message("must be an HTTP token, and not Idempotency-Key, Content-Type, Content-Length, Host or Authorization, which the operator sets"))]
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// A plain value: do not put secrets here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub value: Option<String>,
    /// The value, from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<SecretValue>,
}

/// A value read from a Secret.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretValue {
    /// The Secret's key that holds the value.
    pub secret_key_ref: KeyRef,
}

/// A key of a Secret or ConfigMap in the Destination's namespace.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct KeyRef {
    /// Name of the Secret or ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key within it.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A whole Secret of a well-known type, in the Destination's namespace.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

/// How calls authenticate: at most one of these.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new(
    "[has(self.bearerToken), has(self.basic), has(self.oauth2ClientCredentials), has(self.serviceAccountToken)].filter(x, x).size() <= 1"
).message("at most one of bearerToken, basic, oauth2ClientCredentials and serviceAccountToken may be set"))]
#[serde(rename_all = "camelCase")]
pub struct Auth {
    /// `Authorization: Bearer <token>`, the token from a Secret's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<SecretValue>,
    /// HTTP basic auth from a `kubernetes.io/basic-auth` Secret (keys
    /// `username` and `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<SecretRef>,
    /// OAuth2 client credentials: a token from `tokenUrl`, kept until it
    /// expires and fetched again once on a 401.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2_client_credentials: Option<Box<OAuth2ClientCredentials>>,
    /// `Authorization: Bearer <token>`, a token the operator mints for a
    /// ServiceAccount of the Destination's namespace (TokenRequest), bound
    /// to `audience`: a target verifies it with the cluster's OIDC discovery
    /// keys or a TokenReview, with no shared secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_token: Option<Box<ServiceAccountToken>>,
}

/// A ServiceAccount token for one audience (the TokenRequest API).
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountToken {
    /// The ServiceAccount, in the Destination's namespace. Its author must
    /// be allowed to `create` `serviceaccounts/token` for it.
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: String,
    /// The token's audience (`aud`): who it is for, such as the target's URL.
    #[schemars(length(min = 1, max = 1024))]
    pub audience: String,
    /// The token's lifetime asked for; it is used until about 80% of it
    /// has passed, then a new one is minted.
    #[serde(default = "default_token_seconds")]
    #[schemars(range(min = 600, max = 86400))]
    pub expiration_seconds: i64,
}

fn default_token_seconds() -> i64 {
    3600
}

/// The OAuth2 client-credentials grant (RFC 6749 §4.4).
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OAuth2ClientCredentials {
    /// The token endpoint.
    #[x_kube(validation = Rule::new(
        "isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''"
    ).message("must be an absolute http:// or https:// URL"))]
    #[schemars(length(min = 1, max = 2048))]
    pub token_url: String,
    /// The client id, from a Secret's key.
    pub client_id: SecretValue,
    /// The client secret, from a Secret's key.
    pub client_secret: SecretValue,
    /// Scopes to ask for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub scopes: Vec<String>,
}

/// TLS for https:// destinations.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Tls {
    /// PEM CA bundle that server certificates must chain to, instead of the
    /// system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CaBundle>,
    /// Client certificate and key, from a `kubernetes.io/tls` Secret, for mTLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<SecretRef>,
}

/// Where a CA bundle is: exactly one of a ConfigMap's key and a Secret's key.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.configMapKeyRef) != has(self.secretKeyRef)")
    .message("exactly one of configMapKeyRef and secretKeyRef must be set"))]
#[serde(rename_all = "camelCase")]
pub struct CaBundle {
    /// A ConfigMap's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeyRef>,
    /// A Secret's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeyRef>,
}

/// A token bucket: `requestsPerSecond` on average, up to `burst` at once.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Calls per second on average.
    #[schemars(range(min = 1, max = 100000))]
    pub requests_per_second: i32,
    /// Calls that may start at once after a quiet spell; defaults to
    /// `requestsPerSecond`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub burst: Option<i32>,
}

/// Opens after `consecutiveFailures` failed calls in a row: no calls for
/// `openSeconds`, then one probe call decides whether to close again.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreaker {
    /// Failed calls in a row that open the circuit.
    #[serde(default = "default_consecutive_failures")]
    #[schemars(range(min = 1, max = 10000))]
    pub consecutive_failures: i32,
    /// Seconds the circuit stays open before a probe.
    #[serde(default = "default_open_seconds")]
    #[schemars(range(min = 1, max = 3600))]
    pub open_seconds: i32,
}

fn default_consecutive_failures() -> i32 {
    5
}
fn default_open_seconds() -> i32 {
    30
}

/// State of a destination's circuit breaker.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Circuit {
    /// Calls flow.
    #[default]
    Closed,
    /// No calls; jobs wait.
    Open,
    /// One probe call is testing recovery.
    HalfOpen,
}

/// Whether the destination can be called, written only by the operator.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DestinationStatus {
    /// `Ready`: True when every Secret and ConfigMap it needs is there and
    /// well formed; otherwise the reason and what is wrong.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The circuit breaker's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit: Option<Circuit>,
    /// While the circuit is open: when it lets one probe call through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_open_until: Option<Time>,
    /// The spec generation this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Calls to it in flight, as last counted (every 5 s while busy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<i32>,
    /// Due jobs waiting for it (circuit open, suspended, not ready), as last
    /// counted (every 5 s while any wait).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_jobs: Option<i32>,
    /// What receivers need to check its signatures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<SigningStatus>,
}

/// What receivers of a signing destination need.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SigningStatus {
    /// The `whpk_` public key of each `whsk_` key, in the Secret's order,
    /// for receivers that check `v1a` signatures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_keys: Vec<String>,
}
