//! The Docker side: connecting (unix socket or `DOCKER_HOST`), inspecting
//! containers into [`ContainerInfo`], listing running ones, and the container
//! event stream as typed [`ContainerEvent`]s.

use std::{collections::HashMap, time::Duration};

use bollard::{
    Docker,
    models::{ContainerInspectResponse, EventMessage, HealthStatusEnum},
    query_parameters::{EventsOptions, ListContainersOptions},
};
use futures_util::{Stream, StreamExt};

use crate::{Error, naming::ContainerInfo};

/// Seconds a Docker API call may take.
const DOCKER_TIMEOUT: u64 = 30;

/// What happened to a container, as far as registration is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// start, restart, unpause, health_status: decide from the inspected state.
    Check,
    /// kill with a stopping signal: leave DNS now, while the container drains.
    Stopping,
    /// die, stop, pause, destroy: leave DNS.
    Gone,
}

/// A container event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    /// Full container id.
    pub id: String,
    /// Docker's action (`start`, `kill`, `health_status: healthy`, ...).
    pub action: String,
    /// How to react.
    pub kind: EventKind,
}

/// Connects to the Docker engine at `socket` (a path or `unix://` URL), or
/// where `DOCKER_HOST` points when `socket` is `None`, and agrees on an API
/// version the engine speaks.
///
/// # Errors
/// [`Error::Docker`] when the engine cannot be reached.
pub async fn connect(socket: Option<&str>) -> Result<Docker, Error> {
    let docker = match socket {
        Some(path) => {
            let path = path.strip_prefix("unix://").unwrap_or(path);
            Docker::connect_with_socket(path, DOCKER_TIMEOUT, bollard::API_DEFAULT_VERSION)
        }
        None => Docker::connect_with_defaults(),
    }
    .map_err(|e| Error::docker("connect", e))?;
    docker
        .negotiate_version()
        .await
        .map_err(|e| Error::docker("reach the engine", e))
}

/// Ids of running containers.
///
/// # Errors
/// [`Error::Docker`].
pub async fn running_ids(docker: &Docker) -> Result<Vec<String>, Error> {
    let list = docker
        .list_containers(Some(ListContainersOptions::default()))
        .await
        .map_err(|e| Error::docker("list containers", e))?;
    Ok(list.into_iter().filter_map(|c| c.id).collect())
}

/// Inspects one container; `Ok(None)` when it no longer exists.
///
/// # Errors
/// [`Error::Docker`] for anything but "no such container".
pub async fn inspect(docker: &Docker, id: &str) -> Result<Option<ContainerInfo>, Error> {
    match docker.inspect_container(id, None).await {
        Ok(resp) => Ok(Some(to_info(resp))),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(e) => Err(Error::docker(format!("inspect {id}"), e)),
    }
}

/// The inspected container's JSON, as plugins see it.
///
/// # Errors
/// [`Error::Docker`].
pub async fn inspect_json(docker: &Docker, id: &str) -> Result<serde_json::Value, Error> {
    let resp = docker
        .inspect_container(id, None)
        .await
        .map_err(|e| Error::docker(format!("inspect {id}"), e))?;
    serde_json::to_value(resp).map_err(|error| Error::Encode {
        id: id.to_string(),
        error,
    })
}

/// Maps an inspected container to what the agent knows about it (pure; public
/// for the fuzz target and tests).
pub fn to_info(resp: ContainerInspectResponse) -> ContainerInfo {
    let state = resp.state.unwrap_or_default();
    let config = resp.config.unwrap_or_default();
    let net = resp.network_settings.unwrap_or_default();
    let has_healthcheck = config
        .healthcheck
        .as_ref()
        .and_then(|h| h.test.as_ref())
        .is_some_and(|t| !t.is_empty() && t.first().is_none_or(|c| c != "NONE"));
    let healthy = has_healthcheck
        .then(|| state.health.as_ref().and_then(|h| h.status) == Some(HealthStatusEnum::HEALTHY));
    let mut networks: Vec<(String, String)> = net
        .networks
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, ep)| {
            ep.ip_address
                .filter(|ip| !ip.is_empty())
                .map(|ip| (name, ip))
        })
        .collect();
    networks.sort();
    let exposed = config
        .exposed_ports
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.split('/').next()?.parse().ok())
        .collect();
    let published = net
        .ports
        .unwrap_or_default()
        .into_iter()
        .flat_map(|(port, bindings)| {
            let container: Option<u16> = port.split('/').next().and_then(|p| p.parse().ok());
            bindings
                .unwrap_or_default()
                .into_iter()
                .filter_map(move |b| Some((container?, b.host_port?.parse().ok()?)))
        })
        .collect();
    ContainerInfo {
        id: resp.id.unwrap_or_default(),
        name: resp.name.unwrap_or_default(),
        image: config.image.unwrap_or_default(),
        env: config.env.unwrap_or_default(),
        labels: config.labels.unwrap_or_default(),
        exposed,
        published,
        networks,
        network_mode: resp
            .host_config
            .and_then(|h| h.network_mode)
            .unwrap_or_default(),
        running: state.running.unwrap_or(false) && !state.restarting.unwrap_or(false),
        paused: state.paused.unwrap_or(false),
        healthy,
    }
}

/// The engine's container events, from now on, as typed events. The stream
/// ends (or yields an error) when the connection drops.
pub fn events(docker: &Docker) -> impl Stream<Item = Result<ContainerEvent, Error>> + use<> {
    let filters = HashMap::from([("type".to_string(), vec!["container".to_string()])]);
    let opts = EventsOptions {
        filters: Some(filters),
        ..EventsOptions::default()
    };
    docker.events(Some(opts)).filter_map(|msg| async move {
        match msg {
            Ok(m) => to_event(m).map(Ok),
            Err(e) => Some(Err(Error::docker("read the event stream", e))),
        }
    })
}

/// Signals that stop a container (`docker stop` sends TERM, `docker kill` KILL).
const STOP_SIGNALS: &[&str] = &[
    "15", "9", "2", "3", "SIGTERM", "SIGKILL", "SIGINT", "SIGQUIT", "TERM", "KILL", "INT", "QUIT",
];

/// Maps an engine event to a container event, `None` for events that do not
/// change registrations (pure; public for the fuzz target and tests).
pub fn to_event(m: EventMessage) -> Option<ContainerEvent> {
    let action = m.action?;
    let actor = m.actor?;
    let id = actor.id?;
    let verb = action.split(':').next().unwrap_or_default().trim();
    let kind = match verb {
        "start" | "restart" | "unpause" | "health_status" => EventKind::Check,
        "kill" => {
            let signal = actor
                .attributes
                .as_ref()
                .and_then(|a| a.get("signal"))
                .cloned()
                .unwrap_or_default();
            if signal.is_empty() || STOP_SIGNALS.contains(&signal.as_str()) {
                EventKind::Stopping
            } else {
                return None; // SIGHUP and friends do not stop the container
            }
        }
        "die" | "stop" | "pause" | "destroy" | "oom" => EventKind::Gone,
        _ => return None,
    };
    Some(ContainerEvent { id, action, kind })
}

/// Backoff for reconnecting to Docker: 0.5 s doubling to 10 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << attempt.min(5))).min(Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;

    fn ev(action: &str, attrs: &[(&str, &str)]) -> Option<ContainerEvent> {
        to_event(EventMessage {
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some("abc".into()),
                attributes: Some(
                    attrs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
            }),
            ..EventMessage::default()
        })
    }

    #[test]
    fn events_map_to_reactions() {
        assert_eq!(ev("start", &[]).map(|e| e.kind), Some(EventKind::Check));
        assert_eq!(
            ev("health_status: healthy", &[]).map(|e| e.kind),
            Some(EventKind::Check)
        );
        assert_eq!(
            ev("kill", &[("signal", "15")]).map(|e| e.kind),
            Some(EventKind::Stopping)
        );
        assert_eq!(ev("kill", &[("signal", "1")]), None);
        assert_eq!(ev("die", &[]).map(|e| e.kind), Some(EventKind::Gone));
        assert_eq!(ev("exec_start: sh", &[]), None);
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), Duration::from_millis(500));
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(30), Duration::from_secs(10));
    }
}
