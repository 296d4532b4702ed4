//! Where the server is and how to reach it: the base URLs of REST and `/ws`,
//! the credential, and the TLS settings both share.
//!
//! The server may be given as `http://`, `https://`, `ws://` or `wss://`
//! (with an optional path prefix, for a server behind a reverse proxy); the
//! REST base and the socket URL are derived from it. TLS is rustls with the
//! ring provider, trusting the system's roots plus any given CA file.

use std::sync::Arc;

use reqwest::Url;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::error::{Error, Result};

/// A server's address and the credential to present to it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `http(s)://host:port/prefix` without a trailing slash.
    http_base: String,
    /// `ws(s)://host:port/prefix` without a trailing slash.
    ws_base: String,
    /// The long-lived token, sent as `Authorization: Bearer`.
    pub(crate) token: Option<String>,
    /// Rustls settings for `https` and `wss`; `None` for plain URLs.
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
}

impl Endpoint {
    /// Parses `server` and builds the TLS settings when it is `https`/`wss`.
    /// `extra_roots_pem` are PEM certificates trusted besides the system's.
    pub fn new(server: &str, token: Option<String>, extra_roots_pem: &[Vec<u8>]) -> Result<Endpoint> {
        let bad = |reason: &str| Error::InvalidUrl {
            url: server.to_owned(),
            reason: reason.to_owned(),
        };
        let url = Url::parse(server).map_err(|e| bad(&e.to_string()))?;
        let secure = match url.scheme() {
            "http" | "ws" => false,
            "https" | "wss" => true,
            _ => return Err(bad("the scheme must be http, https, ws or wss")),
        };
        let host = url.host_str().ok_or_else(|| bad("no host"))?;
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let path = url.path().trim_end_matches('/');
        let authority = format!("{host}{port}{path}");
        let (http, ws) = if secure { ("https", "wss") } else { ("http", "ws") };
        let tls = if secure {
            Some(Arc::new(tls_config(extra_roots_pem)?))
        } else {
            None
        };
        Ok(Endpoint {
            http_base: format!("{http}://{authority}"),
            ws_base: format!("{ws}://{authority}"),
            token: token.filter(|t| !t.is_empty()),
            tls,
        })
    }

    /// The URL of a REST path (which starts with `/`).
    pub fn http_url(&self, path: &str) -> String {
        format!("{}{path}", self.http_base)
    }

    /// The URL of a socket path (which starts with `/`).
    pub fn ws_url(&self, path: &str) -> String {
        format!("{}{path}", self.ws_base)
    }

    /// The server as given to people: the REST base.
    pub fn base(&self) -> &str {
        &self.http_base
    }
}

/// Rustls settings trusting the system's roots and `extra_roots_pem`.
fn tls_config(extra_roots_pem: &[Vec<u8>]) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are skipped: a CA file may still do.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    for pem in extra_roots_pem {
        let mut any = false;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| Error::Tls(format!("a CA certificate is not valid PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| Error::Tls(format!("a CA certificate was refused: {e}")))?;
            any = true;
        }
        if !any {
            return Err(Error::Tls("the CA file holds no PEM certificate".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_gives_both_urls() {
        let e = Endpoint::new("ws://127.0.0.1:9/", None, &[]).unwrap();
        assert_eq!(e.http_url("/api/sessions"), "http://127.0.0.1:9/api/sessions");
        assert_eq!(e.ws_url("/ws"), "ws://127.0.0.1:9/ws");
        let e = Endpoint::new("https://example.com/ts", Some(String::new()), &[]).unwrap();
        assert_eq!(e.http_url("/x"), "https://example.com/ts/x");
        assert_eq!(e.ws_url("/ws"), "wss://example.com/ts/ws");
        assert!(e.tls.is_some() && e.token.is_none());
        let e = Endpoint::new("http://[::1]:8000", None, &[]).unwrap();
        assert_eq!(e.ws_url("/ws"), "ws://[::1]:8000/ws");
        assert!(matches!(
            Endpoint::new("ftp://x", None, &[]),
            Err(Error::InvalidUrl { .. })
        ));
        assert!(matches!(
            Endpoint::new("localhost:8000", None, &[]),
            Err(Error::InvalidUrl { .. })
        ));
    }
}
