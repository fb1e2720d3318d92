//! Kubernetes identity as a Destination's auth: a ServiceAccount token of
//! the Destination's namespace, minted through the TokenRequest API for
//! the audience the Destination names, sent as `Authorization: Bearer`.
//!
//! - A token is used until [`renew_after`] says: 80% of the lifetime the
//!   API server granted, so a call never carries one about to expire.
//! - One TokenRequest per destination at a time; other destinations do not
//!   wait. A request that failed is not made again for that destination
//!   before [`super::held::fetch_backoff`] (1 s, 2 s … 1 min), so waiting
//!   jobs never cause a request each.
//! - Only a user who may `create` `serviceaccounts/token` for that
//!   ServiceAccount may name it (`crds/secret-access.yaml`): the operator
//!   mints for no one who could not mint it themselves.
//! - Tokens never reach a message, a log line, an Event or a status.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::{Api, Client};
use reqwest::header::HeaderValue;

use super::held::PerDestination;
use super::secrets::Unusable;
use crate::api::ServiceAccountToken;

/// The share of a token's lifetime after which a new one is minted.
const RENEW_AT: f64 = 0.8;

/// The ServiceAccount tokens held, per destination.
pub struct Identities {
    client: Client,
    held: PerDestination<ServiceAccountToken>,
}

impl Identities {
    /// Mints tokens with `client` (`create` on `serviceaccounts/token`).
    pub fn new(client: Client) -> Self {
        Self {
            client,
            held: PerDestination::default(),
        }
    }

    /// `Bearer <token>` (sensitive) for destination `key` of `namespace`,
    /// from the cache or minted now.
    pub async fn header(
        &self,
        key: &str,
        settings: &ServiceAccountToken,
        namespace: &str,
    ) -> Result<HeaderValue, Unusable> {
        let slot = self.held.slot(key);
        let mut held = slot.lock().await;
        if let Some(header) = held.fresh(settings) {
            return Ok(header);
        }
        if let Some(error) = held.still_failing(settings) {
            return Err(error);
        }
        let asked_at = Instant::now();
        match self.mint(settings, namespace).await {
            Ok((header, lifetime)) => {
                held.fetched(settings.clone(), header.clone(), asked_at, renew_after(lifetime));
                Ok(header)
            }
            Err(error) => {
                held.failed(settings.clone(), error.clone());
                Err(error)
            }
        }
    }

    /// Drops destination `key`'s token and its record of failures.
    pub fn remove(&self, key: &str) {
        self.held.remove(key);
    }

    /// How many destinations have a token or failure held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.held.len()
    }

    /// One TokenRequest: the header and the lifetime granted.
    async fn mint(&self, settings: &ServiceAccountToken, namespace: &str) -> Result<(HeaderValue, Duration), Unusable> {
        let name = &settings.service_account_name;
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: Some(vec![settings.audience.clone()]),
                expiration_seconds: Some(settings.expiration_seconds),
                bound_object_ref: None,
            }),
            ..TokenRequest::default()
        };
        let granted = Api::<ServiceAccount>::namespaced(self.client.clone(), namespace)
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .map_err(|e| refused(namespace, name, &e))?;
        let no_token = || {
            Unusable::new(
                "TokenRequestFailed",
                format!("the TokenRequest for ServiceAccount {namespace}/{name} returned no token"),
            )
        };
        let status = granted.status.ok_or_else(no_token)?;
        let (Some(token), Some(expires)) = (status.token, status.expiration_timestamp) else {
            return Err(no_token());
        };
        let lifetime = lifetime(expires.0, Timestamp::now(), settings.expiration_seconds);
        let mut header = HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| {
            Unusable::new(
                "TokenRequestFailed",
                format!("the token for ServiceAccount {namespace}/{name} is not a valid header value"),
            )
        })?;
        header.set_sensitive(true);
        Ok((header, lifetime))
    }
}

/// Why no token could be minted, without the answer's body.
fn refused(namespace: &str, name: &str, error: &kube::Error) -> Unusable {
    match error {
        kube::Error::Api(s) if s.code == 404 => Unusable::new(
            "ServiceAccountNotFound",
            format!("ServiceAccount {namespace}/{name} not found"),
        ),
        kube::Error::Api(s) if s.code == 403 => Unusable::new(
            "Forbidden",
            format!("the operator may not create serviceaccounts/token for ServiceAccount {namespace}/{name}"),
        ),
        kube::Error::Api(s) => Unusable::new(
            "TokenRequestFailed",
            format!(
                "the TokenRequest for ServiceAccount {namespace}/{name} was refused ({} {})",
                s.code, s.reason
            ),
        ),
        e => Unusable::new(
            "Unreachable",
            format!("asking for a token for ServiceAccount {namespace}/{name}: {e}"),
        ),
    }
}

/// How long a token that expires at `expires` is good for, from `now`: what
/// the API server granted, which may be less than the `asked` seconds.
pub fn lifetime(expires: Timestamp, now: Timestamp, asked: i64) -> Duration {
    let granted = expires.duration_since(now).as_secs().max(0);
    let asked = asked.max(0);
    Duration::from_secs(granted.min(asked).unsigned_abs())
}

/// How long after it was asked for a token of `lifetime` is replaced.
pub fn renew_after(lifetime: Duration) -> Duration {
    lifetime.mul_f64(RENEW_AT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_renewed_at_four_fifths_of_what_was_granted() {
        let now: Timestamp = "2026-12-01T00:00:00Z".parse().expect("time");
        let at = |seconds: i64| now.checked_add(jiff::SignedDuration::from_secs(seconds)).expect("time");
        let cases = [
            // (expires in, asked, lifetime, renewed after)
            (3600, 3600, 3600, 2880),
            // The API server may grant less (--service-account-max-token-expiration).
            (1800, 3600, 1800, 1440),
            // or more (extended tokens): what was asked is what is used.
            (7200, 3600, 3600, 2880),
            (600, 600, 600, 480),
            // Already expired by the local clock: used for no time at all.
            (-5, 600, 0, 0),
        ];
        for (expires_in, asked, life, renew) in cases {
            let got = lifetime(at(expires_in), now, asked);
            assert_eq!(got, Duration::from_secs(life), "expires in {expires_in}, asked {asked}");
            assert_eq!(renew_after(got), Duration::from_secs(renew), "lifetime {life}");
        }
    }
}
