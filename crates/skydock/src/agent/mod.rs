//! The agent: keeps skydns in step with the running containers.
//!
//! One loop owns all state and handles, in order: Docker events, heartbeats
//! and periodic reconciles. That serialises the events of each container, and
//! every decision is taken from the container's state inspected at that
//! moment, so `docker restart` can never leave a container unregistered.
//!
//! `desired` holds what this agent wants in skydns, per container. Heartbeats
//! PATCH each registration; a 404 (skydns restarted without data, or the
//! entry expired) re-registers it at once; transport errors are retried on
//! the next beat, so a heartbeat never gives up. Reconcile compares running
//! containers with `desired`, and skydns's registrations owned by this agent
//! with `desired`, and fixes both directions.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use bollard::Docker;
use futures_util::{StreamExt, stream};
use skydns_api::{Client, ClientError};
use tokio_util::sync::CancellationToken;

use crate::{
    Error,
    config::Config,
    control::{AgentMetrics, Command},
    docker::{self, ContainerEvent, EventKind},
    naming::{self, Registration},
    plugins::Plugin,
};
use tokio::sync::mpsc;

/// Docker's container events, boxed so a reconnect can swap in a new stream.
type EventStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<ContainerEvent, Error>> + Send>>;

/// The agent's state.
pub struct Agent {
    docker: Docker,
    client: Client,
    config: Config,
    /// container id → its registrations, as this agent wants them in skydns.
    desired: HashMap<String, Vec<Registration>>,
    /// Containers sent a stop signal and still draining: kept out of DNS
    /// even while they still run, until they start again.
    stopping: HashSet<String>,
    /// `-plugins`: replaces the built-in mapping.
    plugin: Option<Arc<Plugin>>,
    metrics: Arc<AgentMetrics>,
    commands: mpsc::Receiver<Command>,
}

impl Agent {
    /// An agent talking to `docker` and to skydns through `client`.
    pub fn new(
        docker: Docker,
        client: Client,
        config: Config,
        plugin: Option<Arc<Plugin>>,
        metrics: Arc<AgentMetrics>,
        commands: mpsc::Receiver<Command>,
    ) -> Self {
        Self {
            docker,
            client,
            config,
            desired: HashMap::new(),
            stopping: HashSet::new(),
            plugin,
            metrics,
            commands,
        }
    }

    /// Runs until `token` is cancelled: initial sync, then events, heartbeats
    /// and reconciles. On exit, removes this agent's registrations only with
    /// `-deregister-on-exit` (otherwise they expire by TTL, so restarting
    /// skydock does not flap DNS).
    ///
    /// # Errors
    /// Only when the token is cancelled during a failing Docker connection is
    /// there nothing to report; runtime errors are logged and retried.
    pub async fn run(mut self, token: CancellationToken) -> Result<(), Error> {
        let mut events: EventStream = Box::pin(docker::events(&self.docker));
        if let Err(e) = self.reconcile().await {
            tracing::warn!(error = %e, "initial sync incomplete; retrying at the next resync");
        }
        tracing::info!(containers = self.desired.len(), "skydock ready");

        let mut beat = tokio::time::interval(self.config.beat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        beat.reset();
        let mut resync = tokio::time::interval(self.config.resync);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.reset();
        loop {
            tokio::select! {
                () = token.cancelled() => break,
                event = events.next() => match event {
                    Some(Ok(ev)) => self.on_event(ev).await,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "Docker event stream failed; reconnecting");
                        events = self.reconnect(&token).await;
                    }
                    None => {
                        tracing::warn!("Docker event stream ended; reconnecting");
                        events = self.reconnect(&token).await;
                    }
                },
                Some(cmd) = self.commands.recv() => self.on_command(cmd).await,
                _ = beat.tick() => self.heartbeat_all().await,
                _ = resync.tick() => {
                    if let Err(e) = self.reconcile().await {
                        tracing::warn!(error = %e, "reconcile failed; retrying at the next resync");
                    }
                }
            }
        }
        if self.config.deregister_on_exit {
            let all: Vec<String> = self.desired.keys().cloned().collect();
            for id in all {
                self.deregister(&id).await;
            }
            tracing::info!("removed this agent's registrations (-deregister-on-exit)");
        }
        Ok(())
    }

    /// Waits for Docker to answer again (with backoff), reconciles, and
    /// returns a fresh event stream.
    async fn reconnect(&mut self, token: &CancellationToken) -> EventStream {
        let mut attempt = 0;
        loop {
            let wait = docker::backoff(attempt);
            tokio::select! {
                () = token.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
            match self.docker.ping().await {
                Ok(_) => break,
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "Docker engine unreachable; retrying");
                }
            }
        }
        // Subscribe before reconciling so nothing in between is missed.
        let stream: EventStream = Box::pin(docker::events(&self.docker));
        if !token.is_cancelled() {
            tracing::info!("Docker engine answers again; reconciling");
            if let Err(e) = self.reconcile().await {
                tracing::warn!(error = %e, "reconcile after reconnect failed");
            }
        }
        stream
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Drain { container, reply } => {
                let id = match docker::inspect(&self.docker, &container).await {
                    Ok(Some(info)) => info.id,
                    Ok(None) => {
                        let _ = reply.send(Err(format!("no container {container}")));
                        return;
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.to_string()));
                        return;
                    }
                };
                let n = self.desired.get(&id).map_or(0, Vec::len);
                self.stopping.insert(id.clone());
                self.deregister(&id).await;
                tracing::info!(id = %short(&id), "draining: out of DNS until it starts again");
                let _ = reply.send(Ok(n));
            }
        }
    }

    async fn on_event(&mut self, ev: ContainerEvent) {
        self.metrics.events.inc();
        tracing::debug!(id = %short(&ev.id), action = %ev.action, "event");
        match ev.kind {
            EventKind::Stopping => {
                self.stopping.insert(ev.id.clone());
                self.deregister(&ev.id).await;
            }
            EventKind::Gone => self.deregister(&ev.id).await,
            EventKind::Check => {
                if ev.action.starts_with("start") || ev.action.starts_with("restart") {
                    self.stopping.remove(&ev.id);
                }
                if let Err(e) = self.sync_container(&ev.id).await {
                    tracing::warn!(id = %short(&ev.id), error = %e, "cannot check container");
                }
            }
        }
    }

    /// Registers or deregisters one container according to its state now.
    async fn sync_container(&mut self, id: &str) -> Result<(), Error> {
        let Some(info) = docker::inspect(&self.docker, id).await? else {
            self.stopping.remove(id);
            self.deregister(id).await;
            return Ok(());
        };
        if !info.running {
            self.stopping.remove(id);
        }
        if !info.eligible() || self.stopping.contains(id) {
            self.deregister(id).await;
            return Ok(());
        }
        let wanted = match self.mapping(&info).await {
            Ok(regs) => regs,
            Err(reason) => {
                tracing::info!(id = %short(id), name = %info.name, %reason, "not registered");
                self.deregister(id).await;
                return Ok(());
            }
        };
        let current = self.desired.remove(id).unwrap_or_default();
        let keep: HashSet<&str> = wanted.iter().map(|r| r.uuid.as_str()).collect();
        for old in current.iter().filter(|r| !keep.contains(r.uuid.as_str())) {
            self.delete(&old.uuid).await;
        }
        for reg in &wanted {
            if !current.iter().any(|c| c == reg) {
                self.put(reg).await;
            }
        }
        self.desired.insert(id.to_string(), wanted);
        self.update_gauge();
        Ok(())
    }

    async fn mapping(&self, info: &naming::ContainerInfo) -> Result<Vec<Registration>, String> {
        let Some(plugin) = &self.plugin else {
            return naming::registrations(info, &self.config.defaults).map_err(|e| e.to_string());
        };
        let json = docker::inspect_json(&self.docker, &info.id)
            .await
            .map_err(|e| e.to_string())?;
        let (plugin, defaults) = (Arc::clone(plugin), self.config.defaults.clone());
        match tokio::task::spawn_blocking(move || plugin.registration(&json, &defaults)).await {
            Ok(Ok(reg)) => Ok(vec![reg]),
            Ok(Err(e)) => Err(format!("plugin error: {e}")),
            Err(e) => Err(format!("plugin task failed: {e}")),
        }
    }

    /// Removes a container's registrations.
    async fn deregister(&mut self, id: &str) {
        if let Some(regs) = self.desired.remove(id) {
            for reg in regs {
                self.delete(&reg.uuid).await;
                tracing::info!(id = %short(id), uuid = %reg.uuid, "deregistered");
            }
        }
        self.update_gauge();
    }

    fn update_gauge(&self) {
        let n = self.desired.values().map(Vec::len).sum::<usize>();
        self.metrics
            .registrations
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Registers one service; if the uuid is taken by this agent's earlier
    /// life, replaces it.
    async fn put(&self, reg: &Registration) {
        match self.client.add_service(&reg.uuid, &reg.service).await {
            Ok(()) => {
                tracing::info!(uuid = %reg.uuid, name = %reg.service.name, host = %reg.service.host, port = reg.service.port, "registered")
            }
            Err(ClientError::Conflict(_)) => {
                let ours = match self.client.get_service(&reg.uuid).await {
                    Ok(existing) => {
                        existing.owner.as_deref() == Some(self.config.defaults.owner.as_str())
                    }
                    Err(_) => false,
                };
                if ours {
                    let _ = self.client.delete_service(&reg.uuid).await;
                    if let Err(e) = self.client.add_service(&reg.uuid, &reg.service).await {
                        tracing::warn!(uuid = %reg.uuid, error = %e, "cannot re-register; the next heartbeat retries");
                    }
                } else {
                    tracing::warn!(uuid = %reg.uuid, "uuid registered by another agent; left alone");
                }
            }
            Err(e) => {
                tracing::warn!(uuid = %reg.uuid, error = %e, "cannot register; the next heartbeat retries")
            }
        }
    }

    async fn delete(&self, uuid: &str) {
        match self.client.delete_service(uuid).await {
            Ok(()) | Err(ClientError::NotFound(_)) => {}
            Err(e) => {
                tracing::warn!(uuid, error = %e, "cannot deregister; the next reconcile retries")
            }
        }
    }

    /// PATCHes every registration; re-registers those skydns lost.
    async fn heartbeat_all(&self) {
        let regs: Vec<&Registration> = self.desired.values().flatten().collect();
        let workers = self.config.workers.max(1);
        let lost: Vec<&Registration> = stream::iter(regs)
            .map(|reg| async move {
                match self.client.heartbeat(&reg.uuid, reg.service.ttl).await {
                    Ok(()) => None,
                    Err(ClientError::NotFound(_)) => Some(reg),
                    Err(e) => {
                        self.metrics.heartbeat_failures.inc();
                        tracing::warn!(uuid = %reg.uuid, error = %e, "heartbeat failed; retrying at the next beat");
                        None
                    }
                }
            })
            .buffer_unordered(workers)
            .filter_map(|x| async move { x })
            .collect()
            .await;
        for reg in lost {
            tracing::info!(uuid = %reg.uuid, "skydns lost this registration; registering again");
            self.put(reg).await;
        }
    }

    /// Makes skydns match the running containers, both ways.
    async fn reconcile(&mut self) -> Result<(), Error> {
        let running = docker::running_ids(&self.docker).await?;
        let running_set: HashSet<&String> = running.iter().collect();
        let gone: Vec<String> = self
            .desired
            .keys()
            .filter(|id| !running_set.contains(id))
            .cloned()
            .collect();
        for id in gone {
            self.deregister(&id).await;
        }
        self.stopping.retain(|id| running_set.contains(id));
        for id in &running {
            if let Err(e) = self.sync_container(id).await {
                tracing::warn!(id = %short(id), error = %e, "cannot sync container");
            }
        }
        // Registrations this agent owns in skydns that it no longer wants
        // (events missed while frozen or disconnected, an earlier life).
        let wanted: HashSet<&str> = self
            .desired
            .values()
            .flatten()
            .map(|r| r.uuid.as_str())
            .collect();
        match self.client.list_services(None).await {
            Ok(services) => {
                let owner = self.config.defaults.owner.as_str();
                let present: HashSet<&str> = services.iter().map(|s| s.uuid.as_str()).collect();
                for s in services
                    .iter()
                    .filter(|s| s.owner.as_deref() == Some(owner))
                {
                    if !wanted.contains(s.uuid.as_str()) {
                        tracing::info!(uuid = %s.uuid, "removing stale registration");
                        self.metrics.reconcile_fixes.inc();
                        self.delete(&s.uuid).await;
                    }
                }
                // Registrations skydns lost: put them back now, not at the next beat.
                for reg in self
                    .desired
                    .values()
                    .flatten()
                    .filter(|r| !present.contains(r.uuid.as_str()))
                {
                    self.metrics.reconcile_fixes.inc();
                    self.put(reg).await;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list skydns registrations; retrying at the next resync")
            }
        }
        Ok(())
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Waits until `f` succeeds, retrying with backoff and a log line, unless
/// `token` is cancelled first.
pub async fn retry_until<T, F, Fut>(what: &str, token: &CancellationToken, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let mut attempt = 0u32;
    loop {
        match f().await {
            Ok(v) => return Some(v),
            Err(e) => {
                tracing::warn!(error = %e, attempt, "{what}; retrying");
                attempt = attempt.saturating_add(1);
            }
        }
        tokio::select! {
            () = token.cancelled() => return None,
            () = tokio::time::sleep(docker::backoff(attempt).max(Duration::from_millis(500))) => {}
        }
    }
}
