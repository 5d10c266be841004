//! The REST API of DESIGN.md. Handlers check their input, then hand the work to `tasks`
//! on the blocking pool (tmux and SQLite calls block).

use axum::{
    extract::{rejection::QueryRejection, FromRef, FromRequest, Path, Query, Request, State},
    http::{HeaderMap, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde::Deserialize;
use std::sync::Arc;

use app::model::{is_valid_task_id, Output, Reply, ReportedState, StateReport};

use crate::tasks::{view::TaskView, NewCommand, TaskError, Tasks};

use super::{
    auth::{self, Auth},
    body::JsonBody,
    error::{error_response, ApiError},
};

/// What the API needs: the tasks it changes, the view it reads, and the credentials a
/// state report is checked against.
#[derive(Clone)]
pub struct Api {
    pub tasks: Arc<Tasks>,
    pub view: Arc<dyn TaskView>,
    pub auth: Auth,
}

pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Api: FromRef<S>,
    Arc<crate::push::Push>: FromRef<S>,
{
    Router::new()
        .nest("/push", super::push::router())
        .route("/tasks", get(list_tasks).post(create_task))
        .route("/tasks/terminal", post(create_terminal))
        .route(
            "/tasks/{id}",
            get(get_task).patch(rename_task).delete(delete_task),
        )
        .route("/tasks/{id}/input", post(send_input))
        .route("/tasks/{id}/reply", post(reply))
        .route("/tasks/{id}/kill", post(kill_task))
        .route("/tasks/{id}/seen", post(mark_seen))
        .route("/tasks/{id}/output", get(output_tail))
        .route("/tasks/{id}/diff", get(diff))
        .route("/tasks/{id}/commit", post(commit))
        .route("/tasks/{id}/merge", post(merge))
        .route("/tasks/{id}/discard", post(discard))
        .route("/nodes", get(list_nodes))
        .fallback(|| async { error_response(StatusCode::NOT_FOUND, "no such route") })
}

type ApiResult<T> = Result<T, ApiError>;

/// A path id of the allowed shape, or `404` before anything looks it up.
fn task_id(id: String) -> ApiResult<String> {
    if is_valid_task_id(&id) {
        Ok(id)
    } else {
        Err(ApiError(StatusCode::NOT_FOUND, "no such task".into()))
    }
}

/// Runs blocking task work (tmux, SQLite) off the async threads.
async fn blocking<T: Send + 'static>(
    state: &Api,
    work: impl FnOnce(&Arc<Tasks>) -> Result<T, TaskError> + Send + 'static,
) -> ApiResult<T> {
    let tasks = state.tasks.clone();
    off_async(move || work(&tasks)).await
}

/// Reads the view off the async threads (a single node's view is SQLite).
async fn read_view<T: Send + 'static>(
    state: &Api,
    read: impl FnOnce(&dyn TaskView) -> Result<T, TaskError> + Send + 'static,
) -> ApiResult<T> {
    let view = state.view.clone();
    off_async(move || read(view.as_ref())).await
}

async fn off_async<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, TaskError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(ApiError::from)
}

async fn list_tasks(State(state): State<Api>) -> ApiResult<impl IntoResponse> {
    Ok(Json(read_view(&state, |view| view.list()).await?))
}

async fn list_nodes(State(state): State<Api>) -> ApiResult<impl IntoResponse> {
    Ok(Json(read_view(&state, |view| view.nodes()).await?))
}

async fn get_task(
    State(state): State<Api>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = task_id(id)?;
    Ok(Json(read_view(&state, move |view| view.get(&id)).await?))
}

#[derive(Deserialize)]
struct CreateTask {
    command: String,
    name: Option<String>,
    workdir: Option<String>,
    prompt: Option<String>,
    node: Option<String>,
    workspace: Option<app::model::NewWorkspace>,
}

/// A task is started here; one meant for another node was sent there before this
/// (`http::elsewhere`).
fn check_node(state: &Api, node: Option<&str>) -> ApiResult<()> {
    match node {
        Some(node) if node != state.tasks.node => Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("no node named {node:?}"),
        )),
        _ => Ok(()),
    }
}

async fn create_task(
    State(state): State<Api>,
    JsonBody(body): JsonBody<CreateTask>,
) -> ApiResult<impl IntoResponse> {
    check_node(&state, body.node.as_deref())?;
    let new = NewCommand {
        command: body.command,
        name: body.name,
        workdir: body.workdir,
        prompt: body.prompt,
        workspace: body.workspace,
    };
    let task = blocking(&state, move |tasks| tasks.create_command(new)).await?;
    Ok((StatusCode::CREATED, Json(task)))
}

#[derive(Deserialize, Default)]
struct CreateTerminal {
    workdir: Option<String>,
    node: Option<String>,
}

/// The body is optional: an empty request opens a terminal in the default directory.
async fn create_terminal(
    State(state): State<Api>,
    request: Request,
) -> ApiResult<impl IntoResponse> {
    let empty = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .is_none_or(|len| len == "0");
    let workdir = if empty {
        None
    } else {
        let JsonBody(body) = JsonBody::<CreateTerminal>::from_request(request, &state).await?;
        check_node(&state, body.node.as_deref())?;
        body.workdir
    };
    let task = blocking(&state, move |tasks| {
        tasks.create_terminal(workdir.as_deref())
    })
    .await?;
    Ok((StatusCode::CREATED, Json(task)))
}

#[derive(Deserialize)]
struct Rename {
    name: String,
}

async fn rename_task(
    State(state): State<Api>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Rename>,
) -> ApiResult<impl IntoResponse> {
    let id = task_id(id)?;
    Ok(Json(
        blocking(&state, move |tasks| tasks.rename(&id, &body.name)).await?,
    ))
}

#[derive(Deserialize)]
struct Input {
    text: String,
    #[serde(default = "yes")]
    submit: bool,
}

fn yes() -> bool {
    true
}

async fn send_input(
    State(state): State<Api>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Input>,
) -> ApiResult<impl IntoResponse> {
    let id = task_id(id)?;
    Ok(Json(
        blocking(&state, move |tasks| {
            tasks.input(&id, &body.text, body.submit)
        })
        .await?,
    ))
}

/// Answers the prompt on the task's screen (`409` if it no longer shows it).
async fn reply(
    State(state): State<Api>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Reply>,
) -> ApiResult<impl IntoResponse> {
    let id = task_id(id)?;
    Ok(Json(
        blocking(&state, move |tasks| tasks.reply(&id, &body)).await?,
    ))
}

/// The task's changes with their hunks (`404` for a workdir not in git).
async fn diff(State(state): State<Api>, Path(id): Path<String>) -> ApiResult<impl IntoResponse> {
    let id = task_id(id)?;
    Ok(Json(blocking(&state, move |tasks| tasks.diff(&id)).await?))
}

#[derive(Deserialize, Default)]
struct CommitBody {
    message: Option<String>,
}

/// Commits the worktree's changes (the body, with its message, is optional).
async fn commit(
    State(state): State<Api>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<impl IntoResponse> {
    let id = task_id(id)?;
    let message = if body.is_empty() {
        None
    } else {
        serde_json::from_slice::<CommitBody>(&body)
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("the body: {e}")))?
            .message
    };
    Ok(Json(
        blocking(&state, move |tasks| tasks.commit(&id, message.as_deref())).await?,
    ))
}

/// Merges the task's branch; `409 {"error", "files"}` when it cannot, nothing changed.
async fn merge(State(state): State<Api>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = task_id(id)?;
    Ok(
        match blocking(&state, move |tasks| tasks.merge(&id)).await? {
            Ok(task) => Json(task).into_response(),
            Err((error, files)) => (
                StatusCode::CONFLICT,
                Json(serde_json::json!({ "error": error, "files": files })),
            )
                .into_response(),
        },
    )
}

async fn discard(State(state): State<Api>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let id = task_id(id)?;
    blocking(&state, move |tasks| tasks.discard(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn kill_task(
    State(state): State<Api>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = task_id(id)?;
    Ok(Json(blocking(&state, move |tasks| tasks.kill(&id)).await?))
}

/// The person has looked at a finished task (opened it, or dismissed it from the list).
async fn mark_seen(
    State(state): State<Api>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = task_id(id)?;
    Ok(Json(
        blocking(&state, move |tasks| tasks.mark_seen(&id)).await?,
    ))
}

/// `POST /api/tasks/{id}/state`, with its full path: a task's program reports its state
/// with its own token (`TASKWIRE_TASK_TOKEN`), which the rest of the API does not take, so
/// this route checks its credentials itself.
pub fn reports<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Api: FromRef<S>,
{
    Router::new().route("/api/tasks/{id}/state", post(report_state))
}

#[derive(Deserialize)]
struct StateQuery {
    state: Option<ReportedState>,
}

async fn report_state(
    State(state): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
    method: Method,
    query: Result<Query<StateQuery>, QueryRejection>,
    body: Result<JsonBody<StateReport>, ApiError>,
) -> Response {
    let Ok(id) = task_id(id) else {
        return error_response(StatusCode::NOT_FOUND, "no such task");
    };
    if let Err(refused) = may_report(&state, &id, &headers, &method).await {
        return refused;
    }
    let JsonBody(report) = match body {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let Ok(Query(query)) = query else {
        return error_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`state` must be waiting-for-input or running",
        );
    };
    let Some(reported_state) = report.state.or(query.state) else {
        return error_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`state` (waiting-for-input or running) is missing",
        );
    };
    let reported = blocking(&state, move |tasks| {
        tasks.report_state(&id, reported_state, report.message)
    })
    .await;
    match reported {
        Ok(task) => Json(task).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The task's own token, or what the rest of the API takes; a token of another task `403`.
async fn may_report(
    state: &Api,
    id: &str,
    headers: &HeaderMap,
    method: &Method,
) -> Result<(), Response> {
    let bearer = auth::bearer(headers).map(str::to_string);
    if let Some(token) = bearer.filter(|t| !state.auth.is_master_token(t)) {
        let lookup = id.to_string();
        // No such task and another task's token get the same answer: a token does not
        // tell which ids exist.
        return match blocking(state, move |tasks| tasks.task_token(&lookup)).await {
            Ok(own) if auth::constant_time_eq(&own, &token) => Ok(()),
            Ok(_) | Err(ApiError(StatusCode::NOT_FOUND, _)) => Err(error_response(
                StatusCode::FORBIDDEN,
                "this token is not this task's token",
            )),
            Err(e) => Err(e.into_response()),
        };
    }
    auth::check(headers, method, &state.auth)
}

async fn delete_task(
    State(state): State<Api>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = task_id(id)?;
    blocking(&state, move |tasks| tasks.delete(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct TailQuery {
    tail: Option<String>,
}

async fn output_tail(
    State(state): State<Api>,
    Path(id): Path<String>,
    Query(query): Query<TailQuery>,
) -> ApiResult<impl IntoResponse> {
    let id = task_id(id)?;
    let lines = match query.tail.as_deref() {
        None => 200,
        Some(n) => n
            .parse::<usize>()
            .ok()
            .filter(|&n| n <= 100_000)
            .ok_or_else(|| {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    "`tail` must be a number of lines up to 100000".into(),
                )
            })?,
    };
    let output = blocking(&state, move |tasks| tasks.output_tail(&id, lines)).await?;
    Ok(Json(Output { output }))
}
