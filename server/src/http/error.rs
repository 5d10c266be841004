//! The `{"error": …}` answer that every refusal of the web surface gives.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};

pub use crate::answer::error_response;
use crate::tasks::TaskError;

/// Every error a handler can answer with, as `{"error": …}`.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(self.0, self.1)
    }
}

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> Self {
        match e {
            TaskError::NotFound => ApiError(StatusCode::NOT_FOUND, "no such task".into()),
            TaskError::Conflict(m) => ApiError(StatusCode::CONFLICT, m),
            TaskError::Invalid(m) => ApiError(StatusCode::BAD_REQUEST, m),
            TaskError::Unprocessable(m) => ApiError(StatusCode::UNPROCESSABLE_ENTITY, m),
            TaskError::Unavailable(m) => {
                tracing::error!("{m}");
                ApiError(StatusCode::SERVICE_UNAVAILABLE, m)
            }
            TaskError::Internal(m) => {
                tracing::error!("internal error: {m}");
                ApiError(StatusCode::INTERNAL_SERVER_ERROR, m)
            }
        }
    }
}
