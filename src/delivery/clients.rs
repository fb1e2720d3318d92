//! The HTTP clients calls are made with: one shared connection pool, plus
//! one client per destination with TLS settings of its own, rebuilt when its
//! material changes. Every client connects only where the egress policy
//! allows ([`super::egress`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::Client;

use super::egress::EgressPolicy;
use super::outcome::describe;

/// Longest wait for a target to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Keep-alive probes on pooled connections, so a dead peer is noticed.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// Failure to set up the HTTP client.
#[derive(Debug, thiserror::Error)]
#[error("building the HTTP client: {0}")]
pub struct ClientError(#[from] reqwest::Error);

/// The operator's HTTP clients. Cheap to clone; shares one connection pool,
/// plus one per destination with TLS settings of its own.
#[derive(Clone, Debug)]
pub struct HttpClients {
    client: Client,
    egress: Arc<EgressPolicy>,
    /// Clients of destinations with their own TLS, by destination, with the
    /// material each was built from.
    with_tls: Arc<Mutex<HashMap<String, (TlsMaterial, Client)>>>,
}

impl HttpClients {
    /// Clients that never follow redirects (a 3xx is an answer to record,
    /// and following one could turn a POST into a GET). Connections are kept
    /// alive and pooled per target; connecting has a bound of its own, below
    /// each job's `timeoutSeconds` for the whole call. It connects only to
    /// addresses `egress` allows, and never through a proxy from the
    /// environment, which would connect on its behalf, unchecked.
    pub fn new(egress: EgressPolicy) -> Result<Self, ClientError> {
        let egress = Arc::new(egress);
        let client = builder(&egress).build()?;
        Ok(Self {
            client,
            egress,
            with_tls: Arc::default(),
        })
    }

    /// The client for destination `key` with TLS `material`: built like the
    /// shared one, trusting only the material's CA when it has one, and
    /// presenting its client certificate. Kept until the material changes.
    /// The error says what is wrong without a byte of the material.
    pub fn client_with(&self, key: &str, material: &TlsMaterial) -> Result<Client, String> {
        let mut built = self.with_tls.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((from, client)) = built.get(key)
            && from == material
        {
            return Ok(client.clone());
        }
        let mut builder = builder(&self.egress);
        if let Some(ca) = &material.ca {
            let roots = reqwest::Certificate::from_pem_bundle(ca)
                .ok()
                .filter(|roots| !roots.is_empty())
                .ok_or("the CA bundle holds no PEM certificate")?;
            builder = builder.tls_certs_only(roots);
        }
        if let Some(identity) = &material.identity {
            let identity = reqwest::Identity::from_pem(identity)
                .map_err(|_| "the client certificate or key is not valid PEM".to_owned())?;
            builder = builder.identity(identity);
        }
        let client = builder
            .build()
            .map_err(|e| format!("the TLS settings cannot be used: {}", describe(&e)))?;
        built.insert(key.to_owned(), (material.clone(), client.clone()));
        Ok(client)
    }

    /// Drops destination `key`'s client, with its connections and material.
    pub fn remove(&self, key: &str) {
        self.with_tls.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
    }

    /// How many destinations have a client of their own.
    #[cfg(test)]
    pub(crate) fn own_clients(&self) -> usize {
        self.with_tls.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// The shared client, for calls without TLS settings of their own and
    /// for the operator's own calls (OAuth2 tokens).
    pub fn shared(&self) -> &Client {
        &self.client
    }

    /// Refuses `url` when the egress policy denies its address literal; a
    /// hostname is checked on its resolved addresses when connecting.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), String> {
        self.egress.check_url(url).map_err(|denied| denied.to_string())
    }
}

/// How every client of the operator's calls is built (see [`HttpClients::new`]).
fn builder(egress: &Arc<EgressPolicy>) -> reqwest::ClientBuilder {
    Client::builder()
        .user_agent(concat!("pendingjob-operator/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_keepalive(TCP_KEEPALIVE)
        .no_proxy()
        .dns_resolver(egress.resolver())
}

/// What a destination's TLS is made of, as read.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsMaterial {
    /// PEM CA certificates that replace the system's roots.
    pub ca: Option<Vec<u8>>,
    /// PEM certificate chain and private key, together.
    pub identity: Option<Vec<u8>>,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("ca", &self.ca.as_ref().map(|ca| ca.len()))
            .field("identity", &self.identity.as_ref().map(|_| "redacted"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_key() {
        let material = TlsMaterial {
            ca: Some(b"-----BEGIN CERTIFICATE-----".to_vec()),
            identity: Some(b"-----BEGIN PRIVATE KEY----- s3cr3t".to_vec()),
        };
        let printed = format!("{material:?}");
        assert!(!printed.contains("s3cr3t") && !printed.contains("PRIVATE"), "{printed}");
    }
}
