//! Values of Secrets (and ConfigMaps, for CA bundles) that destinations
//! refer to, read with `get` only, never listed or watched, and kept for a
//! bounded time.
//!
//! A value read is used for [`VALUE_TTL`], so a rotated Secret is picked up
//! within that long; a Secret found missing is looked for again after
//! [`MISSING_TTL`]. What goes wrong is described by names and keys only:
//! values never reach a message, a log line or a status.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};

use crate::api::KeyRef;

/// How long a value read is used before it is read again.
pub const VALUE_TTL: Duration = Duration::from_secs(30);
/// How long a missing Secret is taken as missing before it is looked for again.
pub const MISSING_TTL: Duration = Duration::from_secs(2);

/// Why a referenced value cannot be used; the `reason` is a condition reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Unusable {
    /// A CamelCase reason for the destination's Ready condition.
    pub reason: &'static str,
    /// What is wrong, naming the object and key, never a value.
    pub message: String,
}

impl Unusable {
    /// `reason` with `message`.
    pub fn new(reason: &'static str, message: String) -> Self {
        Self { reason, message }
    }
}

/// A Secret's or ConfigMap's data, by key.
type Data = BTreeMap<String, Vec<u8>>;
/// What was read of each object (kind, namespace, name), and when.
type Read = HashMap<(Kind, String, String), (Instant, Result<Data, Unusable>)>;

/// The kinds of object read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Secret,
    ConfigMap,
}

/// The values read lately, by object. One read at a time: jobs that need
/// the same Secret when its value expires wait for one read, not one each.
pub struct Secrets {
    client: Client,
    read: tokio::sync::Mutex<Read>,
}

impl Secrets {
    /// Reads with `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            read: tokio::sync::Mutex::default(),
        }
    }

    /// The value at `key` of Secret `key.name` in `namespace`.
    pub async fn secret_key(&self, namespace: &str, key: &KeyRef) -> Result<Vec<u8>, Unusable> {
        let data = self.get(Kind::Secret, namespace, &key.name).await?;
        data.get(&key.key)
            .cloned()
            .ok_or_else(|| Unusable::new("KeyNotFound", format!("Secret {} has no key {:?}", key.name, key.key)))
    }

    /// All of Secret `name` in `namespace`, its type under [`TYPE_KEY`].
    pub async fn secret(&self, namespace: &str, name: &str) -> Result<Data, Unusable> {
        self.get(Kind::Secret, namespace, name).await
    }

    /// The value at `key` of ConfigMap `key.name` in `namespace`.
    pub async fn config_map_key(&self, namespace: &str, key: &KeyRef) -> Result<Vec<u8>, Unusable> {
        let data = self.get(Kind::ConfigMap, namespace, &key.name).await?;
        data.get(&key.key).cloned().ok_or_else(|| {
            Unusable::new(
                "KeyNotFound",
                format!("ConfigMap {} has no key {:?}", key.name, key.key),
            )
        })
    }

    async fn get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Data, Unusable> {
        let id = (kind, namespace.to_owned(), name.to_owned());
        let mut read = self.read.lock().await;
        if let Some((at, data)) = read.get(&id) {
            let ttl = if data.is_ok() { VALUE_TTL } else { MISSING_TTL };
            if at.elapsed() < ttl {
                return data.clone();
            }
        }
        let data = match kind {
            Kind::Secret => self.fetch_secret(namespace, name).await,
            Kind::ConfigMap => self.fetch_config_map(namespace, name).await,
        };
        // Trouble reaching the API server is not remembered: the next call asks again.
        if data.as_ref().err().is_none_or(|e| e.reason != "Unreachable") {
            read.insert(id, (Instant::now(), data.clone()));
        }
        data
    }

    async fn fetch_secret(&self, namespace: &str, name: &str) -> Result<Data, Unusable> {
        let secret = Api::<Secret>::namespaced(self.client.clone(), namespace)
            .get(name)
            .await
            .map_err(|e| unreadable(e, "Secret", namespace, name))?;
        let mut data: Data = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        for (k, v) in secret.string_data.unwrap_or_default() {
            data.insert(k, v.into_bytes());
        }
        if let Some(type_) = secret.type_ {
            data.insert(TYPE_KEY.to_owned(), type_.into_bytes());
        }
        Ok(data)
    }

    async fn fetch_config_map(&self, namespace: &str, name: &str) -> Result<Data, Unusable> {
        let config_map = Api::<ConfigMap>::namespaced(self.client.clone(), namespace)
            .get(name)
            .await
            .map_err(|e| unreadable(e, "ConfigMap", namespace, name))?;
        let mut data: Data = config_map
            .binary_data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        for (k, v) in config_map.data.unwrap_or_default() {
            data.insert(k, v.into_bytes());
        }
        Ok(data)
    }
}

/// Why `kind` `namespace/name` could not be read: missing (`SecretNotFound`,
/// `ConfigMapNotFound`), forbidden, or the API server unreachable.
fn unreadable(error: kube::Error, kind: &str, namespace: &str, name: &str) -> Unusable {
    match error {
        kube::Error::Api(s) if s.code == 404 => Unusable::new(
            if kind == "Secret" {
                "SecretNotFound"
            } else {
                "ConfigMapNotFound"
            },
            format!("{kind} {namespace}/{name} not found"),
        ),
        kube::Error::Api(s) if s.code == 403 => Unusable::new(
            "Forbidden",
            format!("the operator may not get {kind} {namespace}/{name}"),
        ),
        e => Unusable::new("Unreachable", format!("reading {kind} {namespace}/{name}: {e}")),
    }
}

/// Where [`Secrets::secret`] puts a Secret's `type` (no data key can hold a
/// space).
pub const TYPE_KEY: &str = " type";
