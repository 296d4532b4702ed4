//! Reverse proxies: which ones are believed, and what a request forwarded
//! by one says about its client.
//!
//! A proxy on the same host makes every client look like loopback. So, with
//! no token configured, a request that carries `Forwarded` or
//! `X-Forwarded-For` is refused (unless `insecure_no_auth`): loopback-only
//! must not become anyone-through-the-proxy.
//!
//! Only from a peer listed in `trusted_proxies` (addresses or CIDRs) are
//! `Forwarded` (RFC 7239) and `X-Forwarded-For` / `-Proto` / `-Host`
//! believed. The client is then the last address of the chain that is not
//! itself a trusted proxy (each proxy appends the address it saw, so only
//! the right end can be trusted); the scheme and host are what the client
//! used, for the origin check (a TLS-terminating proxy makes the page's
//! origin `https://…`). From any other peer the headers are ignored.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

/// A `trusted_proxies` entry that is neither an address nor a CIDR.
#[derive(Debug, thiserror::Error)]
#[error("trusted proxy {0:?} is not an IP address or a CIDR (e.g. 10.0.0.0/8)")]
pub struct BadProxy(pub String);

/// Who a request comes from, as far as it can be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The client's address: the peer's, or the one a trusted proxy
    /// forwarded.
    pub ip: IpAddr,
    /// The scheme the client used (`http`/`https`), when a trusted proxy
    /// said.
    pub proto: Option<String>,
    /// The `Host` the client asked for, when a trusted proxy said.
    pub host: Option<String>,
    /// Whether the peer is a trusted proxy.
    pub via_trusted: bool,
}

impl TrustedProxies {
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, BadProxy> {
        entries
            .iter()
            .map(|e| {
                let e = e.trim();
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| BadProxy(e.to_owned()))
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client behind `peer`, from `headers` when `peer` is trusted.
    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> Client {
        let peer_ip = canonical(peer.ip());
        if !self.trusts(peer_ip) {
            return Client {
                ip: peer_ip,
                proto: None,
                host: None,
                via_trusted: false,
            };
        }
        let fwd = forwarded(headers);
        let chain: Vec<IpAddr> = if fwd.iter().any(|e| e.for_.is_some()) {
            fwd.iter().filter_map(|e| e.for_).collect()
        } else {
            list(headers, "x-forwarded-for").filter_map(|s| parse_ip(&s)).collect()
        };
        // From the right: the first address that is not a trusted proxy.
        let ip = chain
            .iter()
            .rev()
            .find(|ip| !self.trusts(**ip))
            .or(chain.first())
            .copied()
            .unwrap_or(peer_ip);
        let last = fwd.last();
        let proto = last
            .and_then(|e| e.proto.clone())
            .or_else(|| list(headers, "x-forwarded-proto").last())
            .map(|p| p.to_ascii_lowercase());
        let host = last
            .and_then(|e| e.host.clone())
            .or_else(|| list(headers, "x-forwarded-host").last());
        Client {
            ip,
            proto,
            host,
            via_trusted: true,
        }
    }
}

/// Whether a request says it was forwarded by a proxy.
pub fn is_forwarded(headers: &HeaderMap) -> bool {
    headers.contains_key("forwarded") || headers.contains_key("x-forwarded-for")
}

/// IPv4-mapped IPv6 addresses as IPv4, so `10.0.0.0/8` matches them too.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The comma-separated values of every `name` header, in order.
fn list<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = String> + 'a {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// One element of a `Forwarded` header.
#[derive(Debug, Default)]
struct Element {
    for_: Option<IpAddr>,
    proto: Option<String>,
    host: Option<String>,
}

/// The elements of every `Forwarded` header, in order. Unknown parameters
/// and obfuscated identifiers are ignored.
fn forwarded(headers: &HeaderMap) -> Vec<Element> {
    list(headers, "forwarded")
        .map(|element| {
            let mut e = Element::default();
            for pair in element.split(';') {
                let Some((k, v)) = pair.split_once('=') else { continue };
                let v = v.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "for" => e.for_ = parse_ip(v),
                    "proto" => e.proto = Some(v.to_owned()),
                    "host" => e.host = Some(v.to_owned()),
                    _ => {}
                }
            }
            e
        })
        .collect()
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `[::1]`,
/// `[::1]:5678` or `::1`.
fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(canonical(sa.ip()));
    }
    s.strip_prefix('[')
        .and_then(|r| r.split_once(']'))
        .and_then(|(ip, _)| ip.parse().ok())
        .map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn headers_count_only_from_trusted_peers() {
        let h = headers(&[("x-forwarded-for", "203.0.113.7"), ("x-forwarded-proto", "https")]);
        let untrusted = proxies(&["10.0.0.0/8"]).client("127.0.0.1:4000".parse().unwrap(), &h);
        assert_eq!(untrusted.ip, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(untrusted.proto, None);
        let trusted = proxies(&["127.0.0.1"]).client("127.0.0.1:4000".parse().unwrap(), &h);
        assert_eq!(trusted.ip, "203.0.113.7".parse::<IpAddr>().unwrap());
        assert_eq!(trusted.proto.as_deref(), Some("https"));
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_address() {
        let p = proxies(&["127.0.0.1", "10.0.0.0/8"]);
        // A client that forges the left end cannot choose its address.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.9, 10.1.2.3")]);
        let c = p.client("127.0.0.1:1".parse().unwrap(), &h);
        assert_eq!(c.ip, "198.51.100.9".parse::<IpAddr>().unwrap());
        let h = headers(&[
            (
                "forwarded",
                r#"for=192.0.2.60;proto=http, for="[2001:db8::1]:4711";proto=https;host=ts.example"#,
            ),
            ("x-forwarded-for", "9.9.9.9"),
        ]);
        let c = p.client("[::ffff:127.0.0.1]:1".parse().unwrap(), &h);
        assert_eq!(c.ip, "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!(
            (c.proto.as_deref(), c.host.as_deref()),
            (Some("https"), Some("ts.example"))
        );
    }

    #[test]
    fn bad_entries_are_refused() {
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["proxy.example".into()]).is_err());
        assert!(proxies(&["::1"]).trusts("::1".parse().unwrap()));
        assert!(is_forwarded(&headers(&[("forwarded", "for=1.2.3.4")])));
        assert!(!is_forwarded(&headers(&[("x-forwarded-proto", "https")])));
    }
}
