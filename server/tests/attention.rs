//! A program says when it needs the person; the server tells a webhook; finished tasks stay
//! in view until seen. Real tmux, real processes (curl from inside a task), a real webhook
//! receiver on loopback.
mod common;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use app::model::{Task, TaskStatus};
use axum::{routing::post, Json, Router};
use common::{wait_until, Fixture, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const SOON: Duration = Duration::from_secs(10);

/// POSTs a state report as a task's program would (with `token` as its bearer).
async fn report(server: &TestServer, id: &str, token: &str, body: Value) -> (StatusCode, Value) {
    let res = server
        .client
        .post(server.url(&format!("/api/tasks/{id}/state")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// A task that writes its own environment to `env.txt` and then sleeps: its id and token.
async fn task_with_env(server: &TestServer, dir: &std::path::Path) -> (Task, String, String) {
    let command = "printf '%s\\n%s\\n%s' \"$TASKWIRE_URL\" \"$TASKWIRE_TASK_ID\" \"$TASKWIRE_TASK_TOKEN\" > env.txt; sleep 600";
    let task = server
        .create(json!({ "command": command, "workdir": dir }))
        .await;
    let path = dir.join("env.txt");
    wait_until("the task to write its environment", SOON, || {
        std::fs::read_to_string(&path).is_ok_and(|t| t.lines().count() == 3)
    })
    .await;
    let env = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = env.lines().collect();
    (task, lines[0].to_string(), lines[2].to_string())
}

#[tokio::test]
async fn a_task_knows_where_to_report_and_its_token_moves_it_at_once() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let (task, url, token) = task_with_env(&server, fixture.dir.path()).await;
    assert_eq!(url, server.base);
    assert_eq!(token.len(), 32);

    let mut events = server.events("", None).await;
    events.wait_for("ready", SOON).await;
    let message = "Claude needs your permission to use Bash";
    let (status, body) = report(
        &server,
        &task.id,
        &token,
        json!({"state": "waiting-for-input", "message": message}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "waiting-for-input");
    assert_eq!(body["message"], message);
    let event = events.wait_for("task.status", SOON).await.json();
    assert_eq!(event["id"], json!(task.id));
    assert_eq!(event["message"], message);
    // It stays waiting: a reconcile pass does not take it back for being recent.
    server.state.reconciler.pass(true).unwrap();
    assert_eq!(
        server.task(&task.id).await.status,
        TaskStatus::WaitingForInput
    );

    let (status, body) = report(&server, &task.id, &token, json!({"state": "running"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "running");
    assert_eq!(
        body["message"],
        Value::Null,
        "the message goes once it runs again"
    );
}

#[tokio::test]
async fn state_reports_with_the_wrong_token_or_body_are_refused_and_change_nothing() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let first_dir = fixture.dir.path().join("a");
    let second_dir = fixture.dir.path().join("b");
    std::fs::create_dir_all(&first_dir).unwrap();
    std::fs::create_dir_all(&second_dir).unwrap();
    let (first, _, first_token) = task_with_env(&server, &first_dir).await;
    let (second, _, _) = task_with_env(&server, &second_dir).await;
    let waiting = json!({"state": "waiting-for-input"});

    let (status, _) = report(&server, &second.id, &first_token, waiting.clone()).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a task's token is for that task only"
    );
    let (status, _) = report(&server, &first.id, "not-a-token", waiting.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A task's token does not tell which ids exist: no such task gets the same answer.
    let (status, body) = report(&server, "nosuchid", &first_token, waiting.clone()).await;
    let (_, other) = report(&server, &second.id, &first_token, waiting.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, other);
    let (status, _) = report(&server, &first.id, &first_token, json!({"state": "asleep"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let long = json!({"state": "waiting-for-input", "message": "x".repeat(501)});
    let (status, _) = report(&server, &first.id, &first_token, long).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let anonymous = server
        .client
        .post(server.url(&format!("/api/tasks/{}/state", first.id)))
        .json(&waiting)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    for task in [&first, &second] {
        assert_eq!(server.task(&task.id).await.status, TaskStatus::Running);
    }

    server
        .call(Method::POST, &format!("/api/tasks/{}/kill", first.id), None)
        .await;
    let (status, _) = report(&server, &first.id, &first_token, waiting).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a finished task's state is not reported"
    );
}

/// What a webhook receiver was sent.
type Received = Arc<Mutex<Vec<Value>>>;

async fn webhook_receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let sink = received.clone();
    let app = Router::new().route(
        "/hook",
        post(move |Json(body): Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

#[tokio::test]
async fn the_webhook_gets_one_post_per_transition_that_needs_the_person() {
    let (url, received) = webhook_receiver().await;
    let fixture = Fixture::new();
    let server = fixture
        .serve_with(|c| c.notify_url = Some(url.clone()))
        .await;
    let (task, _, token) = task_with_env(&server, fixture.dir.path()).await;
    report(
        &server,
        &task.id,
        &token,
        json!({"state": "waiting-for-input", "message": "hi"}),
    )
    .await;
    let failing = server.create(json!({"command": "exit 3"})).await;
    server
        .wait_for_status(&failing.id, TaskStatus::Failed, SOON)
        .await;
    wait_until("two notices", SOON, || received.lock().unwrap().len() >= 2).await;
    // Nothing more comes for these transitions.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let notices = received.lock().unwrap().clone();
    assert_eq!(notices.len(), 2, "{notices:?}");
    let of = |id: &str| {
        notices
            .iter()
            .find(|n| n["task"]["id"] == json!(id))
            .cloned()
    };
    let waiting = of(&task.id).expect("a notice for the waiting task");
    assert_eq!(waiting["event"], "task.status");
    assert_eq!(waiting["task"]["status"], "waiting-for-input");
    assert_eq!(waiting["task"]["message"], "hi");
    assert_eq!(
        waiting["url"],
        json!(format!("{}/tasks/{}", server.base, task.id))
    );
    assert_eq!(of(&failing.id).unwrap()["task"]["status"], "failed");
}

#[tokio::test]
async fn the_webhook_of_a_prompt_carries_its_question_and_choices() {
    let (url, received) = webhook_receiver().await;
    let fixture = Fixture::new();
    let server = fixture
        .serve_with(|c| c.notify_url = Some(url.clone()))
        .await;
    let asks = concat!(env!("CARGO_MANIFEST_DIR"), "/../end2end/fixtures/asks.py");
    let task = server
        .create(json!({"command": format!("python3 {asks} numbered")}))
        .await;
    wait_until("a notice", SOON, || !received.lock().unwrap().is_empty()).await;
    let notice = received.lock().unwrap()[0].clone();
    assert_eq!(notice["task"]["id"], json!(task.id));
    assert_eq!(notice["task"]["waiting_reason"], "prompt");
    let prompt = &notice["task"]["prompt"];
    assert_eq!(prompt["question"], "Do you want to proceed?");
    assert_eq!(prompt["choices"][2], json!({"id": "3", "label": "No"}));
}

#[tokio::test]
async fn a_dead_webhook_delays_no_event() {
    // A receiver that takes the connection and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let fixture = Fixture::new();
    let server = fixture.serve_with(|c| c.notify_url = Some(url)).await;
    let mut events = server.events("", None).await;
    events.wait_for("ready", SOON).await;
    for n in 0..5 {
        let task = server
            .create(json!({"command": format!("exit {}", n + 1)}))
            .await;
        let started = Instant::now();
        loop {
            let frame = events.wait_for("task.status", SOON).await.json();
            if frame["id"] == json!(task.id) && frame["status"] == "failed" {
                break;
            }
        }
        assert!(started.elapsed() < SOON);
    }
}

#[tokio::test]
async fn a_finished_task_stays_unseen_until_the_person_looks() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let task = server.create(json!({"command": "true"})).await;
    assert!(!task.seen);
    let done = server
        .wait_for_status(&task.id, TaskStatus::Completed, SOON)
        .await;
    assert!(!done.seen, "a task that just finished has not been seen");
    let mut events = server.events("", None).await;
    events.wait_for("ready", SOON).await;
    let (status, body) = server
        .call(Method::POST, &format!("/api/tasks/{}/seen", task.id), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["seen"], true);
    let updated = events.wait_for("task.updated", SOON).await.json();
    assert_eq!(updated["seen"], true);
    assert!(
        server.task(&task.id).await.seen,
        "kept on the server, for every device"
    );
}

/// The hook commands of `recipes/`, each run exactly as given, inside a task, with the
/// input its agent gives it.
#[tokio::test]
async fn the_readme_recipes_move_the_task_they_run_in() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let claude = std::fs::read_to_string(root.join("recipes/claude-code-settings.json")).unwrap();
    let codex = std::fs::read_to_string(root.join("recipes/codex-config.toml")).unwrap();
    for recipe in [&claude, &codex] {
        assert!(
            readme.contains(recipe.trim()),
            "the README shows the recipe as tested"
        );
    }
    let settings: Value = serde_json::from_str(&claude).unwrap();
    let hook = |name: &str| {
        settings["hooks"][name][0]["hooks"][0]["command"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let notify: Vec<String> =
        serde_json::from_str(codex.trim().trim_start_matches("notify = ")).unwrap();

    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let dir = fixture.dir.path();
    // The task runs each hook when its file appears, as the agent would.
    std::fs::write(dir.join("notification.sh"), hook("Notification")).unwrap();
    std::fs::write(dir.join("submit.sh"), hook("UserPromptSubmit")).unwrap();
    std::fs::write(dir.join("stop.sh"), hook("Stop")).unwrap();
    let payload = json!({"hook_event_name": "Notification", "message": "Claude needs your permission to use Bash"});
    std::fs::write(dir.join("notification.json"), payload.to_string()).unwrap();
    let script = "for step in 1 2 3 4; do while [ ! -e go$step ]; do sleep 0.05; done; \
                  case $step in 1) sh notification.sh < notification.json;; 2) sh submit.sh < /dev/null;; \
                  3) sh stop.sh < /dev/null;; 4) \"$@\";; esac; done; sleep 600";
    std::fs::write(dir.join("agent.sh"), script).unwrap();
    let mut codex_command = vec!["sh".to_string(), "agent.sh".into()];
    codex_command.extend(notify.iter().cloned());
    codex_command.push(r#"{"type":"agent-turn-complete"}"#.into());
    let quoted: Vec<String> = codex_command
        .iter()
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect();
    let task = server
        .create(json!({"command": quoted.join(" "), "workdir": dir}))
        .await;
    let step = |n: u32, status: &'static str, message: Option<&'static str>| {
        let (server, task, dir) = (&server, &task, dir);
        async move {
            std::fs::write(dir.join(format!("go{n}")), "").unwrap();
            let deadline = Instant::now() + SOON;
            loop {
                let now = server.task(&task.id).await;
                if now.status.as_str() == status && now.message.as_deref() == message {
                    return;
                }
                assert!(Instant::now() < deadline, "step {n}: still {now:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    step(
        1,
        "waiting-for-input",
        Some("Claude needs your permission to use Bash"),
    )
    .await;
    step(2, "running", None).await;
    step(
        3,
        "waiting-for-input",
        Some("Claude finished and waits for you"),
    )
    .await;
    server
        .state
        .tasks
        .report_state(&task.id, app::model::ReportedState::Running, None)
        .unwrap();
    step(4, "waiting-for-input", Some("Codex finished its turn")).await;
}
