//! A lean connection for `GET /api/events`, the request every open tab holds all day.
//!
//! hyper keeps an 8 KiB read buffer and an 8 KiB write buffer for each connection for as
//! long as it lives: most of what a server with 10,000 open streams would spend on them. An
//! event stream needs neither. After its request head the client sends nothing more, and
//! each frame is already one piece of bytes, shared by every subscriber, to be written as
//! it is. So this connection reads the head itself (with `httparse`, hyper's own parser),
//! hands the request to the same router as every other (auth, limits and headers all
//! apply), writes the response head and then each body chunk straight to the socket.
//!
//! The response says `Connection: close`, which also marks where its body ends: an
//! `EventSource` opens a new connection to reconnect anyway.

use std::{io, sync::Arc, time::Duration};

use axum::body::HttpBody as _;
use axum::{
    body::Body,
    http::{header, Method, Request, Response, StatusCode, Version},
    Router,
};
use futures::StreamExt;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::events::fanout::StreamSocket;

/// The largest request head accepted, as hyper's default read buffer.
const HEAD_MAX: usize = 8 * 1024;
/// The most header lines accepted.
const HEADERS_MAX: usize = 64;

/// Whether the first request on this connection is `GET /api/events`, judged from the
/// bytes that have arrived, without taking them: any other request goes to hyper intact.
pub async fn opens_event_stream(stream: &TcpStream) -> io::Result<bool> {
    let mut first = [0u8; 16];
    let n = stream.peek(&mut first).await?;
    Ok(matches!(
        &first[..n],
        b"GET /api/events " | b"GET /api/events?"
    ))
}

/// Serves one event-stream request, then closes the connection. The head must have
/// arrived by `head_deadline`; a client that takes no bytes for `stalled_after` while a
/// frame waits for it is dropped, and its subscriber slot freed.
pub async fn serve(
    mut stream: TcpStream,
    app: Router,
    shutdown: CancellationToken,
    head_deadline: Instant,
    stalled_after: Duration,
) {
    let mut request = tokio::select! {
        head = tokio::time::timeout_at(head_deadline, read_head(&mut stream)) => match head {
            Ok(Ok(request)) => request,
            Ok(Err(status)) => {
                let _ = stream_response(&stream, error(status), &shutdown, stalled_after).await;
                close_after_reading(stream).await;
                return;
            }
            Err(_) => return,
        },
        () = shutdown.cancelled() => return,
    };
    // The stream may lend its socket to the broker's fan-out (`fanout`).
    let stream = Arc::new(stream);
    request
        .extensions_mut()
        .insert(StreamSocket(stream.clone()));
    // Boxed, so that this connection's task does not keep room for the router's future
    // for as long as the stream is open.
    let Ok(response) = Box::pin(app.oneshot(request)).await;
    if let Err(e) = stream_response(&stream, response, &shutdown, stalled_after).await {
        tracing::debug!("event stream ended: {e}");
    }
    // The body is gone, and with it the loan of the socket.
    if let Ok(mut stream) = Arc::try_unwrap(stream) {
        let _ = stream.shutdown().await;
    }
}

/// Reads and parses the request head; a status to answer with when it is not acceptable.
async fn read_head(stream: &mut TcpStream) -> Result<Request<Body>, StatusCode> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        if buf.len() >= HEAD_MAX {
            return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        let limit = (HEAD_MAX - buf.len()) as u64;
        match (&mut *stream).take(limit).read_buf(&mut buf).await {
            Ok(0) | Err(_) => return Err(StatusCode::BAD_REQUEST),
            Ok(_) => {}
        }
        let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
        let mut head = httparse::Request::new(&mut headers);
        match head.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => return to_request(&head),
            Ok(httparse::Status::Partial) => continue,
            Err(httparse::Error::TooManyHeaders) => {
                return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
            }
            Err(_) => return Err(StatusCode::BAD_REQUEST),
        }
    }
}

fn to_request(head: &httparse::Request) -> Result<Request<Body>, StatusCode> {
    let method = Method::from_bytes(head.method.unwrap_or_default().as_bytes())
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    let version = match head.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut request = Request::builder()
        .method(method)
        .uri(head.path.unwrap_or("/"))
        .version(version);
    for field in head.headers.iter() {
        request = request.header(field.name, field.value);
    }
    request
        .body(Body::empty())
        .map_err(|_| StatusCode::BAD_REQUEST)
}

fn error(status: StatusCode) -> Response<Body> {
    crate::answer::error_response(status, status.canonical_reason().unwrap_or("bad request"))
}

/// Writes the head, then each body chunk as it comes, until the body ends, the client
/// leaves or the server shuts down.
///
/// The futures that watch for the client leaving and for shutdown are made once, not once
/// per chunk: with thousands of streams, registering and unregistering them for every
/// event was a good part of what fanning an event out cost.
async fn stream_response(
    stream: &TcpStream,
    response: Response<Body>,
    shutdown: &CancellationToken,
    stalled_after: Duration,
) -> io::Result<()> {
    let (head, body) = response.into_parts();
    write_head(stream, &head, body.size_hint().exact()).await?;
    // The headers are sent: free them rather than hold them as long as the stream.
    drop(head);
    let mut chunks = body.into_data_stream();
    let gone = client_gone(stream);
    let cancelled = shutdown.cancelled();
    tokio::pin!(gone, cancelled);
    loop {
        let chunk = tokio::select! {
            biased;
            chunk = chunks.next() => chunk,
            () = &mut gone => None,
        };
        let Some(Ok(chunk)) = chunk else {
            return Ok(());
        };
        // A client that stops reading fills its socket buffer and this write waits; the
        // broker does not wait for it (it gets `resync` if it reads again in time), and a
        // client that took nothing for `stalled_after` is let go of.
        tokio::select! {
            biased;
            written = tokio::time::timeout(stalled_after, write_all(stream, &chunk)) => {
                written.map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading"))??
            }
            () = &mut gone => return Ok(()),
            () = &mut cancelled => return Ok(()),
        }
    }
}

/// Writes all of `bytes`, through a shared reference so that `client_gone` can watch the
/// same socket meanwhile.
async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match stream.try_write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The status line and headers, with `Connection: close` and, for a body of known size,
/// `Content-Length`.
async fn write_head(
    stream: &TcpStream,
    head: &axum::http::response::Parts,
    known_length: Option<u64>,
) -> io::Result<()> {
    let status = head.status;
    let mut bytes = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("")
    )
    .into_bytes();
    for (name, value) in &head.headers {
        // Hop-by-hop headers are this connection's to set.
        if name == header::CONNECTION || name == header::TRANSFER_ENCODING {
            continue;
        }
        bytes.extend_from_slice(name.as_str().as_bytes());
        bytes.extend_from_slice(b": ");
        bytes.extend_from_slice(value.as_bytes());
        bytes.extend_from_slice(b"\r\n");
    }
    if !head.headers.contains_key(header::CONTENT_LENGTH) {
        if let Some(len) = known_length {
            bytes.extend_from_slice(format!("content-length: {len}\r\n").as_bytes());
        }
    }
    bytes.extend_from_slice(b"connection: close\r\n\r\n");
    write_all(stream, &bytes).await
}

/// Closes a connection whose request was refused, after reading what the client still
/// sends (for a moment, up to a limit): closing with unread bytes would send a reset, which
/// can destroy the answer before the client has read it.
async fn close_after_reading(mut stream: TcpStream) {
    const LINGER: Duration = Duration::from_secs(2);
    const LINGER_MAX: u64 = 64 * 1024;
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(
        LINGER,
        tokio::io::copy(&mut (&mut stream).take(LINGER_MAX), &mut tokio::io::sink()),
    )
    .await;
}

/// Resolves once the client has closed its end or the socket has failed. Anything else it
/// sends is read and dropped: nothing more is answered on this connection.
async fn client_gone(stream: &TcpStream) {
    let mut scratch = [0u8; 64];
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        match stream.try_read(&mut scratch) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}
