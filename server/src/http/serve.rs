//! Accepting connections. taskwire speaks HTTP/1.1 only: browsers use HTTP/2 only over TLS,
//! which taskwire does not do, and hyper's HTTP/1-only connection holds far less memory than
//! the auto-detecting one that `axum::serve` uses. `GET /api/events`, the connection every
//! open tab keeps all day, is served leaner still by `events::connection`.

use std::{io, net::SocketAddr, time::Duration};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::events::connection as event_connection;

/// Connections the kernel may hold for us before we accept them. Rust's default (128) is too
/// few for a restart, when every open tab reconnects within a few seconds: the rest would
/// be dropped and retried only a second later. The kernel caps it at `somaxconn`.
const BACKLOG: u32 = 4096;

/// A listener on `addr` with room for a burst of reconnects.
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// How long shutdown waits for responses in flight (event streams end at once by themselves).
const DRAIN: Duration = Duration::from_secs(5);

/// Serves `app` until `shutdown`, then closes idle connections and waits (briefly) for the
/// rest.
pub async fn serve(listener: TcpListener, app: Router, shutdown: CancellationToken) {
    let connections = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, most likely: give the open ones a moment.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Frames are small and must not wait for more to fill a packet.
        let _ = stream.set_nodelay(true);
        connections.spawn(connection(stream, app.clone(), shutdown.clone()));
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(DRAIN, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after {DRAIN:?}");
    }
}

/// One connection: an event stream served by `events::connection`, anything else by hyper.
/// Both are boxed, because a task's allocation is as large as its largest state and an
/// event stream should not carry room for hyper's connection all day.
async fn connection(stream: TcpStream, app: Router, shutdown: CancellationToken) {
    let first_request = tokio::select! {
        peeked = tokio::time::timeout(
            event_connection::HEAD_TIMEOUT,
            event_connection::opens_event_stream(&stream),
        ) => peeked,
        () = shutdown.cancelled() => return,
    };
    match first_request {
        Ok(Ok(true)) => {
            Box::pin(event_connection::serve(stream, app, shutdown)).await;
        }
        Ok(Ok(false)) => {
            let served = Box::pin(serve_http(stream, app, shutdown)).await;
            if let Err(e) = served {
                tracing::debug!("connection ended: {e}");
            }
        }
        // Closed or silent before its first request.
        Ok(Err(_)) | Err(_) => {}
    }
}

/// hyper's HTTP/1.1 connection, with upgrades (a task's terminal is a WebSocket). On
/// shutdown it finishes the response in flight, then closes; an idle one closes at once.
async fn serve_http(
    stream: TcpStream,
    app: Router,
    shutdown: CancellationToken,
) -> hyper::Result<()> {
    let connection = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        served = connection.as_mut() => served,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    }
}
