//! The terminal of another node's task, relayed over NATS: the browser's WebSocket ends
//! on the node it opened the page on, and its frames travel both ways on two subjects of
//! a session (`taskwire.term.<session>.in` / `.out`) to the owner, which serves them as it
//! serves its own browsers (`terminal::serve`).

use std::{sync::Arc, time::Duration};

use app::model::Task;
use async_nats::{Client, Subscriber};
use axum::{
    extract::{
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade},
        FromRequestParts, Query, Request,
    },
    http::StatusCode,
    response::Response,
};
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{Fleet, FleetError};
use crate::{
    answer::error_response,
    terminal::{self, SizeQuery, Wire},
};

/// How often the relaying node checks that the owner is still online.
const CHECK_OWNER_EVERY: Duration = Duration::from_secs(1);

#[derive(Serialize, Deserialize)]
struct Open {
    id: String,
    session: String,
    /// The node relaying it: the viewer ends when that node is gone.
    #[serde(default)]
    relayed_by: String,
    cols: Option<u16>,
    rows: Option<u16>,
}

fn open_subject(node: &str) -> String {
    format!("taskwire.termopen.{node}")
}

fn session_subject(session: &str, way: &str) -> String {
    format!("taskwire.term.{session}.{way}")
}

/// One side of a relayed terminal: frames published to one subject, read from another.
struct NatsWire {
    client: Client,
    to: String,
    from: Subscriber,
    /// The other end's node, and this node's view of which nodes are online: a relaying
    /// node that is gone says no goodbye.
    other_end: String,
    fleet: Arc<Fleet>,
}

impl Wire for NatsWire {
    async fn send(&mut self, message: Message) -> Result<(), ()> {
        let Some(frame) = encode(&message) else {
            return Ok(());
        };
        self.client
            .publish(self.to.clone(), frame)
            .await
            .map_err(|_| ())
    }

    async fn recv(&mut self) -> Option<Message> {
        let mut check = tokio::time::interval(CHECK_OWNER_EVERY);
        loop {
            tokio::select! {
                message = self.from.next() => {
                    if let Some(decoded) = decode(&message?.payload) {
                        return Some(decoded);
                    }
                }
                _ = check.tick() => {
                    if self.fleet.went_silent(&self.other_end) {
                        return None;
                    }
                }
            }
        }
    }
}

/// A WebSocket message as one NATS payload: its kind, then its bytes.
fn encode(message: &Message) -> Option<Bytes> {
    let mut frame = BytesMut::new();
    match message {
        Message::Binary(bytes) => {
            frame.put_u8(b'b');
            frame.put_slice(bytes);
        }
        Message::Text(text) => {
            frame.put_u8(b't');
            frame.put_slice(text.as_bytes());
        }
        Message::Close(close) => {
            frame.put_u8(b'c');
            if let Some(close) = close {
                frame.put_u16(close.code);
                frame.put_slice(close.reason.as_bytes());
            }
        }
        Message::Ping(_) | Message::Pong(_) => return None,
    }
    Some(frame.freeze())
}

fn decode(frame: &[u8]) -> Option<Message> {
    let (kind, rest) = frame.split_first()?;
    Some(match kind {
        b'b' => Message::Binary(Bytes::copy_from_slice(rest)),
        b't' => Message::Text(String::from_utf8_lossy(rest).into_owned().into()),
        b'c' if rest.len() >= 2 => Message::Close(Some(CloseFrame {
            code: u16::from_be_bytes([rest[0], rest[1]]),
            reason: String::from_utf8_lossy(&rest[2..]).into_owned().into(),
        })),
        b'c' => Message::Close(None),
        _ => return None,
    })
}

/// `GET /api/tasks/{id}/terminal` of another node's task: the WebSocket is accepted here
/// and relayed to the owner.
pub async fn relay(fleet: Arc<Fleet>, task: Task, request: Request) -> Response {
    let (mut parts, _) = request.into_parts();
    if !crate::http::guard::same_origin(&parts.headers) {
        return error_response(
            StatusCode::FORBIDDEN,
            "a terminal opens only from the dashboard's own origin",
        );
    }
    let Query(size) = match Query::<SizeQuery>::from_request_parts(&mut parts, &()).await {
        Ok(query) => query,
        Err(rejection) => return error_response(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return error_response(rejection.status(), rejection.body_text()),
    };
    if !fleet.is_online(&task.node) {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("node {} is offline", task.node),
        );
    }
    let Some(slot) = fleet.stream_slots.take() else {
        return crate::answer::busy("too many open streams");
    };
    let upgrade = upgrade
        .max_message_size(terminal::MAX_MESSAGE_BYTES)
        .max_frame_size(terminal::MAX_MESSAGE_BYTES);
    upgrade.on_upgrade(move |socket| async move {
        let _slot = slot;
        if let Err(e) = bridge(&fleet, &task, size, socket).await {
            tracing::warn!(task = %task.id, "relaying a terminal from node {}: {e}", task.node);
        }
    })
}

async fn bridge(
    fleet: &Fleet,
    task: &Task,
    size: SizeQuery,
    mut socket: WebSocket,
) -> Result<(), async_nats::Error> {
    let session = crate::tasks::new_secret();
    // Listening before asking: the owner's first frame may come at once.
    let mut from_owner = fleet
        .client
        .subscribe(session_subject(&session, "out"))
        .await?;
    let open = Open {
        id: task.id.clone(),
        session: session.clone(),
        relayed_by: fleet.node.clone(),
        cols: size.cols,
        rows: size.rows,
    };
    let asked = fleet
        .client
        .request(open_subject(&task.node), serde_json::to_vec(&open)?.into())
        .await;
    let refused = match asked {
        Err(e) => Some(e.to_string()),
        Ok(reply) => serde_json::from_slice::<serde_json::Value>(&reply.payload)
            .ok()
            .and_then(|answer| answer.get("error")?.as_str().map(str::to_string)),
    };
    if let Some(reason) = refused {
        let _ = socket
            .send(close_message(
                1011,
                &format!("node {}: {reason}", task.node),
            ))
            .await;
        return Ok(());
    }
    let to_owner = session_subject(&session, "in");
    let mut check = tokio::time::interval(CHECK_OWNER_EVERY);
    loop {
        tokio::select! {
            from_browser = socket.recv() => {
                let message = match from_browser {
                    Some(Ok(message)) => message,
                    _ => Message::Close(None),
                };
                let leaving = matches!(message, Message::Close(_));
                if let Some(frame) = encode(&message) {
                    fleet.client.publish(to_owner.clone(), frame).await?;
                }
                if leaving {
                    return Ok(());
                }
            }
            from_owner = from_owner.next() => {
                let Some(message) = from_owner.and_then(|m| decode(&m.payload)) else {
                    return Ok(());
                };
                let closing = matches!(message, Message::Close(_));
                if socket.send(message).await.is_err() || closing {
                    let _ = fleet.client.publish(to_owner.clone(), encode(&Message::Close(None)).unwrap_or_default()).await;
                    return Ok(());
                }
            }
            _ = check.tick() => {
                if !fleet.is_online(&task.node) {
                    let reason = format!("node {} went offline", task.node);
                    let _ = socket.send(close_message(1011, &reason)).await;
                    return Ok(());
                }
            }
        }
    }
}

fn close_message(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.to_string().into(),
    }))
}

/// Serves the terminals other nodes relay for this node's tasks.
pub async fn answer_terminals(
    fleet: Arc<Fleet>,
    shutdown: CancellationToken,
) -> Result<(), FleetError> {
    let subject = open_subject(&fleet.node);
    let viewers_end = shutdown.clone();
    fleet
        .answer_requests(subject, shutdown, move |fleet, payload| {
            let shutdown = viewers_end.clone();
            async move {
                let opened = match serde_json::from_slice::<Open>(&payload) {
                    Ok(open) => open_viewer(&fleet, open, shutdown).await,
                    Err(e) => Err(e.into()),
                };
                match opened {
                    Ok(()) => b"{}".to_vec(),
                    Err(e) => serde_json::json!({ "error": e.to_string() })
                        .to_string()
                        .into_bytes(),
                }
            }
        })
        .await
}

/// Starts serving one relayed viewer; returns once it listens for the viewer's frames.
async fn open_viewer(
    fleet: &Arc<Fleet>,
    open: Open,
    shutdown: CancellationToken,
) -> Result<(), async_nats::Error> {
    let slot = fleet
        .stream_slots
        .take()
        .ok_or("too many open streams on the task's node")?;
    let tasks = fleet.tasks.clone();
    let id = open.id.clone();
    let task = tokio::task::spawn_blocking(move || tasks.get(&id))
        .await?
        .map_err(|e| format!("{e:?}"))?;
    let from = fleet
        .client
        .subscribe(session_subject(&open.session, "in"))
        .await?;
    let wire = NatsWire {
        client: fleet.client.clone(),
        to: session_subject(&open.session, "out"),
        from,
        other_end: open.relayed_by.clone(),
        fleet: fleet.clone(),
    };
    let size = SizeQuery {
        cols: open.cols,
        rows: open.rows,
    }
    .size();
    let tasks = fleet.tasks.clone();
    let viewer = terminal::serve(wire, tasks, task.id, task.status.is_live(), size, shutdown);
    tokio::spawn(async move {
        let _slot = slot;
        viewer.await;
    });
    Ok(())
}
