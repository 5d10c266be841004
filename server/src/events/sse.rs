//! `GET /api/events`: every change, with ids and resume.
//!
//! A stream is a small state machine. It first sends `ready` and what the client missed,
//! then delivers live events in one of two ways ([`Delivery`]): its own task receives each
//! event from the broker's feed and sends it, or, on a lean connection that has caught up,
//! it lends its socket to the fan-out writers, which write the events into it while the
//! task sleeps. A full socket ends the loan; the task then sends what did not fit, catches
//! up from the ring and may lend the socket again.
//!
//! Why no event is lost or sent twice across a loan and its end: `last_seq` is always the
//! newest event the client was given (or that the writers are to write right after).
//! A socket is lent only once the feed is empty (everything received is sent), with
//! "write from `last_seq + 1`"; the writers hand it back saying which event they would
//! have written next (`next_seq`) and the unwritten end of the frame they were in. The
//! stream sends that end first, sets `last_seq = next_seq - 1`, and follows the broker from
//! there, which replays from the ring what came since (or says `resync` if the ring no
//! longer holds it). Live events the new feed repeats are dropped by their number.

use std::{
    convert::Infallible,
    pin::Pin,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use async_stream::stream;
use axum::{
    body::Body,
    extract::{FromRef, Query, State},
    http::{header, HeaderMap, HeaderValue},
    response::{IntoResponse, Response},
    routing::get,
    Extension, Router,
};
use bytes::Bytes;
use futures::Stream;
use rand::Rng;
use serde::Deserialize;
use tokio::{
    net::TcpStream,
    sync::broadcast::{self, error::RecvError},
    time::{Instant, Sleep},
};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use app::model::{event, Ready};

use crate::answer::busy;

use super::{
    broker::{Broker, Following, Subscription},
    event::{encode_frame, to_json, Event},
    fanout::{Attached, StreamSocket},
};

/// What `GET /api/events` needs of the application: the broker, the stream timings and
/// the signal that the server is shutting down.
#[derive(Clone)]
pub struct EventStreams {
    pub broker: Arc<Broker>,
    pub heartbeat: Duration,
    pub lifetime: Duration,
    pub shutdown: CancellationToken,
}

/// `/api/events`, with its full path: `app` serves it outside the compression layer.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    EventStreams: FromRef<S>,
{
    Router::new().route("/api/events", get(events))
}

#[derive(Deserialize)]
pub struct EventsQuery {
    since: Option<String>,
}

/// `GET /api/events`.
pub async fn events(
    State(streams): State<EventStreams>,
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
    // A fleet reads back, from its stream, what the ring no longer holds.
    let older = streams.broker.read_missed(cursor.as_deref()).await;
    let Ok(subscription) = streams.broker.subscribe_with(cursor.as_deref(), older) else {
        return busy("too many open event streams");
    };
    let socket = socket.map(|Extension(StreamSocket(socket))| socket);
    let frames = event_frames(streams, subscription, socket);
    let mut response = Body::from_stream(frames).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    no_caching_or_buffering(headers);
    response
}

pub fn no_caching_or_buffering(headers: &mut HeaderMap) {
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
fn event_frames(
    streams: EventStreams,
    subscription: Subscription,
    socket: Option<Arc<TcpStream>>,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let Subscription {
        newest_id,
        cursor_id,
        resumed,
        replay,
        live,
        last_seq,
        guard,
    } = subscription;
    // A token of its own: checking a token takes its lock, and 10,000 streams checking the
    // one shared token after every event would queue on that lock.
    let shutdown = streams.shutdown.child_token();
    let now = Instant::now();
    let mut state = EventStream {
        broker: streams.broker,
        socket,
        delivery: Delivery::Own(live),
        last_seq,
        last_id: cursor_id,
        last_sent: now,
        heartbeat: streams.heartbeat,
        ends_at: now + streams.lifetime,
    };
    // Jitter spreads the reconnects of many tabs after a restart.
    let retry_ms: u32 = rand::rng().random_range(1000..3000);
    stream! {
        let _guard = guard;
        let ready = to_json(&Ready { event_id: newest_id, resumed });
        let mut ready_frame = format!("retry: {retry_ms}\n").into_bytes();
        ready_frame.extend_from_slice(&encode_frame(event::READY, &state.last_id, &ready));
        yield Ok(Bytes::from(ready_frame));
        for event in replay {
            state.last_id.clone_from(&event.id);
            yield Ok(event.frame().clone());
        }
        let timer = tokio::time::sleep_until(state.next_beat(state.last_sent));
        // Made once, not per event: see `connection::stream_response`.
        let cancelled = shutdown.cancelled();
        tokio::pin!(timer, cancelled);
        // Frames of one step; reused, so a step allocates nothing.
        let mut frames = Vec::new();
        loop {
            let step = state.step(&mut frames, timer.as_mut(), cancelled.as_mut()).await;
            for frame in frames.drain(..) {
                yield Ok(frame);
            }
            if let Step::End = step {
                break;
            }
        }
    }
}

/// Who delivers the live events of a stream.
enum Delivery {
    /// The stream's own task, from the broker's feed.
    Own(broadcast::Receiver<Arc<Event>>),
    /// The fan-out writers, into the lent socket, until they hand it back.
    Lent(Attached),
}

/// One stream between two steps.
struct EventStream {
    broker: Arc<Broker>,
    /// The socket of a lean connection, which may be lent to the fan-out.
    socket: Option<Arc<TcpStream>>,
    delivery: Delivery,
    /// The newest event the client was given (see the module's comment).
    last_seq: u64,
    last_id: String,
    /// When this task last sent a frame (the writers' writes are counted apart).
    last_sent: Instant,
    heartbeat: Duration,
    ends_at: Instant,
}

enum Step {
    Continue,
    End,
}

type Timer<'a> = Pin<&'a mut Sleep>;
type Cancelled<'a, 'b> = Pin<&'a mut WaitForCancellationFuture<'b>>;

impl EventStream {
    /// Waits for what comes next and puts the frames it calls for into `frames`.
    async fn step(
        &mut self,
        frames: &mut Vec<Bytes>,
        timer: Timer<'_>,
        cancelled: Cancelled<'_, '_>,
    ) -> Step {
        self.lend_if_caught_up();
        match self.delivery {
            Delivery::Own(_) => self.deliver_own(frames, timer, cancelled).await,
            Delivery::Lent(_) => self.while_lent(frames, timer, cancelled).await,
        }
    }

    /// Lends the socket once everything received is sent (the connection writes a frame
    /// before it asks for the next, so an empty feed means the client has it all).
    fn lend_if_caught_up(&mut self) {
        let (Some(socket), Delivery::Own(feed)) = (&self.socket, &self.delivery) else {
            return;
        };
        if !feed.is_empty() {
            return;
        }
        if let Some(loan) = self.broker.attach(socket.clone(), self.last_seq + 1) {
            self.delivery = Delivery::Lent(loan);
        }
    }

    /// The next live event from the feed, a heartbeat, or the end.
    async fn deliver_own(
        &mut self,
        frames: &mut Vec<Bytes>,
        mut timer: Timer<'_>,
        mut cancelled: Cancelled<'_, '_>,
    ) -> Step {
        let Delivery::Own(feed) = &mut self.delivery else {
            return Step::Continue;
        };
        tokio::select! {
            biased;
            _ = &mut cancelled => return Step::End,
            _ = &mut timer => {
                let now = Instant::now();
                if now >= self.ends_at {
                    frames.push(lifetime_end(&self.last_id));
                    return Step::End;
                }
                if now >= self.last_sent + self.heartbeat {
                    self.last_sent = now;
                    frames.push(Bytes::from_static(KEEP_ALIVE));
                }
                timer.reset(self.next_beat(self.last_sent));
            }
            received = feed.recv() => {
                match received {
                    // Already replayed.
                    Ok(event) if event.seq <= self.last_seq => return Step::Continue,
                    Ok(event) => {
                        self.last_seq = event.seq;
                        self.last_id.clone_from(&event.id);
                        frames.push(event.frame().clone());
                    }
                    Err(RecvError::Lagged(missed)) => {
                        frames.push(resync(&self.broker, missed, &self.last_id));
                    }
                    Err(RecvError::Closed) => return Step::End,
                }
                self.last_sent = Instant::now();
            }
        }
        Step::Continue
    }

    /// While the writers hold the socket: the loan's end, a heartbeat, or the end.
    async fn while_lent(
        &mut self,
        frames: &mut Vec<Bytes>,
        mut timer: Timer<'_>,
        mut cancelled: Cancelled<'_, '_>,
    ) -> Step {
        let Delivery::Lent(loan) = &self.delivery else {
            return Step::Continue;
        };
        // The loan's end first: a heartbeat that did not fit ends it too.
        tokio::select! {
            biased;
            _ = &mut cancelled => Step::End,
            () = loan.handed_back() => {
                self.take_back(frames);
                Step::Continue
            }
            _ = &mut timer => {
                let now = Instant::now();
                if now >= self.ends_at {
                    let back = loan.detach();
                    if !back.unwritten.is_empty() {
                        frames.push(back.unwritten);
                    }
                    frames.push(lifetime_end(&self.broker.id_of(back.next_seq - 1)));
                    return Step::End;
                }
                let quiet_since = loan
                    .last_write()
                    .map_or(self.last_sent, |t| Instant::from_std(t).max(self.last_sent));
                // A full socket hands the loan back, with the rest.
                if now >= quiet_since + self.heartbeat
                    && loan.write_own(&Bytes::from_static(KEEP_ALIVE))
                {
                    self.last_sent = now;
                }
                timer.reset(self.next_beat(self.last_sent.max(quiet_since)));
                Step::Continue
            }
        }
    }

    /// The writers handed the socket back: send the end of the frame that did not fit,
    /// then catch up from the ring, and deliver from the feed again.
    fn take_back(&mut self, frames: &mut Vec<Bytes>) {
        let Delivery::Lent(loan) = &self.delivery else {
            return;
        };
        let back = loan.detach();
        if let Some(written) = loan.last_write() {
            self.last_sent = self.last_sent.max(Instant::from_std(written));
        }
        if !back.unwritten.is_empty() {
            frames.push(back.unwritten);
            self.last_sent = Instant::now();
        }
        self.last_seq = back.next_seq - 1;
        self.last_id = self.broker.id_of(self.last_seq);
        let (_, following) = self.broker.follow_after(Some(self.last_seq));
        let (catch_up, feed) = match following {
            Following::Resumed { replay, live } => (replay, live),
            Following::Missed { missed, held, live } => {
                frames.push(resync(&self.broker, missed, &self.last_id));
                self.last_sent = Instant::now();
                (held, live)
            }
        };
        for event in catch_up {
            self.last_seq = event.seq;
            self.last_id.clone_from(&event.id);
            frames.push(event.frame().clone());
            self.last_sent = Instant::now();
        }
        self.delivery = Delivery::Own(feed);
    }

    /// When the timer should next fire: a heartbeat after `since`, or the lifetime's end.
    fn next_beat(&self, since: Instant) -> Instant {
        self.ends_at.min(since + self.heartbeat)
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
