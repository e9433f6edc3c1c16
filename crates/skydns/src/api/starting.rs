//! The API while the server starts: the listener is bound and answers at
//! once, before the registry exists. Until [`Starting::finish`] hands it the
//! real router, `/health` is 200, `/ready` 503 `{"status":"starting"}`, and
//! every other route 503 with `Retry-After: 1`; afterwards every request goes
//! to the real router.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
};

use axum::{
    Json, Router,
    body::Body,
    extract::Request,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use tower_service::Service;

/// The switch from the starting answers to the real router.
#[derive(Clone, Default)]
pub(crate) struct Starting {
    app: Arc<OnceLock<Router>>,
}

impl std::fmt::Debug for Starting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Starting")
            .field("finished", &self.app.get().is_some())
            .finish()
    }
}

impl Starting {
    /// A switch that answers "starting" until finished.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The router to serve from the start.
    pub(crate) fn router(&self) -> Router {
        Router::new().fallback_service(self.clone())
    }

    /// From now on every request goes to `app`.
    pub(crate) fn finish(&self, app: Router) {
        let _ = self.app.set(app);
    }
}

fn starting(path: &str) -> Response {
    match path {
        "/health" => Json(serde_json::json!({ "status": "ok" })).into_response(),
        "/ready" => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({
                "status": "starting",
                "reason": crate::readiness::State::Loading.as_str(),
            })),
        )
            .into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            Json(skydns_api::ApiError {
                error: "skydns is starting (loading the store): retry in a moment".into(),
                field: None,
            }),
        )
            .into_response(),
    }
}

impl Service<Request<Body>> for Starting {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        match self.app.get() {
            Some(app) => {
                let mut app = app.clone();
                Box::pin(async move { app.call(req).await })
            }
            None => {
                let answer = starting(req.uri().path());
                Box::pin(std::future::ready(Ok(answer)))
            }
        }
    }
}
