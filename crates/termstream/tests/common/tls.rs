//! A certificate made at test time, and clients that trust it.
//!
//! [`TestCert`] is a self-signed certificate for `127.0.0.1` and
//! `localhost` (rcgen), written as PEM files for `--tls-cert`/`--tls-key`.
//! Clients trust exactly it: reqwest with it as the only root, and a rustls
//! client config for tokio-tungstenite's `wss://`.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A certificate and its key, as PEM files in a temporary directory.
pub struct TestCert {
    _dir: tempfile::TempDir,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub cert_pem: String,
}

impl TestCert {
    pub fn generate() -> TestCert {
        let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        let ck = rcgen::generate_simple_self_signed(names).expect("certificate");
        let dir = tempfile::Builder::new()
            .prefix("termstream-cert-")
            .tempdir()
            .expect("tempdir");
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        let cert_pem = ck.cert.pem();
        std::fs::write(&cert_path, &cert_pem).expect("write cert");
        std::fs::write(&key_path, ck.signing_key.serialize_pem()).expect("write key");
        TestCert {
            _dir: dir,
            cert_path,
            key_path,
            cert_pem,
        }
    }

    /// The `serve` flags that use this certificate.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert_path.display().to_string(),
            "--tls-key".into(),
            self.key_path.display().to_string(),
        ]
    }

    /// An HTTPS client trusting only this certificate.
    pub fn reqwest_client(&self) -> reqwest::Client {
        let root = reqwest::Certificate::from_pem(self.cert_pem.as_bytes()).expect("pem");
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(root)
            .pool_max_idle_per_host(8)
            .build()
            .expect("client")
    }

    /// A rustls client config trusting only this certificate, for `wss://`.
    pub fn rustls_client(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        let der = CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).expect("pem");
        roots.add(der).expect("root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}
