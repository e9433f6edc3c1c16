//! What operators look at: the status page (`/`), the change stream
//! (`/events`, Server-Sent Events), recent expiries, readiness and the
//! OpenAPI document.

use std::{convert::Infallible, time::Duration};

use axum::{
    Json,
    extract::State,
    http::header,
    response::{
        Html, IntoResponse,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures_util::{Stream, StreamExt};
use tokio_stream::wrappers::{BroadcastStream, errors::BroadcastStreamRecvError};

use super::AppState;
use crate::registry::Change;

/// The status page: plain HTML/CSS/JS, no external assets.
pub(super) async fn page() -> Html<&'static str> {
    Html(include_str!("status.html"))
}

/// The OpenAPI 3 document of the API (the same file as `docs/openapi.json`).
pub(crate) const OPENAPI: &str = include_str!("../../../../docs/openapi.json");

pub(super) async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// `GET /events`: every registry change as an SSE event named after its kind
/// (`registered`, `heartbeat`, `removed`, `expired`) with the service JSON.
/// A watcher that falls behind gets a `resync` event and should re-list.
pub(super) async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = BroadcastStream::new(state.registry.subscribe()).map(|item| {
        Ok(match item {
            Ok(change) => to_event(&change),
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                Event::default().event("resync").data(n.to_string())
            }
        })
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn to_event(change: &Change) -> Event {
    let data = serde_json::to_string(change).unwrap_or_else(|_| "{}".into());
    Event::default().event(change.kind).data(data)
}

/// `GET /skydns/expiries/`: the most recent expiries, oldest first.
pub(super) async fn expiries(State(state): State<AppState>) -> Json<Vec<Change>> {
    Json(state.registry.recent_expiries())
}

/// `GET /ready`: 200 once the store is loaded and DNS and the API serve,
/// 503 with the reason before (see [`crate::readiness`]; while the store
/// loads, [`super::Starting`] answers it).
pub(super) async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let now = state.readiness.state();
    if now == crate::readiness::State::Ready {
        let body = serde_json::json!({ "status": "ready", "services": state.registry.len() });
        (axum::http::StatusCode::OK, Json(body))
    } else {
        let status = if now == crate::readiness::State::Loading {
            "starting"
        } else {
            "degraded"
        };
        let body = serde_json::json!({ "status": status, "reason": now.as_str() });
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, Json(body))
    }
}
