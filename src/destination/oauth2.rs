//! OAuth2 client credentials (RFC 6749 §4.4) for Destinations: access
//! tokens fetched from the token endpoint, kept until shortly before they
//! expire, and fetched again once the target refuses one.
//!
//! - The client authenticates to the token endpoint with HTTP basic auth
//!   (§2.3.1), its id and secret form-encoded, as the RFC asks servers to
//!   support. The request goes through the operator's shared HTTP client,
//!   so the egress policy applies to the token endpoint too.
//! - A token is used until [`refresh_after`] says: 30 s before it expires, or a
//!   tenth of its lifetime before for short-lived ones. Without
//!   `expires_in`, it is used for [`UNSTATED_LIFETIME`].
//! - A 401 from the target drops the token it was called with
//!   ([`Tokens::forget`]). If that token came from the cache, the attempt is
//!   retried, not failed ([`after_refusal`]): the next attempt fetches a new
//!   one. A 401 with a token fetched for that very call is the target's
//!   answer, and is recorded as such. Each attempt is still one call.
//! - One fetch per destination at a time; other destinations do not wait.
//!   A fetch that failed is not tried again for that destination before
//!   [`super::held::fetch_backoff`] (1 s, 2 s, 4 s … 1 min): its jobs and its
//!   controller get the same answer meanwhile, so waiting jobs never cause
//!   a fetch each.
//! - At most [`MAX_TOKEN_RESPONSE_BYTES`] of an answer are read; a longer
//!   one fails the fetch (`TokenRequestFailed`), so no token endpoint can
//!   grow the operator's memory.
//! - Tokens and client secrets never reach a message, a log line or a
//!   status: errors name the endpoint and its status code only.

use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::Deserialize;

use super::held::PerDestination;
use super::secrets::{Secrets, Unusable};
use crate::api::OAuth2ClientCredentials;
use crate::delivery::call::body_within;
use crate::delivery::clients::HttpClients;
use crate::delivery::outcome::{Outcome, describe};
use crate::delivery::redact;

/// How long a token without `expires_in` is used.
pub const UNSTATED_LIFETIME: Duration = Duration::from_secs(300);
/// How long before expiry a token is replaced, at most.
const REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// Longest wait for the token endpoint.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes of a token endpoint's answer that are read; a token response
/// is a few hundred bytes.
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// A token to call with, and whether it was fetched for this call.
#[derive(Clone, Debug)]
pub struct Token {
    /// `Bearer <access token>`, marked sensitive.
    pub header: HeaderValue,
    /// True when fetched now rather than taken from the cache.
    pub fresh: bool,
}

/// What a token was fetched with: a change fetches a new one.
#[derive(Clone, PartialEq, Eq)]
struct Source {
    token_url: String,
    client_id: Vec<u8>,
    client_secret: Vec<u8>,
    scopes: Vec<String>,
}

/// The tokens held, per destination.
#[derive(Default)]
pub struct Tokens {
    held: PerDestination<Source>,
}

/// The token endpoint's answer (§5.1).
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// An error answer of the token endpoint (§5.2): only its code is kept.
#[derive(Deserialize)]
struct TokenError {
    error: String,
}

impl Tokens {
    /// A token for destination `key`, from the cache or from the endpoint.
    pub async fn token(
        &self,
        key: &str,
        settings: &OAuth2ClientCredentials,
        namespace: &str,
        secrets: &Secrets,
        clients: &HttpClients,
    ) -> Result<Token, Unusable> {
        let source = Source {
            token_url: settings.token_url.clone(),
            client_id: secrets
                .secret_key(namespace, &settings.client_id.secret_key_ref)
                .await?,
            client_secret: secrets
                .secret_key(namespace, &settings.client_secret.secret_key_ref)
                .await?,
            scopes: settings.scopes.clone(),
        };
        let slot = self.held.slot(key);
        let mut held = slot.lock().await;
        if let Some(header) = held.fresh(&source) {
            return Ok(Token { header, fresh: false });
        }
        if let Some(error) = held.still_failing(&source) {
            return Err(error);
        }
        let fetched_at = Instant::now();
        match fetch(&source, clients).await {
            Ok((header, lifetime)) => {
                held.fetched(source, header.clone(), fetched_at, refresh_after(lifetime));
                Ok(Token { header, fresh: true })
            }
            Err(error) => {
                held.failed(source, error.clone());
                Err(error)
            }
        }
    }

    /// Drops destination `key`'s token if it is still `used`, the one a
    /// target refused.
    pub async fn forget(&self, key: &str, used: &HeaderValue) {
        let slot = self.held.slot(key);
        let mut held = slot.lock().await;
        if held.token.as_ref().is_some_and(|cached| cached.header == used) {
            held.token = None;
        }
    }

    /// Drops destination `key`'s token and its record of failed fetches.
    pub fn remove(&self, key: &str) {
        self.held.remove(key);
    }

    /// How many destinations have a token or failure held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.held.len()
    }
}

/// How long after it was fetched a token of `lifetime` is replaced.
pub fn refresh_after(lifetime: Duration) -> Duration {
    lifetime.saturating_sub(REFRESH_MARGIN.min(lifetime / 10))
}

/// The outcome to record when a call made with an OAuth2 token (`fresh` if
/// fetched for this call) ended in `outcome`: a 401 to a cached token is a
/// token to replace, so the job is retried; anything else stands.
pub fn after_refusal(outcome: Outcome, fresh: bool) -> Outcome {
    match outcome {
        Outcome::Rejected { code: Some(401), error } if !fresh => Outcome::Retryable {
            code: Some(401),
            error: format!("{error}; the OAuth2 token was refused, and the next attempt fetches a new one"),
            retry_after: None,
        },
        other => other,
    }
}

/// Runs the grant against `source.token_url`; returns the `Authorization`
/// value and the token's lifetime.
async fn fetch(source: &Source, clients: &HttpClients) -> Result<(HeaderValue, Duration), Unusable> {
    let url = &source.token_url;
    let failed = |what: String| Unusable::new("TokenRequestFailed", format!("token endpoint {url}: {what}"));
    let parsed = reqwest::Url::parse(url).map_err(|e| failed(e.to_string()))?;
    clients.check_url(&parsed).map_err(failed)?;
    let encode = |value: &[u8]| form_urlencoded::byte_serialize(value).collect::<String>();
    let credentials = format!("{}:{}", encode(&source.client_id), encode(&source.client_secret));
    let mut basic = HeaderValue::try_from(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(&credentials)
    ))
    .map_err(|_| failed("the client id or secret cannot be sent".into()))?;
    basic.set_sensitive(true);
    let form = {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if !source.scopes.is_empty() {
            form.append_pair("scope", &source.scopes.join(" "));
        }
        form.finish()
    };
    let response = clients
        .shared()
        .post(parsed)
        .header(AUTHORIZATION, basic)
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(reqwest::header::ACCEPT, "application/json")
        .body(form)
        .timeout(TOKEN_TIMEOUT)
        .send()
        .await
        .map_err(|e| failed(describe(&e)))?;
    let status = response.status();
    let body = body_within(response, MAX_TOKEN_RESPONSE_BYTES)
        .await
        .map_err(|e| failed(describe(&e)))?
        .ok_or_else(|| {
            failed(format!(
                "the answer is larger than {} KiB",
                MAX_TOKEN_RESPONSE_BYTES / 1024
            ))
        })?;
    if !status.is_success() {
        // The error code is the endpoint's own text: the credentials sent
        // are cut from it, should it echo them.
        let sent = [
            source.client_id.clone(),
            source.client_secret.clone(),
            credentials.into_bytes(),
        ];
        let code = serde_json::from_slice::<TokenError>(&body)
            .map(|e| {
                let code: String = e.error.chars().take(64).collect();
                let code = redact::cut_trailing(&redact::redact(code.as_bytes(), &sent), &sent);
                format!(" ({})", String::from_utf8_lossy(&code))
            })
            .unwrap_or_default();
        return Err(failed(format!("HTTP {status}{code}")));
    }
    let token: TokenResponse = serde_json::from_slice(&body).map_err(|_| failed("the answer is not a token".into()))?;
    if token
        .token_type
        .as_deref()
        .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
    {
        return Err(failed("the token is not a bearer token".into()));
    }
    let mut header = HeaderValue::try_from(format!("Bearer {}", token.access_token))
        .map_err(|_| failed("the token is not a valid header value".into()))?;
    header.set_sensitive(true);
    let lifetime = token.expires_in.map_or(UNSTATED_LIFETIME, Duration::from_secs);
    Ok((header, lifetime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_replaced_before_they_expire() {
        let cases = [(3600, 3570), (300, 270), (100, 90), (10, 9), (0, 0)];
        for (lifetime, after) in cases {
            assert_eq!(
                refresh_after(Duration::from_secs(lifetime)),
                Duration::from_secs(after),
                "{lifetime}"
            );
        }
    }

    #[test]
    fn a_401_to_a_cached_token_is_retried_once_with_a_new_one() {
        let refused = || Outcome::Rejected {
            code: Some(401),
            error: "HTTP 401 Unauthorized".into(),
        };
        assert!(matches!(
            after_refusal(refused(), false),
            Outcome::Retryable { code: Some(401), .. }
        ));
        assert_eq!(
            after_refusal(refused(), true),
            refused(),
            "a fresh token refused is the answer"
        );
        let forbidden = Outcome::Rejected {
            code: Some(403),
            error: "HTTP 403".into(),
        };
        assert_eq!(after_refusal(forbidden.clone(), false), forbidden);
        let delivered = Outcome::Delivered { code: 200 };
        assert_eq!(after_refusal(delivered.clone(), false), delivered);
    }
}
