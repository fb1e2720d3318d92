//! A Destination's credentials, ready to call with: its headers (plain or
//! from Secrets), bearer or basic auth, the TLS client for its CA and
//! client certificate, its OAuth2 or ServiceAccount token, and its signing
//! keys.
//!
//! Values are read through [`Secrets`] (get only, cached briefly) and carried
//! in header values marked sensitive; what goes wrong is told by names and
//! keys, never by a value.

use std::sync::Arc;

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};

use super::identity::Identities;
use super::oauth2::{Token, Tokens};
use super::secrets::{Secrets, TYPE_KEY, Unusable};
use super::tls;
use crate::api::{Auth, DestinationSpec, StandardWebhooks};
use crate::delivery::clients::HttpClients;
use crate::delivery::signing::Signer;

/// What credentials are read and made with: shared by the job controller
/// (which calls) and the Destination controller (which checks them).
pub struct Credentials {
    /// Secret and ConfigMap values.
    pub secrets: Secrets,
    /// OAuth2 tokens.
    pub tokens: Tokens,
    /// ServiceAccount tokens.
    pub identities: Identities,
    /// Builds the clients of destinations with TLS settings, and fetches tokens.
    pub clients: HttpClients,
}

impl Credentials {
    /// Reads Secrets and ConfigMaps with `client` (get only), counting the
    /// reads in `reads`, and mints ServiceAccount tokens with it; builds TLS
    /// clients and fetches OAuth2 tokens with `clients`.
    pub fn new(
        client: kube::Client,
        clients: HttpClients,
        reads: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        Self {
            secrets: Secrets::new(client.clone(), reads),
            tokens: Tokens::default(),
            identities: Identities::new(client),
            clients,
        }
    }
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
    /// Its signing keys, if it signs.
    pub signer: Option<Arc<Signer>>,
}

/// Everything a call to the destination `key` needs: its headers with
/// their credentials, its TLS client, its token, its signing keys.
pub async fn prepare(
    spec: &DestinationSpec,
    namespace: &str,
    key: &str,
    credentials: &Credentials,
) -> Result<Prepared, Unusable> {
    let mut headers = headers(spec, namespace, &credentials.secrets).await?;
    let client = match &spec.tls {
        None => None,
        Some(settings) => {
            let material = tls::material(settings, namespace, &credentials.secrets).await?;
            let client = credentials
                .clients
                .client_with(key, &material)
                .map_err(|why| Unusable::new("TLSMalformed", why))?;
            Some(client)
        }
    };
    let oauth2 = match spec.auth.as_ref().and_then(|a| a.oauth2_client_credentials.as_ref()) {
        None => None,
        Some(settings) => {
            let token = credentials
                .tokens
                .token(key, settings, namespace, &credentials.secrets, &credentials.clients)
                .await?;
            headers.insert(AUTHORIZATION, token.header.clone());
            Some(token)
        }
    };
    if let Some(settings) = spec.auth.as_ref().and_then(|a| a.service_account_token.as_deref()) {
        let header = credentials.identities.header(key, settings, namespace).await?;
        headers.insert(AUTHORIZATION, header);
    }
    let signer = match &spec.signing {
        None => None,
        Some(signing) => Some(Arc::new(
            signer(&signing.standard_webhooks, namespace, &credentials.secrets).await?,
        )),
    };
    Ok(Prepared {
        headers,
        client,
        oauth2,
        signer,
    })
}

/// The signing keys `settings` names, checked; `SigningKeyInvalid` names
/// the Secret, its key and the place of the key at fault, never a value.
async fn signer(settings: &StandardWebhooks, namespace: &str, secrets: &Secrets) -> Result<Signer, Unusable> {
    let keys = &settings.secret_key_ref;
    let text = secrets.secret_key(namespace, keys).await?;
    Signer::parse(&text).map_err(|why| {
        Unusable::new(
            "SigningKeyInvalid",
            format!(
                "Secret {} key {:?}, which holds the signing keys: {why}",
                keys.name, keys.key
            ),
        )
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

#[cfg(test)]
mod tests {
    use super::*;

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
