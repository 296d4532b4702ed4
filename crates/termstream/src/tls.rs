//! TLS: loading the certificate chain and private key given by `--tls-cert`
//! and `--tls-key` (PEM files), and what the accept loop needs to serve
//! them with rustls (the `ring` provider).
//!
//! Only HTTP/1.1 is offered (ALPN `http/1.1`): the server speaks nothing
//! else, browsers open WebSockets over HTTP/1.1, and the header read timeout
//! ([`crate::server::accept`]) is an HTTP/1 feature.
//!
//! A client that speaks plain HTTP to the TLS port is answered with a plain
//! `400` saying to use `https://` ([`refuse_plain_http`]), rather than left
//! with a reset it cannot explain.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

/// Why TLS cannot be set up; the server refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("--tls-cert and --tls-key must be given together")]
    HalfConfigured,
    #[error("cannot read the TLS certificate {path}: {source}")]
    Cert {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("the TLS certificate file {0} holds no certificate")]
    NoCert(PathBuf),
    #[error("cannot read the TLS private key {path}: {source}")]
    Key {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("the TLS certificate and key are not usable together: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The acceptor for the configured certificate and key, or `None` when
/// neither is configured.
pub fn acceptor(cert: Option<&Path>, key: Option<&Path>) -> Result<Option<TlsAcceptor>, TlsError> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => load(cert, key).map(Some),
        _ => Err(TlsError::HalfConfigured),
    }
}

fn load(cert_path: &Path, key_path: &Path) -> Result<TlsAcceptor, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|source| TlsError::Cert {
            path: cert_path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(cert_path.to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|source| TlsError::Key {
        path: key_path.to_owned(),
        source,
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The acceptor the accept loop uses, replaced whole by a reload (SIGHUP):
/// connections already open keep the certificate they were made with.
pub struct SharedAcceptor(std::sync::RwLock<TlsAcceptor>);

impl std::fmt::Debug for SharedAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedAcceptor")
    }
}

impl SharedAcceptor {
    pub fn new(acceptor: TlsAcceptor) -> SharedAcceptor {
        SharedAcceptor(std::sync::RwLock::new(acceptor))
    }

    /// The acceptor for a new connection.
    pub fn get(&self) -> TlsAcceptor {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Loads `cert` and `key` again and serves new connections with them;
    /// on an error the old ones stay.
    pub fn reload(&self, cert: &Path, key: &Path) -> Result<(), TlsError> {
        let fresh = load(cert, key)?;
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }
}

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// What a plain-HTTP client on the TLS port is told.
const PLAIN_HTTP_BODY: &str = "this port speaks HTTPS: use https:// or wss://\n";

fn plain_http_answer() -> String {
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n\
         content-length: {}\r\n\r\n{PLAIN_HTTP_BODY}",
        PLAIN_HTTP_BODY.len()
    )
}

/// Whether the client on `tcp` starts a TLS handshake; waits at most
/// `timeout` for its first byte. `None`: it sent nothing in time, or left.
pub async fn starts_tls(tcp: &TcpStream, timeout: Duration) -> Option<bool> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(timeout, tcp.peek(&mut first)).await {
        Ok(Ok(1)) => Some(first[0] == TLS_HANDSHAKE),
        _ => None,
    }
}

/// Answers a client that spoke plain HTTP to the TLS port with a `400`, then
/// closes. The request head is read first (up to 8 KiB, within `timeout`),
/// so that closing does not reset the connection under unread bytes and the
/// client gets to read the answer.
pub async fn refuse_plain_http(mut tcp: TcpStream, timeout: Duration) {
    let answer = async {
        let mut head = Vec::with_capacity(1024);
        let mut buf = [0u8; 1024];
        while head.len() < 8192 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = tcp.write_all(plain_http_answer().as_bytes()).await;
        let _ = tcp.shutdown().await;
    };
    let _ = tokio::time::timeout(timeout, answer).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_answer_has_the_right_length() {
        let text = plain_http_answer();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }

    #[test]
    fn half_or_bad_configuration_is_refused() {
        assert!(matches!(
            acceptor(Some(Path::new("/x")), None),
            Err(TlsError::HalfConfigured)
        ));
        assert!(acceptor(None, None).unwrap().is_none());
        let Err(err) = acceptor(
            Some(Path::new("/no/such/cert.pem")),
            Some(Path::new("/no/such/key.pem")),
        ) else {
            panic!("a missing file was accepted");
        };
        assert!(err.to_string().contains("/no/such/cert.pem"), "{err}");
    }
}
