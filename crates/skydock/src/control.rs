//! skydock's own small HTTP endpoint (`-http`, default 127.0.0.1:8081):
//! `/health`, `/metrics`, and `POST /drain/{container}` — the way `skydock
//! rollout` asks the agent to take a container out of DNS while it keeps
//! running (the agent owns registrations; anyone else removing them would
//! see them come back at the next heartbeat).

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{StatusCode, header},
    response::IntoResponse,
    routing::{get, post},
};
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// A request to the agent loop.
#[derive(Debug)]
pub enum Command {
    /// Deregister this container (id or name) and keep it out of DNS until it
    /// starts again; answers how many registrations were removed.
    Drain {
        /// Container id or name.
        container: String,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<usize, String>>,
    },
}

/// The agent's metrics.
#[derive(Debug)]
pub struct AgentMetrics {
    registry: Registry,
    /// Docker events handled.
    pub events: Counter,
    /// Registrations this agent holds.
    pub registrations: Gauge,
    /// Heartbeats that failed (transport or server errors).
    pub heartbeat_failures: Counter,
    /// Fixes made by reconciles (stale removed, lost re-registered).
    pub reconcile_fixes: Counter,
    /// uuids with a registry call due or under way (registrations and
    /// removals not yet confirmed by skydns).
    pub pending: Gauge,
    /// uuids this agent wants that another owner holds: left alone.
    pub foreign: Gauge,
    /// Containers skipped because the plugin ran out of its time budget.
    pub plugin_timeouts: Counter,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("skydock");
        let (events, registrations) = (Counter::default(), Gauge::default());
        let (heartbeat_failures, reconcile_fixes) = (Counter::default(), Counter::default());
        registry.register("events", "Docker container events handled", events.clone());
        registry.register(
            "registrations",
            "Registrations held in skydns",
            registrations.clone(),
        );
        registry.register(
            "heartbeat_failures",
            "Heartbeats that failed",
            heartbeat_failures.clone(),
        );
        registry.register(
            "reconcile_fixes",
            "Stale or lost registrations fixed by reconcile",
            reconcile_fixes.clone(),
        );
        let (pending, foreign, plugin_timeouts) =
            (Gauge::default(), Gauge::default(), Counter::default());
        registry.register(
            "sync_pending",
            "Registrations and removals not yet confirmed by skydns",
            pending.clone(),
        );
        registry.register(
            "foreign_registrations",
            "uuids this agent wants that another owner holds (left alone)",
            foreign.clone(),
        );
        registry.register(
            "plugin_timeouts",
            "Containers skipped because the plugin ran past -plugin-timeout",
            plugin_timeouts.clone(),
        );
        Self {
            registry,
            events,
            registrations,
            heartbeat_failures,
            reconcile_fixes,
            pending,
            foreign,
            plugin_timeouts,
        }
    }
}

impl AgentMetrics {
    /// Prometheus text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<AgentMetrics>,
    commands: mpsc::Sender<Command>,
}

/// Serves the endpoint on `listener` until `token` fires.
///
/// # Errors
/// When serving fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<AgentMetrics>,
    commands: mpsc::Sender<Command>,
    token: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/health",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/metrics", get(render_metrics))
        .route("/drain/{container}", post(drain))
        .with_state(AppState { metrics, commands });
    axum::serve(listener, app)
        .with_graceful_shutdown(token.cancelled_owned())
        .await
}

async fn render_metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn drain(State(s): State<AppState>, Path(container): Path<String>) -> impl IntoResponse {
    let (reply, rx) = oneshot::channel();
    if s.commands
        .send(Command::Drain { container, reply })
        .await
        .is_err()
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": "agent is stopping"})),
        );
    }
    match rx.await {
        Ok(Ok(n)) => (StatusCode::OK, Json(serde_json::json!({"deregistered": n}))),
        Ok(Err(e)) => (StatusCode::NOT_FOUND, Json(serde_json::json!({"error": e}))),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": "agent is stopping"})),
        ),
    }
}
