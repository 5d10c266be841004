//! The plain-text streams of tasks' output: `GET /api/tasks/{id}/output/stream` (one task's
//! output) and `GET /api/tails/stream` (the last lines of every live task). Like
//! `/api/events` they are served outside the compression layer.

use std::{convert::Infallible, sync::Arc, time::Duration};

use async_stream::stream;
use axum::{
    extract::{FromRef, Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{
        sse::{Event as Frame, KeepAlive, Sse},
        IntoResponse, Response,
    },
    routing::get,
    Router,
};
use futures::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use app::model::{event, is_valid_task_id, OutputChunk};

use crate::{
    answer::{busy, error_response},
    events::{
        event::to_json,
        slots::{Slot, StreamSlots},
        sse::no_caching_or_buffering,
    },
    tasks::{
        output::{plain_text, read_from, utf8_complete_len, READ_MAX},
        tails::TailsHub,
        TaskError, Tasks,
    },
};

/// What the output and tails streams need.
#[derive(Clone)]
pub struct TaskStreams {
    pub tasks: Arc<Tasks>,
    pub tails: Arc<TailsHub>,
    pub stream_slots: Arc<StreamSlots>,
    pub heartbeat: Duration,
    pub lifetime: Duration,
    pub shutdown: CancellationToken,
}

/// The streams, with their full paths.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    TaskStreams: FromRef<S>,
{
    Router::new()
        .route("/api/tasks/{id}/output/stream", get(output_stream))
        .route("/api/tails/stream", get(tails_stream))
}

/// An SSE response built with axum's `Sse`, for streams whose frames are made per client:
/// heartbeats after `HEARTBEAT_SECS` of quiet, no caching, no buffering.
fn sse_response(
    state: &TaskStreams,
    frames: impl Stream<Item = Result<Frame, Infallible>> + Send + 'static,
) -> Response {
    let keep_alive = KeepAlive::new()
        .interval(state.heartbeat)
        .text("keep-alive");
    let mut response = Sse::new(frames).keep_alive(keep_alive).into_response();
    no_caching_or_buffering(response.headers_mut());
    response
}

#[derive(Deserialize)]
pub struct OutputQuery {
    from: Option<String>,
}

/// `GET /api/tasks/{id}/output/stream`: what the task printed, as `output` events whose id
/// is the byte offset reached (a reconnect resumes there), then `end` once it is terminal.
/// Its cost follows what changed: the log is read when it grew (its length is looked at
/// five times a second), the record when an event about the task arrives.
pub async fn output_stream(
    State(state): State<TaskStreams>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<OutputQuery>,
) -> Response {
    if !is_valid_task_id(&id) {
        return error_response(StatusCode::NOT_FOUND, "no such task");
    }
    let slot = match take_slot(&state) {
        Ok(slot) => slot,
        Err(refused) => return refused,
    };
    let tasks = state.tasks.clone();
    let lookup = id.clone();
    let Ok(Ok(_)) = tokio::task::spawn_blocking(move || tasks.get(&lookup)).await else {
        return error_response(StatusCode::NOT_FOUND, "no such task");
    };
    let path = state.tasks.output_path(&id);
    let resume_at = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let start = match (resume_at, query.from.as_deref()) {
        (Some(offset), _) => offset,
        (None, Some("live")) => tokio::fs::metadata(&path)
            .await
            .map(|m| m.len())
            .unwrap_or(0),
        _ => 0,
    };
    let tasks = state.tasks.clone();
    let shutdown = state.shutdown.clone();
    // Subscribed before the first look at the record, so no change falls between the two.
    let (_, following) = tasks.broker.follow_after(None);
    let mut changes = following.into_live();
    let mentions = format!("\"id\":\"{id}\"");
    let frames = stream! {
        let _slot = slot;
        let mut offset = start;
        let mut pending = Vec::new();
        let mut ticker = tokio::time::interval(Duration::from_millis(200));
        let mut look_at_record = true;
        let mut terminal = false;
        loop {
            // The record before the file, so the last read sees all output.
            if look_at_record {
                terminal = is_finished(&tasks, &id).await;
                look_at_record = false;
            }
            // On a blocking thread, as every file look-up (five times a second per stream).
            let grown = tokio::fs::metadata(&path).await.is_ok_and(|m| m.len() > offset);
            let mut drained = true;
            if grown {
                if let Ok(bytes) = read_from(&path, offset).await {
                    drained = bytes.len() < READ_MAX;
                    offset += bytes.len() as u64;
                    pending.extend_from_slice(&bytes);
                    let complete = utf8_complete_len(&pending);
                    if complete > 0 {
                        let text = plain_text(&pending[..complete]);
                        pending.drain(..complete);
                        // The id is where a reconnect resumes: after what was sent, before
                        // the half character still waiting.
                        let resume_at = offset - pending.len() as u64;
                        if !text.is_empty() {
                            let data = to_json(&OutputChunk { text });
                            yield Ok::<_, Infallible>(Frame::default().event("output").id(resume_at.to_string()).data(data));
                        }
                    }
                }
            }
            if !drained {
                // More is already written: send it before waiting or ending.
                continue;
            }
            if terminal {
                let resume_at = offset - pending.len() as u64;
                yield Ok(Frame::default().event(event::END).id(resume_at.to_string()).data(r#"{"reason":"finished"}"#));
                break;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
                change = changes.recv() => {
                    look_at_record = match change {
                        Ok(change) => change.data.contains(&mentions),
                        Err(RecvError::Lagged(_)) => true,
                        Err(RecvError::Closed) => break,
                    };
                }
            }
        }
    };
    sse_response(&state, frames)
}

/// Whether the task has finished or is gone; a database that failed this once says
/// neither.
async fn is_finished(tasks: &Arc<Tasks>, id: &str) -> bool {
    let (tasks, id) = (tasks.clone(), id.to_string());
    match tokio::task::spawn_blocking(move || tasks.get(&id)).await {
        Ok(Ok(task)) => task.status.is_terminal(),
        Ok(Err(TaskError::NotFound)) => true,
        Ok(Err(_)) | Err(_) => false,
    }
}

/// `GET /api/tails/stream`: the last lines of every live task's screen, sent as a `tail`
/// event whenever its output grows (all of them at first), so the task list shows live
/// tails over one connection instead of one output stream per row. Like `/api/events` it
/// ends after `STREAM_MAX_SECS`; the page holds it open only while it is visible.
pub async fn tails_stream(State(state): State<TaskStreams>) -> Response {
    let slot = match take_slot(&state) {
        Ok(slot) => slot,
        Err(refused) => return refused,
    };
    let shutdown = state.shutdown.clone();
    let lifetime = state.lifetime;
    let (now, mut changes) = state.tails.subscribe();
    let frames = stream! {
        let _slot = slot;
        for tail in now {
            yield Ok::<_, Infallible>(Frame::default().event("tail").data(to_json(&tail)));
        }
        let deadline = tokio::time::sleep(lifetime);
        tokio::pin!(deadline);
        loop {
            let tails = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = &mut deadline => {
                    yield Ok(Frame::default().event(event::END).data(r#"{"reason":"lifetime"}"#));
                    break;
                }
                tails = changes.recv() => match tails {
                    Ok(tails) => tails,
                    // A stream this far behind gets the next change; tails are snapshots.
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => break,
                },
            };
            for tail in tails.iter() {
                yield Ok(Frame::default().event("tail").data(to_json(tail)));
            }
        }
    };
    sse_response(&state, frames)
}

/// A slot for one more stream, or `503` with `Retry-After` when all are taken.
#[allow(clippy::result_large_err)] // the refusal is the response itself
fn take_slot(state: &TaskStreams) -> Result<Slot, Response> {
    state
        .stream_slots
        .take()
        .ok_or_else(|| busy("too many open streams"))
}
