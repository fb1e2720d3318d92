//! One HTTP call: the request a job's target and its endpoint make, sent
//! once, and its answer read as an [`Outcome`].
//!
//! A call never follows a redirect and never goes where the egress policy
//! denies; the target's failures are outcomes, not errors.

use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use super::clients::HttpClients;
use super::egress;
use super::outcome::{Outcome, classify_response, describe, parse_retry_after};
use crate::api::{Method, Target};

/// Header carrying the job's UID, so the target can drop duplicate deliveries.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// How much of an error response's body goes into `lastError`.
const BODY_SNIPPET_BYTES: usize = 200;

/// Where a call goes: what a route makes of a target, its destination and
/// their credentials.
#[derive(Clone, Debug, Default)]
pub struct Endpoint {
    /// The URL to call.
    pub url: String,
    /// Headers that win over the job's own, credentials included (marked
    /// sensitive, so they are never printed).
    pub headers: HeaderMap,
    /// The client of a destination with TLS settings of its own; the shared
    /// client otherwise.
    pub client: Option<reqwest::Client>,
}

/// Makes one call to `endpoint`, with `target`'s method, headers and
/// timeout, keyed by `key` (`Idempotency-Key`), with `body` (serialized
/// JSON) as the request body.
pub async fn call(
    clients: &HttpClients,
    target: &Target,
    endpoint: &Endpoint,
    body: Option<Bytes>,
    key: &str,
) -> Outcome {
    let request = match build(clients, target, endpoint, body, key) {
        Ok(request) => request,
        Err(error) => return Outcome::Rejected { code: None, error },
    };
    let client = endpoint.client.as_ref().unwrap_or(clients.shared());
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
    clients: &HttpClients,
    target: &Target,
    endpoint: &Endpoint,
    body: Option<Bytes>,
    key: &str,
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
    let key = HeaderValue::try_from(key).map_err(|e| format!("idempotency key {key:?}: {e}"))?;
    headers.insert(IDEMPOTENCY_KEY, key);
    let timeout = Duration::from_secs(u64::from(target.timeout_seconds.max(1).unsigned_abs()));
    // The destination's headers (credentials among them) win over the job's.
    headers.extend(endpoint.headers.clone());
    let url = reqwest::Url::parse(&endpoint.url).map_err(|e| format!("URL {:?}: {e}", endpoint.url))?;
    clients.check_url(&url)?;
    let mut builder = clients.shared().request(method, url).headers(headers).timeout(timeout);
    if let Some(body) = body {
        builder = builder.header(CONTENT_TYPE, "application/json").body(body);
    }
    builder.build().map_err(|e| describe(&e))
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
