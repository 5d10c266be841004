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
