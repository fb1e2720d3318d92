//! What each `kubectl pj` subcommand reads and writes. Every request is one
//! the equivalent kubectl command makes, with the same verb:
//!
//! | command | requests | kubectl equivalent |
//! | --- | --- | --- |
//! | `why NAME` | get pendingjob, get destination | `kubectl get pj NAME; kubectl get destination D` |
//! | `retry NAME…` | patch pendingjob (merge, one annotation) | `kubectl annotate pj NAME pendingjob.dev/retry=… --overwrite` |
//! | `retry --failed` | list pendingjobs (field selector), patch each | the same, with `--field-selector status.phase=Failed` |
//! | `suspend`/`resume` | patch pendingjob or destination (merge, `spec.suspend`) | `kubectl patch … --type merge -p '{"spec":{"suspend":true}}'` |
//! | `stats` | list pendingjobs, in pages | `kubectl get pj` |

use std::fmt::Write as _;

use jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use super::stats::Stats;
use super::why::{Lookup, explain};
use crate::api::{Destination, PendingJob, RETRY_ANNOTATION};

/// A failure, worded as kubectl words it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused: `Error from server (Forbidden): …`.
    #[error("Error from server ({reason}): {message}")]
    Server { reason: String, message: String },
    /// The request did not get an answer, as kubectl says it.
    #[error("Unable to connect to the server: {0}")]
    Client(String),
    /// Bad arguments.
    #[error("error: {0}")]
    Usage(String),
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(status) => Self::Server {
                reason: if status.reason.is_empty() {
                    status.code.to_string()
                } else {
                    status.reason.clone()
                },
                message: status.message.clone(),
            },
            other => Self::Client(chain(&other)),
        }
    }
}

/// An error and its sources, `a: b: c`, so that the cause (a refused
/// connection, a bad certificate) is named.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// Which namespaces a command looks at.
#[derive(Debug, Clone)]
pub enum Scope {
    /// One namespace (`-n`, or the context's).
    Namespace(String),
    /// Every namespace (`-A`).
    All,
}

/// A job or a Destination named on the command line: `NAME` or `pj/NAME`
/// (a job), `destination/NAME` or `dest/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// A PendingJob.
    Job(String),
    /// A Destination.
    Destination(String),
}

impl Object {
    /// Parses one name argument.
    ///
    /// # Errors
    /// An unknown `TYPE/` prefix.
    pub fn parse(arg: &str) -> Result<Self, Error> {
        match arg.split_once('/') {
            None => Ok(Self::Job(arg.to_owned())),
            Some(("pj" | "pendingjob" | "pendingjobs", name)) => Ok(Self::Job(name.to_owned())),
            Some(("destination" | "destinations" | "dest", name)) => Ok(Self::Destination(name.to_owned())),
            Some((kind, _)) => Err(Error::Usage(format!(
                "the server doesn't have a resource type \"{kind}\" for kubectl pj (use pj/NAME or destination/NAME)"
            ))),
        }
    }
}

/// `why NAME`: one screen on what the job waits for.
///
/// # Errors
/// The job cannot be read.
pub async fn why(client: &Client, namespace: &str, name: &str, now: Timestamp) -> Result<String, Error> {
    let job = Api::<PendingJob>::namespaced(client.clone(), namespace)
        .get(name)
        .await?;
    let read = match &job.spec.destination_ref {
        None => None,
        Some(d) => Some(
            Api::<Destination>::namespaced(client.clone(), namespace)
                .get_opt(&d.name)
                .await,
        ),
    };
    let lookup = match &read {
        None => Lookup::None,
        Some(Ok(Some(d))) => Lookup::Found(d),
        Some(Ok(None)) => Lookup::Missing,
        Some(Err(e)) => Lookup::Unreadable(Error::from(clone_error(e)).to_string()),
    };
    let answer = explain(&job, &lookup, now);
    let status = job.status.clone().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Job:          {namespace}/{name} ({:?}; attempts: {}, retries: {})",
        status.phase, status.attempts, status.retry_count
    );
    let target = match (&job.spec.destination_ref, &job.spec.target.url) {
        (Some(d), _) => format!(
            "Destination {} + {}",
            d.name,
            job.spec.target.path.as_deref().unwrap_or("/")
        ),
        (None, Some(url)) => url.clone(),
        (None, None) => "(none)".to_owned(),
    };
    let method = serde_json::to_value(job.spec.target.method).ok();
    let method = method.as_ref().and_then(|m| m.as_str()).unwrap_or("POST");
    let _ = writeln!(out, "Calls:        {method} {target}");
    let _ = writeln!(out, "Waits for:    {}", answer.waits_for);
    let _ = writeln!(out, "Last attempt: {}", answer.last_attempt);
    let _ = writeln!(out, "Next:         {}", answer.next);
    if let Lookup::Found(d) = &lookup {
        let s = d.status.clone().unwrap_or_default();
        let ready = s.conditions.iter().find(|c| c.type_ == "Ready");
        let _ = writeln!(
            out,
            "Destination:  {} (Ready {}, circuit {}, {} in flight and {} waiting as last counted{})",
            d.name_any(),
            ready.map_or("unknown", |c| c.status.as_str()),
            s.circuit.map_or_else(|| "none".to_owned(), |c| format!("{c:?}")),
            s.in_flight.unwrap_or(0),
            s.waiting_jobs.unwrap_or(0),
            if d.spec.suspend { ", suspended" } else { "" }
        );
    }
    Ok(out)
}

/// kube's errors are not `Clone`; the parts kubectl prints are.
fn clone_error(e: &kube::Error) -> kube::Error {
    match e {
        kube::Error::Api(status) => kube::Error::Api(status.clone()),
        other => kube::Error::Service(other.to_string().into()),
    }
}

/// The outcome of a write to several objects, for the summary line.
#[derive(Debug, Default)]
pub struct Summary {
    /// What was printed for each object.
    pub lines: Vec<String>,
    /// Objects written.
    pub done: usize,
    /// Objects the API server refused.
    pub failed: usize,
}

impl Summary {
    fn record(&mut self, ok: String, result: Result<(), Error>) {
        match result {
            Ok(()) => {
                self.done += 1;
                self.lines.push(ok);
            }
            Err(e) => {
                self.failed += 1;
                self.lines.push(e.to_string());
            }
        }
    }
}

/// `retry NAME…`: sets the redrive annotation to a new value on each job.
pub async fn retry(client: &Client, namespace: &str, names: &[String], now: Timestamp) -> Summary {
    let api = Api::<PendingJob>::namespaced(client.clone(), namespace);
    let mut summary = Summary::default();
    for name in names {
        let result = annotate(&api, name, now).await;
        summary.record(format!("pendingjob.pendingjob.dev/{name} marked for retry"), result);
    }
    summary
}

/// `retry --failed`: the same for every Failed job in `scope`.
///
/// # Errors
/// The jobs cannot be listed.
pub async fn retry_failed(client: &Client, scope: &Scope, now: Timestamp) -> Result<Summary, Error> {
    let failed = list(client, scope, Some("status.phase=Failed")).await?;
    let mut summary = Summary::default();
    for job in failed {
        let namespace = job.namespace().unwrap_or_default();
        let api = Api::<PendingJob>::namespaced(client.clone(), &namespace);
        let result = annotate(&api, &job.name_any(), now).await;
        summary.record(
            format!(
                "pendingjob.pendingjob.dev/{} marked for retry in {namespace}",
                job.name_any()
            ),
            result,
        );
    }
    Ok(summary)
}

async fn annotate(api: &Api<PendingJob>, name: &str, now: Timestamp) -> Result<(), Error> {
    // A new value each time: the operator acts on a value it has not acted on.
    let patch = json!({"metadata": {"annotations": {RETRY_ANNOTATION: now.to_string()}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

/// `suspend` / `resume`: sets `spec.suspend` on each job or Destination.
pub async fn set_suspend(client: &Client, namespace: &str, objects: &[Object], suspend: bool) -> Summary {
    let patch = json!({"spec": {"suspend": suspend}});
    let verb = if suspend { "suspended" } else { "resumed" };
    let params = PatchParams::default();
    let mut summary = Summary::default();
    for object in objects {
        let (kind, result) = match object {
            Object::Job(name) => (
                format!("pendingjob.{}/{name}", PendingJob::group(&())),
                Api::<PendingJob>::namespaced(client.clone(), namespace)
                    .patch(name, &params, &Patch::Merge(&patch))
                    .await
                    .map(drop),
            ),
            Object::Destination(name) => (
                format!("destination.{}/{name}", Destination::group(&())),
                Api::<Destination>::namespaced(client.clone(), namespace)
                    .patch(name, &params, &Patch::Merge(&patch))
                    .await
                    .map(drop),
            ),
        };
        summary.record(format!("{kind} {verb}"), result.map_err(Error::from));
    }
    summary
}

/// `stats`: counts over every job in `scope`.
///
/// # Errors
/// The jobs cannot be listed.
pub async fn stats(client: &Client, scope: &Scope, now: Timestamp) -> Result<String, Error> {
    let mut stats = Stats::default();
    for job in list(client, scope, None).await? {
        stats.add(&job, now);
    }
    Ok(stats.render(matches!(scope, Scope::All), now))
}

/// Every job in `scope` matching `fields`, 500 a page, as `kubectl get` lists them.
async fn list(client: &Client, scope: &Scope, fields: Option<&str>) -> Result<Vec<PendingJob>, Error> {
    let api = match scope {
        Scope::Namespace(ns) => Api::<PendingJob>::namespaced(client.clone(), ns),
        Scope::All => Api::<PendingJob>::all(client.clone()),
    };
    let mut params = ListParams::default().limit(500);
    if let Some(fields) = fields {
        params = params.fields(fields);
    }
    let mut jobs = Vec::new();
    loop {
        let page = api.list(&params).await?;
        jobs.extend(page.items);
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(jobs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_take_kubectls_type_prefixes() {
        assert_eq!(Object::parse("hello").unwrap(), Object::Job("hello".into()));
        assert_eq!(Object::parse("pj/hello").unwrap(), Object::Job("hello".into()));
        assert_eq!(
            Object::parse("destination/api2").unwrap(),
            Object::Destination("api2".into())
        );
        assert_eq!(Object::parse("dest/api2").unwrap(), Object::Destination("api2".into()));
        let e = Object::parse("pod/x").unwrap_err().to_string();
        assert!(
            e.starts_with("error: the server doesn't have a resource type \"pod\""),
            "{e}"
        );
    }
}
