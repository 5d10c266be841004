//! Event-stream benchmarks. Run: `cargo bench -p server --bench events`.
//!
//! - Publish cost with 0 and with 10,000 subscribers (in process). Target: flat, < 1 µs.
//! - 10,000 concurrent idle `GET /api/events` streams against the server in a separate
//!   process (this binary re-run with `--serve`): server memory per stream, from its RSS.
//!   Target: <= 8 KiB.
//! - One event fanned out to those 10,000 streams: time from the request that publishes it
//!   (a rename) until the last stream has it, p50 and p99 over 100 events. Target: p99 <= 50 ms.
//!   "Has it" is measured twice: when the frame arrived in the client's socket (the kernel's
//!   receive timestamp, `SO_TIMESTAMPNS`) and when the client read it. The client reads all
//!   10,000 sockets from one thread with epoll, to take as little as it can of the two cores
//!   it shares with the server; the CPU each side used per event is printed too.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use std::{
    collections::HashMap,
    net::TcpStream,
    os::fd::AsRawFd,
    sync::mpsc,
    time::{SystemTime, UNIX_EPOCH},
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
/// When the client reads, in the run where it leaves the cores to the server during the
/// fan-out: well after the fan-out has ended (it checks: the timestamps would show it).
const READ_AFTER: Duration = Duration::from_millis(250);

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

/// What one publish costs its caller, at 0 and at 10,000 subscribers.
///
/// Each publish is timed alone, after the fan-out of the one before has reached every
/// subscriber: on two cores, back-to-back publishes share the CPU with the fan-out of the
/// events before them, and that would be timed too. The back-to-back figure (1,000 in a row)
/// is printed as well.
fn publish_cost() {
    const ALONE: usize = 500;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let broker = server::events::broker::Broker::new(1024, STREAMS * 2);
        let payload = r#"{"id":"k3v9q2","name":"tests","status":"running"}"#.to_string();
        let delivered = Arc::new(AtomicUsize::new(0));
        let mut report = Vec::new();
        for subscribers in [0, STREAMS] {
            // Subscribers as streams are: each a task parked on its receiver.
            for _ in 0..subscribers {
                let mut subscription = broker.subscribe(None).unwrap();
                let delivered = delivered.clone();
                tokio::spawn(async move {
                    use tokio::sync::broadcast::error::RecvError;
                    while !matches!(subscription.live.recv().await, Err(RecvError::Closed)) {
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            let mut alone = Vec::with_capacity(ALONE);
            for _ in 0..ALONE {
                delivered.store(0, Ordering::Relaxed);
                let data = payload.clone();
                let started = Instant::now();
                broker.publish("task.status", data);
                alone.push(started.elapsed());
                tokio::time::sleep(Duration::from_micros(200)).await;
                while delivered.load(Ordering::Relaxed) < subscribers {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            }
            alone.sort();
            let data: Vec<String> = (0..1000).map(|_| payload.clone()).collect();
            let started = Instant::now();
            for data in data {
                broker.publish("task.status", data);
            }
            let in_a_row = started.elapsed() / 1000;
            report.push(format!(
                "  {subscribers} subscribers: p50 {:?}, p99 {:?} alone; {in_a_row:?} each back to back",
                percentile(&alone, 50),
                percentile(&alone, 99)
            ));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        println!("publish cost (target: flat, < 1 µs):\n{}", report.join("\n"));
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
        let listener = server::http::serve::listen(([127, 0, 0, 1], 0).into()).unwrap();
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

/// User and system CPU time a process has used, in milliseconds.
fn cpu_ms(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // SAFETY: sysconf only reads a system setting.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let ms = |field: &str| field.parse::<f64>().unwrap() * 1000.0 / ticks_per_second;
    (ms(fields[11]), ms(fields[12]))
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

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let task: serde_json::Value = runtime.block_on(async {
        client
            .post(format!("{base}/api/tasks"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"command": "sleep 3600"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let task_url = format!("{base}/api/tasks/{}", task["id"].as_str().unwrap());

    let reader = StreamReader::start();
    // Warm the server up with a few streams, then take the baseline.
    let mut open = reader.open(port, 100);
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib(pid);
    let (heap_before, blocks_before) = heap();

    let started = Instant::now();
    open.extend(reader.open(port, STREAMS));
    println!("opened {STREAMS} streams in {:.1?}", started.elapsed());
    std::thread::sleep(Duration::from_secs(1));
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

    // First the client reads each frame as it arrives, competing for the two cores with the
    // server; then it reads only after the fan-out, so the server has them to itself as it
    // would with browsers on other machines. The kernel's timestamps tell when frames
    // arrived either way.
    for reads_during_fanout in [true, false] {
        let (mut first, mut arrived, mut read) = (Vec::new(), Vec::new(), Vec::new());
        let (server_cpu, client_cpu) = (cpu_ms(pid), cpu_ms(std::process::id()));
        for n in 0..EVENTS {
            let event = if reads_during_fanout { n } else { EVENTS + n };
            reader.paused.store(!reads_during_fanout, Ordering::SeqCst);
            let sent_at = SystemTime::now();
            let sent = Instant::now();
            let status = runtime.block_on(async {
                client
                    .patch(&task_url)
                    .bearer_auth(TOKEN)
                    .json(&serde_json::json!({"name": format!("bench-{event}-")}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            });
            assert!(status.is_success());
            if !reads_during_fanout {
                std::thread::sleep(READ_AFTER);
                reader.paused.store(false, Ordering::SeqCst);
            }
            let last = reader
                .everyone_has
                .recv_timeout(Duration::from_secs(30))
                .expect("every stream gets the event");
            assert_eq!(last.event, event);
            arrived.push(last.arrived.duration_since(sent_at).unwrap_or_default());
            first.push(
                last.first_arrived
                    .duration_since(sent_at)
                    .unwrap_or_default(),
            );
            read.push(last.read - sent);
        }
        let server_cpu = cpu_used_since(pid, server_cpu);
        let client_cpu = cpu_used_since(std::process::id(), client_cpu);
        let percentiles = |mut latencies: Vec<Duration>| {
            latencies.sort();
            (percentile(&latencies, 50), percentile(&latencies, 99))
        };
        let slowest = *arrived.iter().max().unwrap();
        let (p50, p99) = percentiles(arrived);
        if reads_during_fanout {
            println!(
                "fan-out of one event to {} streams, the client reading as frames arrive:",
                open.len()
            );
        } else {
            println!("fan-out of one event to {} streams, the client reading {READ_AFTER:?} after each publish:", open.len());
        }
        println!(
            "  until the last stream has it: p50 {p50:.1?}, p99 {p99:.1?} (target p99 <= 50 ms); slowest {slowest:.1?}"
        );
        // The request, its database write and the publish come before any fan-out.
        let (p50, p99) = percentiles(first);
        println!("  until the first stream has it: p50 {p50:.1?}, p99 {p99:.1?}");
        if reads_during_fanout {
            let (p50, p99) = percentiles(read);
            println!("  until the client has read it from the last: p50 {p50:.1?}, p99 {p99:.1?}");
        }
        println!("  CPU per event: server {server_cpu}, load client {client_cpu}");
    }
    drop(open);
    drop(heap);
    let _ = child.wait();
}

/// The `p`th percentile of `sorted` by the nearest-rank method: the smallest value that at
/// least `p` percent of the values are at or below. For 100 values, p99 is the second
/// largest (the largest is p100).
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p).div_ceil(100) - 1]
}

/// The CPU a process used since `then`, per event.
fn cpu_used_since(pid: u32, then: (f64, f64)) -> String {
    let (user, system) = cpu_ms(pid);
    let per_event = |ms: f64| ms / EVENTS as f64;
    format!(
        "{:.1} ms user + {:.1} ms system",
        per_event(user - then.0),
        per_event(system - then.1)
    )
}

/// When the last stream had event `event`.
struct LastArrival {
    event: usize,
    /// The kernel's receive timestamp of the frame in the first socket it reached.
    first_arrived: SystemTime,
    /// The kernel's receive timestamp of the frame in the last socket it reached.
    arrived: SystemTime,
    /// When the client read it from the last socket.
    read: Instant,
}

/// Reads every open stream from one thread with epoll, and tells when all of them have
/// their `ready`, and when all of them have a `bench-<n>-` rename.
struct StreamReader {
    epoll: i32,
    registered: Arc<AtomicUsize>,
    ready: Arc<AtomicUsize>,
    /// While set, the reader reads nothing: what arrives waits in the sockets.
    paused: Arc<AtomicBool>,
    everyone_has: mpsc::Receiver<LastArrival>,
}

/// What the reader knows of one stream: the tail of what it read (a marker may straddle
/// two reads) and whether its `ready` came.
#[derive(Default)]
struct StreamState {
    tail: Vec<u8>,
    ready: bool,
}

impl StreamReader {
    fn start() -> StreamReader {
        // SAFETY: plain system calls on descriptors this process owns.
        let epoll = unsafe { libc::epoll_create1(0) };
        assert!(epoll >= 0);
        let registered = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(AtomicUsize::new(0));
        let (tell, everyone_has) = mpsc::channel();
        let paused = Arc::new(AtomicBool::new(false));
        let (registered_now, ready_now, paused_now) =
            (registered.clone(), ready.clone(), paused.clone());
        std::thread::spawn(move || {
            read_streams(epoll, registered_now, ready_now, paused_now, tell)
        });
        StreamReader {
            epoll,
            registered,
            ready,
            paused,
            everyone_has,
        }
    }

    /// Opens `count` event streams and waits until each has its `ready`.
    fn open(&self, port: u16, count: usize) -> Vec<TcpStream> {
        let request = format!("GET /api/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\nAccept: text/event-stream\r\n\r\n");
        let already = self.ready.load(Ordering::SeqCst);
        let target = already + count;
        let mut streams = Vec::with_capacity(count);
        for opened in 0..count {
            // At most 256 waiting for their `ready`, so the server's accept queue never
            // overflows (a dropped connection attempt is retried only after a second).
            while opened - (self.ready.load(Ordering::SeqCst) - already) >= 256 {
                std::thread::sleep(Duration::from_micros(200));
            }
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            stream.set_nonblocking(true).unwrap();
            let fd = stream.as_raw_fd();
            let on: libc::c_int = 1;
            let mut interest = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: fd as u64,
            };
            // SAFETY: plain system calls on descriptors this process owns.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_TIMESTAMPNS,
                    &on as *const _ as *const libc::c_void,
                    std::mem::size_of_val(&on) as u32,
                );
                assert_eq!(
                    libc::epoll_ctl(self.epoll, libc::EPOLL_CTL_ADD, fd, &mut interest),
                    0
                );
            }
            self.registered.fetch_add(1, Ordering::SeqCst);
            streams.push(stream);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.ready.load(Ordering::SeqCst) < target {
            assert!(Instant::now() < deadline, "every stream gets its ready");
            std::thread::sleep(Duration::from_millis(10));
        }
        streams
    }
}

/// The reader thread: reads whatever arrives, notes the markers, and reports each event
/// once every registered stream has it.
fn read_streams(
    epoll: i32,
    registered: Arc<AtomicUsize>,
    ready: Arc<AtomicUsize>,
    paused: Arc<AtomicBool>,
    tell: mpsc::Sender<LastArrival>,
) {
    let mut states: HashMap<i32, StreamState> = HashMap::new();
    let mut got: HashMap<usize, (usize, SystemTime, Instant, SystemTime)> = HashMap::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if paused.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        // SAFETY: `events` has room for the count passed.
        let n = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), events.len() as i32, 1000) };
        for event in &events[..n.max(0) as usize] {
            let fd = event.u64 as i32;
            let Some((len, arrived)) = receive(fd, &mut buf) else {
                // Closed by the server: stop watching it.
                // SAFETY: removes a descriptor this process owns from its epoll set.
                unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
                continue;
            };
            let read = Instant::now();
            let state = states.entry(fd).or_default();
            state.tail.extend_from_slice(&buf[..len]);
            if !state.ready && memfind(&state.tail, b"event: ready").is_some() {
                state.ready = true;
                ready.fetch_add(1, Ordering::SeqCst);
            }
            while let Some(start) = memfind(&state.tail, b"bench-") {
                let rest = &state.tail[start + 6..];
                let Some(end) = rest.iter().position(|&b| b == b'-') else {
                    break;
                };
                let number: usize = std::str::from_utf8(&rest[..end]).unwrap().parse().unwrap();
                state.tail.drain(..start + 6 + end);
                let entry = got.entry(number).or_insert((0, UNIX_EPOCH, read, arrived));
                entry.0 += 1;
                entry.1 = entry.1.max(arrived);
                entry.2 = entry.2.max(read);
                entry.3 = entry.3.min(arrived);
                if entry.0 == registered.load(Ordering::SeqCst) {
                    let (_, arrived, read, first_arrived) = got.remove(&number).unwrap();
                    let _ = tell.send(LastArrival {
                        event: number,
                        first_arrived,
                        arrived,
                        read,
                    });
                }
            }
            if state.tail.len() > 64 {
                let keep = state.tail.len() - 64;
                state.tail.drain(..keep);
            }
        }
    }
}

/// Reads what is there from a socket, with the kernel's receive timestamp of the newest
/// bytes read; `None` once it is closed.
fn receive(fd: i32, buf: &mut [u8]) -> Option<(usize, SystemTime)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 16];
    // SAFETY: msghdr is plain data; every pointer in it refers to a live local buffer.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: as above.
    let len = unsafe { libc::recvmsg(fd, &mut message, libc::MSG_DONTWAIT) };
    if len <= 0 {
        return None;
    }
    let mut arrived = SystemTime::now();
    // SAFETY: walks the control messages the kernel wrote into `control`.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&message);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let at: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                arrived = UNIX_EPOCH + Duration::new(at.tv_sec as u64, at.tv_nsec as u32);
            }
            cmsg = libc::CMSG_NXTHDR(&message, cmsg);
        }
    }
    Some((len as usize, arrived))
}

fn memfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
