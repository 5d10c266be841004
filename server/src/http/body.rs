//! Request bodies: the largest accepted, and JSON whose refusal answers `{"error": …}`
//! like every other refusal.

use axum::{
    extract::{rejection::JsonRejection, FromRequest, Request},
    http::StatusCode,
    Json,
};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// `Json`, but a bad body answers `{"error": …}` like everything else.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => {
                let status = match &rejection {
                    JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    JsonRejection::BytesRejection(_) => StatusCode::PAYLOAD_TOO_LARGE,
                    // Valid JSON of the wrong shape: a missing field, a field of the wrong type.
                    JsonRejection::JsonDataError(_) => StatusCode::UNPROCESSABLE_ENTITY,
                    _ => StatusCode::BAD_REQUEST,
                };
                let message = match &rejection {
                    JsonRejection::BytesRejection(_) => {
                        format!("the body is over {} KiB", MAX_BODY_BYTES / 1024)
                    }
                    other => other.body_text(),
                };
                Err(ApiError(status, message))
            }
        }
    }
}
