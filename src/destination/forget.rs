//! What a Destination leaves behind when it goes: nothing.
//!
//! The operator holds state per Destination: its TLS client, its OAuth2
//! token (or the record of failed fetches), its circuit breaker, its rate
//! bucket, and the values of the Secrets and ConfigMaps it names. [`Forget`]
//! follows the Destination watch and drops all of it when a Destination is
//! deleted, is missing from a relist (deleted while the watch was down), or
//! comes back under the same name with another uid.
//! When an update stops naming a Secret, that Secret's value is dropped too.
//! So what is held follows the Destinations that exist, not every one a
//! tenant ever made.

use std::collections::HashSet;
use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::Event;

use super::credentials::Credentials;
use super::route::destination_key;
use crate::api::{Destination, DestinationSpec};
use crate::delivery::Delivery;

/// The Secrets and ConfigMaps a Destination names, each once, sorted
/// (kept per Destination, so in vectors: a set's node is 300 bytes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Named {
    /// Secret names.
    pub secrets: Vec<String>,
    /// ConfigMap names.
    pub config_maps: Vec<String>,
}

impl Named {
    /// What `spec` names.
    pub fn of(spec: &DestinationSpec) -> Self {
        let mut named = Self::default();
        for header in &spec.headers {
            if let Some(from) = &header.value_from {
                named.secrets.push(from.secret_key_ref.name.clone());
            }
        }
        if let Some(auth) = &spec.auth {
            if let Some(bearer) = &auth.bearer_token {
                named.secrets.push(bearer.secret_key_ref.name.clone());
            }
            if let Some(basic) = &auth.basic {
                named.secrets.push(basic.secret_name.clone());
            }
            if let Some(oauth2) = &auth.oauth2_client_credentials {
                named.secrets.push(oauth2.client_id.secret_key_ref.name.clone());
                named.secrets.push(oauth2.client_secret.secret_key_ref.name.clone());
            }
        }
        if let Some(signing) = &spec.signing {
            named
                .secrets
                .push(signing.standard_webhooks.secret_key_ref.name.clone());
        }
        if let Some(tls) = &spec.tls {
            if let Some(ca) = &tls.ca {
                if let Some(key) = &ca.secret_key_ref {
                    named.secrets.push(key.name.clone());
                }
                if let Some(key) = &ca.config_map_key_ref {
                    named.config_maps.push(key.name.clone());
                }
            }
            if let Some(certificate) = &tls.client_certificate {
                named.secrets.push(certificate.secret_name.clone());
            }
        }
        for names in [&mut named.secrets, &mut named.config_maps] {
            names.sort();
            names.dedup();
            names.shrink_to_fit();
        }
        named
    }

    /// What `self` names that `now` does not.
    fn beyond(&self, now: &Named) -> Named {
        let missing = |before: &[String], now: &[String]| before.iter().filter(|n| !now.contains(n)).cloned().collect();
        Named {
            secrets: missing(&self.secrets, &now.secrets),
            config_maps: missing(&self.config_maps, &now.config_maps),
        }
    }
}

/// `destination`'s key in a relist's set: its namespace and name only (a
/// reference made from the object would keep its uid and version too).
fn reference(destination: &Destination) -> ObjectRef<Destination> {
    ObjectRef::new(&destination.name_any()).within(&destination.namespace().unwrap_or_default())
}

/// Follows the Destination watch and forgets what gone Destinations held.
/// It sees each event before the cache does, so the cache still shows what
/// the event replaces: it keeps nothing per Destination itself.
pub struct Forget {
    credentials: Arc<Credentials>,
    delivery: Arc<Delivery>,
    /// The Destinations' cache, as it was before the event.
    known: Store<Destination>,
    /// The Destinations a relist under way has shown so far.
    listed: Option<HashSet<ObjectRef<Destination>>>,
}

impl Forget {
    /// Forgets in `credentials` and `delivery` what `known`, the cache the
    /// same watch fills after it, held.
    pub fn new(credentials: Arc<Credentials>, delivery: Arc<Delivery>, known: Store<Destination>) -> Self {
        Self {
            credentials,
            delivery,
            known,
            listed: None,
        }
    }

    /// Takes in one event of the Destination watch.
    pub fn observe(&mut self, event: &Event<Destination>) {
        match event {
            Event::Init => self.listed = Some(HashSet::new()),
            Event::InitApply(destination) => {
                if let Some(listed) = &mut self.listed {
                    listed.insert(reference(destination));
                }
                self.applied(destination);
            }
            Event::InitDone => {
                let listed = self.listed.take().unwrap_or_default();
                for before in self.known.state() {
                    if !listed.contains(&reference(&before)) {
                        self.gone(&before);
                    }
                }
            }
            Event::Apply(destination) => self.applied(destination),
            Event::Delete(destination) => self.gone(destination),
        }
    }

    fn applied(&mut self, destination: &Destination) {
        let Some(before) = self.known.get(&reference(destination)) else {
            return;
        };
        if before.uid() != destination.uid() {
            // Deleted and made again under the same name while the watch was down.
            return self.gone(&before);
        }
        let named = Named::of(&destination.spec);
        let namespace = destination.namespace().unwrap_or_default();
        self.forget_values(&namespace, &Named::of(&before.spec).beyond(&named));
    }

    fn gone(&mut self, destination: &Destination) {
        let (namespace, name) = (destination.namespace().unwrap_or_default(), destination.name_any());
        self.forget_values(&namespace, &Named::of(&destination.spec));
        let key = destination_key(&namespace, &name);
        self.credentials.tokens.remove(&key);
        self.credentials.identities.remove(&key);
        self.credentials.clients.remove(&key);
        self.delivery.breakers.remove(&key);
        self.delivery.pacing.remove(&key);
    }

    fn forget_values(&self, namespace: &str, named: &Named) {
        for name in &named.secrets {
            self.credentials.secrets.forget_secret(namespace, name);
        }
        for name in &named.config_maps {
            self.credentials.secrets.forget_config_map(namespace, name);
        }
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;
    use crate::api::{CircuitBreaker, RateLimit, ServiceAccountToken};
    use crate::delivery::clients::{HttpClients, TlsMaterial};
    use crate::delivery::egress::EgressPolicy;
    use crate::delivery::slots::Slots;

    fn destination(name: &str, spec: serde_json::Value) -> Destination {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "pendingjob.dev/v1alpha1", "kind": "Destination",
            "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}")}, "spec": spec,
        }))
        .expect("destination")
    }

    fn everything(name: &str) -> Destination {
        let key = |name: &str| serde_json::json!({"secretKeyRef": {"name": name, "key": "k"}});
        destination(
            name,
            serde_json::json!({
                "url": "https://api.example/",
                "headers": [{"name": "X-Key", "valueFrom": key(&format!("{name}-header"))}],
                "auth": {"oauth2ClientCredentials": {"tokenUrl": "http://127.0.0.1:1/token",
                         "clientId": key(&format!("{name}-id")), "clientSecret": key(&format!("{name}-secret"))}},
                "tls": {"ca": {"configMapKeyRef": {"name": format!("{name}-ca"), "key": "ca.crt"}},
                        "clientCertificate": {"secretName": format!("{name}-cert")}},
                "signing": {"standardWebhooks": key(&format!("{name}-signing"))},
            }),
        )
    }

    #[test]
    fn named_lists_every_secret_and_config_map() {
        let named = Named::of(&everything("a").spec);
        assert_eq!(
            named.secrets.into_iter().collect::<Vec<_>>(),
            ["a-cert", "a-header", "a-id", "a-secret", "a-signing"]
        );
        assert_eq!(named.config_maps.into_iter().collect::<Vec<_>>(), ["a-ca"]);
    }

    /// Everything the operator holds for destination `name` of namespace shop.
    async fn hold(credentials: &Credentials, delivery: &Delivery, name: &str) {
        let key = destination_key("shop", name);
        let breaker = CircuitBreaker {
            consecutive_failures: 1,
            open_seconds: 1,
        };
        delivery.breakers.record(&key, true, breaker);
        let rate = RateLimit {
            requests_per_second: 100,
            burst: None,
        };
        delivery.pacing.wait(&key, Some(rate)).await;
        credentials
            .clients
            .client_with(&key, &TlsMaterial::default())
            .expect("client");
        // Nothing answers on port 1: the read fails, and its entry is held
        // all the same, as a token's is once it is asked about.
        let _ = credentials.secrets.secret("shop", &format!("{name}-cert")).await;
        credentials.tokens.forget(&key, &HeaderValue::from_static("x")).await;
        let identity = ServiceAccountToken {
            service_account_name: "caller".into(),
            audience: "api".into(),
            expiration_seconds: 600,
        };
        let _ = credentials.identities.header(&key, &identity, "shop").await;
    }

    #[tokio::test]
    async fn a_deleted_destination_leaves_nothing_behind() {
        let config = kube::Config::new("http://127.0.0.1:1".parse().expect("uri"));
        let client = kube::Client::try_from(config).expect("client");
        let clients = HttpClients::new(EgressPolicy::default()).expect("clients");
        let credentials = Arc::new(Credentials::new(client, clients.clone(), Default::default()));
        let delivery = Arc::new(Delivery::new(clients, Slots::new(4, 2, 1)));
        let (known, mut cache) = kube::runtime::reflector::store();
        let mut forget = Forget::new(credentials.clone(), delivery.clone(), known);
        // As the watch does: Forget first, then the cache.
        let mut see = |event: Event<Destination>| {
            forget.observe(&event);
            cache.apply_watcher_event(&event);
        };
        for name in ["a", "b", "c"] {
            see(Event::Apply(everything(name)));
            hold(&credentials, &delivery, name).await;
        }
        let counts = |c: &Credentials, d: &Delivery| {
            (
                c.clients.own_clients(),
                c.tokens.len() + c.identities.len(),
                c.secrets.held(),
                d.breakers.len(),
                d.pacing.len(),
            )
        };
        // (TLS clients, OAuth2 and ServiceAccount tokens, Secret values,
        // breakers, rate buckets)
        assert_eq!(counts(&credentials, &delivery), (3, 6, 3, 3, 3));
        see(Event::Delete(everything("a")));
        assert_eq!(counts(&credentials, &delivery), (2, 4, 2, 2, 2));
        // A relist that no longer shows b forgets it as well.
        see(Event::Init);
        see(Event::InitApply(everything("c")));
        see(Event::InitDone);
        assert_eq!(counts(&credentials, &delivery), (1, 2, 1, 1, 1));
        // One made again under the same name, seen only in a relist, is new.
        hold(&credentials, &delivery, "c").await;
        let mut again = everything("c");
        again.metadata.uid = Some("uid-c-again".into());
        see(Event::Init);
        see(Event::InitApply(again));
        see(Event::InitDone);
        assert_eq!(counts(&credentials, &delivery).3, 0, "the old one's breaker");
        // An update that stops naming a Secret forgets its value.
        let mut fewer = everything("c");
        fewer.spec.tls = None;
        see(Event::Apply(fewer));
        assert_eq!(credentials.secrets.held(), 0);
    }
}
