//! The event pipeline: the broker (ids, replay ring, publish, subscribe), the fan-out
//! writers, the lean event-stream connection and `GET /api/events`. It knows nothing of
//! `tasks` or `http`: only `config` and the wire types of `app::model`.

pub mod broker;
pub mod connection;
pub mod event;
pub mod fanout;
pub mod slots;
pub mod sse;

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};

use app::model::ErrorBody;

/// This layer's own refusals (too many open streams, a malformed request head), in the
/// `{"error": …}` shape of every refusal.
fn refusal(status: StatusCode, message: &str) -> Response {
    (status, Json(ErrorBody::new(message))).into_response()
}
