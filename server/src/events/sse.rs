//! Server-Sent Events: `GET /api/events` (every change, with ids and resume) and
//! `GET /api/tasks/{id}/output/stream` (one task's output).

use std::{
    convert::Infallible,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use async_stream::stream;
use axum::{
    body::Body,
    extract::{Path, Query, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{
        sse::{Event as Frame, KeepAlive, Sse},
        IntoResponse, Response,
    },
    routing::get,
    Extension, Router,
};
use bytes::Bytes;
use futures::Stream;
use rand::Rng;
use serde::Deserialize;
use tokio::{net::TcpStream, sync::broadcast::error::RecvError, time::Instant};

use app::model::{event, is_valid_task_id, OutputChunk, Ready};

use crate::{
    events::{
        broker::{Broker, Following, Subscription},
        event::encode_frame,
        fanout::{Attached, StreamSocket},
    },
    http::api::error_response,
    tasks::{plain_text, to_json},
    AppState,
};

/// The streams, with their full paths: `app` serves them outside the compression layer.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/events", get(events))
        .route("/api/tasks/{id}/output/stream", get(output_stream))
        .route("/api/tails/stream", get(tails_stream))
}

#[derive(Deserialize)]
pub struct EventsQuery {
    since: Option<String>,
}

/// `GET /api/events`.
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<EventsQuery>,
    socket: Option<Extension<StreamSocket>>,
) -> Response {
    // A browser reconnecting sends the last id it saw; that beats the first connect's query.
    let cursor = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(query.since);
    let subscription = match state.tasks.broker.subscribe(cursor.as_deref()) {
        Ok(s) => s,
        Err(_) => {
            let mut response = error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many open event streams",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return response;
        }
    };
    let socket = socket.map(|Extension(StreamSocket(socket))| socket);
    let frames = event_frames(state, subscription, socket);
    let mut response = Body::from_stream(frames).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    no_caching_or_buffering(headers);
    response
}

/// An SSE response built with axum's `Sse`, for streams whose frames are made per client:
/// heartbeats after `HEARTBEAT_SECS` of quiet, no caching, no buffering.
fn sse_response(
    state: &AppState,
    frames: impl Stream<Item = Result<Frame, Infallible>> + Send + 'static,
) -> Response {
    let keep_alive = KeepAlive::new()
        .interval(state.config.heartbeat())
        .text("keep-alive");
    let mut response = Sse::new(frames).keep_alive(keep_alive).into_response();
    no_caching_or_buffering(response.headers_mut());
    response
}

fn no_caching_or_buffering(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells nginx-like proxies not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// `ready`, what was missed, then live events until the lifetime cap or shutdown, with a
/// heartbeat after `HEARTBEAT_SECS` of quiet.
///
/// Every subscriber gets the same encoded frame of an event (`Event::frame`), so fanning
/// one event out to 10,000 streams copies nothing. One timer per stream serves both the
/// heartbeat and the lifetime, and it is moved only when it fires, not on every frame:
/// resetting thousands of timers per event would cost more than sending the event.
///
/// On a lean connection (`socket` is given), a stream that has caught up lends its socket
/// to the broker's fan-out, which then writes live events into it without waking this
/// task (`socket_fanout`). When the socket is handed back (it was full), the stream sends
/// the rest of the frame that did not fit and catches up from the ring.
fn event_frames(
    state: AppState,
    subscription: Subscription,
    socket: Option<Arc<TcpStream>>,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let Subscription {
        newest_id,
        cursor_id,
        resumed,
        replay,
        live,
        mut last_seq,
        guard,
    } = subscription;
    let broker = state.tasks.broker.clone();
    // A token of its own: checking a token takes its lock, and 10,000 streams checking the
    // one shared token after every event would queue on that lock.
    let shutdown = state.shutdown.child_token();
    let heartbeat = state.config.heartbeat();
    let ends_at = Instant::now() + state.config.stream_max();
    // Jitter spreads the reconnects of many tabs after a restart.
    let retry_ms: u32 = rand::rng().random_range(1000..3000);
    stream! {
        let _guard = guard;
        let ready = to_json(&Ready { event_id: newest_id, resumed });
        let mut ready_frame = format!("retry: {retry_ms}\n").into_bytes();
        ready_frame.extend_from_slice(&encode_frame(event::READY, &cursor_id, &ready));
        yield Ok(Bytes::from(ready_frame));
        let mut last_id = cursor_id;
        let mut last_sent = Instant::now();
        for event in replay {
            last_id.clone_from(&event.id);
            yield Ok(event.frame().clone());
        }
        // The live feed while this task delivers events itself; the socket's loan while
        // the fan-out does.
        let mut live = Some(live);
        let mut lent: Option<Attached> = None;
        let timer = tokio::time::sleep_until(ends_at.min(last_sent + heartbeat));
        // Made once, not per event: see `event_connection::stream_response`.
        let cancelled = shutdown.cancelled();
        tokio::pin!(timer, cancelled);
        loop {
            if let (Some(socket), Some(feed)) = (&socket, &live) {
                // Caught up: everything received is sent (the connection writes a chunk
                // before asking for the next).
                if feed.is_empty() {
                    lent = broker.attach(socket.clone(), last_seq + 1);
                    if lent.is_some() {
                        live = None;
                    }
                }
            }
            if let Some(loan) = &lent {
                // The loan's end first: a heartbeat that did not fit ends it too.
                tokio::select! {
                    biased;
                    _ = &mut cancelled => break,
                    () = loan.handed_back() => {
                        let back = loan.detach();
                        if let Some(written) = loan.last_write() {
                            last_sent = last_sent.max(Instant::from_std(written));
                        }
                        lent = None;
                        if !back.unwritten.is_empty() {
                            yield Ok(back.unwritten);
                            last_sent = Instant::now();
                        }
                        last_seq = back.next_seq - 1;
                        last_id = broker.id_of(last_seq);
                        let (_, following) = broker.follow_after(Some(last_seq));
                        let (catch_up, feed) = match following {
                            Following::Resumed { replay, live } => (replay, live),
                            Following::Missed { missed, held, live } => {
                                yield Ok(resync(&broker, missed, &last_id));
                                last_sent = Instant::now();
                                (held, live)
                            }
                        };
                        for event in catch_up {
                            last_seq = event.seq;
                            last_id.clone_from(&event.id);
                            yield Ok(event.frame().clone());
                            last_sent = Instant::now();
                        }
                        live = Some(feed);
                    }
                    _ = &mut timer => {
                        let now = Instant::now();
                        if now >= ends_at {
                            let back = loan.detach();
                            if !back.unwritten.is_empty() {
                                yield Ok(back.unwritten);
                            }
                            let last_id = broker.id_of(back.next_seq - 1);
                            yield Ok(lifetime_end(&last_id));
                            break;
                        }
                        let quiet_since = loan
                            .last_write()
                            .map_or(last_sent, |t| Instant::from_std(t).max(last_sent));
                        // A full socket hands the loan back, with the rest.
                        if now >= quiet_since + heartbeat
                            && loan.write_own(&Bytes::from_static(KEEP_ALIVE))
                        {
                            last_sent = now;
                        }
                        timer.as_mut().reset(ends_at.min(last_sent.max(quiet_since) + heartbeat));
                    }
                }
                continue;
            }
            let Some(feed) = &mut live else { break };
            tokio::select! {
                biased;
                _ = &mut cancelled => break,
                _ = &mut timer => {
                    let now = Instant::now();
                    if now >= ends_at {
                        yield Ok(lifetime_end(&last_id));
                        break;
                    }
                    if now >= last_sent + heartbeat {
                        last_sent = now;
                        yield Ok(Bytes::from_static(KEEP_ALIVE));
                    }
                    timer.as_mut().reset(ends_at.min(last_sent + heartbeat));
                }
                received = feed.recv() => {
                    match received {
                        Ok(event) if event.seq <= last_seq => continue,
                        Ok(event) => {
                            last_seq = event.seq;
                            last_id.clone_from(&event.id);
                            yield Ok(event.frame().clone());
                        }
                        Err(RecvError::Lagged(missed)) => yield Ok(resync(&broker, missed, &last_id)),
                        Err(RecvError::Closed) => break,
                    }
                    last_sent = Instant::now();
                }
            }
        }
    }
}

/// Tells a stream that fell behind what is kept to refetch, and counts it.
fn resync(broker: &Broker, missed: u64, last_id: &str) -> Bytes {
    broker.metrics.dropped.fetch_add(missed, Ordering::Relaxed);
    broker.metrics.resyncs.fetch_add(1, Ordering::Relaxed);
    encode_frame(event::RESYNC, last_id, "{}")
}

/// The last frame of a stream that reached `STREAM_MAX_SECS`.
fn lifetime_end(last_id: &str) -> Bytes {
    encode_frame(event::END, last_id, r#"{"reason":"lifetime"}"#)
}

#[derive(Deserialize)]
pub struct OutputQuery {
    from: Option<String>,
}

/// `GET /api/tasks/{id}/output/stream`: what the task printed, as `output` events whose id
/// is the byte offset reached (a reconnect resumes there), then `end` once it is terminal.
pub async fn output_stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<OutputQuery>,
) -> Response {
    if !is_valid_task_id(&id) {
        return error_response(StatusCode::NOT_FOUND, "no such task");
    }
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
        (None, Some("live")) => std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
        _ => 0,
    };
    let tasks = state.tasks.clone();
    let shutdown = state.shutdown.clone();
    let frames = stream! {
        let mut offset = start;
        let mut pending = Vec::new();
        let mut ticker = tokio::time::interval(Duration::from_millis(200));
        loop {
            // Read the terminal flag before the file, so the last read sees all output.
            let lookup = id.clone();
            let tasks_now = tasks.clone();
            let terminal = tokio::task::spawn_blocking(move || tasks_now.get(&lookup))
                .await
                .ok()
                .and_then(Result::ok)
                .is_none_or(|t| t.status.is_terminal());
            let mut drained = true;
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
            }
        }
    };
    sse_response(&state, frames)
}

/// How often the tails stream looks for output that grew.
const TAIL_EVERY: Duration = Duration::from_secs(1);
/// Lines in a tail.
const TAIL_LINES: usize = 3;

/// `GET /api/tails/stream`: the last lines of every live task, sent as a `tail` event
/// whenever its output grows (all of them at first), so the task list shows live tails
/// over one connection instead of one output stream per row. Like `/api/events` it ends
/// after `STREAM_MAX_SECS`; the page holds it open only while it is visible.
pub async fn tails_stream(State(state): State<AppState>) -> Response {
    let tasks = state.tasks.clone();
    let shutdown = state.shutdown.clone();
    let lifetime = state.config.stream_max();
    let frames = stream! {
        let mut sizes = std::collections::HashMap::new();
        let mut ticker = tokio::time::interval(TAIL_EVERY);
        let deadline = tokio::time::sleep(lifetime);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = &mut deadline => {
                    yield Ok(Frame::default().event(event::END).data(r#"{"reason":"lifetime"}"#));
                    break;
                }
                _ = ticker.tick() => {}
            }
            let tasks = tasks.clone();
            let looked = tokio::task::spawn_blocking(move || {
                let tails = tasks.tails_since(&mut sizes, TAIL_LINES);
                (sizes, tails)
            })
            .await;
            let Ok((seen, tails)) = looked else { break };
            sizes = seen;
            for tail in tails.unwrap_or_default() {
                yield Ok::<_, Infallible>(Frame::default().event("tail").data(to_json(&tail)));
            }
        }
    };
    sse_response(&state, frames)
}

/// The most one output frame carries; more follows at once.
const READ_MAX: usize = 256 * 1024;

async fn read_from(path: &std::path::Path, offset: u64) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    let mut bytes = Vec::new();
    file.take(READ_MAX as u64).read_to_end(&mut bytes).await?;
    Ok(bytes)
}

/// How much of `bytes` ends on a UTF-8 character boundary (a character split across two
/// reads waits for its other half).
fn utf8_complete_len(bytes: &[u8]) -> usize {
    match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => bytes.len(),
    }
}
