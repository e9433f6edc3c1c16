//! TLS for the API (`-tls-pem`, `-tls-key`).

use std::path::PathBuf;

use axum_server::tls_rustls::RustlsConfig;

use crate::Error;

/// TLS certificate and key files for the API.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain (`-tls-pem`).
    pub cert: PathBuf,
    /// PEM private key (`-tls-key`).
    pub key: PathBuf,
}

/// Loads the API's TLS certificate and key.
///
/// # Errors
/// [`Error::Tls`] naming both files when either cannot be read or parsed.
pub(crate) async fn load_tls(files: &TlsFiles) -> Result<RustlsConfig, Error> {
    RustlsConfig::from_pem_file(&files.cert, &files.key)
        .await
        .map_err(|error| Error::Tls {
            cert: files.cert.clone(),
            key: files.key.clone(),
            error,
        })
}
