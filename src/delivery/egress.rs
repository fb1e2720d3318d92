//! The egress policy: addresses in denied ranges are never connected to.
//!
//! Any namespace that may create jobs could otherwise make the operator call
//! any address it can reach, cloud metadata endpoints included. The check
//! runs on the very addresses a call would connect to: an IP literal in the
//! URL before the call, and every address a host name resolves to, at
//! connect time, in the HTTP client's resolver. So a name that resolves into
//! a denied range is refused too, however it resolved a moment before (DNS
//! rebinding). IPv4 addresses written as IPv6 (`::ffff:a.b.c.d`) are checked
//! as IPv4.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Ranges denied unless the operator is told otherwise (`--deny-cidrs`):
/// link-local, which holds the cloud metadata endpoints (169.254.169.254).
pub const DEFAULT_DENIED: &str = "169.254.0.0/16,fe80::/10";

/// Target addresses the operator must not connect to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    denied: Vec<IpNet>,
}

/// A call refused by the egress policy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("egress policy: {address} is in the denied range {range} (--deny-cidrs); no connection was made")]
pub struct Denied {
    /// The address the call would have connected to.
    pub address: IpAddr,
    /// The range that denies it.
    pub range: IpNet,
}

impl EgressPolicy {
    /// A policy that denies `denied`.
    pub fn new(denied: Vec<IpNet>) -> Self {
        Self { denied }
    }

    /// Whether a connection to `address` is refused, and why.
    pub fn check(&self, address: IpAddr) -> Result<(), Denied> {
        let address = address.to_canonical();
        match self.denied.iter().find(|range| range.contains(&address)) {
            Some(range) => Err(Denied { address, range: *range }),
            None => Ok(()),
        }
    }

    /// Checks the host of `url` when it is an IP literal; names are checked
    /// when they resolve ([`Resolver`]).
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), Denied> {
        let host = url.host_str().unwrap_or_default();
        let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        match literal.parse::<IpAddr>() {
            Ok(address) => self.check(address),
            Err(_) => Ok(()),
        }
    }

    /// The HTTP client's resolver under this policy.
    pub fn resolver(self: &Arc<Self>) -> Arc<Resolver> {
        Arc::new(Resolver { policy: self.clone() })
    }
}

/// The refusal in `error`'s chain of causes, if the policy refused the call.
pub fn denied_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Denied> {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(denied) = error.downcast_ref::<Denied>() {
            return Some(denied);
        }
        cause = error.source();
    }
    None
}

/// Resolves names with the system resolver and keeps only the addresses the
/// policy allows; a name left with none fails with [`Denied`].
#[derive(Debug)]
pub struct Resolver {
    policy: Arc<EgressPolicy>,
}

impl Resolve for Resolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let mut allowed: Vec<SocketAddr> = Vec::new();
            let mut refused = None;
            for address in tokio::net::lookup_host((name.as_str(), 0)).await? {
                match policy.check(address.ip()) {
                    Ok(()) => allowed.push(address),
                    Err(denied) => {
                        refused.get_or_insert(denied);
                    }
                }
            }
            match refused {
                Some(denied) if allowed.is_empty() => Err(Box::new(denied) as Box<dyn std::error::Error + Send + Sync>),
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(ranges: &str) -> EgressPolicy {
        EgressPolicy::new(ranges.split(',').map(|r| r.parse().expect("CIDR")).collect())
    }

    #[test]
    fn denied_ranges_table() {
        let default = policy(DEFAULT_DENIED);
        let cases = [
            ("169.254.169.254", false),
            ("169.254.0.1", false),
            ("::ffff:169.254.169.254", false),
            ("fe80::1", false),
            ("10.0.0.1", true),
            ("127.0.0.1", true),
            ("::1", true),
            ("fd00:ec2::254", true),
        ];
        for (address, allowed) in cases {
            let address: IpAddr = address.parse().expect("address");
            assert_eq!(default.check(address).is_ok(), allowed, "{address}");
        }
        let denied = policy("10.0.0.0/8").check("10.1.2.3".parse().expect("ip")).unwrap_err();
        assert_eq!(denied.range.to_string(), "10.0.0.0/8");
        assert!(
            denied
                .to_string()
                .contains("10.1.2.3 is in the denied range 10.0.0.0/8"),
            "{denied}"
        );
        assert!(
            EgressPolicy::default()
                .check("169.254.169.254".parse().expect("ip"))
                .is_ok()
        );
    }

    #[test]
    fn ip_literals_in_urls_are_checked_and_names_are_left_to_the_resolver() {
        let default = policy(DEFAULT_DENIED);
        let url = |u: &str| reqwest::Url::parse(u).expect("url");
        assert!(
            default
                .check_url(&url("http://169.254.169.254/latest/meta-data"))
                .is_err()
        );
        assert!(default.check_url(&url("http://[fe80::1]:8080/")).is_err());
        assert!(default.check_url(&url("http://[::ffff:169.254.169.254]/")).is_err());
        assert!(default.check_url(&url("https://metadata.example/")).is_ok());
        assert!(default.check_url(&url("http://127.0.0.1:80/")).is_ok());
    }

    #[tokio::test]
    async fn a_name_that_resolves_only_into_denied_ranges_fails_with_the_reason() {
        let resolver = Arc::new(policy("127.0.0.0/8,::1/128")).resolver();
        let error = match resolver.resolve("localhost".parse().expect("name")).await {
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(error) => error,
        };
        assert!(denied_in(error.as_ref()).is_some(), "{error}");
        let allowed: Vec<SocketAddr> = Arc::new(policy("::1/128"))
            .resolver()
            .resolve("localhost".parse().expect("name"))
            .await
            .expect("resolves")
            .collect();
        assert!(allowed.iter().all(|a| a.ip().is_ipv4()), "{allowed:?}");
    }
}
