//! One HTTP call: the request a job's target and its endpoint make, sent
//! once, and its answer read as an [`Outcome`].
//!
//! A call never follows a redirect and never goes where the egress policy
//! denies; the target's failures are outcomes, not errors.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use super::clients::HttpClients;
use super::outcome::{Outcome, classify_response, describe, parse_retry_after};
use super::signing::Signer;
use super::trace_context::TraceContext;
use super::{egress, redact};
use crate::api::{Method, Target};

/// Header carrying the job's UID, so the target can drop duplicate deliveries.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// How much of an error response's body goes into `lastError`.
const BODY_SNIPPET_BYTES: usize = 200;

/// Where a call goes: what a route makes of a target, its destination and
/// their credentials.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The URL to call.
    pub url: String,
    /// Headers that win over the job's own, credentials included (marked
    /// sensitive, so they are never printed).
    pub headers: HeaderMap,
    /// The client of a destination with TLS settings of its own; the shared
    /// client otherwise.
    pub client: Option<reqwest::Client>,
    /// The URL the call must stay under, once dot segments are resolved (a
    /// destination's base URL); `None` for a raw URL.
    pub within: Option<String>,
    /// The destination's signing keys, if it signs: each call then carries
    /// Standard Webhooks headers with `webhook-id` = the Idempotency-Key.
    pub signer: Option<Arc<Signer>>,
}

/// Makes one call to `endpoint`, with `target`'s method, headers and
/// timeout, keyed by `key` (`Idempotency-Key`), with `body` (serialized
/// JSON) as the request body, in the trace `trace` continues.
pub async fn call(
    clients: &HttpClients,
    target: &Target,
    endpoint: &Endpoint,
    body: Option<Bytes>,
    key: &str,
    trace: Option<&TraceContext>,
) -> Outcome {
    let request = match build(clients, target, endpoint, body, key, trace) {
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
        body_snippet(response, &redact::credentials_in(&endpoint.headers)).await
    };
    classify_response(status, retry_after, &snippet)
}

fn build(
    clients: &HttpClients,
    target: &Target,
    endpoint: &Endpoint,
    body: Option<Bytes>,
    key: &str,
    trace: Option<&TraceContext>,
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
    let key_value = HeaderValue::try_from(key).map_err(|e| format!("idempotency key {key:?}: {e}"))?;
    headers.insert(IDEMPOTENCY_KEY, key_value);
    let timeout = Duration::from_secs(u64::from(target.timeout_seconds.max(1).unsigned_abs()));
    // The destination's headers (credentials among them) win over the job's,
    // the trace over both, and the signature over all: it covers the exact
    // body sent.
    headers.extend(endpoint.headers.clone());
    if let Some(trace) = trace {
        trace.insert_into(&mut headers);
    }
    if let Some(signer) = &endpoint.signer {
        let sent = body.as_deref().unwrap_or_default();
        signer.sign(&mut headers, key, Timestamp::now().as_second(), sent)?;
    }
    let url = reqwest::Url::parse(&endpoint.url).map_err(|e| format!("URL {:?}: {e}", endpoint.url))?;
    if let Some(base) = &endpoint.within {
        stays_under(&url, base)?;
    }
    clients.check_url(&url)?;
    let mut builder = clients.shared().request(method, url).headers(headers).timeout(timeout);
    if let Some(body) = body {
        builder = builder.header(CONTENT_TYPE, "application/json").body(body);
    }
    builder.build().map_err(|e| describe(&e))
}

/// Refuses `url` unless it is at or below `base`: same scheme, host and
/// port, and a path under the base's, as parsed, so `..` segments (raw or
/// `%2e`-encoded) are resolved as a server would resolve them.
pub fn stays_under(url: &reqwest::Url, base: &str) -> Result<(), String> {
    let base = reqwest::Url::parse(base).map_err(|e| format!("destination URL {base:?}: {e}"))?;
    let prefix = base.path().trim_end_matches('/');
    let path = url.path();
    let under_path = prefix.is_empty() || path == prefix || path.starts_with(&format!("{prefix}/"));
    if url.origin() == base.origin() && under_path {
        return Ok(());
    }
    Err(format!(
        "target.path leaves the destination's URL: {path} is not under {}",
        base.path()
    ))
}

/// A response's body if it is at most `limit` bytes long; `None`, having
/// read no more than `limit` bytes and one chunk, when it is longer.
pub async fn body_within(mut response: reqwest::Response, limit: usize) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if response
        .content_length()
        .is_some_and(|length| length > u64::try_from(limit).unwrap_or(u64::MAX))
    {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// The start of a response body, for error messages, with the `credentials`
/// sent cut out of it ([`redact`]). A few hundred bytes are read, and as many
/// more as the longest credential, so none is seen only in part.
async fn body_snippet(mut response: reqwest::Response, credentials: &[Vec<u8>]) -> String {
    let wanted = BODY_SNIPPET_BYTES + redact::longest(credentials);
    let mut bytes = Vec::new();
    while bytes.len() < wanted {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let mut bytes = redact::redact(&bytes, credentials);
    bytes.truncate(BODY_SNIPPET_BYTES);
    let bytes = redact::cut_trailing(&bytes, credentials);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_joined_url_stays_under_its_base() {
        let base = "https://api.example/tenants/a";
        let cases = [
            ("https://api.example/tenants/a/x", true),
            ("https://api.example/tenants/a", true),
            ("https://api.example/tenants/a/x/../y?z=..", true),
            ("https://api.example/tenants/a/../b/x", false),
            ("https://api.example/tenants/a/%2e%2e/b/x", false),
            ("https://api.example/tenants/a/.%2E/b/x", false),
            ("https://api.example/tenants/a/x/../../b", false),
            ("https://api.example/tenants/ab", false),
            ("http://api.example/tenants/a/x", false),
            ("https://api.example:8443/tenants/a/x", false),
        ];
        for (url, under) in cases {
            let parsed = reqwest::Url::parse(url).expect("url");
            assert_eq!(stays_under(&parsed, base).is_ok(), under, "{url} -> {}", parsed.path());
        }
        let root = reqwest::Url::parse("https://api.example/../x").expect("url");
        assert!(stays_under(&root, "https://api.example").is_ok());
        let error = stays_under(
            &reqwest::Url::parse("https://api.example/tenants/b").expect("url"),
            base,
        );
        assert_eq!(
            error.unwrap_err(),
            "target.path leaves the destination's URL: /tenants/b is not under /tenants/a"
        );
    }
}
