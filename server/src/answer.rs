//! The `{"error": …}` answer that every refusal gives, whichever layer refuses, and the
//! `503` of a server that is full for now.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};

use app::model::ErrorBody;

pub fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(ErrorBody::new(message))).into_response()
}

/// `503` with `Retry-After`: every slot of its kind (event streams, task streams) is taken.
pub fn busy(message: &str) -> Response {
    let mut refused = error_response(StatusCode::SERVICE_UNAVAILABLE, message);
    refused
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    refused
}
