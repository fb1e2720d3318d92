//! `spec.retryPolicy.retryOn`: status codes a job classifies otherwise than
//! by default, such as a 409 that means "already done" or a 404 that a
//! target answers while it starts up.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::lifecycle::Outcome;

/// Codes listed here override the default classification of a response.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[x_kube(validation = Rule::new("!self.retryable.exists(c, c in self.delivered)")
    .message("a status code cannot be both retryable and delivered"))]
#[serde(rename_all = "camelCase")]
pub struct RetryOn {
    /// Codes that are retried, like a 503.
    #[serde(default)]
    #[schemars(length(max = 64), inner(range(min = 100, max = 599)))]
    pub retryable: Vec<i32>,
    /// Codes that count as delivered, like a 200: the job succeeds.
    #[serde(default)]
    #[schemars(length(max = 64), inner(range(min = 100, max = 599)))]
    pub delivered: Vec<i32>,
}

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
}
