//! Failures: one line of text and an exit code that tells "not found",
//! "conflict" and "rejected" apart.

use std::time::Duration;

use skydns_api::ClientError;

/// Exit codes of `skydnsctl`.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// General failure: skydns unreachable or too slow, a server error (5xx),
    /// an unreadable answer, a local I/O error.
    pub const GENERAL: u8 = 1;
    /// Usage: bad flags or arguments (clap), an unreadable `--json` body, an
    /// invalid `--url`.
    pub const USAGE: u8 = 2;
    /// Not found (404): no such service, or no service matches a callback.
    pub const NOT_FOUND: u8 = 3;
    /// Conflict (409): the uuid is registered already.
    pub const CONFLICT: u8 = 4;
    /// Rejected (any other 4xx): an invalid field, a wrong or missing secret.
    pub const REJECTED: u8 = 5;
}

/// Why a command failed: one line of text and the process exit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// One of the [`exit`] codes.
    pub code: u8,
    /// What went wrong, on one line (without the `skydnsctl: ` prefix).
    pub message: String,
}

impl Failure {
    /// A failure with `code`; newlines in `message` become spaces.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        let message: String = message.into();
        let message = message
            .split(['\n', '\r'])
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        Self { code, message }
    }

    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(exit::USAGE, message)
    }

    /// A client error, explained for someone who talked to `base` with
    /// `timeout`.
    pub fn from_client(err: &ClientError, base: &str, timeout: Duration) -> Self {
        match err {
            ClientError::NotFound(m) => Self::new(exit::NOT_FOUND, format!("not found: {m}")),
            ClientError::Conflict(m) => Self::new(exit::CONFLICT, format!("conflict: {m}")),
            ClientError::Unauthorized(m) => Self::new(
                exit::REJECTED,
                format!("unauthorized: {m}; set --secret or SKYDNS_SECRET"),
            ),
            ClientError::Rejected {
                status,
                message,
                field,
            } => {
                let mut text = format!("rejected ({status}): {message}");
                if let Some(f) = field.as_deref().filter(|f| !message.contains(*f)) {
                    text.push_str(&format!(" (field {f})"));
                }
                Self::new(exit::REJECTED, text)
            }
            ClientError::Server { status, message } => Self::new(
                exit::GENERAL,
                format!("server error ({status}) from {base}: {message}"),
            ),
            ClientError::Transport(_) => {
                Self::new(exit::GENERAL, transport_message(err, base, timeout))
            }
            ClientError::InvalidUrl(u) => Self::usage(format!(
                "--url {u:?} is not usable: give an http:// or https:// URL"
            )),
            other => Self::new(exit::GENERAL, other.to_string()),
        }
    }
}

/// What to say about a request that got no usable answer.
pub(crate) fn transport_message(err: &ClientError, base: &str, timeout: Duration) -> String {
    let ClientError::Transport(e) = err else {
        return err.to_string();
    };
    let root = root_cause(e);
    if e.is_timeout() {
        format!(
            "no answer from skydns at {base} within {}s (--timeout)",
            timeout.as_secs_f64()
        )
    } else if e.is_connect() {
        format!("cannot connect to skydns at {base}: {root}")
    } else if e.is_decode() || e.is_body() {
        format!("unreadable answer from {base} (is it skydns?): {root}")
    } else {
        format!("request to {base} failed: {root}")
    }
}

/// The innermost error of a chain: "Connection refused (os error 111)"
/// rather than "error sending request for url (...)".
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
