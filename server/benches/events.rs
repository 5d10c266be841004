//! Event-stream benchmarks. Run: `cargo bench -p server --bench events`.
//!
//! - Publish cost with 0 and with 10,000 subscribers (in process). Target: flat, < 1 µs.
//! - 10,000 concurrent idle `GET /api/events` streams against the server in a separate
//!   process (this binary re-run with `--serve`): server memory per stream, from its RSS.
//!   Target: <= 8 KiB.
//! - One event fanned out to those 10,000 streams: time from the request that publishes it
//!   (a rename) until the last stream has it, p50 and p99 over 100 events. Target: p99 <= 50 ms.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::{mpsc, Semaphore},
};

/// Counts the heap the server process holds, to tell what its streams allocate from what
/// the allocator keeps around them (RSS).
struct CountingAllocator;

static HEAP_BYTES: AtomicUsize = AtomicUsize::new(0);
static HEAP_BLOCKS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only counted.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HEAP_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        HEAP_BLOCKS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HEAP_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        HEAP_BLOCKS.fetch_sub(1, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HEAP_BYTES.fetch_add(new_size, Ordering::Relaxed);
        HEAP_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const STREAMS: usize = 10_000;
const EVENTS: usize = 100;
const TOKEN: &str = "test-token";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        return serve(&args[i + 1]);
    }
    raise_open_files_limit();
    publish_cost();
    streams();
}

/// Allows 10,000 sockets on each side: raises the soft open-files limit to the hard one.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read or fill the struct we pass.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    if (limit.rlim_cur as usize) < STREAMS + 100 {
        eprintln!(
            "the open-files limit ({}) is too low for {STREAMS} streams; raise `ulimit -n`",
            limit.rlim_cur
        );
    }
}

fn publish_cost() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let broker = server::broker::Broker::new(1024, STREAMS * 2);
        let payload = r#"{"id":"k3v9q2","name":"tests","status":"running"}"#.to_string();
        let per_publish = |broker: &server::broker::Broker| {
            let mut batches = Vec::new();
            for _ in 0..200 {
                let t = Instant::now();
                for _ in 0..1000 {
                    broker.publish("task.status", payload.clone());
                }
                batches.push(t.elapsed() / 1000);
            }
            batches.sort();
            batches[batches.len() / 2]
        };
        let idle = per_publish(&broker);
        // 10,000 subscribers, each a task parked on its receiver, as streams are.
        for _ in 0..STREAMS {
            let mut subscription = broker.subscribe(None).unwrap();
            tokio::spawn(async move {
                use tokio::sync::broadcast::error::RecvError;
                while !matches!(subscription.live.recv().await, Err(RecvError::Closed)) {}
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let busy = per_publish(&broker);
        println!("publish cost: {idle:?} with 0 subscribers, {busy:?} with {STREAMS} (target: flat, < 1 µs)");
    });
}

/// The server, in its own process: serves the real router until stdin closes, and answers
/// each line on stdin with its heap in use: `HEAP <bytes> <blocks>`.
fn serve(dir: &str) {
    raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut config =
            server::Config::for_dirs(dir, format!("twbench-ev-{}", std::process::id()));
        config.max_subscribers = STREAMS * 2;
        let leptos = leptos::prelude::LeptosOptions::builder()
            .output_name("taskwire")
            .build();
        let state = server::AppState::open(config, leptos).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("PORT {}", listener.local_addr().unwrap().port());
        let tmux = state.tasks.runtime.clone();
        std::thread::spawn(move || {
            for _ in std::io::stdin().lines().map_while(Result::ok) {
                println!(
                    "HEAP {} {}",
                    HEAP_BYTES.load(Ordering::Relaxed),
                    HEAP_BLOCKS.load(Ordering::Relaxed)
                );
            }
            tmux.kill_server();
            std::process::exit(0);
        });
        let shutdown = state.shutdown.clone();
        server::serve(listener, server::app(state), shutdown).await;
    });
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn streams() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--serve", dir.path().to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port: u16 = lines
        .next()
        .unwrap()
        .unwrap()
        .trim_start_matches("PORT ")
        .parse()
        .unwrap();
    let pid = child.id();
    let mut ask = child.stdin.take().unwrap();
    let mut heap = move || -> (usize, usize) {
        writeln!(ask, "stats").unwrap();
        let line = lines.next().unwrap().unwrap();
        let mut fields = line.split_whitespace().skip(1).map(|f| f.parse().unwrap());
        (fields.next().unwrap(), fields.next().unwrap())
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let task: serde_json::Value = client
            .post(format!("{base}/api/tasks"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"command": "sleep 3600"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let task_url = format!("{base}/api/tasks/{}", task["id"].as_str().unwrap());
        // Warm the server up with a few streams, then take the baseline.
        open_streams(port, 100, mpsc::unbounded_channel().0).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = rss_kib(pid);
        let (heap_before, blocks_before) = heap();

        let (arrivals, mut arrived) = mpsc::unbounded_channel::<(usize, Instant)>();
        let started = Instant::now();
        open_streams(port, STREAMS, arrivals).await;
        println!("opened {STREAMS} streams in {:.1?}", started.elapsed());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = rss_kib(pid);
        let (heap_after, blocks_after) = heap();
        let per_stream = (after.saturating_sub(before)) as f64 / STREAMS as f64;
        println!(
            "server memory: {before} KiB before, {after} KiB with {STREAMS} more streams: {per_stream:.1} KiB per stream (target <= 8 KiB)"
        );
        println!(
            "  of which heap in use: {} B in {} blocks per stream",
            (heap_after - heap_before) / STREAMS,
            (blocks_after - blocks_before) / STREAMS
        );

        let mut latencies = Vec::new();
        for n in 0..EVENTS {
            let sent = Instant::now();
            let res = client
                .patch(&task_url)
                .bearer_auth(TOKEN)
                .json(&serde_json::json!({"name": format!("bench-{n}-")}))
                .send()
                .await
                .unwrap();
            assert!(res.status().is_success());
            let mut last = sent;
            let mut got = 0;
            while got < STREAMS {
                let (event, at) = tokio::time::timeout(Duration::from_secs(30), arrived.recv()).await.expect("every stream gets the event").unwrap();
                if event == n {
                    got += 1;
                    last = last.max(at);
                }
            }
            latencies.push(last - sent);
        }
        latencies.sort();
        let p50 = latencies[EVENTS / 2];
        let p99 = latencies[EVENTS * 99 / 100];
        println!("fan-out of one event to {STREAMS} streams, until the last has it: p50 {p50:.1?}, p99 {p99:.1?} (target p99 <= 50 ms)");
    });
    let _ = child.wait();
}

/// Opens `count` event streams and waits until each has its `ready`. Each stream then
/// reports every `bench-<n>-` rename it receives, with the time it arrived.
async fn open_streams(port: u16, count: usize, arrivals: mpsc::UnboundedSender<(usize, Instant)>) {
    let connecting = Arc::new(Semaphore::new(256));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
    for _ in 0..count {
        let mut permit = Some(connecting.clone().acquire_owned().await.unwrap());
        let arrivals = arrivals.clone();
        let ready_tx = ready_tx.clone();
        tokio::spawn(async move {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let request = format!("GET /api/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\nAccept: text/event-stream\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut seen = String::new();
            let mut ready = false;
            loop {
                let n = match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let at = Instant::now();
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
                if !ready && seen.contains("event: ready") {
                    ready = true;
                    let _ = ready_tx.send(());
                    permit.take(); // the next connection may start
                }
                while let Some(start) = seen.find("bench-") {
                    let rest = &seen[start + 6..];
                    let Some(end) = rest.find('-') else { break };
                    if let Ok(n) = rest[..end].parse::<usize>() {
                        let _ = arrivals.send((n, at));
                    }
                    seen.drain(..start + 6 + end);
                }
                if seen.len() > 8192 {
                    let keep = seen.len() - 64;
                    seen.drain(..keep);
                }
            }
        });
    }
    drop(ready_tx);
    for _ in 0..count {
        ready_rx.recv().await.expect("a stream closed before ready");
    }
}
