//! Calls to the REST API from the browser. Changes carry `X-Taskwire: 1`, which the server
//! requires of cookie-authenticated changes (a CSRF guard).

use gloo_net::http::{Request, RequestBuilder, Response};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::json;

use crate::model::{Diff, Reply, Task, TaskList};

#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// The HTTP status, or 0 when the request did not get an answer.
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn unauthorized(&self) -> bool {
        self.status == 401
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn network(e: gloo_net::Error) -> ApiError {
    ApiError {
        status: 0,
        message: format!("network error: {e}"),
    }
}

async fn answer<T: DeserializeOwned>(response: Response) -> ApiResult<T> {
    if response.ok() {
        return response.json::<T>().await.map_err(network);
    }
    let status = response.status();
    let message = match response.json::<serde_json::Value>().await {
        Ok(body) => body["error"]
            .as_str()
            .unwrap_or("request failed")
            .to_string(),
        Err(_) => format!("request failed ({status})"),
    };
    Err(ApiError { status, message })
}

fn change(builder: RequestBuilder) -> RequestBuilder {
    builder.header("X-Taskwire", "1")
}

async fn send_json<T: DeserializeOwned>(
    builder: RequestBuilder,
    body: &impl Serialize,
) -> ApiResult<T> {
    let request = change(builder).json(body).map_err(network)?;
    answer(request.send().await.map_err(network)?).await
}

pub async fn list_tasks() -> ApiResult<TaskList> {
    answer(Request::get("/api/tasks").send().await.map_err(network)?).await
}

/// `GET /api/nodes`, as JSON (see `live::connection::node_of`).
pub async fn list_nodes() -> ApiResult<serde_json::Value> {
    answer(Request::get("/api/nodes").send().await.map_err(network)?).await
}

/// `fields` left empty are not sent (the server's defaults apply: its own node, its
/// directory).
fn body(mut body: serde_json::Value, fields: &[(&str, &str)]) -> serde_json::Value {
    for (key, value) in fields {
        if !value.trim().is_empty() {
            body[*key] = json!(value);
        }
    }
    body
}

/// A new task; with `workspace`, in a new worktree of that repository.
pub async fn create_task(
    name: &str,
    command: &str,
    workdir: &str,
    prompt: &str,
    node: &str,
    workspace: Option<crate::model::NewWorkspace>,
) -> ApiResult<Task> {
    let fields = [
        ("name", name),
        ("workdir", workdir),
        ("prompt", prompt),
        ("node", node),
    ];
    let mut request = body(json!({ "command": command }), &fields);
    if let Some(workspace) = workspace {
        request["workspace"] = json!(workspace);
    }
    send_json(Request::post("/api/tasks"), &request).await
}

pub async fn create_terminal(workdir: &str, node: &str) -> ApiResult<Task> {
    let fields = [("workdir", workdir), ("node", node)];
    send_json(
        Request::post("/api/tasks/terminal"),
        &body(json!({}), &fields),
    )
    .await
}

pub async fn rename(id: &str, name: &str) -> ApiResult<Task> {
    send_json(
        Request::patch(&format!("/api/tasks/{id}")),
        &json!({ "name": name }),
    )
    .await
}

pub async fn send_input(id: &str, text: &str) -> ApiResult<Task> {
    send_json(
        Request::post(&format!("/api/tasks/{id}/input")),
        &json!({ "text": text, "submit": true }),
    )
    .await
}

/// Answers the prompt `prompt` on the task's screen with a choice or words.
pub async fn reply(
    id: &str,
    prompt: &str,
    choice: Option<String>,
    text: Option<String>,
) -> ApiResult<Task> {
    let reply = Reply {
        prompt: prompt.to_string(),
        choice,
        text,
    };
    send_json(Request::post(&format!("/api/tasks/{id}/reply")), &reply).await
}

pub async fn kill(id: &str) -> ApiResult<Task> {
    let request = change(Request::post(&format!("/api/tasks/{id}/kill")));
    answer(request.send().await.map_err(network)?).await
}

/// The person has looked at a finished task (sent in the background; the change comes
/// back as an event).
pub fn mark_seen_soon(id: String) {
    leptos::task::spawn_local(async move {
        let request = change(Request::post(&format!("/api/tasks/{id}/seen")));
        if let Err(e) = request.send().await {
            leptos::logging::warn!("marking {id} seen: {e}");
        }
    });
}

pub async fn delete(id: &str) -> ApiResult<()> {
    no_content(change(Request::delete(&format!("/api/tasks/{id}")))).await
}

/// A change answered `204` when it worked.
async fn no_content(request: RequestBuilder) -> ApiResult<()> {
    let response = request.send().await.map_err(network)?;
    if response.ok() {
        return Ok(());
    }
    answer::<serde_json::Value>(response).await.map(|_| ())
}

/// `GET /api/tasks/{id}/diff`: what the task changed, with the hunks.
pub async fn diff(id: &str) -> ApiResult<Diff> {
    answer(
        Request::get(&format!("/api/tasks/{id}/diff"))
            .send()
            .await
            .map_err(network)?,
    )
    .await
}

/// Commits the worktree's changes (`message` empty: the task's name).
pub async fn commit(id: &str, message: &str) -> ApiResult<Task> {
    let body = body(json!({}), &[("message", message)]);
    send_json(Request::post(&format!("/api/tasks/{id}/commit")), &body).await
}

/// Merges the task's branch into its base; a refusal names the files concerned.
pub async fn merge(id: &str) -> ApiResult<Task> {
    let request = change(Request::post(&format!("/api/tasks/{id}/merge")));
    let response = request.send().await.map_err(network)?;
    if response.status() != 409 {
        return answer(response).await;
    }
    let body: serde_json::Value = response.json().await.map_err(network)?;
    let files: Vec<&str> = body["files"]
        .as_array()
        .map(|f| f.iter().filter_map(|f| f.as_str()).collect())
        .unwrap_or_default();
    let error = body["error"].as_str().unwrap_or("the merge was refused");
    let message = if files.is_empty() {
        error.to_string()
    } else {
        format!("{error} ({})", files.join(", "))
    };
    Err(ApiError {
        status: 409,
        message,
    })
}

/// Removes the worktree and its branch.
pub async fn discard(id: &str) -> ApiResult<()> {
    no_content(change(Request::post(&format!("/api/tasks/{id}/discard")))).await
}
