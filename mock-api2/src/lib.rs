//! The seed article's flaky "API 2", as a real HTTP server with knobs.
//!
//! - `POST /api2/simulate`: the call jobs make. 200 when healthy; the failure
//!   status (503 by default) while failing. It reads the whole body first,
//!   up to [`MAX_BODY_BYTES`] (1 MiB); a larger body is answered 413.
//! - `POST /api2/toggle`: flips failure mode; answers `{"fail": bool}`.
//! - `GET /api2/stats`: requests received, unique idempotency keys, count per
//!   key, and the last requests with their arrival times.
//! - `GET|PUT /api2/config`: read or change the knobs (fail, failFirst,
//!   failStatus, retryAfterSeconds, latencyMs, flapMs); `PUT` takes any subset.
//! - `POST /oauth2/token`, `POST /oauth2/revoke`: an OAuth2 token endpoint,
//!   when the server requires OAuth2 tokens (see [`auth`]).
//!
//! Every request to `/api2/simulate` is counted, whatever the answer; one
//! without the credential the server requires ([`auth::Required`]), or
//! without a valid signature when it checks them ([`verify`]), is answered
//! 401. HTTPS and mTLS are in [`tls`].

pub mod auth;
pub mod tls;
pub mod verify;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use auth::{Issued, Required};
use verify::Signatures;

/// The header that carries a job's idempotency key (its UID) on every call.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// Largest request body `/api2/simulate` reads; a larger one is answered 413.
/// Eight times the largest payload a PendingJob may carry.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// How many received requests `/api2/stats` remembers in detail.
const REQUEST_LOG_LIMIT: usize = 10_000;

/// The knobs; all can be set at start-up and changed at run time.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Knobs {
    /// Answer every call with `fail_status`.
    pub fail: bool,
    /// Answer this many of the next calls with `fail_status`, then behave as `fail` says.
    pub fail_first: u32,
    /// Status code of a failing answer.
    pub fail_status: u16,
    /// `Retry-After` (seconds) sent with failing answers.
    pub retry_after_seconds: Option<u64>,
    /// Delay before answering any call, in milliseconds.
    pub latency_ms: u64,
    /// Flap: alternate windows of this many milliseconds, healthy then
    /// failing, counted from start-up. 0: no flapping.
    pub flap_ms: u64,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            fail: false,
            fail_first: 0,
            fail_status: 503,
            retry_after_seconds: None,
            latency_ms: 0,
            flap_ms: 0,
        }
    }
}

/// A partial update of [`Knobs`] for `PUT /api2/config`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KnobsUpdate {
    fail: Option<bool>,
    fail_first: Option<u32>,
    fail_status: Option<u16>,
    retry_after_seconds: Option<Option<u64>>,
    latency_ms: Option<u64>,
    flap_ms: Option<u64>,
}

/// One request to `/api2/simulate`, as remembered.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Received {
    /// Its `Idempotency-Key`, if any.
    pub key: Option<String>,
    /// Arrival time, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The status code answered.
    pub status: u16,
}

/// What `GET /api2/stats` returns.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Requests received by `/api2/simulate`.
    pub total_requests: u64,
    /// Distinct idempotency keys seen.
    pub unique_keys: usize,
    /// Requests per idempotency key.
    pub per_key: BTreeMap<String, u64>,
    /// Most requests that were being answered at the same moment.
    pub max_in_flight: u64,
    /// The most recent requests, oldest first.
    pub requests: VecDeque<Received>,
    /// Requests answered 401 for lack of the required credential or of a
    /// valid signature.
    pub unauthorized: u64,
    /// Of those, requests whose Standard Webhooks signature did not verify.
    pub bad_signatures: u64,
    /// OAuth2 tokens issued by `/oauth2/token`.
    pub tokens_issued: u64,
}

#[derive(Debug, Default)]
struct Inner {
    knobs: Knobs,
    required: Required,
    signatures: Option<Signatures>,
    issued: Issued,
    stats: Stats,
    in_flight: u64,
    /// Start-up time, ms since the epoch: where flap windows count from.
    started_ms: i64,
}

/// Counts a request as in flight until dropped, even if the client hangs up.
struct InFlight(Api2);

impl InFlight {
    fn enter(api: &Api2) -> Self {
        api.with(|inner| {
            inner.in_flight += 1;
            inner.stats.max_in_flight = inner.stats.max_in_flight.max(inner.in_flight);
        });
        Self(api.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.with(|inner| inner.in_flight -= 1);
    }
}

/// The server's shared state.
#[derive(Clone, Debug, Default)]
pub struct Api2 {
    inner: Arc<Mutex<Inner>>,
}

impl Api2 {
    /// A server starting with `knobs`, open to anyone.
    pub fn new(knobs: Knobs) -> Self {
        Self::requiring(knobs, Required::Nothing)
    }

    /// A server starting with `knobs` that answers 401 to calls without
    /// the `required` credential.
    pub fn requiring(knobs: Knobs, required: Required) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                knobs,
                required,
                signatures: None,
                issued: Issued::default(),
                stats: Stats::default(),
                in_flight: 0,
                started_ms: jiff::Timestamp::now().as_millisecond(),
            })),
        }
    }

    /// The same server, answering 401 also to calls without a Standard
    /// Webhooks signature by one of `signatures`.
    #[must_use]
    pub fn verifying(self, signatures: Signatures) -> Self {
        self.with(|inner| inner.signatures = Some(signatures));
        self
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The HTTP routes.
    pub fn router(self) -> Router {
        Router::new()
            .route("/api2/simulate", post(simulate))
            .route("/api2/toggle", post(toggle))
            .route("/api2/stats", get(stats))
            .route("/api2/config", get(config).put(update_config))
            .route("/oauth2/token", post(issue_token))
            .route("/oauth2/revoke", post(revoke_tokens))
            .with_state(self)
    }
}

async fn simulate(State(api): State<Api2>, headers: HeaderMap, body: Body) -> Response {
    let _in_flight = InFlight::enter(&api);
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let at_ms = jiff::Timestamp::now().as_millisecond();
    // Read the whole body before answering: an answer sent while the client
    // is still sending makes it see a broken pipe instead of the answer.
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES).await;
    let too_large = body.is_err();
    let body = body.unwrap_or_default();
    let (knobs, failing, authorized) = api.with(|inner| {
        let signed = inner
            .signatures
            .as_ref()
            .is_none_or(|signatures| signatures.verify(&headers, &body, at_ms.div_euclid(1000)));
        let authorized = signed && auth::allows(&inner.required, &inner.issued, authorization, at_ms);
        let failing = inner.knobs.fail
            || inner.knobs.fail_first > 0
            || in_failing_window(inner.knobs.flap_ms, at_ms - inner.started_ms);
        inner.knobs.fail_first = inner.knobs.fail_first.saturating_sub(1);
        let status = match (authorized, too_large, failing) {
            (false, _, _) => StatusCode::UNAUTHORIZED.as_u16(),
            (true, true, _) => StatusCode::PAYLOAD_TOO_LARGE.as_u16(),
            (true, false, true) => inner.knobs.fail_status,
            (true, false, false) => 200,
        };
        let stats = &mut inner.stats;
        stats.unauthorized += u64::from(!authorized);
        stats.bad_signatures += u64::from(!signed);
        stats.total_requests += 1;
        if let Some(key) = &key {
            *stats.per_key.entry(key.clone()).or_default() += 1;
        }
        stats.unique_keys = stats.per_key.len();
        if stats.requests.len() == REQUEST_LOG_LIMIT {
            stats.requests.pop_front();
        }
        stats.requests.push_back(Received { key, at_ms, status });
        (inner.knobs.clone(), failing, authorized)
    });
    if knobs.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(knobs.latency_ms)).await;
    }
    if !authorized {
        return (StatusCode::UNAUTHORIZED, "API 2 requires credentials").into_response();
    }
    if too_large {
        let message = format!("request body unreadable or over {MAX_BODY_BYTES} bytes");
        return (StatusCode::PAYLOAD_TOO_LARGE, message).into_response();
    }
    if !failing {
        return (StatusCode::OK, "API 2 processed payload").into_response();
    }
    let status = StatusCode::from_u16(knobs.fail_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut response = (status, "API 2 is down").into_response();
    if let Some(seconds) = knobs.retry_after_seconds {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// True in the odd (failing) windows of a flap of `flap_ms`; never when 0.
fn in_failing_window(flap_ms: u64, elapsed_ms: i64) -> bool {
    flap_ms > 0 && (elapsed_ms.max(0).unsigned_abs() / flap_ms) % 2 == 1
}

/// The client-credentials grant: a token for the known client, 401 for
/// anyone else, 404 when the server does not use OAuth2.
async fn issue_token(State(api): State<Api2>, headers: HeaderMap, body: String) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let grant = body.split('&').any(|pair| pair == "grant_type=client_credentials");
    let now_ms = jiff::Timestamp::now().as_millisecond();
    api.with(|inner| {
        let Required::OAuth2(client) = &inner.required else {
            return StatusCode::NOT_FOUND.into_response();
        };
        if !grant {
            let error = serde_json::json!({"error": "unsupported_grant_type"});
            return (StatusCode::BAD_REQUEST, Json(error)).into_response();
        }
        let token = inner.issued.issue(client, authorization, now_ms);
        inner.stats.tokens_issued = inner.issued.count();
        match token {
            Some(token) => Json(token).into_response(),
            None => (
                StatusCode::UNAUTHORIZED,
                Json(serde_json::json!({"error": "invalid_client"})),
            )
                .into_response(),
        }
    })
}

async fn revoke_tokens(State(api): State<Api2>) -> StatusCode {
    api.with(|inner| inner.issued.revoke_all());
    StatusCode::NO_CONTENT
}

async fn toggle(State(api): State<Api2>) -> Json<serde_json::Value> {
    let fail = api.with(|inner| {
        inner.knobs.fail = !inner.knobs.fail;
        inner.knobs.fail
    });
    Json(serde_json::json!({ "fail": fail }))
}

async fn stats(State(api): State<Api2>) -> Json<Stats> {
    Json(api.with(|inner| inner.stats.clone()))
}

async fn config(State(api): State<Api2>) -> Json<Knobs> {
    Json(api.with(|inner| inner.knobs.clone()))
}

async fn update_config(State(api): State<Api2>, Json(update): Json<KnobsUpdate>) -> Json<Knobs> {
    Json(api.with(|inner| {
        let knobs = &mut inner.knobs;
        knobs.fail = update.fail.unwrap_or(knobs.fail);
        knobs.fail_first = update.fail_first.unwrap_or(knobs.fail_first);
        knobs.fail_status = update.fail_status.unwrap_or(knobs.fail_status);
        knobs.retry_after_seconds = update.retry_after_seconds.unwrap_or(knobs.retry_after_seconds);
        knobs.latency_ms = update.latency_ms.unwrap_or(knobs.latency_ms);
        knobs.flap_ms = update.flap_ms.unwrap_or(knobs.flap_ms);
        knobs.clone()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flap_windows_alternate_healthy_then_failing() {
        let cases = [
            (0, 5_000, false),
            (1_000, 0, false),
            (1_000, 999, false),
            (1_000, 1_000, true),
            (1_000, 1_999, true),
            (1_000, 2_000, false),
            (1_000, -5, false),
        ];
        for (flap_ms, elapsed_ms, failing) in cases {
            assert_eq!(
                in_failing_window(flap_ms, elapsed_ms),
                failing,
                "{flap_ms} {elapsed_ms}"
            );
        }
    }
}
