//! One function per route of the SkyDNS v1 registry API.

use std::collections::BTreeMap;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::IntoResponse,
};
use serde::Deserialize;
use skydns_api::Service;

use super::{AppState, body, error::ApiError};
use crate::registry::{Pattern, now_ms};

/// `PUT /skydns/services/{uuid}` → 201, 409 if taken, 400 if invalid.
pub(super) async fn add_service(
    State(state): State<AppState>,
    Path(uuid): Path<String>,
    bytes: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let service = body::service(&bytes)?;
    state.registry.register(&uuid, service).await?;
    Ok(StatusCode::CREATED)
}

/// `GET /skydns/services/{uuid}` → 200 with the service, 404.
pub(super) async fn get_service(
    State(state): State<AppState>,
    Path(uuid): Path<String>,
) -> Result<Json<Service>, ApiError> {
    let entry = state
        .registry
        .get(&uuid)
        .ok_or_else(|| crate::registry::RegistryError::NotFound(uuid.clone()))?;
    Ok(Json(entry.view(now_ms())))
}

/// `?owner=` of the write routes: the agent making the request.
#[derive(Debug, Deserialize)]
pub(super) struct OwnerQuery {
    owner: Option<String>,
}

impl OwnerQuery {
    fn owner(&self) -> Option<&str> {
        self.owner.as_deref().filter(|o| !o.is_empty())
    }
}

/// `PATCH /skydns/services/{uuid}` with `{"TTL": n}` → 200, 404; 409 when
/// the body's `Owner` (or `?owner=`) is not the service's.
pub(super) async fn heartbeat(
    State(state): State<AppState>,
    Path(uuid): Path<String>,
    Query(q): Query<OwnerQuery>,
    bytes: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let beat = body::heartbeat(&bytes)?;
    let owner = beat
        .owner
        .as_deref()
        .filter(|o| !o.is_empty())
        .or(q.owner());
    state.registry.beat(&uuid, beat.ttl, owner).await?;
    Ok(StatusCode::OK)
}

/// `DELETE /skydns/services/{uuid}` → 200, 404; 409 when `?owner=` is not
/// the service's.
pub(super) async fn remove_service(
    State(state): State<AppState>,
    Path(uuid): Path<String>,
    Query(q): Query<OwnerQuery>,
) -> Result<impl IntoResponse, ApiError> {
    state.registry.remove(&uuid, q.owner()).await?;
    Ok(StatusCode::OK)
}

/// Query string of the list route.
#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    query: Option<String>,
    owner: Option<String>,
}

/// `GET /skydns/services/?query=east.*.web.production` → 200 with a list
/// (empty when nothing matches), 400 for a query deeper than a service name.
/// `owner=` keeps only the services registered with that `Owner` (what an
/// agent reconciles against, without reading everybody's).
pub(super) async fn list_services(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Service>>, ApiError> {
    let raw = q.query.unwrap_or_default().to_ascii_lowercase();
    let raw = raw.trim_end_matches('.');
    let domain = state.registry.options().domain.to_ascii_lowercase();
    let relative = if raw == domain {
        ""
    } else {
        raw.strip_suffix(&format!(".{domain}")).unwrap_or(raw)
    };
    let pattern = Pattern::parse(relative).ok_or_else(|| {
        ApiError::bad_field("query", "query has more labels than a service name (uuid.host.region.version.service.environment)")
    })?;
    let now = now_ms();
    let owner = q.owner.as_deref();
    let mut services: Vec<Service> = state
        .registry
        .lookup(&pattern)
        .iter()
        .filter(|e| owner.is_none_or(|o| e.service.owner.as_deref() == Some(o)))
        .map(|e| e.view(now))
        .collect();
    services.sort_by(|a, b| a.uuid.cmp(&b.uuid));
    Ok(Json(services))
}

/// `PUT /skydns/callbacks/{uuid}` → 201, 404 when no service matches.
pub(super) async fn add_callback(
    State(state): State<AppState>,
    Path(uuid): Path<String>,
    bytes: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let callback = body::callback(&bytes)?;
    state.registry.add_callback(&uuid, callback).await?;
    Ok(StatusCode::CREATED)
}

/// `GET /skydns/regions/` → `{"east": 2, ...}`.
pub(super) async fn regions(State(state): State<AppState>) -> Json<BTreeMap<String, u64>> {
    Json(state.registry.counts(|s| &s.region))
}

/// `GET /skydns/environments/` → `{"production": 4, ...}`.
pub(super) async fn environments(State(state): State<AppState>) -> Json<BTreeMap<String, u64>> {
    Json(state.registry.counts(|s| &s.environment))
}

/// `GET /metrics`: Prometheus text.
pub(super) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// `GET /health`: the process answers.
pub(super) async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}
