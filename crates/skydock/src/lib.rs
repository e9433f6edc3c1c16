//! skydock: registers every Docker container in skydns, over skydns's HTTP
//! API only, with heartbeats, and reconciles so that names never drift.
//!
//! # Layout
//! - [`config`]: flags/env ([`Cli`]) → [`Config`].
//! - [`docker`]: the Docker event loop's source — connecting, inspecting,
//!   listing, typed container events (bollard).
//! - [`naming`]: pure mapping of a container to its registrations.
//! - [`plugins`]: the original's JavaScript `createService(container)` plugins.
//! - [`agent`]: the loop that applies events, heartbeats and reconciles.
//! - [`control`]: `/health`, `/metrics` and `POST /drain/{container}` (`-http`).
//! - [`rollout`]: `skydock rollout`, replacing a service's containers with no dropped request.
#![warn(missing_docs)]
// Input reaches these crates from the network and the Docker API: no panics
// on those paths (tests may unwrap freely).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod agent;
pub mod config;
pub mod control;
pub mod docker;
pub mod naming;
pub mod plugins;
pub mod rollout;

pub use agent::Agent;
pub use config::{Cli, Command, Config, SkydnsLocation};

use tokio_util::sync::CancellationToken;

/// What skydock can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A flag's value is unusable; `flag` names it (without its dash).
    #[error("{message}")]
    Config {
        /// The flag at fault (`ttl`, `plugins`, ...).
        flag: &'static str,
        /// What is wrong with it, naming it.
        message: String,
    },
    /// A Docker API call failed or the engine is unreachable.
    #[error("docker: cannot {what}: {error}")]
    Docker {
        /// What was being done (`inspect cool-api-1`).
        what: String,
        /// bollard's error (part of the message, so it is not repeated as a cause).
        error: bollard::errors::Error,
    },
    /// A container skydock looks for does not exist or has no address.
    #[error("docker: {0}")]
    Container(String),
    /// An inspected container could not be turned into JSON for a plugin.
    #[error("cannot encode container {id} for the plugin: {error}")]
    Encode {
        /// The container.
        id: String,
        /// Why.
        error: serde_json::Error,
    },
    /// A rollout failed; the message says what was left running.
    #[error("rollout: {0}")]
    Rollout(String),
    /// The skydns client could not be built.
    #[error(transparent)]
    Client(#[from] skydns_api::ClientError),
}

/// Runs skydock until `token` is cancelled: connects to Docker (retrying),
/// finds skydns, then runs the [`Agent`].
///
/// # Errors
/// [`Error::Config`] for an unusable configuration (a plugin file, say).
pub async fn run(config: Config, token: CancellationToken) -> Result<(), Error> {
    let plugin = match &config.plugins {
        Some(path) => Some(std::sync::Arc::new(plugins::Plugin::load(
            path,
            &config.defaults,
            config.plugin_timeout,
        )?)),
        None => None,
    };
    let socket = config.socket.clone();
    let Some(docker) = agent::retry_until("Docker engine unreachable", &token, || {
        docker::connect(socket.as_deref())
    })
    .await
    else {
        return Ok(());
    };
    let url = match &config.skydns {
        SkydnsLocation::Url(url) => url.clone(),
        SkydnsLocation::Container(name) => {
            let Some(url) = agent::retry_until("cannot find the skydns container", &token, || {
                let docker = docker.clone();
                let name = name.clone();
                async move { skydns_url_of(&docker, &name).await }
            })
            .await
            else {
                return Ok(());
            };
            url
        }
    };
    let mut client = skydns_api::Client::new(&url)?;
    if let Some(secret) = &config.secret {
        client = client.with_secret(secret.clone());
    }
    tracing::info!(skydns = %url, owner = %config.defaults.owner, environment = %config.defaults.environment, "skydock starting");
    let metrics = std::sync::Arc::new(control::AgentMetrics::default());
    let (commands_tx, commands_rx) = tokio::sync::mpsc::channel(16);
    let mut control_task = None;
    if let Some(addr) = config.http {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                let local = listener
                    .local_addr()
                    .map_or_else(|_| addr.to_string(), |a| a.to_string());
                tracing::info!(http = %local, "control endpoint listening (/health, /metrics, POST /drain/{{container}})");
                let (m, t) = (std::sync::Arc::clone(&metrics), token.child_token());
                control_task = Some(tokio::spawn(control::serve(listener, m, commands_tx, t)));
            }
            Err(e) => {
                tracing::warn!(%addr, error = %e, "control endpoint disabled: cannot listen (choose another -http)")
            }
        }
    }
    let result = Agent::new(docker, client, config, plugin, metrics, commands_rx)
        .run(token.clone())
        .await;
    token.cancel();
    if let Some(task) = control_task {
        let _ = task.await;
    }
    result
}

impl Error {
    /// A configuration error about `flag`.
    pub fn config(flag: &'static str, message: impl Into<String>) -> Self {
        Self::Config {
            flag,
            message: message.into(),
        }
    }

    /// A failed Docker call: what was being done, and bollard's error.
    pub fn docker(what: impl Into<String>, error: bollard::errors::Error) -> Self {
        Self::Docker {
            what: what.into(),
            error,
        }
    }
}

/// `http://<ip>:8080` of the container named `name`.
async fn skydns_url_of(docker: &bollard::Docker, name: &str) -> Result<String, Error> {
    let info = docker::inspect(docker, name)
        .await?
        .ok_or_else(|| Error::Container(format!("no container named {name}")))?;
    let ip = info
        .networks
        .first()
        .map(|(_, ip)| ip.clone())
        .ok_or_else(|| Error::Container(format!("container {name} has no IP")))?;
    Ok(format!("http://{ip}:8080"))
}
