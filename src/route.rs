//! Where a job's call goes, with which credentials, under which limit, or
//! why it must wait.
//!
//! A job with `target.url` is called there. A job with `destinationRef` is
//! called at its Destination's URL plus `target.path`, with the
//! Destination's headers, auth and TLS, whose Secret values are read through
//! [`Secrets`] and whose OAuth2 tokens come from [`Tokens`]. While its
//! Destination is missing, suspended or not usable (a Secret missing or
//! malformed, no token to be had), the job waits: no call, no attempt
//! spent, no write.

use base64::Engine as _;
use kube::runtime::reflector::{ObjectRef, Store};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};

use crate::crd::PendingJob;
use crate::destination::{Auth, CircuitBreaker, Destination, DestinationSpec, RateLimit};
use crate::dispatch::Dispatcher;
use crate::oauth2::{Token, Tokens};
use crate::secrets::{Secrets, TYPE_KEY, Unusable};
use crate::slots::target_of;
use crate::tls;

/// What routing reads credentials with.
#[derive(Clone, Copy)]
pub struct Access<'a> {
    /// Secret and ConfigMap values.
    pub secrets: &'a Secrets,
    /// OAuth2 tokens.
    pub tokens: &'a Tokens,
    /// Builds the clients of destinations with TLS settings, and fetches tokens.
    pub dispatcher: &'a Dispatcher,
}

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
    /// The destination called, if any.
    pub destination: Option<ObjectRef<Destination>>,
    /// The client of a destination with TLS settings of its own.
    pub client: Option<reqwest::Client>,
    /// The OAuth2 token the call carries, if any.
    pub oauth2: Option<Token>,
}

/// A destination's credentials, ready to call with.
#[derive(Debug)]
pub struct Prepared {
    /// Headers, credentials included (marked sensitive).
    pub headers: HeaderMap,
    /// The client for its TLS settings, if it has any.
    pub client: Option<reqwest::Client>,
    /// Its OAuth2 token, if it uses OAuth2.
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

/// Routes `job`, whose Destination (if any) is looked up in `destinations`.
pub async fn route(job: &PendingJob, destinations: &Store<Destination>, access: Access<'_>) -> Result<Route, Wait> {
    let Some(reference) = &job.spec.destination_ref else {
        let url = job.spec.target.url.clone().unwrap_or_default();
        return Ok(Route {
            limit_key: target_of(&url),
            url,
            headers: HeaderMap::new(),
            max_concurrency: None,
            rate_limit: None,
            breaker: None,
            destination: None,
            client: None,
            oauth2: None,
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
    let limit_key = destination_key(&namespace, &reference.name);
    let prepared = prepare(&destination.spec, &namespace, &limit_key, access)
        .await
        .map_err(|unusable| Wait::NotReady(reference.name.clone(), unusable))?;
    let path = job.spec.target.path.as_deref().unwrap_or_default();
    Ok(Route {
        url: join(&destination.spec.url, path),
        headers: prepared.headers,
        client: prepared.client,
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

/// Everything a call to the destination `key` needs: its headers with
/// their credentials, its TLS client, its OAuth2 token.
pub async fn prepare(
    spec: &DestinationSpec,
    namespace: &str,
    key: &str,
    access: Access<'_>,
) -> Result<Prepared, Unusable> {
    let mut headers = headers(spec, namespace, access.secrets).await?;
    let client = match &spec.tls {
        None => None,
        Some(settings) => {
            let material = tls::material(settings, namespace, access.secrets).await?;
            let client = access
                .dispatcher
                .client_with(key, &material)
                .map_err(|why| Unusable::new("TLSMalformed", why))?;
            Some(client)
        }
    };
    let oauth2 = match spec.auth.as_ref().and_then(|a| a.oauth2_client_credentials.as_ref()) {
        None => None,
        Some(settings) => {
            let token = access
                .tokens
                .token(key, settings, namespace, access.secrets, access.dispatcher)
                .await?;
            headers.insert(AUTHORIZATION, token.header.clone());
            Some(token)
        }
    };
    Ok(Prepared {
        headers,
        client,
        oauth2,
    })
}

/// The headers every call to the destination carries, with the static
/// credentials (headers from Secrets, bearer, basic).
async fn headers(spec: &DestinationSpec, namespace: &str, secrets: &Secrets) -> Result<HeaderMap, Unusable> {
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

/// The `Authorization` header for bearer or basic auth; `None` for OAuth2,
/// whose token [`prepare`] adds.
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
