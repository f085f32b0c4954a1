//! ARI over TLS: with `ari.tls_cert` and `ari.tls_key` (PEM files) set, the
//! control socket speaks TLS only (HTTPS and WSS), through rustls with the
//! ring provider, TLS 1.2 and 1.3, ALPN `http/1.1`. The files are read once
//! at start; a file that cannot be read or parsed, or a key that does not
//! fit the certificate, stops the node before it listens (exit 2).
//!
//! The handshake runs in the connection's own task (`host::conn`), within
//! `ari.header_timeout_ms`; a failed or late handshake (a plain HTTP request
//! to the TLS port among them) closes the connection and is counted in
//! `crossbar_tls_handshake_failures_total`.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;
pub use tokio_rustls::TlsAcceptor;

use crate::config::AriConfig;

/// The acceptor of `[ari]`'s TLS settings; `None` when TLS is off. The
/// error names the key at fault and the reason.
pub fn acceptor(ari: &AriConfig) -> Result<Option<TlsAcceptor>, String> {
    if ari.tls_cert.is_empty() && ari.tls_key.is_empty() {
        return Ok(None);
    }
    let cert_path = &ari.tls_cert;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| format!("ari.tls_cert: cannot read {cert_path}: {}", pem_error(&e)))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("ari.tls_cert: {cert_path}: {}", pem_error(&e)))?;
    if certs.is_empty() {
        return Err(format!(
            "ari.tls_cert: {cert_path}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it"
        ));
    }
    let key_path = &ari.tls_key;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
        format!(
            "ari.tls_key: cannot read a PEM private key from {key_path}: {}",
            pem_error(&e)
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("ari.tls_cert: TLS setup failed: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "ari.tls_key: {key_path} is not usable with the certificate of {cert_path}: {e}"
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// A PEM error as text: the I/O error itself for a file that cannot be read.
fn pem_error(e: &rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(io) => io.to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => "no PEM item of that kind in it".into(),
        other => format!("{other:?}"),
    }
}
