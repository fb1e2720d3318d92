//! `pendingjob-intake`: the seed's API 1 over plain HTTP. It stores the
//! intent as a PendingJob and answers at once; the operator does the rest.
//!
//! - `POST /v1/namespaces/{ns}/destinations/{destination}/jobs`: the body
//!   is the JSON payload; query `path`, `method`, `notBefore`; header
//!   `Idempotency-Key`. `202 Accepted` only once the API server has stored
//!   the job, with `Location` and `{name, uid, status}`. A retry with the
//!   same key and the same request answers `200` with the same body; the
//!   same key with another request, `409`.
//! - `GET /v1/namespaces/{ns}/pendingjobs/{name}`: the job's state.
//! - `POST /api1/process`: the seed article's shape, for one namespace and
//!   destination fixed by flags (a demo convenience).
//!
//! Callers authenticate with a bearer token ([`access`]); jobs are created
//! with the intake's own account and record the caller in an annotation.
//! A caller's W3C `traceparent` and `tracestate` are kept on the job, so its
//! calls continue the caller's trace ([`spans`]).
//!
//! Invariants: path names are checked ([`names`]) before any cache or API
//! call; the caller is authenticated and authorized before a byte of the
//! body is read, and the body is read within a limit and a timeout; the
//! listener caps connections and header time and size ([`serve`]).

pub mod access;
pub mod certificate;
pub mod names;
pub mod request;
pub mod seen;
pub mod serve;
pub mod spans;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use serde::Deserialize;
use serde_json::json;
use tracing::{Instrument, info, warn};

use crate::api::{Destination, MAX_PAYLOAD_BYTES, Method, PendingJob};
use crate::delivery::trace_context::TraceContext;
use access::{Access, Denied};
use request::JobRequest;

/// The namespace and destination of `POST /api1/process`.
#[derive(Clone, Debug)]
pub struct Seed {
    /// Where its jobs go.
    pub namespace: String,
    /// The Destination they call.
    pub destination: String,
}

/// The route jobs are posted to.
const JOBS_ROUTE: &str = "/v1/namespaces/{namespace}/destinations/{destination}/jobs";
/// The seed article's route.
const SEED_ROUTE: &str = "/api1/process";

/// The intake's state.
pub struct Intake {
    client: Client,
    access: Access,
    seed: Option<Seed>,
    /// How long an authenticated caller's body may take to arrive.
    body_read_timeout: Duration,
    /// Destinations seen lately.
    destinations: seen::Seen,
}

/// An answer that is an error, as `{"error": message}`.
struct Problem(StatusCode, String);

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({"error": self.1}))).into_response()
    }
}

impl From<Denied> for Problem {
    fn from(denied: Denied) -> Self {
        let code = match denied {
            Denied::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Denied::Forbidden(_) => StatusCode::FORBIDDEN,
            Denied::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self(code, denied.to_string())
    }
}

/// Query parameters of a POST.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobQuery {
    path: Option<String>,
    method: Option<String>,
    not_before: Option<String>,
}

impl Intake {
    /// An intake that creates jobs and reviews callers with `client`,
    /// accepting tokens minted for `audience`, and reading bodies for at
    /// most `body_read_timeout`.
    pub fn new(client: Client, seed: Option<Seed>, audience: String, body_read_timeout: Duration) -> Self {
        Self {
            access: Access::new(client.clone(), audience),
            client,
            seed,
            body_read_timeout,
            destinations: seen::Seen::default(),
        }
    }

    /// The body of an authenticated request: at most [`MAX_PAYLOAD_BYTES`],
    /// within the body read timeout.
    async fn read_body(&self, headers: &HeaderMap, body: Body) -> Result<Bytes, Problem> {
        let too_large = || {
            Problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the payload is over the limit of {MAX_PAYLOAD_BYTES} bytes"),
            )
        };
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|length| length > MAX_PAYLOAD_BYTES) {
            return Err(too_large());
        }
        let read = Limited::new(body, MAX_PAYLOAD_BYTES).collect();
        match tokio::time::timeout(self.body_read_timeout, read).await {
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
            Ok(Err(error)) => Err(Problem(
                StatusCode::BAD_REQUEST,
                format!("the body could not be read: {error}"),
            )),
            Err(_) => Err(Problem(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {} s", self.body_read_timeout.as_secs()),
            )),
        }
    }

    /// The HTTP routes.
    pub fn router(self) -> Router {
        Router::new()
            .route(JOBS_ROUTE, post(create_job))
            .route("/v1/namespaces/{namespace}/pendingjobs/{name}", get(get_job))
            .route(SEED_ROUTE, post(seed_process))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(Arc::new(self))
    }
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
}

/// A 400 unless `namespace` and the object `name` of `kind` are valid names.
fn check_names(namespace: &str, kind: &str, name: &str) -> Result<(), Problem> {
    if !names::is_label(namespace) {
        return Err(Problem(
            StatusCode::BAD_REQUEST,
            format!("namespace {namespace:?} is not a valid namespace name (a DNS-1123 label)"),
        ));
    }
    if !names::is_subdomain(name) {
        return Err(Problem(
            StatusCode::BAD_REQUEST,
            format!("{kind} {name:?} is not a valid name (a DNS-1123 subdomain)"),
        ));
    }
    Ok(())
}

fn status_url(namespace: &str, name: &str) -> String {
    format!("/v1/namespaces/{namespace}/pendingjobs/{name}")
}

/// What was asked, checked: a JSON body within the payload limit, a known
/// method, an RFC 3339 `notBefore`.
fn parse(
    namespace: String,
    destination: String,
    query: JobQuery,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<JobRequest, Problem> {
    let payload: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Problem(StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}")))?;
    let bad = |what: String| Problem(StatusCode::BAD_REQUEST, what);
    let method = match query.method {
        None => Method::Post,
        Some(m) => serde_json::from_value(json!(m.to_uppercase()))
            .map_err(|_| bad(format!("method {m:?} is not one of GET, POST, PUT, PATCH, DELETE")))?,
    };
    let not_before = match query.not_before {
        None => None,
        Some(t) => Some(Time(
            t.parse()
                .map_err(|_| bad(format!("notBefore {t:?} is not an RFC 3339 time")))?,
        )),
    };
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(key) => Some(
            key.to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 256)
                .ok_or_else(|| bad("Idempotency-Key must be 1-256 visible ASCII characters".into()))?
                .to_owned(),
        ),
    };
    Ok(JobRequest {
        namespace,
        destination,
        path: query.path,
        method,
        not_before,
        idempotency_key,
        payload,
        trace: None,
    })
}

async fn create_job(
    State(intake): State<Arc<Intake>>,
    Path((namespace, destination)): Path<(String, String)>,
    Query(query): Query<JobQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let (span, trace) = spans::request(JOBS_ROUTE, &namespace, &destination, &headers);
    let answer = async {
        check_names(&namespace, "destination", &destination)?;
        let caller = intake
            .access
            .check(authorization(&headers), &namespace, "create")
            .await?;
        let body = intake.read_body(&headers, body).await?;
        let request = parse(namespace, destination, query, &headers, &body)?.traced(trace);
        let (code, accepted) = store(&intake, &request, caller.username.as_deref().unwrap_or_default()).await?;
        Ok(accepted_response(code, &request.namespace, &accepted))
    }
    .instrument(span.clone())
    .await;
    spans::answered(&span, spans::code_of(&answer, |problem: &Problem| problem.0));
    answer
}

async fn seed_process(State(intake): State<Arc<Intake>>, headers: HeaderMap, body: Body) -> Result<Response, Problem> {
    let Some(seed) = intake.seed.clone() else {
        return Err(Problem(
            StatusCode::NOT_FOUND,
            "POST /api1/process needs the intake's --seed-namespace and --seed-destination".into(),
        ));
    };
    let (span, trace) = spans::request(SEED_ROUTE, &seed.namespace, &seed.destination, &headers);
    let answer = seed_store(&intake, seed, &headers, body, trace)
        .instrument(span.clone())
        .await;
    spans::answered(&span, spans::code_of(&answer, |problem: &Problem| problem.0));
    answer
}

async fn seed_store(
    intake: &Intake,
    seed: Seed,
    headers: &HeaderMap,
    body: Body,
    trace: Option<TraceContext>,
) -> Result<Response, Problem> {
    let caller = intake
        .access
        .check(authorization(headers), &seed.namespace, "create")
        .await?;
    let body = intake.read_body(headers, body).await?;
    let request = parse(seed.namespace, seed.destination, JobQuery::default(), headers, &body)?.traced(trace);
    let (code, job) = store(intake, &request, caller.username.as_deref().unwrap_or_default()).await?;
    let mut answer = accepted_response(code, &request.namespace, &job);
    *answer.body_mut() = axum::body::Body::from(
        json!({
            "message": "Request received. Will process when API 2 recovers.",
            "name": job.name_any(),
            "uid": job.uid(),
            "status": status_url(&request.namespace, &job.name_any()),
        })
        .to_string(),
    );
    Ok(answer)
}

fn accepted_response(code: StatusCode, namespace: &str, job: &PendingJob) -> Response {
    let url = status_url(namespace, &job.name_any());
    let body = json!({"name": job.name_any(), "uid": job.uid(), "status": url});
    (code, [(header::LOCATION, url)], axum::Json(body)).into_response()
}

/// Stores the job `request` asks for; answers 202 once it is stored, 200
/// when a retry finds the job its key named, and a problem otherwise.
async fn store(intake: &Intake, request: &JobRequest, user: &str) -> Result<(StatusCode, PendingJob), Problem> {
    let namespace = &request.namespace;
    if !intake.destinations.lately(namespace, &request.destination) {
        check_destination(intake, namespace, &request.destination).await?;
    }
    let jobs: Api<PendingJob> = Api::namespaced(intake.client.clone(), namespace);

    let (job, params) = (request.job(user), PostParams::default());
    let created = jobs.create(&params, &job).instrument(spans::create());
    match created.await {
        Ok(job) => {
            spans::stored(&job.name_any(), job.uid().as_deref());
            info!(%namespace, name = %job.name_any(), %user, "job stored");
            Ok((StatusCode::ACCEPTED, job))
        }
        Err(kube::Error::Api(e)) if e.code == 409 && request.name().is_some() => {
            let name = request.name().unwrap_or_default();
            match jobs.get_opt(&name).await {
                Ok(Some(job)) if request.same_as(&job) => {
                    spans::stored(&job.name_any(), job.uid().as_deref());
                    Ok((StatusCode::OK, job))
                }
                Ok(_) => Err(Problem(
                    StatusCode::CONFLICT,
                    "this Idempotency-Key was used for a different request".into(),
                )),
                Err(e) => Err(unavailable(&e)),
            }
        }
        Err(kube::Error::Api(e)) if e.code == 422 || e.code == 400 => {
            Err(Problem(StatusCode::UNPROCESSABLE_ENTITY, e.message))
        }
        Err(e) => Err(unavailable(&e)),
    }
}

/// A 404 unless destination `name` exists in `namespace`; remembers it if so.
async fn check_destination(intake: &Intake, namespace: &str, name: &str) -> Result<(), Problem> {
    let destinations: Api<Destination> = Api::namespaced(intake.client.clone(), namespace);
    match destinations.get_opt(name).await {
        Ok(Some(_)) => {
            intake.destinations.saw(namespace, name);
            Ok(())
        }
        Ok(None) => Err(Problem(
            StatusCode::NOT_FOUND,
            format!("destination {name} not found in namespace {namespace}"),
        )),
        Err(e) => Err(unavailable(&e)),
    }
}

fn unavailable(error: &kube::Error) -> Problem {
    warn!(%error, "the API server could not be reached");
    Problem(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the API server could not store or read the job: {error}"),
    )
}

async fn get_job(
    State(intake): State<Arc<Intake>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    check_names(&namespace, "pendingjob", &name)?;
    intake.access.check(authorization(&headers), &namespace, "get").await?;
    let jobs: Api<PendingJob> = Api::namespaced(intake.client.clone(), &namespace);
    let job = jobs.get_opt(&name).await.map_err(|e| unavailable(&e))?.ok_or_else(|| {
        Problem(
            StatusCode::NOT_FOUND,
            format!("pendingjob {name} not found in namespace {namespace}"),
        )
    })?;
    let status = job.status.clone().unwrap_or_default();
    Ok(axum::Json(json!({
        "name": job.name_any(),
        "uid": job.uid(),
        "destination": job.spec.destination_ref.as_ref().map(|d| &d.name),
        "phase": status.phase,
        "attempts": status.attempts,
        "nextRetryTime": status.next_retry_time,
        "lastStatusCode": status.last_status_code,
        "lastError": status.last_error,
    }))
    .into_response())
}
