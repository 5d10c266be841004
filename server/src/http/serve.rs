//! Accepting connections. taskwire speaks HTTP/1.1 only: browsers use HTTP/2 only over TLS,
//! which taskwire does not do, and hyper's HTTP/1-only connection holds far less memory than
//! the auto-detecting one that `axum::serve` uses. `GET /api/events`, the connection every
//! open tab keeps all day, is served leaner still by `events::connection`.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    net::{TcpListener, TcpSocket, TcpStream},
    sync::Semaphore,
    time::Instant,
};
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

/// Descriptors kept back from connections: tasks need them (tmux clients, logs, SQLite), and
/// running out turns a new task into `error`.
const KEPT_FOR_TASKS: u64 = 512;

/// What a connection may take of the server.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Open connections at most; one more is answered `503` at once and closed.
    pub max_connections: usize,
    /// One deadline for a connection's request head, from the moment it is accepted.
    pub head_timeout: Duration,
    /// A client that takes no bytes for this long while some wait for it is dropped (a
    /// write deadline, and `TCP_USER_TIMEOUT` for peers that vanished).
    pub stalled_after: Duration,
}

impl Limits {
    /// The limits for `heartbeat`: a stream that read nothing for two heartbeats is dropped.
    pub fn new(heartbeat: Duration) -> Limits {
        Limits {
            max_connections: open_files_limit().saturating_sub(KEPT_FOR_TASKS).max(64) as usize,
            head_timeout: Duration::from_secs(30),
            stalled_after: heartbeat * 2,
        }
    }
}

/// Raises the soft limit of open files to the hard limit (taskwire holds a descriptor per
/// open tab); the limit in effect.
pub fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
    open_files_limit()
}

fn open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit with a valid pointer to a local.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    limit.rlim_cur
}

/// Serves `app` with the limits for the default heartbeat (see `serve_with`).
pub async fn serve(listener: TcpListener, app: Router, shutdown: CancellationToken) {
    serve_with(
        listener,
        app,
        shutdown,
        Limits::new(Duration::from_secs(15)),
    )
    .await
}

/// Serves `app` until `shutdown`, then closes idle connections and waits (briefly) for the
/// rest.
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    limits: Limits,
) {
    let connections = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
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
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            connections.spawn(refuse_busy(stream));
            continue;
        };
        // Frames are small and must not wait for more to fill a packet.
        let _ = stream.set_nodelay(true);
        drop_when_stalled(&stream, limits.stalled_after);
        let served = connection(stream, app.clone(), shutdown.clone(), limits);
        connections.spawn(async move {
            served.await;
            drop(slot);
        });
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
async fn connection(stream: TcpStream, app: Router, shutdown: CancellationToken, limits: Limits) {
    let head_deadline = Instant::now() + limits.head_timeout;
    let first_request = tokio::select! {
        peeked = tokio::time::timeout_at(
            head_deadline,
            event_connection::opens_event_stream(&stream),
        ) => peeked,
        () = shutdown.cancelled() => return,
    };
    match first_request {
        Ok(Ok(true)) => {
            let served =
                event_connection::serve(stream, app, shutdown, head_deadline, limits.stalled_after);
            Box::pin(served).await;
        }
        Ok(Ok(false)) => {
            let served = Box::pin(serve_http(stream, app, shutdown, head_deadline)).await;
            if let Err(e) = served {
                tracing::debug!("connection ended: {e}");
            }
        }
        // Closed or silent before its first request.
        Ok(Err(_)) | Err(_) => {}
    }
}

/// hyper's HTTP/1.1 connection, with upgrades (a task's terminal is a WebSocket). Each
/// request head must arrive within the time left until `head_deadline` (hyper checks it
/// only with a timer). On shutdown it finishes the response in flight, then closes; an
/// idle one closes at once.
async fn serve_http(
    stream: TcpStream,
    app: Router,
    shutdown: CancellationToken,
    head_deadline: Instant,
) -> hyper::Result<()> {
    let head_timeout = head_deadline.saturating_duration_since(Instant::now());
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout.max(Duration::from_millis(1)))
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

/// A connection over the cap: `503` at once, so the client knows, then closed.
async fn refuse_busy(mut stream: TcpStream) {
    use tokio::io::AsyncWriteExt;
    const BODY: &str = r#"{"error":"too many open connections"}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 5\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let write = stream.write_all(answer.as_bytes());
    if tokio::time::timeout(Duration::from_secs(1), write)
        .await
        .is_ok()
    {
        let _ = stream.shutdown().await;
    }
}

/// Asks the kernel to drop a connection whose peer acknowledges nothing for `after`
/// (`TCP_USER_TIMEOUT`; it also covers a peer whose window stays shut), and to probe an
/// idle one (keepalive), so a vanished client does not hold its slot.
fn drop_when_stalled(stream: &TcpStream, after: Duration) {
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    let set = |level: libc::c_int, name: libc::c_int, value: libc::c_int| {
        // SAFETY: setsockopt on a socket we own, with a pointer to a local int.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    };
    let ms = after.as_millis().min(i32::MAX as u128) as libc::c_int;
    let secs = (after.as_secs() as libc::c_int).max(1);
    set(libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, ms);
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, secs);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, secs);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 2);
}
