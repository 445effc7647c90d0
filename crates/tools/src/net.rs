//! Outbound HTTP for tools, with the SSRF rule: a tool may reach public addresses, and
//! private, loopback, link-local and other special-purpose addresses only when its entry's
//! `allow_private` names the host, the address or its network.
//!
//! The rule is applied where it cannot be dodged: host names are checked on the addresses
//! the resolver returns (so a public name pointing at 127.0.0.1 is refused, and a name
//! re-resolving to another address is checked again), IP literals before each request and
//! each redirect. Proxies from the environment are ignored.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Redirects followed per call; each target is checked like the first.
const MAX_REDIRECTS: usize = 3;

/// Which non-public destinations one tool may reach.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Lower-case host names.
    hosts: Vec<String>,
    networks: Vec<IpNet>,
}

/// A destination the policy refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{host}` is a private, loopback or link-local address ({address}); \
     add it to the tool's allow_private to reach it"
)]
pub struct Refused {
    pub host: String,
    pub address: IpAddr,
}

impl Policy {
    /// From `allow_private` entries: host names, addresses, or `ADDRESS/PREFIX` networks.
    ///
    /// # Errors
    /// The first entry that is none of those.
    pub fn new(allow_private: &[String]) -> Result<Self, String> {
        let mut policy = Self::default();
        for entry in allow_private {
            if let Ok(network) = entry.parse::<IpNet>() {
                policy.networks.push(network);
            } else if let Ok(address) = entry.parse::<IpAddr>() {
                policy.networks.push(IpNet::from(address));
            } else if url::Host::parse(entry).is_ok() && !entry.contains('/') {
                policy.hosts.push(entry.to_ascii_lowercase());
            } else {
                return Err(format!("`{entry}` is not a host, an address or a network"));
            }
        }
        Ok(policy)
    }

    /// Whether `host` (as written in the URL) may be reached at `address`.
    ///
    /// # Errors
    /// When the address is not public and neither the host nor the address is allowed.
    pub fn check(&self, host: &str, address: IpAddr) -> Result<(), Refused> {
        let address = canonical(address);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if is_public(address)
            || self
                .hosts
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(host))
            || self
                .networks
                .iter()
                .any(|network| network.contains(&address))
        {
            Ok(())
        } else {
            Err(Refused {
                host: host.to_owned(),
                address,
            })
        }
    }

    /// Checks a URL whose host is an IP literal (names are checked when resolved).
    ///
    /// # Errors
    /// When the literal is refused.
    pub fn check_url(&self, url: &url::Url) -> Result<(), Refused> {
        match url.host() {
            Some(url::Host::Ipv4(address)) => self.check(&address.to_string(), address.into()),
            Some(url::Host::Ipv6(address)) => self.check(&address.to_string(), address.into()),
            Some(url::Host::Domain(_)) | None => Ok(()),
        }
    }
}

/// IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// Globally routable unicast: not loopback, private, link-local, shared (CGNAT),
/// unspecified, broadcast, multicast, documentation or otherwise reserved.
#[must_use]
pub fn is_public(address: IpAddr) -> bool {
    match canonical(address) {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(address: Ipv4Addr) -> bool {
    let [a, b, c, _] = address.octets();
    !(address.is_unspecified()
        || address.is_loopback()
        || address.is_private()
        || address.is_link_local()
        || address.is_broadcast()
        || address.is_multicast()
        || address.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(address: Ipv6Addr) -> bool {
    let first = address.segments()[0];
    !(address.is_unspecified()
        || address.is_loopback()
        || address.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
        || first == 0x2001 && address.segments()[1] == 0x0db8 // documentation
        || first == 0x0064 && address.segments()[1] == 0xff9b) // NAT64 of anything
}

/// Resolves with the system resolver and drops the addresses the policy refuses.
struct GuardedResolver {
    policy: Arc<Policy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|address| match policy.check(&host, address.ip()) {
                    Ok(()) => true,
                    Err(error) => {
                        refused.get_or_insert(error);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some(error)) => Err(Box::new(error) as Box<_>),
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

/// An HTTP client that follows the policy. `timeout` bounds each whole request.
///
/// # Errors
/// When TLS cannot be set up (no usable root certificates).
pub fn client(policy: &Arc<Policy>, timeout: Duration) -> Result<reqwest::Client, String> {
    let tls = tls_config()?;
    let redirects = policy.clone();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver {
            policy: policy.clone(),
        }))
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
            } else if let Err(refused) = redirects.check_url(attempt.url()) {
                attempt.error(refused)
            } else {
                attempt.follow()
            }
        }))
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .timeout(timeout)
        .user_agent(concat!("landfall/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| format!("HTTP client setup failed: {error}"))
}

/// rustls with ring and the platform's verifier, as everywhere else in Landfall.
fn tls_config() -> Result<rustls::ClientConfig, String> {
    use rustls_platform_verifier::BuilderVerifierExt as _;
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS setup failed: {error}"))?
        .with_platform_verifier()
        .map_err(|error| format!("TLS setup failed: {error}"))
        .map(|builder| builder.with_no_client_auth())
}

/// A readable account of a request error: the SSRF refusal, a timeout, or the cause chain.
#[must_use]
pub fn describe(error: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(refused) = current.downcast_ref::<Refused>() {
            return format!("refused: {refused}");
        }
        source = current.source();
    }
    if error.is_timeout() {
        return "the request timed out".to_owned();
    }
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn special_addresses_are_not_public() {
        for address in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!is_public(ip(address)), "{address}");
        }
        for address in ["1.1.1.1", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(ip(address)), "{address}");
        }
    }

    #[test]
    fn allow_private_names_hosts_addresses_and_networks() {
        let policy = Policy::new(&[
            "erp.internal".to_owned(),
            "127.0.0.1".to_owned(),
            "10.0.0.0/8".to_owned(),
        ])
        .unwrap_or_default();
        assert!(policy.check("ERP.internal", ip("192.168.0.9")).is_ok());
        assert!(policy.check("localhost", ip("127.0.0.1")).is_ok());
        assert!(policy.check("db", ip("10.9.9.9")).is_ok());
        assert!(policy.check("localhost", ip("127.0.0.2")).is_err());
        assert!(policy.check("metadata", ip("169.254.169.254")).is_err());
        assert!(policy.check("example.com", ip("93.184.216.34")).is_ok());
        assert!(Policy::new(&["not a host/".to_owned()]).is_err());
    }
}
