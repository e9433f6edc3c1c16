//! The agent: keeps skydns in step with the running containers.
//!
//! # Layout
//! - this module: the event loop. It alone owns the per-container state and
//!   handles, in order, Docker events, drain commands and the Docker half of
//!   each reconcile. Every decision is taken from the container's state
//!   inspected at that moment, so `docker restart` can never leave a
//!   container unregistered. It makes no registry call: it only sets, in the
//!   `ledger`, what it wants at each uuid.
//! - `ledger`: per uuid, what the agent wants and what skydns holds, and the
//!   queue of uuids where the two differ.
//! - `sync`: the pool that syncs dirty uuids, `-workers` calls at a time,
//!   at most one per uuid.
//! - `heartbeat`: PATCHes what the agent holds every `-beat`, on its own task.
//! - `reconcile`: the registry half of reconcile (this owner's listing only).
//!
//! # Tasks and shutdown
//! [`Agent::run`] spawns the pool, heartbeats and reconcile, and owns them:
//! heartbeats and reconcile stop with the run's token; the pool has its own
//! token, cancelled last, so that `-deregister-on-exit` can still flush its
//! removals after the event loop has stopped. Everything is joined before
//! `run` returns.

mod heartbeat;
mod ledger;
mod reconcile;
mod sync;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use bollard::Docker;
use futures_util::StreamExt;
use skydns_api::Client;
use tokio::{
    sync::{Notify, mpsc},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;

use self::ledger::Ledger;
use crate::{
    Error,
    config::Config,
    control::{AgentMetrics, Command},
    docker::{self, ContainerEvent, EventKind},
    naming::{self, Registration},
    plugins::{Plugin, PluginError},
};

/// Docker's container events, boxed so a reconnect can swap in a new stream.
type EventStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<ContainerEvent, Error>> + Send>>;

/// How long the initial sync, a drain and `-deregister-on-exit` wait for
/// their registry calls before going on.
const SETTLE: Duration = Duration::from_secs(10);

/// The agent's state.
pub struct Agent {
    docker: Docker,
    /// Names this agent's `-owner` in every write.
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
    /// Shared with the pool, heartbeats and reconcile.
    ledger: Arc<Ledger>,
    /// Starts the registry half of a reconcile.
    reconcile_now: Arc<Notify>,
    /// Short tasks the loop starts (drain replies, the ready line); aborted
    /// when it stops.
    chores: JoinSet<()>,
}

impl Agent {
    /// An agent talking to `docker` and to skydns through `client` (which is
    /// made to name `-owner` in every write).
    pub fn new(
        docker: Docker,
        client: Client,
        config: Config,
        plugin: Option<Arc<Plugin>>,
        metrics: Arc<AgentMetrics>,
        commands: mpsc::Receiver<Command>,
    ) -> Self {
        let client = client.with_owner(config.defaults.owner.clone());
        Self {
            docker,
            client,
            config,
            desired: HashMap::new(),
            stopping: HashSet::new(),
            plugin,
            metrics,
            commands,
            ledger: Arc::new(Ledger::default()),
            reconcile_now: Arc::new(Notify::new()),
            chores: JoinSet::new(),
        }
    }

    /// Runs until `token` is cancelled: initial sync, then events, heartbeats
    /// and reconciles. On exit, removes this agent's registrations only with
    /// `-deregister-on-exit` (otherwise they expire by TTL, so restarting
    /// skydock does not flap DNS).
    ///
    /// # Errors
    /// None so far: runtime errors are logged and retried.
    pub async fn run(mut self, token: CancellationToken) -> Result<(), Error> {
        // Subscribe before the initial sync so that nothing in between is missed.
        let mut events: EventStream = Box::pin(docker::events(&self.docker));
        self.initial_sync().await;

        let pool_token = CancellationToken::new();
        let pool = tokio::spawn(sync::run(
            Arc::clone(&self.ledger),
            self.client.clone(),
            self.config.workers,
            Arc::clone(&self.metrics),
            pool_token.clone(),
        ));
        let beats = tokio::spawn(heartbeat::run(
            Arc::clone(&self.ledger),
            self.client.clone(),
            self.config.beat,
            self.config.workers,
            Arc::clone(&self.metrics),
            token.child_token(),
        ));
        let reconciler = tokio::spawn(reconcile::run(
            Arc::clone(&self.ledger),
            self.client.clone(),
            Arc::clone(&self.reconcile_now),
            Arc::clone(&self.metrics),
            token.child_token(),
        ));
        let (ledger, containers) = (Arc::clone(&self.ledger), self.desired.len());
        self.chores.spawn(async move {
            if !ledger.wait_until(SETTLE, Ledger::is_idle).await {
                tracing::warn!(
                    "initial sync not applied yet (skydns slow or unreachable); continuing"
                );
            }
            tracing::info!(containers, "skydock ready");
        });

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
                Some(_) = self.chores.join_next(), if !self.chores.is_empty() => {}
                _ = resync.tick() => self.reconcile().await,
            }
        }
        self.chores.shutdown().await;
        let _ = beats.await;
        let _ = reconciler.await;
        if self.config.deregister_on_exit {
            self.ledger.clear_wants();
            if self.ledger.wait_until(SETTLE, Ledger::is_idle).await {
                tracing::info!("removed this agent's registrations (-deregister-on-exit)");
            } else {
                tracing::warn!(
                    "-deregister-on-exit: skydns did not answer in time; the rest expire by TTL"
                );
            }
        }
        pool_token.cancel();
        let _ = pool.await;
        Ok(())
    }

    /// At start: learn what this owner already holds in skydns (so that
    /// finding it wanted costs no call), take the wants from Docker, then
    /// queue the removal of what is no longer wanted.
    async fn initial_sync(&mut self) {
        let since = Instant::now();
        let listed = reconcile::list_owned(&self.client).await;
        match &listed {
            Ok(l) => self.ledger.seed(l),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list skydns registrations; retrying at the next resync")
            }
        }
        if let Err(e) = self.reconcile_docker().await {
            tracing::warn!(error = %e, "initial sync incomplete; retrying at the next resync");
        }
        if let Ok(l) = &listed {
            reconcile::apply(&self.ledger, l, since, &self.metrics);
        }
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
            self.reconcile().await;
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
                let uuids: Vec<String> = self
                    .desired
                    .get(&id)
                    .map(|regs| regs.iter().map(|r| r.uuid.clone()).collect())
                    .unwrap_or_default();
                self.stopping.insert(id.clone());
                self.deregister(&id);
                tracing::info!(id = %short(&id), "draining: out of DNS until it starts again");
                // Answer once the removals are done (the caller then waits
                // out the caches), off the loop.
                let ledger = Arc::clone(&self.ledger);
                self.chores.spawn(async move {
                    if !ledger.wait_until(SETTLE, |l| l.settled(&uuids)).await {
                        tracing::warn!(id = %short(&id), "drain: skydns did not confirm the removals in time");
                    }
                    let _ = reply.send(Ok(uuids.len()));
                });
            }
        }
    }

    async fn on_event(&mut self, ev: ContainerEvent) {
        self.metrics.events.inc();
        tracing::debug!(id = %short(&ev.id), action = %ev.action, "event");
        match ev.kind {
            EventKind::Stopping => {
                self.stopping.insert(ev.id.clone());
                self.deregister(&ev.id);
            }
            EventKind::Gone => self.deregister(&ev.id),
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

    /// Decides what one container should have in skydns according to its
    /// state now.
    async fn sync_container(&mut self, id: &str) -> Result<(), Error> {
        let Some(info) = docker::inspect(&self.docker, id).await? else {
            self.stopping.remove(id);
            self.deregister(id);
            return Ok(());
        };
        if !info.running {
            self.stopping.remove(id);
        }
        if !info.eligible() || self.stopping.contains(id) {
            self.deregister(id);
            return Ok(());
        }
        let wanted = match self.mapping(&info).await {
            Ok(regs) => regs,
            Err(Unmapped::Timeout(e)) => {
                self.metrics.plugin_timeouts.inc();
                tracing::warn!(id = %short(id), name = %info.name, error = %e, "plugin timed out; container skipped");
                self.deregister(id);
                return Ok(());
            }
            Err(Unmapped::Other(reason)) => {
                tracing::info!(id = %short(id), name = %info.name, %reason, "not registered");
                self.deregister(id);
                return Ok(());
            }
        };
        let current = self.desired.remove(id).unwrap_or_default();
        let keep: HashSet<&str> = wanted.iter().map(|r| r.uuid.as_str()).collect();
        for old in current.iter().filter(|r| !keep.contains(r.uuid.as_str())) {
            self.ledger.want(&old.uuid, None);
        }
        for reg in &wanted {
            self.ledger.want(&reg.uuid, Some(reg.clone()));
        }
        self.desired.insert(id.to_string(), wanted);
        Ok(())
    }

    /// The container's registrations, by the plugin if there is one (within
    /// its time budget) or by the built-in mapping.
    async fn mapping(&self, info: &naming::ContainerInfo) -> Result<Vec<Registration>, Unmapped> {
        let Some(plugin) = &self.plugin else {
            return naming::registrations(info, &self.config.defaults)
                .map_err(|e| Unmapped::Other(e.to_string()));
        };
        let json = docker::inspect_json(&self.docker, &info.id)
            .await
            .map_err(|e| Unmapped::Other(e.to_string()))?;
        let (plugin, defaults) = (Arc::clone(plugin), self.config.defaults.clone());
        // QuickJS interrupts the script at its budget; this outer bound only
        // guards against a script stuck where the interrupt cannot reach
        // (its thread is then left to finish on its own).
        let fence = plugin.budget() * 2 + Duration::from_secs(1);
        let budget = plugin.budget();
        let file = self.config.plugins.clone().unwrap_or_default();
        let call = tokio::task::spawn_blocking(move || plugin.registration(&json, &defaults));
        match tokio::time::timeout(fence, call).await {
            Ok(Ok(Ok(reg))) => Ok(vec![reg]),
            Ok(Ok(Err(e @ PluginError::Timeout { .. }))) => Err(Unmapped::Timeout(e)),
            Ok(Ok(Err(e))) => Err(Unmapped::Other(format!("plugin error: {e}"))),
            Ok(Err(e)) => Err(Unmapped::Other(format!("plugin task failed: {e}"))),
            Err(_) => Err(Unmapped::Timeout(PluginError::Timeout { file, budget })),
        }
    }

    /// Wants none of a container's registrations any more.
    fn deregister(&mut self, id: &str) {
        if let Some(regs) = self.desired.remove(id) {
            for reg in regs {
                self.ledger.want(&reg.uuid, None);
            }
        }
    }

    /// The Docker half, then (on its own task) the registry half.
    async fn reconcile(&mut self) {
        if let Err(e) = self.reconcile_docker().await {
            tracing::warn!(error = %e, "reconcile failed; retrying at the next resync");
        }
        self.reconcile_now.notify_one();
    }

    /// Makes the wants match the running containers: those gone are
    /// deregistered, every running one is checked as if it had sent an event.
    async fn reconcile_docker(&mut self) -> Result<(), Error> {
        let running = docker::running_ids(&self.docker).await?;
        let running_set: HashSet<&String> = running.iter().collect();
        let gone: Vec<String> = self
            .desired
            .keys()
            .filter(|id| !running_set.contains(id))
            .cloned()
            .collect();
        for id in gone {
            self.deregister(&id);
        }
        self.stopping.retain(|id| running_set.contains(id));
        for id in &running {
            if let Err(e) = self.sync_container(id).await {
                tracing::warn!(id = %short(id), error = %e, "cannot sync container");
            }
        }
        Ok(())
    }
}

/// Why a container has no registrations.
enum Unmapped {
    /// The plugin ran out of its time budget.
    Timeout(PluginError),
    /// Any other reason (a `Skip`, a plugin error), for the log line.
    Other(String),
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
