//! The egress policy: addresses in denied ranges are never connected to.
//!
//! Any namespace that may create jobs could otherwise make the operator call
//! any address it can reach, cloud metadata endpoints included. The check
//! runs on the very addresses a call would connect to: an IP literal in the
//! URL before the call, and every address a host name resolves to, at
//! connect time, in the HTTP client's resolver. So a name that resolves into
//! a denied range is refused too, however it resolved a moment before (DNS
//! rebinding). IPv4 addresses written as IPv6 (`::ffff:a.b.c.d`) are checked
//! as IPv4, and URLs are checked as parsed, so every spelling of an address
//! (`0x7f.1`, `2130706433`, `[::ffff:127.0.0.1]`) is checked as the address
//! it is.
//!
//! The unspecified addresses (`0.0.0.0/8`, `::`) are denied whatever the
//! flags say: on Linux, connecting to them reaches loopback.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Ranges denied unless the operator is told otherwise (`--deny-cidrs`):
/// link-local, which holds the cloud metadata endpoints (169.254.169.254).
pub const DEFAULT_DENIED: &str = "169.254.0.0/16,fe80::/10";

/// The strict list `deploy/` ships: loopback, link-local, the unspecified
/// addresses, and the cloud metadata endpoints outside link-local (Alibaba
/// Cloud's 100.100.100.200, AWS's IPv6 fd00:ec2::254).
pub const STRICT_DENIED: &str =
    "127.0.0.0/8,::1/128,169.254.0.0/16,fe80::/10,0.0.0.0/8,::/128,100.100.100.200/32,fd00:ec2::254/128";

/// Ranges denied whatever `--deny-cidrs` says: the unspecified addresses,
/// which reach loopback under another name.
pub const ALWAYS_DENIED: [IpNet; 2] = [
    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::UNSPECIFIED, 8)),
    IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::UNSPECIFIED, 128)),
];

/// Target addresses the operator must not connect to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    denied: Vec<IpNet>,
}

/// A call refused by the egress policy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("egress policy: {address} is in the denied range {range} ({why}); no connection was made")]
pub struct Denied {
    /// The address the call would have connected to.
    pub address: IpAddr,
    /// The range that denies it.
    pub range: IpNet,
    /// Where the range comes from.
    pub why: &'static str,
}

impl EgressPolicy {
    /// A policy that denies `denied`.
    pub fn new(denied: Vec<IpNet>) -> Self {
        Self { denied }
    }

    /// Whether a connection to `address` is refused, and why.
    pub fn check(&self, address: IpAddr) -> Result<(), Denied> {
        let address = address.to_canonical();
        if let Some(range) = ALWAYS_DENIED.iter().find(|range| range.contains(&address)) {
            let why = "an unspecified address, which reaches loopback; always denied";
            return Err(Denied {
                address,
                range: *range,
                why,
            });
        }
        match self.denied.iter().find(|range| range.contains(&address)) {
            Some(range) => Err(Denied {
                address,
                range: *range,
                why: "--deny-cidrs",
            }),
            None => Ok(()),
        }
    }

    /// Checks the host of `url` when it is an IP address, however it was
    /// written (the URL parser has made it canonical); names are checked when
    /// they resolve ([`Resolver`]).
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), Denied> {
        // The parsed URL serializes an IP host in its one canonical form.
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
        for unspecified in ["0.0.0.0", "::", "::ffff:0.0.0.0"] {
            let address: IpAddr = unspecified.parse().expect("address");
            assert!(EgressPolicy::default().check(address).is_err(), "{unspecified}");
        }
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

    #[test]
    fn every_spelling_of_an_address_is_checked_as_that_address() {
        let loopback = policy("127.0.0.0/8,::1/128");
        let url = |u: &str| reqwest::Url::parse(u).expect("url");
        for spelled in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::1]/",
            "http://[0:0:0:0:0:0:0:1]/",
        ] {
            let denied = loopback.check_url(&url(spelled)).expect_err(spelled);
            assert!(denied.to_string().contains("--deny-cidrs"), "{spelled}: {denied}");
        }
        // The unspecified addresses reach loopback: denied even by an empty policy.
        for spelled in [
            "http://0.0.0.0/",
            "http://0/",
            "http://0.0.0.7/",
            "http://0x0/",
            "http://[::]/",
            "http://[::0]/",
            "http://[0:0:0:0:0:0:0:0]/",
            "http://[::ffff:0.0.0.0]/",
            "http://[::ffff:0:0]/",
        ] {
            let denied = EgressPolicy::default().check_url(&url(spelled)).expect_err(spelled);
            assert!(denied.to_string().contains("always denied"), "{spelled}: {denied}");
        }
        assert!(EgressPolicy::default().check_url(&url("http://1.0.0.0/")).is_ok());
    }

    #[test]
    fn deploy_ships_the_strict_list() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/base/operator.yaml");
        let manifest = std::fs::read_to_string(path).expect("deploy/base/operator.yaml");
        assert!(
            manifest.contains(&format!("- --deny-cidrs={STRICT_DENIED}")),
            "{path} must pass --deny-cidrs={STRICT_DENIED}"
        );
        let strict = policy(STRICT_DENIED);
        for denied in [
            "127.0.0.1",
            "::1",
            "169.254.169.254",
            "100.100.100.200",
            "fd00:ec2::254",
            "0.0.0.0",
        ] {
            assert!(strict.check(denied.parse().expect("ip")).is_err(), "{denied}");
        }
        // The cluster's own Services and Pods stay reachable.
        for allowed in ["10.96.0.10", "10.244.0.5", "192.168.1.1", "100.64.0.1"] {
            assert!(strict.check(allowed.parse().expect("ip")).is_ok(), "{allowed}");
        }
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
