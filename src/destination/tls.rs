//! A Destination's TLS: the CA bundle its server's certificate must chain
//! to, and the client certificate it is called with (mTLS), read from a
//! ConfigMap or Secrets of its namespace.
//!
//! The bytes are checked by building the HTTP client that uses them
//! ([`crate::delivery::clients::HttpClients::client_with`]), which keeps one client per
//! destination until the material changes. Neither the key nor any other
//! byte of it reaches a message, a log line or a status.

use super::secrets::{Secrets, TYPE_KEY, Unusable};
use crate::api::{CaBundle, Tls};
use crate::delivery::clients::TlsMaterial;

/// The type of Secret a client certificate comes from.
const TLS_SECRET_TYPE: &[u8] = b"kubernetes.io/tls";

/// Reads what `tls` refers to in `namespace`.
pub async fn material(tls: &Tls, namespace: &str, secrets: &Secrets) -> Result<TlsMaterial, Unusable> {
    let ca = match &tls.ca {
        None => None,
        Some(CaBundle {
            config_map_key_ref: Some(key),
            ..
        }) => Some(secrets.config_map_key(namespace, key).await?),
        Some(CaBundle {
            secret_key_ref: Some(key),
            ..
        }) => Some(secrets.secret_key(namespace, key).await?),
        // The API server refuses a CA bundle with neither.
        Some(_) => None,
    };
    let identity = match &tls.client_certificate {
        None => None,
        Some(reference) => {
            let secret = secrets.secret(namespace, &reference.secret_name).await?;
            let malformed = |what: &str| {
                Unusable::new(
                    "SecretMalformed",
                    format!("Secret {} for the client certificate {what}", reference.secret_name),
                )
            };
            if secret.get(TYPE_KEY).is_some_and(|t| t != TLS_SECRET_TYPE) {
                return Err(malformed("is not of type kubernetes.io/tls"));
            }
            let cert = secret
                .get("tls.crt")
                .ok_or_else(|| malformed("has no key \"tls.crt\""))?;
            let key = secret
                .get("tls.key")
                .ok_or_else(|| malformed("has no key \"tls.key\""))?;
            let mut pem = cert.clone();
            pem.push(b'\n');
            pem.extend(key);
            Some(pem)
        }
    };
    Ok(TlsMaterial { ca, identity })
}
