//! The terminal of a task, `GET /api/tasks/{id}/terminal` (a WebSocket). A live task's
//! viewers each attach a tmux client of their own (`viewer`), so every viewer sees tmux's
//! rendering of the same pane; a finished task's log is replayed, read-only. Uses `tasks`
//! and `events` (the stream slots); the crate root routes it, the metrics read its counts,
//! and the fleet relays it (`serve` takes any `Wire`).

mod keys;
mod viewer;

use std::{
    collections::VecDeque,
    future::Future,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
    sync::Arc,
    time::Duration,
};

use axum::{
    extract::{
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade},
        FromRef, Path, Query, State,
    },
    http::{HeaderMap, StatusCode},
    response::Response,
    routing::get,
    Router,
};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use app::model::is_valid_task_id;

use crate::{
    answer::{busy, error_response},
    events::slots::StreamSlots,
    http::guard::same_origin,
    tasks::{screen::PaneSize, Tasks},
};

/// What a terminal needs: the tasks, the stream slots, and the signal that ends it.
#[derive(Clone)]
pub struct Terminals {
    pub tasks: Arc<Tasks>,
    pub stream_slots: Arc<StreamSlots>,
    pub shutdown: CancellationToken,
}

use viewer::{Viewer, INPUT_CHUNK_BYTES};

/// Open terminal viewers, and control messages that could not be read.
#[derive(Default)]
pub struct TerminalMetrics {
    pub viewers: AtomicUsize,
    pub bad_messages: AtomicU64,
}

pub static METRICS: TerminalMetrics = TerminalMetrics {
    viewers: AtomicUsize::new(0),
    bad_messages: AtomicU64::new(0),
};

/// How much of a finished task's log is replayed: the screen and a long scrollback.
const REPLAY_MAX: u64 = 2 * 1024 * 1024;
const REPLAY_CHUNK: usize = 64 * 1024;
/// The largest WebSocket message a viewer may send (a paste); larger ones end the socket.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// The size a viewer starts with when it does not say.
const START_SIZE: PaneSize = PaneSize { cols: 80, rows: 24 };

/// The route, with its full path: `app` serves it outside the compression layer.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Terminals: FromRef<S>,
{
    Router::new().route("/api/tasks/{id}/terminal", get(terminal))
}

#[derive(Deserialize)]
pub struct SizeQuery {
    pub cols: Option<u16>,
    pub rows: Option<u16>,
}

impl SizeQuery {
    /// The size asked for, within bounds.
    pub fn size(&self) -> PaneSize {
        PaneSize {
            cols: self.cols.unwrap_or(START_SIZE.cols).clamp(2, 1000),
            rows: self.rows.unwrap_or(START_SIZE.rows).clamp(2, 1000),
        }
    }
}

/// A control message from the browser (a text frame).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Control {
    Resize { cols: u16, rows: u16 },
}

async fn terminal(
    State(state): State<Terminals>,
    Path(id): Path<String>,
    Query(size): Query<SizeQuery>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    if !is_valid_task_id(&id) {
        return error_response(StatusCode::NOT_FOUND, "no such task");
    }
    if !same_origin(&headers) {
        return error_response(
            StatusCode::FORBIDDEN,
            "a terminal opens only from the dashboard's own origin",
        );
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return error_response(rejection.status(), rejection.body_text()),
    };
    let tasks = state.tasks.clone();
    let lookup = id.clone();
    let Ok(Ok(task)) = tokio::task::spawn_blocking(move || tasks.get(&lookup)).await else {
        return error_response(StatusCode::NOT_FOUND, "no such task");
    };
    let Some(slot) = state.stream_slots.take() else {
        return busy("too many open streams");
    };
    let tasks = state.tasks.clone();
    let shutdown = state.shutdown.clone();
    let size = size.size();
    let upgrade = upgrade
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES);
    upgrade.on_upgrade(move |socket| async move {
        let _slot = slot;
        serve(socket, tasks, id, task.status.is_live(), size, shutdown).await;
    })
}

/// Where a viewer's frames go to and come from: the browser's WebSocket, or, in a fleet,
/// another node relaying one over NATS.
pub trait Wire: Send {
    /// An error means the other end is gone.
    fn send(&mut self, message: Message) -> impl Future<Output = Result<(), ()>> + Send;
    /// `None` once the other end is gone.
    fn recv(&mut self) -> impl Future<Output = Option<Message>> + Send;
}

impl Wire for WebSocket {
    async fn send(&mut self, message: Message) -> Result<(), ()> {
        WebSocket::send(self, message).await.map_err(|_| ())
    }

    async fn recv(&mut self) -> Option<Message> {
        WebSocket::recv(self).await.and_then(Result::ok)
    }
}

/// One viewer of task `id`: live (`live`) until it ends, else its log replayed.
pub async fn serve(
    wire: impl Wire,
    tasks: Arc<Tasks>,
    id: String,
    live: bool,
    size: PaneSize,
    shutdown: CancellationToken,
) {
    METRICS.viewers.fetch_add(1, Ordering::Relaxed);
    if live {
        view_live(wire, tasks, id, size, shutdown).await;
    } else {
        replay(wire, &tasks, &id).await;
    }
    METRICS.viewers.fetch_sub(1, Ordering::Relaxed);
}

/// A live task: the viewer's keys go in, tmux's drawing comes out, until the task ends
/// (then its final screen, and close 1000), the browser leaves, or the server stops.
async fn view_live(
    mut socket: impl Wire,
    tasks: Arc<Tasks>,
    id: String,
    size: PaneSize,
    shutdown: CancellationToken,
) {
    let attached = {
        let (tasks, id) = (tasks.clone(), id.clone());
        tokio::task::spawn_blocking(move || Viewer::attach(&tasks, &id, size)).await
    };
    let mut viewer = match attached {
        Ok(Ok(viewer)) => viewer,
        Ok(Err(e)) => return close(socket, 1011, &format!("could not attach: {e}")).await,
        Err(e) => return close(socket, 1011, &format!("could not attach: {e}")).await,
    };
    // Keys received but not yet taken by the pty's writer. While there are some, nothing
    // more is read from the socket, so a program that does not read its keys slows only
    // this viewer's sender (TCP backpressure), while its drawing still flows.
    let mut typing: VecDeque<Vec<u8>> = VecDeque::new();
    loop {
        tokio::select! {
            room = viewer.input.reserve(), if !typing.is_empty() => match room {
                Ok(room) => room.send(typing.pop_front().unwrap_or_default()),
                Err(_) => return,
            },
            drawn = viewer.output.recv() => match drawn {
                Some(bytes) => {
                    if socket.send(Message::Binary(bytes.into())).await.is_err() {
                        return;
                    }
                }
                // The client exited: the session is gone, the task has ended.
                None => break,
            },
            received = socket.recv(), if typing.is_empty() => match received {
                Some(Message::Binary(bytes)) => {
                    // A key in the terminal answers whatever the task waited for (what
                    // xterm.js answers tmux's queries with does not).
                    if keys::has_keypress(&bytes) {
                        tasks.note_keys(&id);
                    }
                    typing.extend(bytes.chunks(INPUT_CHUNK_BYTES).map(<[u8]>::to_vec));
                }
                Some(Message::Text(text)) => match serde_json::from_str(&text) {
                    Ok(Control::Resize { cols, rows }) => {
                        viewer.resize(PaneSize { cols: cols.clamp(2, 1000), rows: rows.clamp(2, 1000) });
                    }
                    // Counted, never fatal: a bad message must not cost the person the terminal.
                    Err(_) => {
                        METRICS.bad_messages.fetch_add(1, Ordering::Relaxed);
                    }
                },
                Some(Message::Close(_)) | None => return,
                Some(_) => {}
            },
            () = shutdown.cancelled() => return close(socket, 1001, "taskwire is stopping").await,
        }
    }
    drop(viewer);
    // The record may lag the session's end by a reconcile pass; the log is complete.
    wait_until_finished(&tasks, &id).await;
    replay(socket, &tasks, &id).await;
}

/// Waits (briefly) for the record of a task whose session ended to say so.
async fn wait_until_finished(tasks: &Arc<Tasks>, id: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < deadline {
        let (tasks, id) = (tasks.clone(), id.to_string());
        let live = tokio::task::spawn_blocking(move || tasks.get(&id))
            .await
            .ok()
            .and_then(Result::ok)
            .is_some_and(|t| t.status.is_live());
        if !live {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The recorded output, at the pane's size, read-only: `{"type":"size"}` first so the
/// browser draws it as the pane did, then the end of the log, then close 1000.
async fn replay(mut socket: impl Wire, tasks: &Arc<Tasks>, id: &str) {
    let size = tasks.pane_size(id);
    let control = serde_json::json!({"type": "size", "cols": size.cols, "rows": size.rows, "read_only": true});
    if socket
        .send(Message::Text(control.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    let log = tasks.output_path(id);
    let bytes = tokio::task::spawn_blocking(move || read_end(&log, REPLAY_MAX))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    // A reset first: a viewer that watched live drops whatever tmux left on its screen.
    let mut frames = vec![b"\x1bc".to_vec()];
    frames.extend(bytes.chunks(REPLAY_CHUNK).map(<[u8]>::to_vec));
    for frame in frames {
        if socket.send(Message::Binary(frame.into())).await.is_err() {
            return;
        }
    }
    close(socket, 1000, "finished").await;
}

fn read_end(path: &std::path::Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

async fn close(mut socket: impl Wire, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}
