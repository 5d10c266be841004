//! `/api/push/*`: the server's VAPID public key, and the devices that want pushes. A
//! subscription is kept on the node the browser signed in to.

use std::sync::Arc;

use axum::{
    extract::{FromRef, State},
    http::{header, HeaderMap, StatusCode},
    response::IntoResponse,
    routing::get,
    Json, Router,
};
use serde::Deserialize;
use serde_json::json;

use crate::push::{
    subscriptions::{self, Refused, Subscription},
    Push,
};

use super::{body::JsonBody, error::ApiError};

pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<Push>: FromRef<S>,
{
    Router::new().route("/key", get(key)).route(
        "/subscriptions",
        axum::routing::post(subscribe).delete(unsubscribe),
    )
}

async fn key(State(push): State<Arc<Push>>) -> impl IntoResponse {
    Json(json!({ "key": push.keys.public }))
}

/// A browser's `PushSubscription` JSON, plus the transitions the device wants.
#[derive(Deserialize)]
struct NewSubscription {
    endpoint: String,
    keys: Keys,
    kinds: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Keys {
    p256dh: String,
    auth: String,
}

async fn subscribe(
    State(push): State<Arc<Push>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<NewSubscription>,
) -> Result<impl IntoResponse, ApiError> {
    let subscription = Subscription::parse(
        &body.endpoint,
        &body.keys.p256dh,
        &body.keys.auth,
        body.kinds.as_deref(),
        page_origin(&headers),
    )
    .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    let kinds: Vec<&str> = subscription.kinds.iter().map(|k| k.as_str()).collect();
    let answer = json!({ "endpoint": subscription.endpoint, "kinds": kinds });
    let kept = tokio::task::spawn_blocking(move || push.subscriptions.keep(subscription))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    match kept {
        Ok(()) => Ok((StatusCode::CREATED, Json(answer))),
        Err(Refused::TooMany) => Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "{} devices are subscribed already: remove one first",
                subscriptions::MAX
            ),
        )),
        Err(Refused::Store(e)) => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

#[derive(Deserialize)]
struct Forget {
    endpoint: String,
}

/// Forgets the device's subscription; `204` whether or not it was known.
async fn unsubscribe(
    State(push): State<Arc<Push>>,
    JsonBody(body): JsonBody<Forget>,
) -> Result<StatusCode, ApiError> {
    tokio::task::spawn_blocking(move || push.subscriptions.forget(&body.endpoint))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}

/// The dashboard's address as the subscribing page knows it (its `Origin`: through a
/// proxy or a tailnet it is not the address taskwire listens on), for the pushes' links.
fn page_origin(headers: &HeaderMap) -> Option<String> {
    let origin = headers.get(header::ORIGIN)?.to_str().ok()?;
    let ok = (origin.starts_with("https://") || origin.starts_with("http://"))
        && origin.len() <= 255
        && !origin[origin.find("://")? + 3..].contains('/');
    ok.then(|| origin.to_string())
}
