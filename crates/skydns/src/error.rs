//! The crate's error type.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use crate::{config::ConfigError, registry::RegistryError, store::StoreError};

/// Why skydns could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A listener could not be bound; `hint` says what to do.
    #[error("cannot listen for {what} on {addr}: {error}; {hint}")]
    Bind {
        /// `DNS (udp)`, `DNS (tcp)` or `HTTP`.
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error (part of the message, so it is not repeated as a cause).
        error: std::io::Error,
        /// What to do about it.
        hint: String,
    },
    /// The configuration is unusable: a flag's value.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The registry could not be restored.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The API's TLS certificate or key could not be loaded.
    #[error("cannot load -tls-pem {} / -tls-key {}: {error}", cert.display(), key.display())]
    Tls {
        /// The certificate chain file.
        cert: PathBuf,
        /// The private key file.
        key: PathBuf,
        /// Why (part of the message, so it is not repeated as a cause).
        error: std::io::Error,
    },
    /// The DNSSEC key (`-dnssec`) could not be loaded.
    #[error(transparent)]
    DnssecKey(#[from] crate::dns::dnssec::KeyError),
    /// A server task panicked or was aborted.
    #[error("a server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Shutting down took longer than allowed.
    #[error("tasks did not stop within {0:?}")]
    ShutdownTimeout(Duration),
    /// Serving failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    /// A bind error with advice for the usual causes.
    pub(crate) fn bind(
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
        flag: &str,
    ) -> Self {
        let hint = match source.kind() {
            std::io::ErrorKind::PermissionDenied => format!(
                "port {} needs root or CAP_NET_BIND_SERVICE: run with privileges or pick a high port, e.g. -{flag} {}:{}",
                addr.port(),
                addr.ip(),
                if flag == "dns" { 5353 } else { 8080 }
            ),
            std::io::ErrorKind::AddrInUse => format!(
                "another program already listens there (for port 53 often systemd-resolved or dnsmasq): stop it or choose another address with -{flag}"
            ),
            std::io::ErrorKind::AddrNotAvailable => {
                format!(
                    "{} is not an address of this host: choose one with -{flag}",
                    addr.ip()
                )
            }
            _ => format!("check the -{flag} address"),
        };
        Self::Bind {
            what,
            addr,
            error: source,
            hint,
        }
    }
}
