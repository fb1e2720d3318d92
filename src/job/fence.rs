//! Recording an attempt: a status write fenced to the object that was called
//! and to the status the call was decided from.
//!
//! Once a call has returned, its outcome is owed to the API server; when the
//! write fails, the attempt task ([`super::attempt`]) writes it again later,
//! and never makes the call again for it. The write carries the
//! resourceVersion of the object the decision was read from as a
//! precondition, so it cannot land on a recreated object or over a newer
//! status. On a conflict, a fresh
//! read tells an unrelated change (metadata, spec) from a status that someone
//! else advanced, which wins.

use kube::api::{Patch, PatchParams};
use kube::core::{PartialObjectMeta, Request};
use kube::{Api, Resource, ResourceExt};

use crate::api::{FIELD_MANAGER, PendingJob, PendingJobStatus};
use crate::leadership::term::Term;

/// How often a write is re-based onto a changed object before giving up for now.
const MAX_REBASES: usize = 3;

/// An attempt's outcome that is still to be recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct Unrecorded {
    /// UID of the job that was called.
    pub uid: String,
    /// resourceVersion of the object the call was decided from.
    pub resource_version: String,
    /// The status the call was decided from.
    pub base: PendingJobStatus,
    /// The status that records the attempt.
    pub next: PendingJobStatus,
    /// The leadership term in which the call was made.
    pub term: Term,
}

/// What became of a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Landed {
    /// The status now records the attempt.
    Recorded,
    /// Someone else advanced the status first; theirs stands.
    Superseded,
    /// The job that was called no longer exists (deleted, or recreated under its name).
    Gone,
}

/// A write that did not land and may be tried again.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The API server refused or did not answer.
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// The object kept changing under the write.
    #[error("the object changed {MAX_REBASES} times during the write")]
    Contended,
}

impl WriteError {
    /// A short, bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            WriteError::Api(kube::Error::Api(e)) => match e.code {
                403 => "forbidden",
                409 => "conflict",
                422 | 400 => "refused",
                429 => "throttled",
                500..=599 => "server_error",
                _ => "other",
            },
            WriteError::Api(_) => "unreachable",
            WriteError::Contended => "conflict",
        }
    }
}

/// What a conflicting write should do, given the object as it is now. Pure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterConflict {
    /// Settled: see [`Landed`].
    Settle(Landed),
    /// Only metadata or spec changed: write again over the new resourceVersion.
    Rebase,
}

/// Decides after a conflict from the current uid and status (`None`: no object).
pub fn after_conflict(current: Option<(&str, &PendingJobStatus)>, owed: &Unrecorded) -> AfterConflict {
    match current {
        None => AfterConflict::Settle(Landed::Gone),
        Some((uid, _)) if uid != owed.uid => AfterConflict::Settle(Landed::Gone),
        // An earlier write of ours landed though its answer was lost.
        Some((_, status)) if records_the_same_attempt(status, &owed.next) => AfterConflict::Settle(Landed::Recorded),
        Some((_, status)) if *status == owed.base => AfterConflict::Rebase,
        Some(_) => AfterConflict::Settle(Landed::Superseded),
    }
}

/// True when `status` records the attempt that `next` records: same count,
/// same start time (microseconds, unique to one call).
fn records_the_same_attempt(status: &PendingJobStatus, next: &PendingJobStatus) -> bool {
    status.attempts == next.attempts && status.last_attempt_time == next.last_attempt_time
}

/// Writes `owed.next` as the status of job `name`, fenced as described
/// above. When recorded, also returns the job's resourceVersion from then.
pub async fn write(
    api: &Api<PendingJob>,
    name: &str,
    owed: &Unrecorded,
) -> Result<(Landed, Option<String>), WriteError> {
    let mut resource_version = owed.resource_version.clone();
    for _ in 0..MAX_REBASES {
        match apply_status(api, name, &owed.next, &resource_version).await {
            Ok(written) => return Ok((Landed::Recorded, written)),
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok((Landed::Gone, None)),
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        let current = api.get_opt(name).await?;
        let seen = current
            .as_ref()
            .map(|job| (job.uid().unwrap_or_default(), job.status.clone().unwrap_or_default()));
        let now = current.and_then(|job| job.resource_version());
        match after_conflict(seen.as_ref().map(|(uid, status)| (uid.as_str(), status)), owed) {
            AfterConflict::Settle(landed) => return Ok((landed, now)),
            AfterConflict::Rebase => resource_version = now.unwrap_or_default(),
        }
    }
    Err(WriteError::Contended)
}

/// Server-side apply of the whole status (fields left out are removed), with
/// the resourceVersion as a precondition: the API server answers 409 unless
/// the object is still at that version. A resourceVersion is an etcd revision,
/// never reused, so an object recreated under the same name never matches.
/// (A uid in an apply body is not checked, so none is sent.)
///
/// The API server answers with the object's metadata only
/// (`as=PartialObjectMetadata`): the new resourceVersion is all the operator
/// needs from the answer, and neither side then encodes or decodes the payload.
/// Returns the resourceVersion the write gave the job.
pub async fn apply_status(
    api: &Api<PendingJob>,
    name: &str,
    status: &PendingJobStatus,
    resource_version: &str,
) -> Result<Option<String>, kube::Error> {
    let patch = serde_json::json!({
        "apiVersion": PendingJob::api_version(&()),
        "kind": PendingJob::kind(&()),
        "metadata": {"name": name, "resourceVersion": resource_version},
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut request = Request::new(api.resource_url())
        .patch_subresource("status", name, &params, &Patch::Apply(&patch))
        .map_err(kube::Error::BuildRequest)?;
    request.headers_mut().insert(reqwest::header::ACCEPT, METADATA_ONLY);
    request.extensions_mut().insert("patch_status");
    let client = api.clone().into_client();
    client
        .request::<PartialObjectMeta<PendingJob>>(request)
        .await
        .map(|written| written.resource_version())
}

/// Asks the API server to answer a write with the object's metadata only.
const METADATA_ONLY: reqwest::header::HeaderValue =
    reqwest::header::HeaderValue::from_static("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1");

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    use super::*;
    use crate::api::Phase;

    fn status(attempts: i32, started_second: i64) -> PendingJobStatus {
        PendingJobStatus {
            phase: Phase::Retrying,
            attempts,
            last_attempt_time: Some(MicroTime(
                jiff::Timestamp::from_second(1_800_000_000 + started_second).unwrap(),
            )),
            ..PendingJobStatus::default()
        }
    }

    #[test]
    fn after_conflict_table() {
        let owed = Unrecorded {
            uid: "uid-1".into(),
            resource_version: "10".into(),
            base: status(2, 0),
            next: status(3, 5),
            term: 1,
        };
        let edited = PendingJobStatus::default();
        let cases = [
            (None, AfterConflict::Settle(Landed::Gone)),
            (Some(("uid-2", &owed.base)), AfterConflict::Settle(Landed::Gone)),
            (Some(("uid-1", &owed.base)), AfterConflict::Rebase),
            (Some(("uid-1", &owed.next)), AfterConflict::Settle(Landed::Recorded)),
            // Another leader recorded an attempt of its own.
            (
                Some(("uid-1", &status(3, 6))),
                AfterConflict::Settle(Landed::Superseded),
            ),
            // Someone reset the status by hand.
            (Some(("uid-1", &edited)), AfterConflict::Settle(Landed::Superseded)),
        ];
        for (current, want) in cases {
            assert_eq!(after_conflict(current, &owed), want, "{current:?}");
        }
    }
}
