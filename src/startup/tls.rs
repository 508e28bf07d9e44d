//! The TLS configuration: the rustls server configuration of the certificate chain and
//! private key files, and why it could not be loaded.

use std::path::Path;
use std::sync::Arc;

/// Why the TLS configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("HERALD_TLS_CERT and HERALD_TLS_KEY must be set together ({0} is not set)")]
    Incomplete(&'static str),
    #[error("TLS certificate file {path}: {reason}")]
    Certificate { path: String, reason: String },
    #[error("TLS key file {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("TLS certificate and key cannot be used together: {0}")]
    Config(String),
}

/// The rustls server configuration of `cert` (PEM chain, leaf first) and `key` (PEM PKCS#8,
/// PKCS#1 or SEC1), or `None` when neither is set.
pub(super) fn tls_config(
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<rustls::ServerConfig>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(_), None) => return Err(TlsError::Incomplete("HERALD_TLS_KEY")),
        (None, Some(_)) => return Err(TlsError::Incomplete("HERALD_TLS_CERT")),
        (Some(c), Some(k)) => (c, k),
    };
    let cert_error = |reason: String| TlsError::Certificate {
        path: cert.display().to_string(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_error("no PEM certificate in it".into()));
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        reason: match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no PEM private key in it (PKCS#8, PKCS#1 or SEC1)".into()
            }
            other => other.to_string(),
        },
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Some(config))
}
