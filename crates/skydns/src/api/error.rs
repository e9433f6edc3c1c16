//! The one place API failures become HTTP answers: a status and a JSON body
//! `{"error": "...", "field": "..."}`.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use skydns_api::ApiError as Body;

use crate::registry::RegistryError;

/// An API failure.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<String>,
}

impl ApiError {
    /// 400 naming `field`.
    pub(crate) fn bad_field(field: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            field: Some(field.to_string()),
        }
    }

    /// 400 about the request as a whole.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            field: None,
        }
    }

    /// 401.
    pub(crate) fn unauthorized() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            message: "missing or wrong Authorization header (skydns runs with -secret)".into(),
            field: None,
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let (status, field) = match &e {
            RegistryError::NotFound(_) | RegistryError::NoMatch(_) => (StatusCode::NOT_FOUND, None),
            RegistryError::Conflict { .. }
            | RegistryError::NotOwner { .. }
            | RegistryError::TooManyCallbacks { .. } => (StatusCode::CONFLICT, None),
            RegistryError::Invalid { field, .. } => {
                (StatusCode::BAD_REQUEST, Some((*field).to_string()))
            }
            RegistryError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, None),
        };
        let message = match &e {
            RegistryError::Store(inner) => {
                format!("storage unavailable, nothing was changed: {inner}")
            }
            other => other.to_string(),
        };
        Self {
            status,
            message,
            field,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(Body {
                error: self.message,
                field: self.field,
            }),
        )
            .into_response()
    }
}
