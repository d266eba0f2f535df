//! TLS for both listeners, with rustls: a certificate chain and key in PEM, and optionally a
//! client CA, which turns on mutual TLS (a client without a certificate signed by it is refused
//! during the handshake). ALPN offers HTTP/2 and HTTP/1.1, so gRPC and OTLP/HTTP clients both
//! negotiate what they speak.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

use crate::EngineError;

/// The files TLS is built from.
pub struct TlsFiles<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    pub client_ca: Option<&'a Path>,
}

fn tls_error(path: &Path, what: &str, error: impl std::fmt::Display) -> EngineError {
    EngineError::Config(format!("TLS {what} {}: {error}", path.display()))
}

/// An acceptor for the receiver's listeners.
pub fn acceptor(files: &TlsFiles<'_>) -> Result<TlsAcceptor, EngineError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(files.cert)
        .map_err(|e| tls_error(files.cert, "certificate", e))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_error(files.cert, "certificate", e))?;
    if certs.is_empty() {
        return Err(tls_error(
            files.cert,
            "certificate",
            "no certificate in the file",
        ));
    }
    let key =
        PrivateKeyDer::from_pem_file(files.key).map_err(|e| tls_error(files.key, "key", e))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| EngineError::Config(format!("TLS: {e}")))?;
    let builder = match files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in
                CertificateDer::pem_file_iter(ca).map_err(|e| tls_error(ca, "client CA", e))?
            {
                let cert = cert.map_err(|e| tls_error(ca, "client CA", e))?;
                roots.add(cert).map_err(|e| tls_error(ca, "client CA", e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| tls_error(ca, "client CA", e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| tls_error(files.key, "key", e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
