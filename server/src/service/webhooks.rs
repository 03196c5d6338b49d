//! Where a webhook may post: a public address, or one an admin allowed (issue 33, N6: budget webhooks
//! reached loopback, the database's port and internal services, and their errors, shown to staff,
//! made a port scanner of them).
//!
//! A destination's host is resolved when it is set and again at each delivery, and every address it
//! resolves to must be public: not loopback, unspecified, private (RFC 1918, unique local), link-local,
//! shared (CGNAT), multicast, broadcast, documentation or benchmarking, nor the server's own listening
//! address. The delivery connects to the addresses it checked (no second lookup to rebind). Sites that
//! post to an internal receiver name it in `WATTLAS_WEBHOOK_ALLOW` (host names, addresses or CIDR
//! blocks). What staff see of a failure is its kind, never the URL or what the receiver said.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::{Error, Result};
pub(crate) use crate::config::Allowed;

/// Why an address is not public, if it is not.
pub(crate) fn not_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => not_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return not_public_v4(v4);
            }
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if first & 0xfe00 == 0xfc00 {
                Some("private (unique local)")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if first == 0x2001 && v6.segments()[1] == 0x0db8 {
                Some("documentation")
            } else if v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                // NAT64: judged by the IPv4 address it carries.
                let [.., a, b] = v6.segments();
                not_public_v4(Ipv4Addr::from((u32::from(a) << 16) | u32::from(b)))
            } else {
                None
            }
        }
    }
}

fn not_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if a == 198 && (18..20).contains(&b) {
        Some("benchmarking")
    } else if ip.is_documentation() {
        Some("documentation")
    } else if ip.is_broadcast() || ip.is_multicast() || a >= 240 {
        Some("multicast or reserved")
    } else {
        None
    }
}

/// A destination checked: its host and the addresses to connect to.
#[derive(Debug, Clone)]
pub(crate) struct Destination {
    /// The URL to post to.
    pub url: reqwest::Url,
    /// The host name to pin (none for an address written in the URL).
    pub host: Option<String>,
    /// The addresses checked.
    pub addrs: Vec<SocketAddr>,
}

/// Checks a webhook URL: http(s) with a host, every address of which is public or allowed, and none
/// the server's own `bind` address. Errors name `field`.
pub(crate) async fn check(
    field: &str,
    url: &str,
    allow: &[Allowed],
    bind: SocketAddr,
) -> Result<Destination> {
    let url =
        reqwest::Url::parse(url).map_err(|e| Error::invalid(field, format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::invalid(
            field,
            "must be an http:// or https:// URL with a host",
        ));
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let (host, addrs): (Option<String>, Vec<SocketAddr>) = match url.host() {
        None => {
            return Err(Error::invalid(
                field,
                "must be an http:// or https:// URL with a host",
            ))
        }
        Some(url::Host::Ipv4(ip)) => (None, vec![SocketAddr::new(IpAddr::V4(ip), port)]),
        Some(url::Host::Ipv6(ip)) => (None, vec![SocketAddr::new(IpAddr::V6(ip), port)]),
        Some(url::Host::Domain(name)) => {
            let name = name.to_ascii_lowercase();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), port))
                .await
                .map_err(|_| Error::invalid(field, format!("the host '{name}' does not resolve")))?
                .collect();
            if found.is_empty() {
                return Err(Error::invalid(
                    field,
                    format!("the host '{name}' does not resolve"),
                ));
            }
            (Some(name), found)
        }
    };
    let host_allowed = host
        .as_ref()
        .is_some_and(|h| allow.iter().any(|a| *a == Allowed::Host(h.clone())));
    let shown = host.clone().unwrap_or_else(|| addrs[0].ip().to_string());
    for addr in &addrs {
        let own = addr.port() == bind.port()
            && (addr.ip() == bind.ip() || bind.ip().is_unspecified() && addr.ip().is_loopback());
        if own {
            return Err(Error::invalid(
                field,
                format!("'{shown}' is this server's own address"),
            ));
        }
        if host_allowed || allow.iter().any(|a| a.contains(addr.ip())) {
            continue;
        }
        if let Some(why) = not_public(addr.ip()) {
            return Err(Error::invalid(
                field,
                format!(
                    "'{shown}' is a {why} address ({}); webhooks post to public addresses, or to \
                     those an admin allows in WATTLAS_WEBHOOK_ALLOW",
                    addr.ip()
                ),
            ));
        }
    }
    Ok(Destination { url, host, addrs })
}

/// What staff see of a failed delivery: its kind, never the URL (a chat webhook's path is its secret)
/// nor what the receiver said.
pub(crate) fn failure(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer: timed out".into()
    } else if e.is_connect() {
        "no answer: could not connect".into()
    } else if e.is_redirect() {
        "the receiver redirected (not followed)".into()
    } else {
        "no answer: the exchange failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::ffff:127.0.0.1",
            "fd00::1",
            "fe80::1",
            "64:ff9b::a00:1",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(not_public(ip.parse().expect("ip")).is_some(), "{ip}");
        }
        for ip in [
            "93.184.215.14",
            "2606:4700::6810:84e5",
            "64:ff9b::5db8:d70e",
        ] {
            assert_eq!(not_public(ip.parse().expect("ip")), None, "{ip}");
        }
    }

    #[test]
    fn the_allow_list_takes_hosts_addresses_and_blocks() {
        let a: Allowed = "10.20.0.0/16".parse().expect("block");
        assert!(a.contains("10.20.3.4".parse().expect("ip")));
        assert!(!a.contains("10.21.0.1".parse().expect("ip")));
        let one: Allowed = "127.0.0.1".parse().expect("address");
        assert!(one.contains("127.0.0.1".parse().expect("ip")));
        assert!(!one.contains("127.0.0.2".parse().expect("ip")));
        assert_eq!(
            "Hooks.Internal".parse::<Allowed>(),
            Ok(Allowed::Host("hooks.internal".into()))
        );
        assert!("10.0.0.0/40".parse::<Allowed>().is_err());
    }

    #[tokio::test]
    async fn a_url_is_judged_by_every_address_it_reaches() {
        let bind: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        for url in [
            "http://127.0.0.1:5432/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://localhost:9000/x",
            "http://[::1]/",
            "http://0.0.0.0/",
        ] {
            let e = check("webhook_url", url, &[], bind)
                .await
                .expect_err(url)
                .to_string();
            assert!(e.starts_with("webhook_url: "), "{url}: {e}");
        }
        let allow = vec!["127.0.0.1".parse().expect("allowed")];
        let ok = check("webhook_url", "http://127.0.0.1:9000/hook", &allow, bind)
            .await
            .expect("allowed");
        assert_eq!(ok.addrs, ["127.0.0.1:9000".parse().expect("addr")]);
        let own = check("webhook_url", "http://127.0.0.1:8080/", &allow, bind)
            .await
            .expect_err("the server itself");
        assert!(own.to_string().contains("own address"), "{own}");
    }
}
