//! Actions anywhere: a request about another node's task is sent to that node over NATS
//! request-reply (`taskwire.act.<node>`) as the HTTP request it is, and its answer is
//! passed back as it came. The owner runs it through its own API router, so every rule
//! (validation, conflicts, errors) is the owner's. A node that does not answer is offline:
//! `503 {"error": "node … is offline"}` at once.
//!
//! Which requests go where is decided in front of the API, by `http::elsewhere`, which asks
//! the view who owns a task; this is the transport it uses.

use std::{sync::Arc, time::Duration};

use axum::{
    body::{to_bytes, Body},
    extract::Request,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Router,
};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::{Fleet, FleetError};
use app::model::Task;

use crate::{answer::error_response, http::elsewhere::Remote, sync::lock};

/// The most a forwarded request may wait for its answer (the NATS client's own request
/// timeout is 10 s).
const ANSWER_WITHIN: Duration = Duration::from_secs(9);
/// The largest answer sent back (NATS carries at most 1 MiB by default).
const MAX_ANSWER: usize = 900 * 1024;
/// Largest body forwarded (the API's own limit).
const MAX_BODY: usize = 64 * 1024;

/// A request as it travels to the owner.
#[derive(Serialize, Deserialize)]
struct Forwarded {
    method: String,
    /// Path and query.
    uri: String,
    body: String,
    /// The caller's own credentials, for the owner to check (a task's token, which only
    /// the owner knows); `None` when this node checked them (the owner then trusts it).
    authorization: Option<String>,
}

/// The owner's answer.
#[derive(Serialize, Deserialize)]
struct Answer {
    status: u16,
    body: String,
}

fn action_subject(node: &str) -> String {
    format!("taskwire.act.{node}")
}

/// The fleet's way to other nodes, for the layer in front of the API
/// (`http::elsewhere`).
pub struct Forwarding(pub Arc<Fleet>);

impl Remote for Forwarding {
    fn forward(
        &self,
        node: String,
        request: Request,
        callers_credentials: bool,
    ) -> BoxFuture<'static, Response> {
        let fleet = self.0.clone();
        Box::pin(async move { forward(&fleet, &node, request, callers_credentials).await })
    }

    fn create_on(&self, node: String, request: Request) -> BoxFuture<'static, Response> {
        let fleet = self.0.clone();
        Box::pin(async move {
            let response = forward(&fleet, &node, request, false).await;
            if response.status() == StatusCode::CREATED {
                return fleet.note_placed(response, node).await;
            }
            response
        })
    }

    fn relay_terminal(&self, task: Task, request: Request) -> BoxFuture<'static, Response> {
        Box::pin(super::terminal::relay(self.0.clone(), task, request))
    }
}

/// Sends `request` to `node` and answers with what it answered; with `its_credentials`,
/// the owner checks the caller's `Authorization` itself.
async fn forward(fleet: &Fleet, node: &str, request: Request, its_credentials: bool) -> Response {
    if !fleet.is_online(node) {
        return offline(node);
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, MAX_BODY).await else {
        return error_response(StatusCode::PAYLOAD_TOO_LARGE, "the body is too large");
    };
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let forwarded = Forwarded {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        body: String::from_utf8_lossy(&body).into_owned(),
        // Never empty: without one, the owner would take the request for its own.
        authorization: its_credentials.then(|| authorization.unwrap_or_default()),
    };
    let payload = serde_json::to_vec(&forwarded).unwrap_or_default();
    let asked = tokio::time::timeout(
        ANSWER_WITHIN,
        fleet.client.request(action_subject(node), payload.into()),
    )
    .await;
    let reply = match asked {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
            return offline(node)
        }
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::TimedOut => {
            return error_response(
                StatusCode::GATEWAY_TIMEOUT,
                format!("node {node} did not answer"),
            )
        }
        Ok(Err(e)) => return error_response(StatusCode::BAD_GATEWAY, format!("node {node}: {e}")),
        Err(_) => {
            return error_response(
                StatusCode::GATEWAY_TIMEOUT,
                format!("node {node} did not answer"),
            )
        }
    };
    match serde_json::from_slice::<Answer>(&reply.payload) {
        Ok(answer) => Response::builder()
            .status(answer.status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(answer.body))
            .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response()),
        Err(e) => error_response(
            StatusCode::BAD_GATEWAY,
            format!("node {node} answered: {e}"),
        ),
    }
}

impl Fleet {
    /// Remembers where a task created through this node runs, until the log says so
    /// (so that the caller's next request about it finds it at once).
    async fn note_placed(&self, response: Response, node: String) -> Response {
        let (parts, body) = response.into_parts();
        let Ok(bytes) = to_bytes(body, 4 * 1024 * 1024).await else {
            return StatusCode::BAD_GATEWAY.into_response();
        };
        let id = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|task| task.get("id")?.as_str().map(str::to_string));
        if let Some(id) = id.filter(|id| self.get(id).is_none()) {
            lock(&self.placed).insert(id, node);
        }
        Response::from_parts(parts, Body::from(bytes))
    }

    pub(super) fn placed_on(&self, id: &str) -> Option<String> {
        lock(&self.placed).get(id).cloned()
    }
}

fn offline(node: &str) -> Response {
    error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("node {node} is offline"),
    )
}

/// Answers the requests other nodes forward to this one, with `api` (this node's API
/// router, without its authentication layer: a request comes with the fleet's token, the
/// node that sent it having checked the caller, or with the caller's own credentials,
/// which the handler checks).
pub async fn answer_actions(
    fleet: Arc<Fleet>,
    api: Router,
    shutdown: CancellationToken,
) -> Result<(), FleetError> {
    let subject = action_subject(&fleet.node);
    fleet
        .answer_requests(subject, shutdown, move |fleet, payload| {
            let api = api.clone();
            async move {
                let answer = answer(&fleet, api, &payload).await;
                serde_json::to_vec(&answer).unwrap_or_default()
            }
        })
        .await
}

async fn answer(fleet: &Fleet, api: Router, payload: &[u8]) -> Answer {
    let Ok(forwarded) = serde_json::from_slice::<Forwarded>(payload) else {
        return Answer {
            status: 400,
            body: r#"{"error":"a malformed forwarded request"}"#.into(),
        };
    };
    // Only a state report comes with the caller's own credentials (its handler checks
    // them); nothing else runs here without the fleet's.
    let report = forwarded
        .uri
        .split('?')
        .next()
        .unwrap_or_default()
        .ends_with("/state");
    if forwarded.authorization.is_some() && !report {
        return Answer {
            status: 403,
            body: r#"{"error":"only a state report is forwarded with its own credentials"}"#.into(),
        };
    }
    let authorization = forwarded
        .authorization
        .unwrap_or_else(|| format!("Bearer {}", fleet.token));
    let request = Request::builder()
        .method(forwarded.method.as_str())
        .uri(forwarded.uri.as_str())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, authorization)
        .body(Body::from(forwarded.body));
    let response = match request {
        Ok(request) => api.oneshot(request).await.into_response(),
        Err(e) => error_response(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let status = response.status().as_u16();
    match to_bytes(response.into_body(), MAX_ANSWER).await {
        Ok(bytes) => Answer {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        },
        Err(_) => Answer {
            status: 502,
            body: format!(
                r#"{{"error":"the answer is over {} KiB: ask node {} itself"}}"#,
                MAX_ANSWER / 1024,
                fleet.node
            ),
        },
    }
}
