//! A typed async client for the registry API (`/skydns/...`).
//!
//! One method per endpoint. Status codes become [`ClientError`] variants, so
//! callers can tell "already registered" (409) from "gone" (404) without
//! looking at numbers.

use std::{collections::BTreeMap, time::Duration};

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::types::{ApiError, Callback, Heartbeat, Service};

/// What a registry call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The uuid is registered already (HTTP 409).
    #[error("already registered: {0}")]
    Conflict(String),
    /// No such service, or no service matches (HTTP 404).
    #[error("not found: {0}")]
    NotFound(String),
    /// The secret is missing or wrong (HTTP 401).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The server rejected the request (other 4xx); `field` names the culprit.
    #[error("rejected ({status}): {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
        /// The offending field, when the server named one.
        field: Option<String>,
    },
    /// The server failed (5xx).
    #[error("server error ({status}): {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The server could not be reached or the answer was not readable.
    #[error("transport: {0}")]
    Transport(#[from] reqwest::Error),
    /// The base URL is not usable.
    #[error("invalid base url {0:?}")]
    InvalidUrl(String),
}

impl ClientError {
    /// True for errors that say nothing about the request itself (network,
    /// 5xx): worth retrying later.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transport(_) | Self::Server { .. })
    }
}

/// How long an idle pooled connection is kept (under skydns's 10 s idle timeout).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// A cheap-to-clone handle on one skydns server's registry API.
///
/// With [`Client::with_owner`], every write names that owner: registrations
/// carry it as `Owner`, heartbeats and removals name it, and skydns refuses
/// (409, [`ClientError::Conflict`]) to let them touch a service another
/// owner registered.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    secret: Option<crate::Secret>,
    owner: Option<String>,
}

impl Client {
    /// A client for `base` (for example `http://127.0.0.1:8080`), with a
    /// 5-second request timeout.
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`] when `base` is not an `http://` or `https://`
    /// URL; [`ClientError::Transport`] if the HTTP stack cannot be built.
    pub fn new(base: &str) -> Result<Self, ClientError> {
        Self::with_timeout(base, Duration::from_secs(5))
    }

    /// Like [`Client::new`] with a chosen per-request timeout.
    ///
    /// # Errors
    /// As [`Client::new`].
    pub fn with_timeout(base: &str, timeout: Duration) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::InvalidUrl(base));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // skydns closes keep-alive connections idle for 10 s: drop ours
            // sooner so a request never lands on one it is closing.
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build()?;
        Ok(Self {
            http,
            base,
            secret: None,
            owner: None,
        })
    }

    /// Names `owner` in every write (see [`Client`]): registrations without
    /// an `Owner` get this one, heartbeats and removals are refused by
    /// skydns when the service belongs to somebody else.
    #[must_use]
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        let owner = owner.into();
        self.owner = (!owner.is_empty()).then_some(owner);
        self
    }

    /// The owner this client names in its writes, if any.
    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    /// Sends `secret` as the `Authorization` header (skydns `-secret`).
    #[must_use]
    pub fn with_secret(mut self, secret: impl Into<crate::Secret>) -> Self {
        let secret = secret.into();
        self.secret = (!secret.is_empty()).then_some(secret);
        self
    }

    /// The base URL this client talks to.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `PUT /skydns/services/{uuid}`: registers a service.
    ///
    /// # Errors
    /// [`ClientError::Conflict`] if `uuid` exists, [`ClientError::Rejected`] for
    /// invalid fields, transport and server errors otherwise.
    pub async fn add_service(&self, uuid: &str, service: &Service) -> Result<(), ClientError> {
        let path = services_path(uuid);
        match (&self.owner, &service.owner) {
            (Some(owner), None) => {
                let owned = Service {
                    owner: Some(owner.clone()),
                    ..service.clone()
                };
                self.send(Method::PUT, &path, Some(&owned)).await
            }
            _ => self.send(Method::PUT, &path, Some(service)).await,
        }
        .map(drop)
    }

    /// `GET /skydns/services/{uuid}`.
    ///
    /// # Errors
    /// [`ClientError::NotFound`] if there is no such service.
    pub async fn get_service(&self, uuid: &str) -> Result<Service, ClientError> {
        self.json(Method::GET, &services_path(uuid), None::<&()>)
            .await
    }

    /// `PATCH /skydns/services/{uuid}` with `{"TTL": ttl}`: a heartbeat.
    ///
    /// # Errors
    /// [`ClientError::NotFound`] if the service expired or was never registered,
    /// [`ClientError::Conflict`] if it belongs to another owner than this
    /// client's.
    pub async fn heartbeat(&self, uuid: &str, ttl: u32) -> Result<(), ClientError> {
        let beat = Heartbeat {
            ttl,
            owner: self.owner.clone(),
        };
        self.send(Method::PATCH, &services_path(uuid), Some(&beat))
            .await
            .map(drop)
    }

    /// `DELETE /skydns/services/{uuid}` (`?owner=` this client's owner).
    ///
    /// # Errors
    /// [`ClientError::NotFound`] if there is no such service,
    /// [`ClientError::Conflict`] if it belongs to another owner than this
    /// client's.
    pub async fn delete_service(&self, uuid: &str) -> Result<(), ClientError> {
        let mut path = services_path(uuid);
        if let Some(owner) = &self.owner {
            path.push_str("?owner=");
            path.push_str(&encode_segment(owner));
        }
        self.send(Method::DELETE, &path, None::<&()>)
            .await
            .map(drop)
    }

    /// `GET /skydns/services/`: every service, or those matching a DNS-style
    /// `query` such as `redis.dev` or `east.*.web.production`.
    ///
    /// # Errors
    /// Transport and server errors. A query matching nothing gives `Ok(vec![])`.
    pub async fn list_services(&self, query: Option<&str>) -> Result<Vec<Service>, ClientError> {
        let path = match query {
            Some(q) => format!("/skydns/services/?query={}", encode_query(q)),
            None => "/skydns/services/".to_string(),
        };
        match self.json(Method::GET, &path, None::<&()>).await {
            Err(ClientError::NotFound(_)) => Ok(Vec::new()),
            other => other,
        }
    }

    /// `GET /skydns/services/?owner={owner}`: the services registered with
    /// this `Owner` only (what an agent reconciles against), sorted by uuid.
    ///
    /// # Errors
    /// Transport and server errors. No such service gives `Ok(vec![])`.
    pub async fn list_owned_by(&self, owner: &str) -> Result<Vec<Service>, ClientError> {
        let path = format!("/skydns/services/?owner={}", encode_segment(owner));
        self.json(Method::GET, &path, None::<&()>).await
    }

    /// `PUT /skydns/callbacks/{uuid}`: attaches a callback to matching services.
    ///
    /// # Errors
    /// [`ClientError::NotFound`] when no service matches.
    pub async fn add_callback(&self, uuid: &str, callback: &Callback) -> Result<(), ClientError> {
        let path = format!("/skydns/callbacks/{}", encode_segment(uuid));
        self.send(Method::PUT, &path, Some(callback))
            .await
            .map(drop)
    }

    /// `GET /skydns/regions/`: number of services per region.
    ///
    /// # Errors
    /// Transport and server errors.
    pub async fn regions(&self) -> Result<BTreeMap<String, u64>, ClientError> {
        self.json(Method::GET, "/skydns/regions/", None::<&()>)
            .await
    }

    /// `GET /skydns/environments/`: number of services per environment.
    ///
    /// # Errors
    /// Transport and server errors.
    pub async fn environments(&self) -> Result<BTreeMap<String, u64>, ClientError> {
        self.json(Method::GET, "/skydns/environments/", None::<&()>)
            .await
    }

    async fn json<T: DeserializeOwned, B: serde::Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let resp = self.send(method, path, body).await?;
        Ok(resp.json().await?)
    }

    async fn send<B: serde::Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(secret) = &self.secret {
            req = req.header(reqwest::header::AUTHORIZATION, secret.expose());
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        let parsed: ApiError = serde_json::from_str(&text).unwrap_or_else(|_| ApiError {
            error: text.trim().to_string(),
            field: None,
        });
        Err(match status {
            StatusCode::CONFLICT => ClientError::Conflict(parsed.error),
            StatusCode::NOT_FOUND => ClientError::NotFound(parsed.error),
            StatusCode::UNAUTHORIZED => ClientError::Unauthorized(parsed.error),
            s if s.is_client_error() => ClientError::Rejected {
                status: s.as_u16(),
                message: parsed.error,
                field: parsed.field,
            },
            s => ClientError::Server {
                status: s.as_u16(),
                message: parsed.error,
            },
        })
    }
}

fn services_path(uuid: &str) -> String {
    format!("/skydns/services/{}", encode_segment(uuid))
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn encode_query(s: &str) -> String {
    // `*` is a wildcard label in queries; keep it readable.
    encode_segment(s).replace("%2A", "*")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_percent_encoded() {
        assert_eq!(services_path("a b/c"), "/skydns/services/a%20b%2Fc");
        assert_eq!(encode_query("east.*.web"), "east.*.web");
    }

    #[test]
    fn base_url_must_be_http() {
        assert!(matches!(
            Client::new("localhost:8080"),
            Err(ClientError::InvalidUrl(_))
        ));
        let c = Client::new("http://127.0.0.1:8080/").expect("valid");
        assert_eq!(c.base_url(), "http://127.0.0.1:8080");
    }
}
