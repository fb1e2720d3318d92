//! Where a job's call goes, with which credentials, under which limit, or
//! why it must wait.
//!
//! A job with `target.url` is called there. A job with `destinationRef` is
//! called at its Destination's URL plus `target.path`, with the
//! Destination's headers and auth, whose Secret values are read through
//! [`Secrets`]. While its Destination is missing, suspended or not usable
//! (a Secret missing or malformed), the job waits: no call, no attempt
//! spent, no write.

use base64::Engine as _;
use kube::runtime::reflector::{ObjectRef, Store};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};

use crate::crd::PendingJob;
use crate::destination::{Auth, CircuitBreaker, Destination, DestinationSpec, RateLimit};
use crate::secrets::{Secrets, TYPE_KEY, Unusable};
use crate::slots::target_of;

/// A call ready to be made.
#[derive(Clone, Debug)]
pub struct Route {
    /// The URL to call.
    pub url: String,
    /// Headers from the destination, credentials included (marked sensitive,
    /// so they are never printed).
    pub headers: HeaderMap,
    /// What the call's slot is counted against: a destination, or a raw
    /// target's scheme, host and port.
    pub limit_key: String,
    /// The destination's own cap on calls in flight, if any.
    pub max_concurrency: Option<usize>,
    /// The destination's rate limit, if any.
    pub rate_limit: Option<RateLimit>,
    /// The destination's circuit breaker, if any, and the destination.
    pub breaker: Option<(CircuitBreaker, ObjectRef<Destination>)>,
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

/// Routes `job`, whose Destination (if any) is looked up in `destinations`.
pub async fn route(job: &PendingJob, destinations: &Store<Destination>, secrets: &Secrets) -> Result<Route, Wait> {
    let Some(reference) = &job.spec.destination_ref else {
        let url = job.spec.target.url.clone().unwrap_or_default();
        return Ok(Route {
            limit_key: target_of(&url),
            url,
            headers: HeaderMap::new(),
            max_concurrency: None,
            rate_limit: None,
            breaker: None,
        });
    };
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let reference_to = ObjectRef::new(&reference.name).within(&namespace);
    let Some(destination) = destinations.get(&reference_to) else {
        return Err(Wait::NoDestination(reference.name.clone()));
    };
    if destination.spec.suspend {
        return Err(Wait::Suspended(reference.name.clone()));
    }
    let headers = headers(&destination.spec, &namespace, secrets)
        .await
        .map_err(|unusable| Wait::NotReady(reference.name.clone(), unusable))?;
    let path = job.spec.target.path.as_deref().unwrap_or_default();
    Ok(Route {
        url: join(&destination.spec.url, path),
        headers,
        limit_key: destination_key(&namespace, &reference.name),
        max_concurrency: destination.spec.max_concurrency.and_then(|n| usize::try_from(n).ok()),
        rate_limit: destination.spec.rate_limit,
        breaker: destination
            .spec
            .circuit_breaker
            .map(|settings| (settings, reference_to)),
    })
}

/// What a destination's calls are counted against: slots, rate, breaker.
pub fn destination_key(namespace: &str, name: &str) -> String {
    format!("destination {namespace}/{name}")
}

/// The headers every call to the destination carries, credentials included.
pub async fn headers(spec: &DestinationSpec, namespace: &str, secrets: &Secrets) -> Result<HeaderMap, Unusable> {
    let unsupported = |field: &str| {
        Unusable::new(
            "Unsupported",
            format!("{field} is not supported by this version of the operator yet"),
        )
    };
    if spec.tls.is_some() {
        return Err(unsupported("spec.tls"));
    }
    if spec
        .auth
        .as_ref()
        .is_some_and(|a| a.oauth2_client_credentials.is_some())
    {
        return Err(unsupported("spec.auth.oauth2ClientCredentials"));
    }
    let mut headers = HeaderMap::new();
    for header in &spec.headers {
        let value = match (&header.value, &header.value_from) {
            (Some(value), _) => value.clone().into_bytes(),
            (None, Some(from)) => secrets.secret_key(namespace, &from.secret_key_ref).await?,
            (None, None) => Vec::new(),
        };
        let name = HeaderName::try_from(header.name.as_str())
            .map_err(|_| Unusable::new("InvalidHeader", format!("header name {:?} is not valid", header.name)))?;
        headers.insert(
            name,
            sensitive(&value, &format!("the value of header {}", header.name))?,
        );
    }
    if let Some(auth) = &spec.auth
        && let Some(value) = authorization(auth, namespace, secrets).await?
    {
        headers.insert(AUTHORIZATION, value);
    }
    Ok(headers)
}

/// The `Authorization` header for bearer or basic auth; `None` for others.
async fn authorization(auth: &Auth, namespace: &str, secrets: &Secrets) -> Result<Option<HeaderValue>, Unusable> {
    if let Some(bearer) = &auth.bearer_token {
        let token = secrets.secret_key(namespace, &bearer.secret_key_ref).await?;
        let mut value = b"Bearer ".to_vec();
        value.extend(token.trim_ascii());
        return sensitive(&value, "the bearer token").map(Some);
    }
    if let Some(basic) = &auth.basic {
        let secret = secrets.secret(namespace, &basic.secret_name).await?;
        let malformed = |what: &str| {
            Unusable::new(
                "SecretMalformed",
                format!("Secret {} for basic auth {what}", basic.secret_name),
            )
        };
        if secret.get(TYPE_KEY).is_some_and(|t| t != b"kubernetes.io/basic-auth") {
            return Err(malformed("is not of type kubernetes.io/basic-auth"));
        }
        let username = secret
            .get("username")
            .ok_or_else(|| malformed("has no key \"username\""))?;
        let password = secret
            .get("password")
            .ok_or_else(|| malformed("has no key \"password\""))?;
        let mut credentials = username.clone();
        credentials.push(b':');
        credentials.extend(password);
        let value = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        );
        return sensitive(value.as_bytes(), "basic credentials").map(Some);
    }
    Ok(None)
}

/// A header value that is never printed.
fn sensitive(value: &[u8], what: &str) -> Result<HeaderValue, Unusable> {
    let mut value = HeaderValue::from_bytes(value)
        .map_err(|_| Unusable::new("SecretMalformed", format!("{what} is not a valid header value")))?;
    value.set_sensitive(true);
    Ok(value)
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

    #[test]
    fn sensitive_values_are_never_printed() {
        let value = sensitive(b"Bearer s3cr3t", "token").expect("valid");
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("s3cr3t"));
        let bad = sensitive(b"line\nbreak", "the token").expect_err("invalid");
        assert_eq!(bad.reason, "SecretMalformed");
        assert!(!bad.message.contains("line"), "{}", bad.message);
    }
}
