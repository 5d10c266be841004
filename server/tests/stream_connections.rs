//! How event-stream connections are served, seen from a raw TCP client: a fresh connection
//! whose first request is `GET /api/events` gets the lean path (`event_connection`), a
//! reused keep-alive connection gets hyper, and both deliver the same stream. Bad request
//! heads get a clear 4xx.
mod common;

use std::{sync::atomic::Ordering, time::Duration};

use common::{Fixture, TOKEN};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const SOON: Duration = Duration::from_secs(10);

async fn connect(server: &common::TestServer) -> TcpStream {
    let addr = server.base.trim_start_matches("http://");
    TcpStream::connect(addr).await.unwrap()
}

/// Reads until `needle` has arrived; everything read so far.
async fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(SOON, async {
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed before {needle:?}: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains(needle) {
                return;
            }
        }
    })
    .await;
    let seen = String::from_utf8_lossy(&seen).into_owned();
    assert!(found.is_ok(), "no {needle:?} within {SOON:?}: {seen}");
    seen
}

/// Sends `request` on a new connection and reads the answer until the server closes it.
async fn answer_to(server: &common::TestServer, request: &[u8]) -> String {
    let mut stream = connect(server).await;
    // The server may answer and close before it has read all of a request it refuses.
    let _ = stream.write_all(request).await;
    let mut seen = Vec::new();
    tokio::time::timeout(SOON, stream.read_to_end(&mut seen))
        .await
        .expect("the server closes the connection")
        .unwrap();
    String::from_utf8_lossy(&seen).into_owned()
}

/// Asserts that `response` has `status` and an `{"error": …}` body.
fn assert_refused(response: &str, status: u16) {
    assert!(
        response.starts_with(&format!("HTTP/1.1 {status} ")),
        "{response}"
    );
    assert!(response.contains(r#"{"error":"#), "{response}");
}

fn open_streams(server: &common::TestServer) -> usize {
    let metrics = &server.state.tasks.broker.metrics;
    metrics.open_streams.load(Ordering::Relaxed)
}

fn events_request(extra_headers: &str) -> String {
    format!(
        "GET /api/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\
         Accept: text/event-stream\r\n{extra_headers}\r\n"
    )
}

#[tokio::test]
async fn a_fresh_connection_streams_events_and_frees_its_place_when_the_client_leaves() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let mut stream = connect(&server).await;
    stream
        .write_all(events_request("").as_bytes())
        .await
        .unwrap();
    let head = read_until(&mut stream, "event: ready").await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let head = head.to_lowercase();
    assert!(
        head.contains("content-type: text/event-stream\r\n"),
        "{head}"
    );
    assert!(head.contains("cache-control: no-cache\r\n"), "{head}");
    assert!(head.contains("connection: close\r\n"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");

    // A change reaches this stream as a plain frame, written as it is.
    let task = server
        .create(serde_json::json!({"command": "sleep 30"}))
        .await;
    let created = read_until(&mut stream, "event: task.created").await;
    assert!(created.contains(&task.id), "{created}");

    let open = &server.state.tasks.broker.metrics.open_streams;
    assert_eq!(open.load(Ordering::Relaxed), 1);
    drop(stream);
    common::wait_until(
        "the stream of the client that left to be freed",
        SOON,
        || open.load(Ordering::Relaxed) == 0,
    )
    .await;
}

#[tokio::test]
async fn an_event_stream_on_a_reused_connection_works_too() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let mut stream = connect(&server).await;
    // A browser often sends its EventSource request on a connection it already used.
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut stream, "ok").await;
    stream
        .write_all(events_request("").as_bytes())
        .await
        .unwrap();
    let seen = read_until(&mut stream, "event: ready").await;
    assert!(seen.contains("text/event-stream"), "{seen}");
}

#[tokio::test]
async fn an_event_stream_without_a_token_gets_401_with_an_error() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let response = answer_to(
        &server,
        b"GET /api/events HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_refused(&response, 401);
    assert_eq!(open_streams(&server), 0);
}

#[tokio::test]
async fn a_malformed_or_oversized_request_head_gets_a_clear_4xx() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let response = answer_to(
        &server,
        b"GET /api/events HTTP/1.1\r\nno colon here\r\n\r\n",
    )
    .await;
    assert_refused(&response, 400);

    let big = format!("X-Padding: {}\r\n", "a".repeat(10_000));
    let response = answer_to(&server, events_request(&big).as_bytes()).await;
    assert_refused(&response, 431);
    assert_eq!(open_streams(&server), 0);
}

/// Opens a lean event stream and reads past its response head.
async fn lean_stream(server: &common::TestServer) -> common::SseClient {
    let mut stream = connect(server).await;
    stream
        .write_all(events_request("").as_bytes())
        .await
        .unwrap();
    let seen = read_until(&mut stream, "\r\n\r\n").await;
    let (head, body) = seen.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    common::SseClient::over_connection(stream, body)
}

/// Opens a lean event stream and waits until the fan-out writes to its socket.
async fn lent_stream(server: &common::TestServer) -> common::SseClient {
    let mut events = lean_stream(server).await;
    events.wait_for("ready", SOON).await;
    wait_for_direct_streams(server, 1).await;
    events
}

/// Streams whose socket the fan-out writes to itself.
fn direct_streams(server: &common::TestServer) -> usize {
    let metrics = &server.state.tasks.broker.metrics;
    metrics.lent_streams.load(Ordering::Relaxed)
}

async fn wait_for_direct_streams(server: &common::TestServer, count: usize) {
    common::wait_until(
        &format!("{count} streams written to by the fan-out"),
        SOON,
        || direct_streams(server) == count,
    )
    .await;
}

/// Reads events until the one whose data has `"n": last`, checking each frame is whole
/// (its data parses) and that the numbered ones come in order, none twice, none missing;
/// the names of the other frames seen.
async fn read_numbered_through(events: &mut common::SseClient, last: u64) -> Vec<String> {
    let (numbers, others) = read_increasing_through(events, last).await;
    assert_eq!(
        numbers,
        (1..=last).collect::<Vec<_>>(),
        "events in order, none twice, none missing"
    );
    others
}

/// Reads events until the one whose data has `"n": last`, checking each frame is whole
/// and that the numbered ones come in order, none twice (some may be missing); the numbers
/// seen, and the names of the other frames.
async fn read_increasing_through(
    events: &mut common::SseClient,
    last: u64,
) -> (Vec<u64>, Vec<String>) {
    let mut numbers: Vec<u64> = Vec::new();
    let mut others = Vec::new();
    while numbers.last() != Some(&last) {
        let frame = events.next_event(SOON).await.expect("stream open");
        let data = frame.json();
        assert!(!data.is_null(), "a whole frame: {frame:?}");
        match data["n"].as_u64() {
            Some(n) => {
                let after = numbers.last().copied().unwrap_or(0);
                assert!(n > after, "in order, none twice: {n} after {after}");
                numbers.push(n);
            }
            None => others.push(frame.name().to_string()),
        }
    }
    (numbers, others)
}

fn publish_numbered(server: &common::TestServer, count: u64, pad: usize) {
    let pad = "x".repeat(pad);
    for n in 1..=count {
        let data = format!(r#"{{"n":{n},"pad":"{pad}"}}"#);
        server.state.tasks.broker.publish("task.updated", data);
    }
}

#[tokio::test]
async fn a_caught_up_stream_gets_every_event_in_order_written_by_the_fanout() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let mut events = lent_stream(&server).await;

    publish_numbered(&server, 200, 100);
    let others = read_numbered_through(&mut events, 200).await;
    assert!(others.is_empty(), "nothing else: {others:?}");
    assert_eq!(
        direct_streams(&server),
        1,
        "still written to by the fan-out"
    );
}

#[tokio::test]
async fn many_caught_up_streams_each_get_every_event_in_order() {
    // More streams than one writer takes at a time, so the writers share each event.
    const STREAMS: usize = 200;
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        let mut events = lean_stream(&server).await;
        events.wait_for("ready", SOON).await;
        streams.push(events);
    }
    wait_for_direct_streams(&server, STREAMS).await;

    // About 9 KB per stream: within what a socket takes before the client reads.
    publish_numbered(&server, 100, 20);
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut events| {
            tokio::spawn(async move {
                let others = read_numbered_through(&mut events, 100).await;
                (others, events)
            })
        })
        .collect();
    let mut still_open = Vec::new();
    for reader in readers {
        let (others, events) = reader
            .await
            .expect("every stream gets every event in order");
        assert!(others.is_empty(), "nothing else: {others:?}");
        still_open.push(events);
    }
    wait_for_direct_streams(&server, STREAMS).await;
}

#[tokio::test]
async fn a_client_that_stops_reading_gets_every_event_once_it_reads_again() {
    let fixture = Fixture::new();
    let server = fixture.serve_with(|c| c.replay = 1000).await;
    let mut events = lent_stream(&server).await;

    // 25 MB while the client reads nothing: more than both socket buffers hold, less than
    // the broker keeps. The fan-out hands the socket back to the stream's task mid-frame.
    publish_numbered(&server, 400, 64 * 1024);
    wait_for_direct_streams(&server, 0).await;

    let others = read_numbered_through(&mut events, 400).await;
    assert!(others.is_empty(), "no resync: {others:?}");
    // Caught up again, the stream is lent to the fan-out again.
    wait_for_direct_streams(&server, 1).await;
    publish_numbered(&server, 1, 0);
    let frame = events.next_event(SOON).await.unwrap();
    assert_eq!(frame.json()["n"], 1);
}

#[tokio::test]
async fn a_client_that_falls_behind_what_is_kept_gets_resync_then_what_is_kept() {
    let fixture = Fixture::new();
    let server = fixture.serve_with(|c| c.replay = 8).await;
    let mut events = lent_stream(&server).await;

    // 19 MB while the client reads nothing, and the broker keeps only 8 events.
    publish_numbered(&server, 300, 64 * 1024);
    server
        .state
        .tasks
        .broker
        .publish("task.updated", r#"{"n":301}"#.into());

    let (_, others) = read_increasing_through(&mut events, 301).await;
    assert!(others.iter().any(|name| name == "resync"), "{others:?}");
    let metrics = &server.state.tasks.broker.metrics;
    assert!(metrics.dropped.load(Ordering::Relaxed) > 0);
}

#[tokio::test]
async fn a_stream_written_by_the_fanout_still_gets_heartbeats_and_its_end() {
    let fixture = Fixture::new();
    let server = fixture
        .serve_with(|c| {
            c.heartbeat_secs = 1;
            c.stream_max_secs = 3;
        })
        .await;
    let mut events = lent_stream(&server).await;
    publish_numbered(&server, 1, 0);
    let event = events.next_event(SOON).await.unwrap();
    assert_eq!(event.json()["n"], 1);

    let beat = events.next_within(SOON).await.unwrap();
    assert_eq!(beat.comment.as_deref(), Some(" keep-alive"));
    let end = events.wait_for("end", SOON).await;
    assert_eq!(
        end.id, event.id,
        "the end carries the id of the last event sent"
    );
    assert!(events.next_within(SOON).await.is_none(), "closed after end");
    assert_eq!(direct_streams(&server), 0);
}

#[tokio::test]
async fn streams_of_a_fanout_too_far_behind_are_told_to_resync_and_go_on() {
    let fixture = Fixture::new();
    let server = fixture.serve_with(|c| c.replay = 2).await;
    let mut events = lent_stream(&server).await;

    // Published faster than a writer can send them one by one: it falls more than the two
    // kept events behind, so it hands the stream back rather than go on writing old news.
    publish_numbered(&server, 200, 0);
    let resync = events.wait_for("resync", SOON).await;
    assert_eq!(resync.json(), serde_json::json!({}));
    let (_, others) = read_increasing_through(&mut events, 200).await;
    assert!(
        others.is_empty(),
        "only numbered events after it: {others:?}"
    );
    wait_for_direct_streams(&server, 1).await;
}
