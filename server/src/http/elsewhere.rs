//! Requests about another node's task go to that node. One layer in front of every route
//! under `/api/tasks/{id}` asks the view who owns the id; when it is another node, the
//! request is sent there (`Remote`, the fleet's transport) and its answer is the answer.
//! So a new route under `/api/tasks/{id}/` works in a fleet as it is. On a single node the
//! view never names another owner and the layer only passes requests on.
//!
//! The rules, in one place: a task's record (`GET /api/tasks/{id}`) is read from the view
//! (an offline node's tasks keep their last status); everything else about it is the
//! owner's. A new task with `"node"` is started there. Of the streams, the terminal is
//! relayed; the others are not forwarded (`501`).

use std::sync::Arc;

use app::model::Task;
use axum::{
    body::{to_bytes, Body},
    extract::{Request, State},
    http::{Method, StatusCode},
    middleware::Next,
    response::Response,
};
use futures::future::BoxFuture;

use super::{body::MAX_BODY_BYTES, error::error_response};
use crate::tasks::view::TaskView;

/// How requests reach other nodes (implemented by the fleet).
pub trait Remote: Send + Sync {
    /// Sends `request` to `node` and answers with what it answered. With
    /// `callers_credentials` the owner checks the caller's `Authorization` itself (a task's
    /// own token, which only the owner knows); without, this node has checked them.
    fn forward(
        &self,
        node: String,
        request: Request,
        callers_credentials: bool,
    ) -> BoxFuture<'static, Response>;
    /// `POST /api/tasks` (or `/terminal`) started on `node`.
    fn create_on(&self, node: String, request: Request) -> BoxFuture<'static, Response>;
    /// The terminal WebSocket of another node's task, relayed.
    fn relay_terminal(&self, task: Task, request: Request) -> BoxFuture<'static, Response>;
}

/// What the layer needs: the view, and the way to other nodes (none on a single node).
#[derive(Clone)]
pub struct Elsewhere {
    /// This node's name.
    pub node: String,
    pub view: Arc<dyn TaskView>,
    pub remote: Option<Arc<dyn Remote>>,
}

/// In front of the API (inside its authentication).
pub async fn api(State(elsewhere): State<Elsewhere>, request: Request, next: Next) -> Response {
    route(elsewhere, request, next, Kind::Api).await
}

/// In front of `POST /api/tasks/{id}/state`, which checks its own credentials.
pub async fn reports(State(elsewhere): State<Elsewhere>, request: Request, next: Next) -> Response {
    route(elsewhere, request, next, Kind::Report).await
}

/// In front of the streams (inside their authentication).
pub async fn streams(State(elsewhere): State<Elsewhere>, request: Request, next: Next) -> Response {
    route(elsewhere, request, next, Kind::Stream).await
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Api,
    Report,
    Stream,
}

async fn route(elsewhere: Elsewhere, request: Request, next: Next, kind: Kind) -> Response {
    let Some(remote) = elsewhere.remote.clone() else {
        return next.run(request).await;
    };
    let path = request.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (id, rest) = match segments.as_slice() {
        ["api", "tasks"] | ["api", "tasks", "terminal"] if request.method() == Method::POST => {
            return create(&elsewhere, remote, request, next).await;
        }
        ["api", "tasks", id, rest @ ..] => (*id, rest),
        _ => return next.run(request).await,
    };
    let Some(owner) = elsewhere.view.owner_elsewhere(id) else {
        return next.run(request).await;
    };
    // The view's copy of the task, for the two answers that need it (one just created
    // elsewhere may not be in it yet: then the owner answers).
    let known = || elsewhere.view.get(id).ok();
    match (kind, rest) {
        (Kind::Api, []) if request.method() == Method::GET && known().is_some() => {
            next.run(request).await
        }
        (Kind::Stream, ["terminal"]) => match known() {
            Some(task) => remote.relay_terminal(task, request).await,
            None => not_relayed(&owner),
        },
        (Kind::Stream, _) => not_relayed(&owner),
        (kind, _) => remote.forward(owner, request, kind == Kind::Report).await,
    }
}

fn not_relayed(owner: &str) -> Response {
    error_response(
        StatusCode::NOT_IMPLEMENTED,
        format!("the streams of a task on node {owner} are not relayed: open it on that node"),
    )
}

/// A new task with `"node"` naming another node is started there.
async fn create(
    elsewhere: &Elsewhere,
    remote: Arc<dyn Remote>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY_BYTES).await else {
        return error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over {} KiB", MAX_BODY_BYTES / 1024),
        );
    };
    let node = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("node")?.as_str().map(str::to_string));
    let request = Request::from_parts(parts, Body::from(bytes));
    let Some(node) = node.filter(|node| *node != elsewhere.node) else {
        return next.run(request).await;
    };
    // The fleet's node list is in memory (no blocking work here).
    let known = elsewhere
        .view
        .nodes()
        .is_ok_and(|list| list.nodes.iter().any(|n| n.name == node));
    if !known {
        return error_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("no node named {node:?}"),
        );
    }
    remote.create_on(node, request).await
}
