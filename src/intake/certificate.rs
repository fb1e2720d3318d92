//! The intake's TLS certificate, from PEM files (`--tls-cert`, `--tls-key`),
//! for example a `kubernetes.io/tls` Secret mounted as a volume, as
//! cert-manager issues it.
//!
//! The files are read at start, and a problem with them stops the intake
//! with a message naming the file. Then they are looked at again at most
//! every [`RECHECK`], on a handshake: when either has changed (a renewed
//! certificate), the new pair is used; a pair that cannot be read is
//! reported and the last good one kept. The key is never printed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tracing::{info, warn};

/// How often the files are looked at for a renewal.
pub const RECHECK: Duration = Duration::from_secs(10);

/// Why a certificate or key could not be used; names the file, never the key.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {what}")]
pub struct CertificateError {
    path: String,
    what: String,
}

/// The certificate and key files, and the pair last read from them.
#[derive(Debug)]
pub struct Certificate {
    cert: PathBuf,
    key: PathBuf,
    loaded: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    checked: Instant,
    modified: (Option<SystemTime>, Option<SystemTime>),
    pair: Arc<CertifiedKey>,
}

impl Certificate {
    /// Reads `cert` (a PEM chain) and `key` (a PEM private key).
    pub fn load(cert: &Path, key: &Path) -> Result<Self, CertificateError> {
        let modified = modified(cert, key);
        let pair = read(cert, key)?;
        Ok(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            loaded: Mutex::new(Loaded {
                checked: Instant::now(),
                modified,
                pair,
            }),
        })
    }

    /// A TLS server configuration (HTTP/2 and HTTP/1.1) that presents it.
    pub fn server_config(self) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(self));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The pair to present now, read again if the files changed.
    fn current(&self) -> Arc<CertifiedKey> {
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if loaded.checked.elapsed() >= RECHECK {
            loaded.checked = Instant::now();
            let now = modified(&self.cert, &self.key);
            if now != loaded.modified {
                match read(&self.cert, &self.key) {
                    Ok(pair) => {
                        info!(cert = %self.cert.display(), "TLS certificate renewed");
                        loaded.pair = pair;
                        loaded.modified = now;
                    }
                    Err(error) => warn!(%error, "the TLS certificate changed but cannot be used; keeping the last one"),
                }
            }
        }
        loaded.pair.clone()
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn modified(cert: &Path, key: &Path) -> (Option<SystemTime>, Option<SystemTime>) {
    let at = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    (at(cert), at(key))
}

fn read(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, CertificateError> {
    let error = |path: &Path, what: &str| CertificateError {
        path: path.display().to_string(),
        what: what.to_owned(),
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|_| error(cert, "cannot be read as PEM"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| error(cert, "holds a malformed PEM certificate"))?;
    if chain.is_empty() {
        return Err(error(cert, "holds no PEM certificate"));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|_| error(key, "holds no PEM private key"))?;
    let signing = any_supported_type(&private).map_err(|_| error(key, "holds a key of a kind TLS cannot use"))?;
    let pair = CertifiedKey::new(chain, signing);
    pair.keys_match()
        .map_err(|_| error(key, "does not belong to the certificate"))?;
    Ok(Arc::new(pair))
}
