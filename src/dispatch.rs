//! One HTTP call to a job's target, and what its response means.
//!
//! The target's failures are outcomes, not errors: they end up in the job's
//! status. [`classify_response`] is the pure part and is table-tested.

use std::collections::HashMap;
use std::error::Error as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Client, StatusCode};

use crate::crd::{MAX_ERROR_BYTES, Method, Target};
use crate::egress::{self, EgressPolicy};
use crate::lifecycle::Outcome;
use crate::route::Route;
use crate::tls::TlsMaterial;

/// Header carrying the job's UID, so the target can drop duplicate deliveries.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// Longest wait for a target to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Keep-alive probes on pooled connections, so a dead peer is noticed.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);
/// How much of an error response's body goes into `lastError`.
const BODY_SNIPPET_BYTES: usize = 200;

/// Failure to set up the HTTP client.
#[derive(Debug, thiserror::Error)]
#[error("building the HTTP client: {0}")]
pub struct ClientError(#[from] reqwest::Error);

/// Sends jobs' calls. Cheap to clone; shares one connection pool, plus one
/// per destination with TLS settings of its own.
#[derive(Clone, Debug)]
pub struct Dispatcher {
    client: Client,
    egress: Arc<EgressPolicy>,
    /// Clients of destinations with their own TLS, by destination, with the
    /// material each was built from.
    with_tls: Arc<Mutex<HashMap<String, (TlsMaterial, Client)>>>,
}

impl Dispatcher {
    /// A dispatcher that never follows redirects (a 3xx is an answer to record,
    /// and following one could turn a POST into a GET). Connections are kept
    /// alive and pooled per target; connecting has a bound of its own, below
    /// each job's `timeoutSeconds` for the whole call. It connects only to
    /// addresses `egress` allows, and never through a proxy from the
    /// environment, which would connect on its behalf, unchecked.
    pub fn new(egress: EgressPolicy) -> Result<Self, ClientError> {
        let egress = Arc::new(egress);
        let client = builder(&egress).build()?;
        Ok(Self {
            client,
            egress,
            with_tls: Arc::default(),
        })
    }

    /// The client for destination `key` with TLS `material`: built like the
    /// shared one, trusting only the material's CA when it has one, and
    /// presenting its client certificate. Kept until the material changes.
    /// The error says what is wrong without a byte of the material.
    pub fn client_with(&self, key: &str, material: &TlsMaterial) -> Result<Client, String> {
        let mut built = self.with_tls.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((from, client)) = built.get(key)
            && from == material
        {
            return Ok(client.clone());
        }
        let mut builder = builder(&self.egress);
        if let Some(ca) = &material.ca {
            let roots = reqwest::Certificate::from_pem_bundle(ca)
                .ok()
                .filter(|roots| !roots.is_empty())
                .ok_or("the CA bundle holds no PEM certificate")?;
            builder = builder.tls_certs_only(roots);
        }
        if let Some(identity) = &material.identity {
            let identity = reqwest::Identity::from_pem(identity)
                .map_err(|_| "the client certificate or key is not valid PEM".to_owned())?;
            builder = builder.identity(identity);
        }
        let client = builder
            .build()
            .map_err(|e| format!("the TLS settings cannot be used: {}", describe(&e)))?;
        built.insert(key.to_owned(), (material.clone(), client.clone()));
        Ok(client)
    }

    /// The shared client, for calls of the operator's own (OAuth2 tokens).
    pub fn shared(&self) -> &Client {
        &self.client
    }

    /// Refuses `url` when the egress policy denies its address literal; a
    /// hostname is checked on its resolved addresses when connecting.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), String> {
        self.egress.check_url(url).map_err(|denied| denied.to_string())
    }

    /// Makes one attempt of a job: a call along `route`, with `target`'s
    /// method, headers and timeout, keyed by `uid`, with `body` (the
    /// serialized payload, see [`body_of`]) as JSON.
    pub async fn attempt(&self, target: &Target, route: &Route, body: Option<Bytes>, uid: &str) -> Outcome {
        let request = match self.build(target, route, body, uid) {
            Ok(request) => request,
            Err(error) => return Outcome::Rejected { code: None, error },
        };
        let client = route.client.as_ref().unwrap_or(&self.client);
        let response = match client.execute(request).await {
            Ok(response) => response,
            // Refused before connecting: no call was made, and none ever will be.
            Err(e) if egress::denied_in(&e).is_some() => {
                return Outcome::Rejected {
                    code: None,
                    error: describe(&e),
                };
            }
            Err(e) => {
                return Outcome::Retryable {
                    code: None,
                    error: describe(&e),
                    retry_after: None,
                };
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, Timestamp::now()));
        let snippet = if status.is_success() {
            String::new()
        } else {
            body_snippet(response).await
        };
        classify_response(status, retry_after, &snippet)
    }

    fn build(
        &self,
        target: &Target,
        route: &Route,
        body: Option<Bytes>,
        uid: &str,
    ) -> Result<reqwest::Request, String> {
        let method = match target.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &target.headers {
            let name = HeaderName::try_from(name.as_str()).map_err(|e| format!("header name {name:?}: {e}"))?;
            let value = HeaderValue::try_from(value.as_str()).map_err(|e| format!("value of header {name}: {e}"))?;
            headers.insert(name, value);
        }
        let key = HeaderValue::try_from(uid).map_err(|e| format!("idempotency key {uid:?}: {e}"))?;
        headers.insert(IDEMPOTENCY_KEY, key);
        let timeout = Duration::from_secs(u64::from(target.timeout_seconds.max(1).unsigned_abs()));
        // The destination's headers (credentials among them) win over the job's.
        headers.extend(route.headers.clone());
        let url = reqwest::Url::parse(&route.url).map_err(|e| format!("URL {:?}: {e}", route.url))?;
        self.check_url(&url)?;
        let mut builder = self.client.request(method, url).headers(headers).timeout(timeout);
        if let Some(body) = body {
            builder = builder.header(CONTENT_TYPE, "application/json").body(body);
        }
        builder.build().map_err(|e| describe(&e))
    }
}

/// How every client of the operator's calls is built (see [`Dispatcher::new`]).
fn builder(egress: &Arc<EgressPolicy>) -> reqwest::ClientBuilder {
    Client::builder()
        .user_agent(concat!("pendingjob-operator/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_keepalive(TCP_KEEPALIVE)
        .no_proxy()
        .dns_resolver(egress.resolver())
}

/// The request body of a job with `payload`: the payload's JSON.
pub fn body_of(payload: Option<&serde_json::Value>) -> Option<Bytes> {
    // A JSON value always serializes.
    payload
        .and_then(|payload| serde_json::to_vec(payload).ok())
        .map(Bytes::from)
}

/// What a response means for the job: 2xx delivered; 408, 429 and 5xx worth
/// retrying; anything else (other 4xx, 1xx, 3xx) a permanent rejection.
pub fn classify_response(status: StatusCode, retry_after: Option<Duration>, body: &str) -> Outcome {
    let code = status.as_u16();
    let mut error = format!("HTTP {status}");
    if !body.trim().is_empty() {
        error.push_str(": ");
        error.push_str(body.trim());
    }
    if status.is_success() {
        Outcome::Delivered { code }
    } else if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        Outcome::Retryable {
            code: Some(code),
            error,
            retry_after,
        }
    } else {
        Outcome::Rejected {
            code: Some(code),
            error,
        }
    }
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP-date (RFC 9110).
/// A date in the past means "now".
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    Some(Duration::try_from(now.duration_until(date)).unwrap_or_default())
}

/// The error and its causes on one line, e.g. "error sending request: client
/// error (Connect): tcp connect error: Connection refused (os error 111)".
pub(crate) fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out: ".to_owned()
    } else {
        String::new()
    };
    text.push_str(&error.to_string());
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    crate::lifecycle::truncate(&text, MAX_ERROR_BYTES)
}

/// The start of a response body, for error messages; never more than a few
/// hundred bytes are read.
async fn body_snippet(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < BODY_SNIPPET_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(BODY_SNIPPET_BYTES)]).into_owned();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_response_table() {
        // (code, retryable?, delivered?)
        let cases = [
            (200, false, true),
            (201, false, true),
            (204, false, true),
            (301, false, false),
            (400, false, false),
            (401, false, false),
            (404, false, false),
            (408, true, false),
            (409, false, false),
            (422, false, false),
            (429, true, false),
            (500, true, false),
            (502, true, false),
            (503, true, false),
            (504, true, false),
        ];
        for (code, retryable, delivered) in cases {
            let outcome = classify_response(StatusCode::from_u16(code).unwrap(), None, "");
            match outcome {
                Outcome::Delivered { code: c } => assert!(delivered && c == code, "{code}"),
                Outcome::Retryable { code: c, .. } => {
                    assert!(retryable && c == Some(code), "{code}")
                }
                Outcome::Rejected { code: c, .. } => {
                    assert!(!retryable && !delivered && c == Some(code), "{code}")
                }
            }
        }
    }

    #[test]
    fn classify_response_keeps_retry_after_and_body() {
        let outcome = classify_response(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(Duration::from_secs(9)),
            " API 2\n is down ",
        );
        assert_eq!(
            outcome,
            Outcome::Retryable {
                code: Some(503),
                error: "HTTP 503 Service Unavailable: API 2\n is down".into(),
                retry_after: Some(Duration::from_secs(9)),
            }
        );
    }

    #[test]
    fn parse_retry_after_table() {
        let now: Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
        let cases = [
            ("0", Some(0)),
            ("7", Some(7)),
            (" 120 ", Some(120)),
            ("Wed, 25 Nov 2026 12:00:30 GMT", Some(30)),
            ("Wed, 25 Nov 2026 11:00:00 GMT", Some(0)), // in the past
            ("-1", None),
            ("soon", None),
            ("", None),
        ];
        for (value, want) in cases {
            assert_eq!(
                parse_retry_after(value, now),
                want.map(Duration::from_secs),
                "{value:?}"
            );
        }
    }
}
