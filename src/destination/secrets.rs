//! Values of Secrets (and ConfigMaps, for CA bundles) that destinations
//! refer to, read with `get` only, never listed or watched, and kept for a
//! bounded time.
//!
//! A value read is used for [`VALUE_TTL`], so a rotated Secret is picked up
//! within that long; a Secret found missing is looked for again after
//! [`MISSING_TTL`]. What goes wrong is described by names and keys only:
//! values never reach a message, a log line or a status.
//!
//! Each object is read by one caller at a time, and only callers of that
//! object wait for it: one tenant's slow or missing Secrets delay no other
//! tenant's calls. Values past their time are swept out as the map grows
//! and every [`VALUE_TTL`] ([`Secrets::sweep`]), and a deleted
//! Destination's are forgotten at once
//! ([`super::forget`]), so what is held follows what is used.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};
use prometheus_client::metrics::counter::Counter;

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
/// The same as held: one allocation of key and value pairs, sorted by key
/// (a map's node would cost 500 bytes for a one-key Secret).
type Values = Arc<[(Box<str>, Box<[u8]>)]>;
/// An object: kind, namespace, name.
type Id = (Kind, String, String);
/// What was last read of one object, and when; locked while it is read.
type Entry = Arc<tokio::sync::Mutex<Option<(Instant, Result<Values, Unusable>)>>>;

/// The kinds of object read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Secret,
    ConfigMap,
}

/// The values read lately, by object. One read at a time per object: jobs
/// that need the same Secret when its value expires wait for one read, not
/// one each, and jobs that need other objects do not wait at all.
pub struct Secrets {
    client: Client,
    read: Mutex<Read>,
    /// Counts the reads made.
    reads: Counter,
}

#[derive(Default)]
struct Read {
    entries: HashMap<Id, Entry>,
    /// The size after the last sweep: the next is due at twice that.
    swept_at: usize,
}

impl Read {
    fn sweep(&mut self) {
        self.entries.retain(|_, entry| match entry.try_lock() {
            Ok(held) => held.as_ref().is_some_and(|(at, data)| at.elapsed() < ttl(data)),
            // Being read: kept.
            Err(_) => true,
        });
        self.entries.shrink_to_fit();
        self.swept_at = self.entries.len();
    }
}

impl Secrets {
    /// Reads with `client`, counting each read in `reads`.
    pub fn new(client: Client, reads: Counter) -> Self {
        Self {
            client,
            read: Mutex::default(),
            reads,
        }
    }

    /// Forgets what was read of Secret `name` in `namespace`.
    pub fn forget_secret(&self, namespace: &str, name: &str) {
        self.forget(&(Kind::Secret, namespace.to_owned(), name.to_owned()));
    }

    /// Forgets what was read of ConfigMap `name` in `namespace`.
    pub fn forget_config_map(&self, namespace: &str, name: &str) {
        self.forget(&(Kind::ConfigMap, namespace.to_owned(), name.to_owned()));
    }

    /// How many objects' values are held.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.lock().entries.len()
    }

    fn forget(&self, id: &Id) {
        self.lock().entries.remove(id);
    }

    /// The entry of `id`, made if need be; sweeps out entries past their
    /// time each time the map has doubled.
    fn entry(&self, id: Id) -> Entry {
        let mut read = self.lock();
        if read.entries.len() >= (2 * read.swept_at).max(64) {
            read.sweep();
        }
        read.entries.entry(id).or_default().clone()
    }

    /// Drops the values past their time, which the next use reads again
    /// anyway, so Destinations nothing calls hold none; returns how many.
    pub fn sweep(&self) -> usize {
        let mut read = self.lock();
        let before = read.entries.len();
        read.sweep();
        before - read.entries.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Read> {
        self.read.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The value at `key` of Secret `key.name` in `namespace`.
    pub async fn secret_key(&self, namespace: &str, key: &KeyRef) -> Result<Vec<u8>, Unusable> {
        let data = self.get(Kind::Secret, namespace, &key.name).await?;
        value_at(&data, &key.key)
            .ok_or_else(|| Unusable::new("KeyNotFound", format!("Secret {} has no key {:?}", key.name, key.key)))
    }

    /// All of Secret `name` in `namespace`, its type under [`TYPE_KEY`].
    pub async fn secret(&self, namespace: &str, name: &str) -> Result<Data, Unusable> {
        let data = self.get(Kind::Secret, namespace, name).await?;
        Ok(data.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect())
    }

    /// The value at `key` of ConfigMap `key.name` in `namespace`.
    pub async fn config_map_key(&self, namespace: &str, key: &KeyRef) -> Result<Vec<u8>, Unusable> {
        let data = self.get(Kind::ConfigMap, namespace, &key.name).await?;
        value_at(&data, &key.key).ok_or_else(|| {
            Unusable::new(
                "KeyNotFound",
                format!("ConfigMap {} has no key {:?}", key.name, key.key),
            )
        })
    }

    async fn get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Values, Unusable> {
        let entry = self.entry((kind, namespace.to_owned(), name.to_owned()));
        let mut held = entry.lock().await;
        if let Some((at, data)) = held.as_ref()
            && at.elapsed() < ttl(data)
        {
            return data.clone();
        }
        self.reads.inc();
        let data = match kind {
            Kind::Secret => self.fetch_secret(namespace, name).await,
            Kind::ConfigMap => self.fetch_config_map(namespace, name).await,
        }
        .map(|data| data.into_iter().map(|(k, v)| (k.into(), v.into())).collect());
        // Trouble reaching the API server is not remembered: the next call asks again.
        if data.as_ref().err().is_none_or(|e| e.reason != "Unreachable") {
            *held = Some((Instant::now(), data.clone()));
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

/// The value at `key` in `data`.
fn value_at(data: &Values, key: &str) -> Option<Vec<u8>> {
    data.iter().find(|(k, _)| **k == *key).map(|(_, v)| v.to_vec())
}

/// How long what was read stands: a value, or a finding that it is missing.
fn ttl(data: &Result<Values, Unusable>) -> Duration {
    if data.is_ok() { VALUE_TTL } else { MISSING_TTL }
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

#[cfg(test)]
mod tests {
    use axum::http::{StatusCode, Uri};

    use super::*;

    /// An API server stand-in on loopback: a read of any Secret named
    /// `slow` never ends, every other one is not found.
    async fn api_server() -> Client {
        async fn answer(uri: Uri) -> (StatusCode, axum::Json<serde_json::Value>) {
            if uri.path().ends_with("/slow") {
                std::future::pending::<()>().await;
            }
            let status = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                            "reason": "NotFound", "code": 404, "message": "not found"});
            (StatusCode::NOT_FOUND, axum::Json(status))
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, axum::Router::new().fallback(answer)).await });
        Client::try_from(kube::Config::new(url.parse().expect("url"))).expect("client")
    }

    #[tokio::test]
    async fn a_slow_secret_delays_only_its_own_readers() {
        let secrets = Arc::new(Secrets::new(api_server().await, Counter::default()));
        let slow = tokio::spawn({
            let secrets = secrets.clone();
            async move { secrets.secret("tenant-a", "slow").await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let other = tokio::time::timeout(Duration::from_secs(5), secrets.secret("tenant-b", "db"))
            .await
            .expect("another tenant's read does not wait for the slow one");
        assert_eq!(other.expect_err("not found").reason, "SecretNotFound");
        assert!(!slow.is_finished());
        slow.abort();
    }

    #[tokio::test]
    async fn forgotten_values_are_not_held() {
        let secrets = Secrets::new(api_server().await, Counter::default());
        for n in 0..10 {
            let _ = secrets.secret("ns", &format!("s{n}")).await;
        }
        assert_eq!(secrets.held(), 10);
        secrets.forget_secret("ns", "s0");
        secrets.forget_config_map("ns", "s1");
        assert_eq!(secrets.held(), 9, "a ConfigMap of the same name is another object");
    }
}
