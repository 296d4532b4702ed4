//! Browser-facing checks: the `Host` allowlist (against DNS rebinding), the
//! `Origin` check (against cross-site WebSocket hijacking and cross-site
//! POSTs), and the security headers of every response.
//!
//! Origins are compared as (scheme, host, port) triples, exactly: no suffix
//! or prefix matching, so `http://127.0.0.1:8000.evil.com` and
//! `http://app.example.com.evil.com` are foreign, and `null` never matches.

use std::net::SocketAddr;

use axum::http::{HeaderMap, HeaderValue, header};

/// An origin or a host, normalised: lowercase, with its port made explicit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// Splits `host[:port]` (IPv6 in brackets); `None` when malformed.
pub fn split_authority(authority: &str, default: u16) -> Option<(String, u16)> {
    let a = authority.to_ascii_lowercase();
    if a.is_empty() || a.contains(['/', '@', '?', '#', ' ']) {
        return None;
    }
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = format!("[{}]", &rest[..end]);
        match &rest[end + 1..] {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (a.clone(), None),
        }
    };
    if host.is_empty() || host.contains(':') && !host.starts_with('[') {
        return None;
    }
    let port = match port {
        None => default,
        Some(p) => p.parse().ok()?,
    };
    Some((host, port))
}

impl Origin {
    /// Parses `scheme://host[:port]` (a trailing `/` is tolerated, as some
    /// configurations write it). `null` and anything with a path is `None`.
    pub fn parse(s: &str) -> Option<Origin> {
        let (scheme, rest) = s.trim().split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default = default_port(&scheme)?;
        let (host, port) = split_authority(rest.strip_suffix('/').unwrap_or(rest), default)?;
        Some(Origin { scheme, host, port })
    }
}

/// What the browser checks compare against.
#[derive(Debug, Clone)]
pub struct BrowserPolicy {
    /// The address bound; when it is loopback, `Host` must name it.
    pub bound: SocketAddr,
    /// `https` when serving TLS, else `http`.
    pub scheme: &'static str,
    /// Extra origins allowed (`--allowed-origin`).
    pub allowed_origins: Vec<Origin>,
    /// Extra host names allowed in `Host` (any port unless one is given).
    pub allowed_hosts: Vec<String>,
}

impl BrowserPolicy {
    /// Whether the `Host` of a request is acceptable. Only enforced when the
    /// server is bound to a loopback address: there, a name that resolves to
    /// 127.0.0.1 but is not ours is DNS rebinding.
    pub fn host_allowed(&self, host: Option<&str>) -> bool {
        if !self.bound.ip().is_loopback() {
            return true;
        }
        let default = default_port(self.scheme).unwrap_or(80);
        let Some((name, port)) = host.and_then(|h| split_authority(h, default)) else {
            return false;
        };
        let ours = ["localhost", "127.0.0.1", "[::1]"].contains(&name.as_str()) && port == self.bound.port();
        ours || self.allowed_hosts.iter().any(|h| {
            let h = h.to_ascii_lowercase();
            match split_authority(&h, 0) {
                Some((n, 0)) => n == name,
                Some((n, p)) => n == name && p == port,
                None => false,
            }
        })
    }

    /// Whether a request carrying `Origin: origin` to `Host: host` may change
    /// state or open a WebSocket: the origin is the server's own (same
    /// scheme, host and port as the request's `Host`) or an allowed one.
    pub fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        self.origin_allowed_as(origin, self.scheme, host)
    }

    /// [`BrowserPolicy::origin_allowed`] for a client that used `scheme`
    /// (behind a TLS-terminating proxy, not the server's own).
    pub fn origin_allowed_as(&self, origin: &str, scheme: &str, host: Option<&str>) -> bool {
        let Some(o) = Origin::parse(origin) else {
            return false;
        };
        let default = default_port(scheme).unwrap_or(80);
        let own = host
            .and_then(|h| split_authority(h, default))
            .is_some_and(|(h, p)| o.scheme == scheme && o.host == h && o.port == p);
        own || self.allowed_origins.contains(&o)
    }
}

/// The content security policy of every response: the page may load only
/// its own scripts, styles and sockets, and may not be framed. Inline styles
/// are allowed (xterm.js and asciinema-player set them), inline scripts are
/// not; `wasm-unsafe-eval` lets asciinema-player compile its own bundled
/// WebAssembly terminal.
pub const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Adds the security headers to a response.
pub fn security_headers(h: &mut HeaderMap) {
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(bound: &str) -> BrowserPolicy {
        BrowserPolicy {
            bound: bound.parse().unwrap(),
            scheme: "http",
            allowed_origins: vec![Origin::parse("https://app.example.com").unwrap()],
            allowed_hosts: vec!["termstream.internal".into()],
        }
    }

    #[test]
    fn hosts_on_loopback() {
        let p = policy("127.0.0.1:8000");
        for ok in [
            "127.0.0.1:8000",
            "localhost:8000",
            "LOCALHOST:8000",
            "[::1]:8000",
            "termstream.internal:1234",
        ] {
            assert!(p.host_allowed(Some(ok)), "{ok}");
        }
        for bad in [
            "attacker.tld",
            "attacker.tld:8000",
            "127.0.0.1:8001",
            "127.0.0.1",
            "localhost.evil.com:8000",
            "",
            "a b",
        ] {
            assert!(!p.host_allowed(Some(bad)), "{bad}");
        }
        assert!(!p.host_allowed(None));
        assert!(
            policy("0.0.0.0:8000").host_allowed(Some("attacker.tld")),
            "only enforced on loopback"
        );
    }

    #[test]
    fn origins() {
        let p = policy("127.0.0.1:8000");
        let host = Some("127.0.0.1:8000");
        assert!(p.origin_allowed("http://127.0.0.1:8000", host));
        assert!(p.origin_allowed("https://app.example.com", host));
        assert!(p.origin_allowed("https://app.example.com:443", host));
        for bad in [
            "null",
            "http://127.0.0.1:8001",
            "https://127.0.0.1:8000",
            "http://127.0.0.1:8000.evil.com",
            "https://app.example.com.evil.com",
            "https://evil.com",
            "http://127.0.0.1:8000/path",
            "http://user@127.0.0.1:8000",
            "",
        ] {
            assert!(!p.origin_allowed(bad, host), "{bad}");
        }
        assert!(
            !p.origin_allowed("http://127.0.0.1:8000", None),
            "no Host, no own origin"
        );
    }
}
