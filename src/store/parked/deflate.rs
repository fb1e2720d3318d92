//! A kept job's JSON, deflated against a dictionary of what kept jobs
//! share: their field names and the values most of them hold.
//!
//! A waiting job's compact JSON is a few hundred bytes, most of them field
//! names and timestamps' common prefixes that every kept job repeats. Raw
//! deflate (zlib-rs, through flate2) with a preset dictionary keeps only
//! what is the job's own: a third of its text or less (258 B to 97 B for
//! the unit tests' scheduled job).
//!
//! Invariants:
//! - [`inflate`] of [`deflate`] is the bytes given, exactly; the caller
//!   still checks that the whole job reads back before it keeps it.
//! - The dictionary is built once per process from our own types and never
//!   leaves it: what changes it changes the ratio, never a job.
//! - [`inflate`] stops at [`MAX_JSON`]: no input, not even a corrupt one,
//!   makes it grow without bound.

use std::sync::OnceLock;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, ObjectMeta, Time};

use crate::api::{DestinationRef, PendingJob, PendingJobSpec, PendingJobStatus, Phase};

/// The most a kept job's JSON inflates to: twice the largest request etcd
/// takes by default (1.5 MiB).
pub(super) const MAX_JSON: usize = 3 << 20;

/// Why kept bytes did not inflate.
#[derive(Debug, thiserror::Error)]
pub(super) enum InflateError {
    #[error("kept bytes did not inflate: {0}")]
    Corrupt(#[from] flate2::DecompressError),
    #[error("kept bytes inflate past {MAX_JSON} bytes")]
    TooLong,
    #[error("kept bytes end before their stream does")]
    Truncated,
}

/// `json`, deflated against the dictionary; `None` only if the
/// compressor refuses (never with a valid dictionary).
pub(super) fn deflate(json: &[u8]) -> Option<Box<[u8]>> {
    let mut compress = Compress::new(Compression::default(), false);
    compress.set_dictionary(dictionary()).ok()?;
    // Deflate's worst case is its input plus a few bytes a block.
    let mut out = Vec::with_capacity(json.len() + 64);
    loop {
        let read = usize::try_from(compress.total_in()).ok()?;
        match compress
            .compress_vec(json.get(read..)?, &mut out, FlushCompress::Finish)
            .ok()?
        {
            Status::StreamEnd => return Some(out.into_boxed_slice()),
            Status::Ok | Status::BufError if out.len() <= json.len() + 1024 => out.reserve(256),
            Status::Ok | Status::BufError => return None,
        }
    }
}

/// The JSON that [`deflate`] made `bytes` of.
pub(super) fn inflate(bytes: &[u8]) -> Result<Vec<u8>, InflateError> {
    let mut decompress = Decompress::new(false);
    decompress.set_dictionary(dictionary())?;
    let mut out = Vec::with_capacity(bytes.len() * 4);
    loop {
        let read = usize::try_from(decompress.total_in()).map_err(|_| InflateError::TooLong)?;
        let rest = bytes.get(read..).ok_or(InflateError::Truncated)?;
        let before = (decompress.total_in(), decompress.total_out());
        match decompress.decompress_vec(rest, &mut out, FlushDecompress::Finish)? {
            Status::StreamEnd => return Ok(out),
            _ if out.len() >= MAX_JSON => return Err(InflateError::TooLong),
            // All input read, room left, and still no end: it was cut short.
            _ if before == (decompress.total_in(), decompress.total_out()) && out.len() < out.capacity() => {
                return Err(InflateError::Truncated);
            }
            _ => out.reserve(out.capacity().max(256)),
        }
    }
}

/// What kept jobs share, as the JSON of one made up of the fields they
/// usually carry, with this process's start as its times (the jobs it
/// keeps were mostly made around then). Built once.
fn dictionary() -> &'static [u8] {
    static DICTIONARY: OnceLock<Vec<u8>> = OnceLock::new();
    DICTIONARY.get_or_init(|| {
        typical(Timestamp::now())
            .and_then(|job| serde_json::to_vec(&job).ok())
            .unwrap_or_default()
    })
}

/// A job with the fields a waiting job usually has, all set.
fn typical(now: Timestamp) -> Option<PendingJob> {
    let spec = serde_json::from_value::<PendingJobSpec>(serde_json::json!({"target": {}})).ok()?;
    let mut job = PendingJob::new("job-", spec);
    job.metadata = ObjectMeta {
        name: Some("job-".into()),
        resource_version: Some("1000".into()),
        generation: Some(1),
        creation_timestamp: Some(Time(now)),
        ..ObjectMeta::default()
    };
    job.spec.destination_ref = Some(DestinationRef { name: "api".into() });
    job.spec.target.url = Some("https://".into());
    job.spec.target.path = Some("/".into());
    job.spec.not_before = Some(Time(now));
    let message = format!("attempt 1 failed: HTTP 503; retry 1 is due at {now}");
    job.status = Some(PendingJobStatus {
        phase: Phase::Retrying,
        attempts: 1,
        retry_count: 1,
        next_retry_time: Some(MicroTime(now)),
        last_attempt_time: Some(MicroTime(now)),
        last_status_code: Some(503),
        last_error: Some("HTTP 503".into()),
        observed_generation: Some(1),
        conditions: vec![Condition {
            type_: "Succeeded".into(),
            status: "False".into(),
            reason: "Retrying".into(),
            message,
            last_transition_time: Time(now),
            observed_generation: Some(1),
        }],
        ..PendingJobStatus::default()
    });
    Some(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_deflates_inflates_to_the_same_bytes() {
        let now = Timestamp::now();
        let typical = serde_json::to_vec(&typical(now)).expect("json");
        let other = br#"{"metadata":{"name":"an-unusual-job"},"spec":{"target":{"url":"http://x"}}}"#.to_vec();
        let long: Vec<u8> = (0..200_000u32).flat_map(|n| n.to_le_bytes()).collect();
        for json in [typical, other, Vec::new(), long] {
            let kept = deflate(&json).expect("deflates");
            assert_eq!(inflate(&kept).expect("inflates"), json);
        }
    }

    #[test]
    fn a_typical_job_keeps_a_fraction_of_its_text() {
        let later = Timestamp::now() + jiff::SignedDuration::from_hours(1);
        let mut job = typical(later).expect("job");
        job.metadata.name = Some("invoice-4711".into());
        job.metadata.resource_version = Some("8675309".into());
        let json = serde_json::to_vec(&job).expect("json");
        let kept = deflate(&json).expect("deflates");
        assert!(kept.len() * 4 < json.len(), "{} of {} bytes", kept.len(), json.len());
    }

    #[test]
    fn corrupt_or_cut_bytes_are_an_error_not_a_job() {
        let kept = deflate(&serde_json::to_vec(&typical(Timestamp::now())).expect("json")).expect("deflates");
        assert!(matches!(inflate(&kept[..kept.len() / 2]), Err(InflateError::Truncated)));
        assert!(inflate(&[0xff; 64]).is_err());
        assert!(matches!(inflate(&[]), Err(InflateError::Truncated)));
    }

    #[test]
    fn inflating_stops_at_its_bound() {
        let huge = vec![b' '; MAX_JSON * 2];
        let kept = deflate(&huge).expect("deflates");
        assert!(kept.len() < 64 << 10, "{} bytes", kept.len());
        assert!(matches!(inflate(&kept), Err(InflateError::TooLong)));
    }
}
