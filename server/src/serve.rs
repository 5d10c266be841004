//! Accepting connections. taskwire speaks HTTP/1.1 only: browsers use HTTP/2 only over TLS,
//! which taskwire does not do, and hyper's HTTP/1-only connection holds far less memory than
//! the auto-detecting one that `axum::serve` uses (measured with 10,000 open event streams:
//! 17.5 KiB per stream against 50.8 KiB). That matters for a server whose clients each keep
//! a stream open all day.

use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::{rt::TokioIo, server::graceful::GracefulShutdown, service::TowerToHyperService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long shutdown waits for responses in flight (event streams end at once by themselves).
const DRAIN: Duration = Duration::from_secs(5);

/// Serves `app` until `shutdown`, then closes idle connections and waits (briefly) for the
/// rest.
pub async fn serve(listener: TcpListener, app: Router, shutdown: CancellationToken) {
    let graceful = GracefulShutdown::new();
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
        let connection = http1::Builder::new()
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after {DRAIN:?}");
    }
}
