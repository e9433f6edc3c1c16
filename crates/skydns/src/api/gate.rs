//! The one middleware every request passes through, after routing:
//!
//! 1. writes beyond the client's rate get 429 ([`limits::admit_write`]);
//! 2. a write's body is read within the body timeout and size limit
//!    ([`limits::read_body`]: 408, 413);
//! 3. the `/skydns/` routes, the status page and `/events` require the
//!    secret when one is set (401), the operational routes (`/metrics`,
//!    `/health`, `/ready`, `/openapi.json`) never do;
//! 4. client errors axum produces itself (404 no route, 405, 400 from
//!    extractors) get the same JSON body as ours;
//! 5. the request is counted in `skydns_api_requests_total`.
//!
//! One middleware rather than a layer each: every layer over an axum route
//! costs a boxed future and a clone of the service below it per request,
//! which made them most of the API's per-request work (docs/performance.md,
//! "REST API").

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{Method, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{
    AppState, MAX_BODY, ROUTES, auth::secret_matches, error::ApiError, limits, limits::WriteLimiter,
};
use crate::metrics::ApiLabels;

/// What the gate needs: the handlers' state, the write limiter, the body
/// read timeout.
#[derive(Clone)]
pub(super) struct Gate {
    pub(super) state: AppState,
    pub(super) writes: Arc<WriteLimiter>,
    pub(super) body_timeout: Duration,
}

/// Routes that never require the secret.
const PUBLIC: &[&str] = &["/metrics", "/health", "/ready", "/openapi.json"];

/// The middleware; see the module documentation for what it does, in order.
pub(super) async fn gate(State(gate): State<Arc<Gate>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|p| ROUTES.iter().map(|(_, r)| *r).find(|r| *r == p.as_str()));
    let method = method_label(req.method());
    let resp = match checked(&gate, route, req).await {
        Ok(req) => json_errors(next.run(req).await),
        Err(resp) => resp,
    };
    let labels = ApiLabels {
        route: route.unwrap_or("unmatched"),
        method,
        status: resp.status().as_u16(),
    };
    gate.state.metrics.api_requests.get_or_create(&labels).inc();
    resp
}

/// Steps 1–3: the request to hand on, or the error answer.
#[allow(
    clippy::result_large_err,
    reason = "the error is the answer itself, built once on a path that ends the request"
)]
async fn checked(gate: &Gate, route: Option<&str>, req: Request) -> Result<Request, Response> {
    let req = if limits::is_write(req.method()) {
        limits::admit_write(&gate.writes, &req)?;
        limits::read_body(req, gate.body_timeout).await?
    } else {
        req
    };
    let needs_secret = route.is_some_and(|r| !PUBLIC.contains(&r));
    if let (true, Some(secret)) = (needs_secret, &gate.state.secret) {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !secret_matches(given, secret.as_bytes()) {
            let mut resp = ApiError::unauthorized().into_response();
            // Lets a browser ask for the secret (as the password) for the status page.
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"skydns\", charset=\"UTF-8\""),
            );
            return Err(resp);
        }
    }
    Ok(req)
}

/// The method as a metric label, without allocating.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Gives the client errors axum produces itself (413 body too large, 404 no
/// route, 405 wrong method, 400 from extractors) the same JSON body as ours.
fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !status.is_client_error() || is_json {
        return resp;
    }
    let (error, field) = match status.as_u16() {
        413 => (
            format!("request body is larger than {MAX_BODY} bytes"),
            Some("body".to_string()),
        ),
        404 => ("no such route".to_string(), None),
        405 => ("method not allowed on this route".to_string(), None),
        _ => (
            status
                .canonical_reason()
                .unwrap_or("bad request")
                .to_string(),
            None,
        ),
    };
    let (mut parts, _) = resp.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = serde_json::to_vec(&skydns_api::ApiError { error, field }).unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, axum::body::Body::from(body))
}
