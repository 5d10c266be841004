//! A reconnect storm: 10,000 open event streams, the server restarted (SIGTERM, then a new
//! process on the same port and data dir); the time until all 10,000 have their `ready`
//! again, counting connections refused or dropped once the new server listens, and streams
//! that claim to resume across the restart (a new server starts a new epoch, so none may).
//! Run: `cargo bench -p server --bench reconnect`. Target: <= 10 s.
//!
//! Each client behaves as `EventSource` does: after the stream ends it waits the `retry:`
//! the server gave (1-3 s, with jitter), reconnects with `Last-Event-ID`, and while the
//! server is down waits that long again between attempts.

use std::{
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::Barrier,
};

const STREAMS: usize = 10_000;
const TOKEN: &str = "test-token";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        return serve(&args[i + 1], args[i + 2].parse().unwrap());
    }
    server::http::serve::raise_open_files_limit();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let data = dir.path().to_str().unwrap().to_string();
    let mut child = start_server(&data, port);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let counts = Arc::new(Counts::default());
        let connected = Arc::new(Barrier::new(STREAMS + 1));
        for _ in 0..STREAMS {
            tokio::spawn(client(port, counts.clone(), connected.clone()));
        }
        connected.wait().await;
        println!("{STREAMS} streams open; restarting the server");
        let restarted = Instant::now();
        // SAFETY: a signal to our own child process.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        child.wait().unwrap();
        let stopped = restarted.elapsed();
        child = start_server(&data, port);
        let listening = restarted.elapsed();
        while counts.ready_again.load(Ordering::Relaxed) < STREAMS {
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert!(restarted.elapsed() < Duration::from_secs(120), "the storm never settled");
        }
        println!(
            "all {STREAMS} streams have `ready` again {:.2?} after the restart began \
             (old server gone after {stopped:.2?}, new one listening after {listening:.2?}; target <= 10 s)",
            restarted.elapsed()
        );
        println!(
            "  refused or dropped once listening: {}; resumed across the restart: {} (both must be 0)",
            counts.failed.load(Ordering::Relaxed),
            counts.resumed_wrongly.load(Ordering::Relaxed)
        );
        // SAFETY: as above.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        child.wait().unwrap();
    });
}

#[derive(Default)]
struct Counts {
    ready_again: AtomicUsize,
    failed: AtomicUsize,
    resumed_wrongly: AtomicUsize,
}

/// One browser tab's event stream, through one restart.
async fn client(port: u16, counts: Arc<Counts>, connected: Arc<Barrier>) {
    let (first, _) = open_until_ready(port, None, Duration::from_millis(100), &counts, false).await;
    connected.wait().await;
    // Read until the old server closes the stream.
    let (mut stream, last_id, retry) = first;
    let mut buf = [0u8; 4096];
    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
    tokio::time::sleep(retry).await;
    let (_, resumed) = open_until_ready(port, Some(&last_id), retry, &counts, true).await;
    if resumed {
        counts.resumed_wrongly.fetch_add(1, Ordering::Relaxed);
    }
    counts.ready_again.fetch_add(1, Ordering::Relaxed);
}

/// Connects (again and again while nothing listens) until a `ready` arrives: the stream,
/// the id it named, the retry it asked for, and whether it said `resumed`.
async fn open_until_ready(
    port: u16,
    last_id: Option<&str>,
    retry: Duration,
    counts: &Counts,
    after_restart: bool,
) -> ((TcpStream, String, Duration), bool) {
    loop {
        match try_open(port, last_id).await {
            Ok(opened) => return opened,
            Err(Refusal::NotListening) => {}
            Err(Refusal::Failed) if after_restart => {
                counts.failed.fetch_add(1, Ordering::Relaxed);
            }
            Err(Refusal::Failed) => {}
        }
        tokio::time::sleep(retry).await;
    }
}

enum Refusal {
    /// Connection refused: the server is not up yet (expected during the restart).
    NotListening,
    /// Anything else: reset, closed before `ready`, an error status.
    Failed,
}

async fn try_open(
    port: u16,
    last_id: Option<&str>,
) -> Result<((TcpStream, String, Duration), bool), Refusal> {
    let mut stream = match TcpStream::connect(("127.0.0.1", port)).await {
        Ok(stream) => stream,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(Refusal::NotListening)
        }
        Err(_) => return Err(Refusal::Failed),
    };
    let resume = last_id.map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
    let head = format!(
        "GET /api/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n{resume}\r\n"
    );
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|_| Refusal::Failed)?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        let n = stream.read(&mut buf).await.map_err(|_| Refusal::Failed)?;
        if n == 0 {
            return Err(Refusal::Failed);
        }
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        if !text.starts_with("HTTP/1.1 200") && text.contains("\r\n") {
            return Err(Refusal::Failed);
        }
        let Some(at) = text.find("event: ready\n") else {
            continue;
        };
        let Some(end) = text[at..].find("\n\n") else {
            continue;
        };
        let frame = &text[at..at + end];
        let field = |name: &str| {
            frame
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        let retry_ms: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("retry: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(1000);
        let id = field("id: ");
        let resumed = field("data: ").contains("\"resumed\":true");
        return Ok(((stream, id, Duration::from_millis(retry_ms)), resumed));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// This binary again, serving on `port` with the data in `dir`; returns once it listens.
fn start_server(dir: &str, port: u16) -> Child {
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--serve", dir, &port.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

fn serve(dir: &str, port: u16) {
    server::http::serve::raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut config = server::Config::for_dirs(dir, format!("twbench-rc-{port}"));
        config.max_subscribers = STREAMS * 2;
        let leptos = leptos::prelude::LeptosOptions::builder()
            .output_name("taskwire")
            .build();
        let state = server::AppState::open(config, leptos).unwrap();
        let listener = server::http::serve::listen(([127, 0, 0, 1], port).into()).unwrap();
        let shutdown = state.shutdown.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
            term.recv().await;
            shutdown.cancel();
        });
        let stopping = state.shutdown.clone();
        let limits = server::Limits::new(Duration::from_secs(15));
        server::serve_with(listener, server::app(state), stopping, limits).await;
    });
}
