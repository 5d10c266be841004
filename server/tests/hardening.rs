//! Bad clients, lost sockets and odd input never cost a task, a record or the server: real
//! sockets, a real tmux (its socket removed under it), real SQLite files.
mod common;

use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    time::{Duration, Instant},
};

use app::model::TaskStatus;
use common::{session_exists, wait_until, Fixture, TOKEN};
use leptos::prelude::LeptosOptions;
use reqwest::{Method, StatusCode};
use serde_json::json;
use server::AppState;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

const SOON: Duration = Duration::from_secs(10);

fn address(server: &common::TestServer) -> std::net::SocketAddr {
    server.base.trim_start_matches("http://").parse().unwrap()
}

/// Whether the server closes `stream` within `within` (a read that ends, not one that waits).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn stalled_request_heads_are_closed_at_the_deadline_while_others_are_served() {
    let fixture = Fixture::new();
    let server = fixture
        .serve_limited(|limits| limits.head_timeout = Duration::from_secs(1))
        .await;
    let mut stalled = Vec::new();
    for head in [
        "G",
        "GET /api/events HTTP/1.1\r\nHost: localhost\r\n",
        "GET /healthz HTTP/1.1\r\n",
    ] {
        for _ in 0..20 {
            let mut stream = TcpStream::connect(address(&server)).await.unwrap();
            stream.write_all(head.as_bytes()).await.unwrap();
            stalled.push(stream);
        }
    }
    let (status, _) = server.call(Method::GET, "/healthz", None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a normal request is served meanwhile"
    );
    for stream in &mut stalled {
        assert!(
            closed_within(stream, Duration::from_secs(5)).await,
            "a stalled head is closed after its deadline"
        );
    }
}

#[tokio::test]
async fn a_full_server_answers_503_at_once_and_serves_again_when_a_slot_frees() {
    let fixture = Fixture::new();
    let server = fixture
        .serve_limited(|limits| limits.max_connections = 4)
        .await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(address(&server)).await.unwrap());
    }
    let started = Instant::now();
    let mut extra = TcpStream::connect(address(&server)).await.unwrap();
    extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(SOON, extra.read_to_string(&mut answer))
        .await
        .expect("answered, not left hanging")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains(r#"{"error":"too many open connections"}"#),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    drop(idle.pop());
    let deadline = Instant::now() + SOON;
    loop {
        let client = reqwest::Client::new();
        if let Ok(res) = client.get(server.url("/healthz")).send().await {
            if res.status() == StatusCode::OK {
                break;
            }
        }
        assert!(Instant::now() < deadline, "a freed slot is used again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_event_stream_whose_reader_stops_reading_is_closed_and_its_slot_freed() {
    let fixture = Fixture::new();
    let server = fixture.serve_with(|c| c.heartbeat_secs = 1).await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    let mut stream = socket.connect(address(&server)).await.unwrap();
    let head = format!(
        "GET /api/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let metrics = server.state.tasks.broker.metrics.clone();
    let open = || {
        metrics
            .open_streams
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    wait_until("the stream to open", SOON, || open() == 1).await;
    // The reader reads nothing from here on, while events keep coming.
    let data = json!({ "padding": "x".repeat(1000) }).to_string();
    for _ in 0..3000 {
        server
            .state
            .tasks
            .broker
            .publish("task.updated", data.clone());
    }
    let deadline = Instant::now() + SOON;
    while open() != 0 {
        assert!(
            Instant::now() < deadline,
            "the stalled stream still holds its slot"
        );
        server
            .state
            .tasks
            .broker
            .publish("task.updated", data.clone());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(stream);
}

/// The path of the tasks' tmux socket.
fn socket_path(socket: &str) -> std::path::PathBuf {
    let out = std::process::Command::new("tmux")
        .args(["-L", socket, "display-message", "-p", "#{socket_path}"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().into()
}

#[tokio::test]
async fn a_removed_tmux_socket_leaves_tasks_running_and_is_recovered() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let task = server.create(json!({"command": "sleep 600"})).await;
    let path = socket_path(&fixture.socket);
    std::fs::remove_file(&path).unwrap();
    for _ in 0..3 {
        let _ = server.state.reconciler.pass(true);
    }
    assert_eq!(server.task(&task.id).await.status, TaskStatus::Running);
    wait_until("tmux to recreate its socket", SOON, || path.exists()).await;
    assert!(session_exists(&fixture.socket, &task.id));
    server.state.reconciler.pass(true).unwrap();
    assert_eq!(server.task(&task.id).await.status, TaskStatus::Running);
}

#[tokio::test]
async fn a_kill_that_fails_leaves_the_task_live_and_says_so() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let task = server.create(json!({"command": "sleep 600"})).await;
    let path = socket_path(&fixture.socket);
    std::fs::remove_file(&path).unwrap();
    // A directory in its place: a background pass that asks tmux to recreate its socket
    // (as it should) cannot, until the test allows it.
    std::fs::create_dir(&path).unwrap();
    let kill = format!("/api/tasks/{}/kill", task.id);
    let (status, body) = server.call(Method::POST, &kill, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("still running"),
        "{body}"
    );
    assert_eq!(server.task(&task.id).await.status, TaskStatus::Running);

    // Once the reconciler has had tmux recreate its socket, the kill goes through.
    std::fs::remove_dir(&path).unwrap();
    let _ = server.state.reconciler.pass(true);
    wait_until("tmux to recreate its socket", SOON, || path.exists()).await;
    let (status, body) = server.call(Method::POST, &kill, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "killed");
    assert!(!session_exists(&fixture.socket, &task.id));
}

#[tokio::test]
async fn a_session_without_a_live_task_is_swept_and_live_ones_are_left_alone() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let task = server.create(json!({"command": "sleep 600"})).await;
    let made = std::process::Command::new("tmux")
        .args([
            "-L",
            &fixture.socket,
            "new-session",
            "-d",
            "-s",
            "tw-orphan01",
            "sleep 600",
        ])
        .status()
        .unwrap();
    assert!(made.success());
    // Passes asking tmux (the server's own reconciler runs them too) sweep it.
    let deadline = Instant::now() + SOON;
    while session_exists(&fixture.socket, "orphan01") {
        assert!(
            Instant::now() < deadline,
            "the orphan session is still there"
        );
        server.state.reconciler.pass(true).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(session_exists(&fixture.socket, &task.id));
    assert_eq!(server.task(&task.id).await.status, TaskStatus::Running);
}

#[tokio::test]
async fn a_workdir_with_tmux_formats_is_taken_literally() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let workdir = fixture.dir.path().join("p#(touch PWNED)#{session_name}#S");
    std::fs::create_dir(&workdir).unwrap();
    let task = server
        .create(json!({"command": "pwd > here.txt", "workdir": workdir}))
        .await;
    server
        .wait_for_status(&task.id, TaskStatus::Completed, SOON)
        .await;
    let here = std::fs::read_to_string(workdir.join("here.txt")).unwrap();
    assert_eq!(here.trim(), workdir.to_str().unwrap());
    for dir in [
        std::env::current_dir().unwrap(),
        fixture.dir.path().to_path_buf(),
        workdir,
    ] {
        assert!(
            !dir.join("PWNED").exists(),
            "tmux ran the workdir's #(…) in {dir:?}"
        );
    }
}

#[tokio::test]
async fn typed_input_arrives_byte_for_byte() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let dir = fixture.dir.path();
    // A line that ends in `;` (tmux once read it as its own command separator).
    let line_task = server
        .create(json!({"command": "read line; printf '%s' \"$line\" > line.txt", "workdir": dir}))
        .await;
    let typed = "echo semi-$((40+2));";
    let input = format!("/api/tasks/{}/input", line_task.id);
    let (status, body) = server
        .call(
            Method::POST,
            &input,
            Some(json!({"text": typed, "submit": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server
        .wait_for_status(&line_task.id, TaskStatus::Completed, SOON)
        .await;
    assert_eq!(
        std::fs::read_to_string(dir.join("line.txt")).unwrap(),
        typed
    );

    // 60 KiB in one go, to a program reading the terminal raw.
    let big: String = (0..60 * 1024)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let command = format!("stty raw -echo; head -c {} > big.txt", big.len());
    let raw_task = server
        .create(json!({"command": command, "workdir": dir}))
        .await;
    wait_for_raw_mode(&fixture.socket, &raw_task.id).await;
    let input = format!("/api/tasks/{}/input", raw_task.id);
    let (status, body) = server
        .call(
            Method::POST,
            &input,
            Some(json!({"text": big, "submit": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server
        .wait_for_status(&raw_task.id, TaskStatus::Completed, SOON)
        .await;
    assert!(
        std::fs::read_to_string(dir.join("big.txt")).unwrap() == big,
        "60 KiB arrive whole"
    );
}

/// Waits until the pane's program has put its terminal in raw mode.
async fn wait_for_raw_mode(socket: &str, id: &str) {
    let deadline = Instant::now() + SOON;
    loop {
        let tty = std::process::Command::new("tmux")
            .args([
                "-L",
                socket,
                "display-message",
                "-p",
                "-t",
                &format!("tw-{id}"),
                "#{pane_tty}",
            ])
            .output()
            .unwrap();
        let tty = String::from_utf8_lossy(&tty.stdout).trim().to_string();
        let settings = std::process::Command::new("stty")
            .args(["-F", &tty, "-a"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&settings.stdout).contains("-icanon") {
            return;
        }
        assert!(Instant::now() < deadline, "the program never read raw");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn the_data_dir_and_its_files_are_private() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let task = server.create(json!({"command": "echo secret"})).await;
    server
        .wait_for_status(&task.id, TaskStatus::Completed, SOON)
        .await;
    let data = fixture.data_dir();
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("tasks")), 0o700);
    assert_eq!(mode(&data.join("tasks").join(&task.id)), 0o700);
    assert_eq!(mode(&data.join("taskwire.db")), 0o600);
    assert_eq!(mode(&common::output_log(&data, &task.id)), 0o600);
    // The exit status was renamed into place whole, and stays as private.
    let dir = data.join("tasks").join(&task.id);
    assert_eq!(
        std::fs::read_to_string(dir.join("exit")).unwrap().trim(),
        "0"
    );
    assert_eq!(mode(&dir.join("exit")), 0o600);
    assert_eq!(mode(&dir.join("env")), 0o600);
    assert!(!dir.join("exit.new").exists());
}

#[tokio::test]
async fn a_second_taskwire_on_the_same_data_dir_refuses_to_start() {
    let fixture = Fixture::new();
    let _server = fixture.serve().await;
    let leptos = LeptosOptions::builder().output_name("taskwire").build();
    let second = AppState::open(fixture.config(), leptos);
    let error = second.err().expect("the second one refuses").to_string();
    assert!(error.contains("already running"), "{error}");
}

#[tokio::test]
async fn settings_out_of_range_are_refused_at_start() {
    let fixture = Fixture::new();
    let mut config = fixture.config();
    config.heartbeat_secs = u64::MAX;
    let leptos = LeptosOptions::builder().output_name("taskwire").build();
    let error = AppState::open(config, leptos)
        .err()
        .expect("refused")
        .to_string();
    assert!(error.contains("TASKWIRE_HEARTBEAT_SECS"), "{error}");
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in through the form (a POST) and returns the `name=value` of the session cookie.
async fn sign_in(server: &common::TestServer) -> String {
    let res = no_redirects()
        .post(server.url("/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection(), "{}", res.status());
    let cookie = res.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_string()
}

async fn list_with_cookie(server: &common::TestServer, cookie: &str) -> StatusCode {
    no_redirects()
        .get(server.url("/api/tasks"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn the_session_cookie_is_not_the_token_and_signing_out_revokes_it() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let session = sign_in(&server).await;
    assert!(
        !session.contains(TOKEN),
        "the cookie carries the token: {session}"
    );
    assert_eq!(list_with_cookie(&server, &session).await, StatusCode::OK);
    let token_as_cookie = format!("taskwire_session={TOKEN}");
    assert_eq!(
        list_with_cookie(&server, &token_as_cookie).await,
        StatusCode::UNAUTHORIZED
    );
    // A cookie planted by another page on this host comes first; ours still counts.
    let planted = format!("taskwire_session=planted; {session}");
    assert_eq!(list_with_cookie(&server, &planted).await, StatusCode::OK);

    // Thousands of planted cookies cost no more than a few: only the first few are looked
    // at, so ours, behind 10,000 planted ones, is not reached.
    let many: String = (0..10_000).map(|_| "taskwire_session=x; ").collect();
    assert_eq!(
        list_with_cookie(&server, &format!("{many}{session}")).await,
        StatusCode::UNAUTHORIZED
    );
    let few = "taskwire_session=x; ".repeat(3);
    assert_eq!(
        list_with_cookie(&server, &format!("{few}{session}")).await,
        StatusCode::OK
    );

    // A form on another origin (another port of this host) cannot sign the person out.
    let foreign = no_redirects()
        .post(server.url("/logout"))
        .header("cookie", &session)
        .header("origin", "http://127.0.0.1:1")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    assert_eq!(list_with_cookie(&server, &session).await, StatusCode::OK);

    let out = no_redirects()
        .post(server.url("/logout"))
        .header("cookie", &session)
        .header("origin", server.base.clone())
        .send()
        .await
        .unwrap();
    assert!(out.status().is_redirection());
    assert!(out.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(
        list_with_cookie(&server, &session).await,
        StatusCode::UNAUTHORIZED,
        "a revoked session no longer signs in"
    );
}

#[tokio::test]
async fn pages_refuse_framing_and_requests_for_foreign_hosts() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let res = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(
        res.headers()["content-security-policy"],
        "frame-ancestors 'none'"
    );
    let port = address(&server).port();
    let ask = |host: String| {
        let server = &server;
        async move {
            server
                .request(Method::GET, "/api/tasks")
                .header("host", host)
                .send()
                .await
                .unwrap()
        }
    };
    let foreign = ask(format!("evil.example:{port}")).await;
    assert_eq!(foreign.status(), StatusCode::MISDIRECTED_REQUEST);
    let body: serde_json::Value = foreign.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("evil.example"));
    assert_eq!(
        ask(format!("localhost:{port}")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn output_tails_and_terminal_streams_are_counted_and_capped() {
    let fixture = Fixture::new();
    let server = fixture.serve_with(|c| c.max_subscribers = 2).await;
    let task = server.create(json!({"command": "sleep 600"})).await;
    let first = server
        .request(Method::GET, "/api/tails/stream")
        .send()
        .await
        .unwrap();
    let second = server
        .request(
            Method::GET,
            &format!("/api/tasks/{}/output/stream", task.id),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    let third = server
        .request(Method::GET, "/api/tails/stream")
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(third.headers().contains_key("retry-after"));
    drop((first, second));
    wait_until("the slots to be freed", SOON, || {
        server.state.stream_slots.open() == 0
    })
    .await;
    let again = server
        .request(Method::GET, "/api/tails/stream")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
}

/// Tasks created in bursts while reconcile passes asking tmux run back to back: none ever
/// leaves `running` but by its own exit (a start that finished between a pass's reading the
/// records and its snapshot of the starts in flight was taken for a vanished session,
/// recorded `error`, and its session later killed as an orphan).
#[tokio::test]
async fn tasks_started_while_passes_run_stay_running() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let passes = {
        let (reconciler, stop) = (server.state.reconciler.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut count = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = reconciler.pass(true);
                count += 1;
            }
            count
        })
    };
    let mut ids = Vec::new();
    for _ in 0..10 {
        let burst = (0..6).map(|_| server.create(json!({"command": "sleep 600"})));
        for task in futures::future::join_all(burst).await {
            assert_eq!(task.status, TaskStatus::Running, "{task:?}");
            ids.push(task.id);
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let passes = passes.join().unwrap();
    assert!(passes > 10, "only {passes} passes ran beside the creates");
    // Two more passes: an orphan sweep needs two to act.
    for _ in 0..2 {
        server.state.reconciler.pass(true).unwrap();
    }
    for id in &ids {
        let task = server.task(id).await;
        assert_eq!(task.status, TaskStatus::Running, "{task:?}");
        assert!(
            session_exists(&fixture.socket, id),
            "task {id} lost its session"
        );
    }
}

/// Two taskwires with different data dirs and the default socket setting each have a tmux
/// server of their own: neither sweeps the other's sessions, and each keeps its tasks
/// through pass after pass (orphans are removed on the second pass that sees them).
#[tokio::test]
async fn two_taskwires_on_the_default_socket_keep_each_others_tasks() {
    let (one, two) = (Fixture::new(), Fixture::new());
    let first = one.serve_with(|c| c.tmux_socket = None).await;
    let second = two.serve_with(|c| c.tmux_socket = None).await;
    let sockets = [&first, &second].map(|s| s.state.tasks.runtime.socket().to_string());
    assert_ne!(sockets[0], sockets[1], "one tmux server each");
    let tasks = [
        first.create(json!({"command": "sleep 600"})).await,
        second.create(json!({"command": "sleep 600"})).await,
    ];
    for _ in 0..3 {
        first.state.reconciler.pass(true).unwrap();
        second.state.reconciler.pass(true).unwrap();
    }
    for (server, task) in [(&first, &tasks[0]), (&second, &tasks[1])] {
        assert_eq!(server.task(&task.id).await.status, TaskStatus::Running);
    }
    for socket in &sockets {
        let _ = std::process::Command::new("tmux")
            .args(["-L", socket, "kill-server"])
            .output();
    }
}

/// A taskwire given the socket of another's tmux server refuses to start, and says why.
#[tokio::test]
async fn a_taskwire_on_another_taskwires_tmux_server_refuses_to_start() {
    let (one, two) = (Fixture::new(), Fixture::new());
    let first = one.serve().await;
    first.create(json!({"command": "sleep 600"})).await;
    let mut config = two.config();
    config.tmux_socket = Some(one.socket.clone());
    let leptos = LeptosOptions::builder().output_name("taskwire").build();
    let error = AppState::open(config, leptos)
        .err()
        .expect("the second one refuses")
        .to_string();
    assert!(error.contains("belongs to the taskwire of"), "{error}");
    assert!(error.contains("TASKWIRE_TMUX_SOCKET"), "{error}");
}
