//! A real server for tests: the router from `server::app`, served on an ephemeral port, with
//! a temporary data dir and a tmux socket of its own.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use app::model::{Task, TaskStatus};
use futures::StreamExt;
use leptos::prelude::LeptosOptions;
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;
use server::{AppState, Config};

pub const TOKEN: &str = "test-token";

/// The data dir and tmux socket, which outlive any one server (restart tests).
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub socket: String,
}

impl Fixture {
    pub fn new() -> Fixture {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let socket = format!(
            "twtest-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Fixture {
            dir: tempfile::tempdir().expect("a temp dir"),
            socket,
        }
    }

    pub fn config(&self) -> Config {
        Config::for_dirs(self.dir.path().join("data"), self.socket.clone())
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub async fn serve(&self) -> TestServer {
        self.serve_with(|_| {}).await
    }

    pub async fn serve_with(&self, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = self.config();
        adjust(&mut config);
        TestServer::start(config).await
    }

    /// A node named `name` of the fleet on `nats`.
    pub async fn serve_node(&self, nats: &Nats, name: &str) -> TestServer {
        let url = nats.url();
        self.serve_with(|c| {
            c.nats_url = Some(url);
            // The tests' nats-server lets anyone in.
            c.nats_insecure = true;
            c.node = Some(name.to_string());
        })
        .await
    }

    /// A server with connection limits of the test's choosing.
    pub async fn serve_limited(&self, adjust: impl FnOnce(&mut server::Limits)) -> TestServer {
        TestServer::start_limited(self.config(), adjust).await
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

pub struct TestServer {
    pub base: String,
    pub client: Client,
    pub state: AppState,
    node: Option<server::Node>,
}

impl TestServer {
    pub async fn start(config: Config) -> TestServer {
        Self::start_limited(config, |_| {}).await
    }

    pub async fn start_limited(
        config: Config,
        adjust: impl FnOnce(&mut server::Limits),
    ) -> TestServer {
        let mut limits = server::Limits::new(config.heartbeat());
        adjust(&mut limits);
        let leptos = LeptosOptions::builder().output_name("taskwire").build();
        let node = server::Node::start(config, leptos, ([127, 0, 0, 1], 0).into(), limits)
            .await
            .expect("a node started");
        TestServer {
            base: format!("http://{}", node.addr),
            client: Client::new(),
            state: node.state.clone(),
            node: Some(node),
        }
    }

    /// Shuts down as on SIGTERM and waits until the server and its reconciler have stopped.
    pub async fn stop(mut self) {
        self.state.shutdown.cancel();
        if let Some(node) = self.node.take() {
            tokio::time::timeout(Duration::from_secs(5), node.stopped())
                .await
                .expect("the server stops promptly");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(TOKEN)
    }

    /// Sends a request and returns the status and the JSON body (Null when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.request(method, path);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("request sent");
        let status = res.status();
        let text = res.text().await.unwrap();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, json)
    }

    pub async fn create(&self, body: Value) -> Task {
        let (status, json) = self.call(Method::POST, "/api/tasks", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "create answered {json}");
        serde_json::from_value(json).unwrap()
    }

    pub async fn task(&self, id: &str) -> Task {
        let (status, json) = self
            .call(Method::GET, &format!("/api/tasks/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "get answered {json}");
        serde_json::from_value(json).unwrap()
    }

    /// The last `lines` lines of the task's screen (`GET /api/tasks/{id}/output`).
    pub async fn output(&self, id: &str, lines: usize) -> String {
        let (_, body) = self
            .call(
                Method::GET,
                &format!("/api/tasks/{id}/output?tail={lines}"),
                None,
            )
            .await;
        body["output"].as_str().unwrap_or_default().to_string()
    }

    /// Waits until the task has `status`, failing after `within`.
    pub async fn wait_for_status(&self, id: &str, status: TaskStatus, within: Duration) -> Task {
        self.wait_for(id, |t| t.status == status, within).await
    }

    /// Waits until the task is as `wanted` says, failing after `within`.
    pub async fn wait_for(
        &self,
        id: &str,
        wanted: impl Fn(&Task) -> bool,
        within: Duration,
    ) -> Task {
        let deadline = Instant::now() + within;
        loop {
            let task = self.task(id).await;
            if wanted(&task) {
                return task;
            }
            if Instant::now() >= deadline {
                let panes = self.state.tasks.runtime.list_panes();
                eprintln!("tmux panes: {panes:?}");
            }
            assert!(
                Instant::now() < deadline,
                "task {id} is not yet as wanted after {within:?}: {task:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `GET /api/nodes` says node `name` is `online`.
    pub async fn wait_for_node(&self, name: &str, online: bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (_, body) = self.call(Method::GET, "/api/nodes", None).await;
            let found = body["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|n| n["name"] == name && n["online"] == online);
            if found {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {name} not online={online}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn events(&self, query: &str, last_event_id: Option<&str>) -> SseClient {
        let mut req = self.request(Method::GET, &format!("/api/events{query}"));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        SseClient::connect(req).await
    }
}

/// Waits for `condition` to hold, polling, failing after `within`.
pub async fn wait_until(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn session_exists(socket: &str, id: &str) -> bool {
    std::process::Command::new("tmux")
        .args(["-L", socket, "has-session", "-t", &format!("tw-{id}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

pub fn output_log(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join("tasks").join(id).join("output.log")
}

/// One SSE frame. Comments (heartbeats) come as frames with only `comment` set.
#[derive(Clone, Debug, Default)]
pub struct Frame {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: String,
    pub retry: Option<u64>,
    pub comment: Option<String>,
}

impl Frame {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }

    pub fn name(&self) -> &str {
        self.event.as_deref().unwrap_or("")
    }
}

/// A minimal Server-Sent Events reader over a reqwest response.
pub struct SseClient {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    body: Option<futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>>,
    buffer: String,
}

impl SseClient {
    pub async fn connect(req: reqwest::RequestBuilder) -> SseClient {
        let res = req.send().await.expect("stream request sent");
        SseClient {
            status: res.status(),
            headers: res.headers().clone(),
            body: Some(
                res.bytes_stream()
                    .map(|r| r.map_err(std::io::Error::other))
                    .boxed(),
            ),
            buffer: String::new(),
        }
    }

    /// A reader of the body that follows a response head already read from `connection`
    /// (`after_head`: what arrived with the head).
    pub fn over_connection(connection: tokio::net::TcpStream, after_head: &str) -> SseClient {
        SseClient {
            status: StatusCode::OK,
            headers: Default::default(),
            body: Some(tokio_util::io::ReaderStream::new(connection).boxed()),
            buffer: after_head.to_string(),
        }
    }

    /// The next frame, or `None` when the server closed the stream. Panics after `within`.
    pub async fn next_within(&mut self, within: Duration) -> Option<Frame> {
        tokio::time::timeout(within, self.next())
            .await
            .unwrap_or_else(|_| panic!("no frame within {within:?}"))
    }

    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                return Some(parse_frame(&block));
            }
            let chunk = self.body.as_mut()?.next().await;
            match chunk {
                Some(Ok(bytes)) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                _ => {
                    self.body = None;
                    return None;
                }
            }
        }
    }

    /// The next frame that is not a heartbeat comment.
    pub async fn next_event(&mut self, within: Duration) -> Option<Frame> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = self.next_within(left).await?;
            if frame.event.is_some() || !frame.data.is_empty() {
                return Some(frame);
            }
        }
    }

    /// Skips frames until one named `name`, failing after `within`.
    pub async fn wait_for(&mut self, name: &str, within: Duration) -> Frame {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = self
                .next_within(left)
                .await
                .unwrap_or_else(|| panic!("stream closed before {name}"));
            if frame.name() == name {
                return frame;
            }
        }
    }

    /// Closes the connection.
    pub fn close(&mut self) {
        self.body = None;
    }
}

fn parse_frame(block: &str) -> Frame {
    let mut frame = Frame::default();
    let mut data = Vec::new();
    for line in block.lines() {
        if let Some(comment) = line.strip_prefix(':') {
            frame.comment = Some(comment.to_string());
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => frame.event = Some(value.to_string()),
            "id" => frame.id = Some(value.to_string()),
            "data" => data.push(value.to_string()),
            "retry" => frame.retry = value.parse().ok(),
            _ => {}
        }
    }
    frame.data = data.join("\n");
    frame
}

/// A real nats-server with JetStream, on a free port with a temporary store; killed when
/// dropped. `restart` keeps the store.
pub struct Nats {
    pub port: u16,
    store: tempfile::TempDir,
    /// A configuration file it runs with (users and their permissions), if any.
    config: Option<std::path::PathBuf>,
    process: Option<std::process::Child>,
}

impl Nats {
    pub async fn start() -> Nats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut nats = Nats {
            port,
            store: tempfile::tempdir().unwrap(),
            config: None,
            process: None,
        };
        nats.launch().await;
        nats
    }

    /// One running `recipes/nats-fleet.conf` (its users: buildbox-1 and buildbox-2), on a
    /// free port with a temporary store.
    pub async fn start_fleet_config() -> Nats {
        let mut nats = Nats::start().await;
        nats.stop();
        let text = include_str!("../../../recipes/nats-fleet.conf")
            .replace("127.0.0.1:4222", &format!("127.0.0.1:{}", nats.port))
            .replace(
                "/var/lib/nats",
                &nats.store.path().join("js").to_string_lossy(),
            );
        let path = nats.store.path().join("nats.conf");
        std::fs::write(&path, text).unwrap();
        nats.config = Some(path);
        nats.launch().await;
        nats
    }

    /// The URL a node joins with as `user`.
    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!("nats://{user}:{password}@127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn launch(&mut self) {
        let mut command = std::process::Command::new("nats-server");
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        } else {
            command
                .args([
                    "-js",
                    "-a",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-sd",
                ])
                .arg(self.store.path());
        }
        let process = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server (scripts/setup.sh installs it)");
        self.process = Some(process);
        let addr = format!("127.0.0.1:{}", self.port);
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(&addr).await.is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops it as a service manager would (SIGTERM: it flushes its store).
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            // SAFETY: a signal to the child we started and have not reaped.
            unsafe { libc::kill(process.id() as i32, libc::SIGTERM) };
            let _ = process.wait();
        }
    }

    pub async fn restart(&mut self) {
        self.stop();
        self.launch().await;
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The real binary (`taskwire`), running on a data dir and tmux socket of the test's, with
/// what it printed so far; killed (SIGKILL) when dropped, its tmux server with it unless
/// `keep_tmux`.
pub struct Binary {
    child: std::process::Child,
    pub base: String,
    printed: std::sync::Arc<std::sync::Mutex<String>>,
    socket: String,
    pub keep_tmux: bool,
}

impl Binary {
    pub fn start(data_dir: &Path, socket: &str, env: &[(&str, &str)]) -> Binary {
        use std::io::{BufRead, BufReader};
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_taskwire"));
        command
            .env("TASKWIRE_DATA_DIR", data_dir)
            .env("TASKWIRE_TMUX_SOCKET", socket)
            .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().expect("the binary starts");
        // What it prints (its log goes to stdout) is kept, and drained so it never blocks.
        let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        for pipe in [
            Box::new(stdout) as Box<dyn std::io::Read + Send>,
            Box::new(stderr),
        ] {
            let (sink, tx) = (printed.clone(), tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let Some(url) = line.trim().strip_prefix("taskwire is listening on ") {
                        let _ = tx.send(url.to_string());
                    }
                    let mut text = sink.lock().unwrap();
                    text.push_str(&line);
                    text.push('\n');
                }
            });
        }
        let base = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("the binary did not listen: {}", printed.lock().unwrap()));
        Binary {
            child,
            base,
            printed,
            socket: socket.to_string(),
            keep_tmux: false,
        }
    }

    /// What it printed so far, stdout and stderr.
    pub fn printed(&self) -> String {
        self.printed.lock().unwrap().clone()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.keep_tmux {
            let _ = std::process::Command::new("tmux")
                .args(["-L", &self.socket, "kill-server"])
                .output();
        }
    }
}
