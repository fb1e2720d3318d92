//! Where a job's call goes, with which credentials, under which limit, or
//! why it must wait.
//!
//! A job with `target.url` is called there. A job with `destinationRef` is
//! called at its Destination's URL plus `target.path`, with the
//! Destination's headers, auth and TLS ([`super::credentials`]). While its
//! Destination is missing, suspended or not usable (a Secret missing or
//! malformed, no token to be had), the job waits: no call, no attempt
//! spent, no write.

use kube::runtime::reflector::{ObjectRef, Store};
use reqwest::header::HeaderMap;

use super::credentials::{Credentials, prepare};
use super::oauth2::Token;
use super::secrets::Unusable;
use crate::api::{CircuitBreaker, Destination, DestinationRef, RateLimit, Target};
use crate::delivery::call::Endpoint;
use crate::delivery::slots::target_of;

/// A call ready to be made.
#[derive(Clone, Debug)]
pub struct Route {
    /// Where the call goes: URL, the destination's headers with their
    /// credentials, and its TLS client.
    pub endpoint: Endpoint,
    /// What the call's slot is counted against: a destination, or a raw
    /// target's scheme, host and port as called from the job's namespace.
    pub limit_key: String,
    /// The destination's own cap on calls in flight, if any.
    pub max_concurrency: Option<usize>,
    /// The destination's rate limit, if any.
    pub rate_limit: Option<RateLimit>,
    /// The destination's circuit breaker, if any, and the destination.
    pub breaker: Option<(CircuitBreaker, ObjectRef<Destination>)>,
    /// The destination called, if any.
    pub destination: Option<ObjectRef<Destination>>,
    /// The OAuth2 token the call carries, if any.
    pub oauth2: Option<Token>,
}

/// Why a job waits instead of calling.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Wait {
    /// No such Destination in the job's namespace.
    #[error("destination {0} not found")]
    NoDestination(String),
    /// The Destination is suspended.
    #[error("destination {0} is suspended")]
    Suspended(String),
    /// The Destination's circuit is open, or a probe is under way.
    #[error("the circuit of destination {0} is open")]
    CircuitOpen(String),
    /// A Secret or ConfigMap the Destination needs is missing or malformed.
    #[error("destination {0} is not ready: {1}")]
    NotReady(String, Unusable),
}

impl Wait {
    /// The destination waited for.
    pub fn destination(&self) -> &str {
        match self {
            Self::NoDestination(name) | Self::Suspended(name) | Self::CircuitOpen(name) | Self::NotReady(name, _) => {
                name
            }
        }
    }
}

/// Routes a call to `target` from `namespace`: to `target.url`, or through
/// the Destination `reference` names, looked up in `destinations`.
pub async fn route(
    namespace: &str,
    reference: Option<&DestinationRef>,
    target: &Target,
    destinations: &Store<Destination>,
    credentials: &Credentials,
) -> Result<Route, Wait> {
    let Some(reference) = reference else {
        let url = target.url.clone().unwrap_or_default();
        return Ok(Route {
            limit_key: format!("{namespace} {}", target_of(&url)),
            endpoint: Endpoint {
                url,
                headers: HeaderMap::new(),
                client: None,
                within: None,
                signer: None,
            },
            max_concurrency: None,
            rate_limit: None,
            breaker: None,
            destination: None,
            oauth2: None,
        });
    };
    let reference_to = ObjectRef::new(&reference.name).within(namespace);
    let Some(destination) = destinations.get(&reference_to) else {
        return Err(Wait::NoDestination(reference.name.clone()));
    };
    if destination.spec.suspend {
        return Err(Wait::Suspended(reference.name.clone()));
    }
    let limit_key = destination_key(namespace, &reference.name);
    let prepared = prepare(&destination.spec, namespace, &limit_key, credentials)
        .await
        .map_err(|unusable| Wait::NotReady(reference.name.clone(), unusable))?;
    let path = target.path.as_deref().unwrap_or_default();
    Ok(Route {
        endpoint: Endpoint {
            url: join(&destination.spec.url, path),
            headers: prepared.headers,
            client: prepared.client,
            within: Some(destination.spec.url.clone()),
            signer: prepared.signer,
        },
        oauth2: prepared.oauth2,
        limit_key,
        max_concurrency: destination.spec.max_concurrency.and_then(|n| usize::try_from(n).ok()),
        rate_limit: destination.spec.rate_limit,
        breaker: destination
            .spec
            .circuit_breaker
            .map(|settings| (settings, reference_to.clone())),
        destination: Some(reference_to),
    })
}

/// What a destination's calls are counted against: slots, rate, breaker.
pub fn destination_key(namespace: &str, name: &str) -> String {
    format!("destination {namespace}/{name}")
}

/// `base` with `path` appended, with exactly one `/` between them.
pub fn join(base: &str, path: &str) -> String {
    match (base.ends_with('/'), path.starts_with('/')) {
        (true, true) => format!("{base}{}", &path[1..]),
        (false, false) if !path.is_empty() => format!("{base}/{path}"),
        _ => format!("{base}{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_table() {
        let cases = [
            ("https://api.example/v1", "/charges", "https://api.example/v1/charges"),
            ("https://api.example/v1/", "/charges", "https://api.example/v1/charges"),
            ("https://api.example/v1/", "charges", "https://api.example/v1/charges"),
            (
                "https://api.example/v1",
                "charges?x=1",
                "https://api.example/v1/charges?x=1",
            ),
            ("https://api.example/v1", "", "https://api.example/v1"),
        ];
        for (base, path, joined) in cases {
            assert_eq!(join(base, path), joined, "{base} + {path}");
        }
    }
}
