//! What a call's answer means: an [`Outcome`], from the response's status
//! code ([`classify_response`]) as a job's `retryPolicy.retryOn` adjusts it
//! ([`RetryOn::classify`]). Pure and table-tested; a target's failures are
//! outcomes, never errors.

use std::error::Error as _;
use std::time::Duration;

use jiff::Timestamp;
use reqwest::StatusCode;

use crate::api::{MAX_ERROR_BYTES, RetryOn};

/// The result of one call to the target, as far as the job is concerned.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A 2xx response.
    Delivered {
        /// The HTTP status code.
        code: u16,
    },
    /// Worth retrying: no response, a timeout, 408, 429 or 5xx.
    Retryable {
        /// The HTTP status code, when a response came back.
        code: Option<u16>,
        /// What went wrong.
        error: String,
        /// The delay the target asked for with `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// Not worth retrying: any other 4xx, a redirect, or a call that cannot be built.
    Rejected {
        /// The HTTP status code, when a response came back.
        code: Option<u16>,
        /// What went wrong.
        error: String,
    },
}

impl Outcome {
    /// The HTTP status code of the response, when one came back.
    pub fn code(&self) -> Option<u16> {
        match self {
            Self::Delivered { code } => Some(*code),
            Self::Retryable { code, .. } | Self::Rejected { code, .. } => *code,
        }
    }
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
    truncate(&text, MAX_ERROR_BYTES)
}

/// `retryPolicy.retryOn`, applied to an outcome.
impl RetryOn {
    /// `outcome` as classified with these overrides. Outcomes without a
    /// response (timeouts, refused connections) are never changed.
    pub fn classify(&self, outcome: Outcome) -> Outcome {
        let Some(code) = outcome.code() else {
            return outcome;
        };
        let listed = |codes: &[i32]| codes.contains(&i32::from(code));
        match outcome {
            Outcome::Retryable { .. } | Outcome::Rejected { .. } if listed(&self.delivered) => {
                Outcome::Delivered { code }
            }
            Outcome::Rejected { error, .. } if listed(&self.retryable) => Outcome::Retryable {
                code: Some(code),
                error,
                retry_after: None,
            },
            Outcome::Delivered { .. } if listed(&self.retryable) => Outcome::Retryable {
                code: Some(code),
                error: format!("HTTP {code}, retried as spec.retryPolicy.retryOn.retryable says"),
                retry_after: None,
            },
            other => other,
        }
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(code: u16) -> Outcome {
        Outcome::Rejected {
            code: Some(code),
            error: format!("HTTP {code}"),
        }
    }

    fn retryable(code: Option<u16>) -> Outcome {
        Outcome::Retryable {
            code,
            error: "down".into(),
            retry_after: None,
        }
    }

    #[test]
    fn overrides_table() {
        let retry_on = RetryOn {
            retryable: vec![404, 204],
            delivered: vec![409, 503],
        };
        let cases = [
            (rejected(409), Outcome::Delivered { code: 409 }),
            (retryable(Some(503)), Outcome::Delivered { code: 503 }),
            (rejected(400), rejected(400)),
            (retryable(Some(500)), retryable(Some(500))),
            (retryable(None), retryable(None)),
            (Outcome::Delivered { code: 200 }, Outcome::Delivered { code: 200 }),
        ];
        for (before, after) in cases {
            assert_eq!(retry_on.classify(before.clone()), after, "{before:?}");
        }
        assert!(matches!(
            retry_on.classify(rejected(404)),
            Outcome::Retryable { code: Some(404), .. }
        ));
        assert!(matches!(
            retry_on.classify(Outcome::Delivered { code: 204 }),
            Outcome::Retryable { code: Some(204), .. }
        ));
    }

    #[test]
    fn the_default_changes_nothing() {
        for outcome in [rejected(404), retryable(Some(503)), Outcome::Delivered { code: 201 }] {
            assert_eq!(RetryOn::default().classify(outcome.clone()), outcome);
        }
    }

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
