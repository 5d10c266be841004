//! Tasks over the real API: real tmux (a socket per test), real SQLite, real processes.
mod common;

use std::time::Duration;

use app::model::TaskStatus;
use common::{output_log, session_exists, wait_until, Fixture};
use reqwest::{Method, StatusCode};
use serde_json::json;

const SOON: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_command_that_exits_0_completes_and_its_output_is_kept() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let task = server
        .create(json!({"command": "echo hello-from-tmux", "name": "greet"}))
        .await;
    assert_eq!(task.status, TaskStatus::Running);
    assert_eq!(task.name, "greet");
    let done = server
        .wait_for_status(&task.id, TaskStatus::Completed, SOON)
        .await;
    assert_eq!(done.exit_code, Some(0));
    assert!(done.finished_at.is_some());
    let (status, out) = server
        .call(
            Method::GET,
            &format!("/api/tasks/{}/output?tail=5", task.id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        out["output"].as_str().unwrap().contains("hello-from-tmux"),
        "{out}"
    );
    assert!(output_log(&fixture.data_dir(), &task.id).exists());
}

#[tokio::test]
async fn a_command_that_exits_3_fails_with_its_exit_code() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let task = server.create(json!({"command": "exit 3"})).await;
    let failed = server
        .wait_for_status(&task.id, TaskStatus::Failed, SOON)
        .await;
    assert_eq!(failed.exit_code, Some(3));
}

#[tokio::test]
async fn the_command_runs_in_its_workdir() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let workdir = tempfile::tempdir().unwrap();
    let task = server
        .create(json!({"command": "pwd > where.txt", "workdir": workdir.path()}))
        .await;
    server
        .wait_for_status(&task.id, TaskStatus::Completed, SOON)
        .await;
    let written = std::fs::read_to_string(workdir.path().join("where.txt")).unwrap();
    assert_eq!(
        written.trim(),
        workdir.path().canonicalize().unwrap().to_str().unwrap()
    );
}

#[tokio::test]
async fn a_quiet_task_waits_for_input_and_input_brings_it_back_to_running_then_completed() {
    let fixture = Fixture::new();
    let server = fixture
        .serve_with(|c| {
            c.idle_waiting_secs = 1;
            c.reconcile_secs = 1;
        })
        .await;
    let task = server
        .create(json!({"command": "echo ready; read answer; echo got-$answer; sleep 0.3"}))
        .await;
    server
        .wait_for_status(&task.id, TaskStatus::WaitingForInput, SOON)
        .await;

    let (status, body) = server
        .call(
            Method::POST,
            &format!("/api/tasks/{}/input", task.id),
            Some(json!({"text": "yes", "submit": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "running");
    server
        .wait_for_status(&task.id, TaskStatus::Completed, SOON)
        .await;
    let (_, out) = server
        .call(Method::GET, &format!("/api/tasks/{}/output", task.id), None)
        .await;
    assert!(out["output"].as_str().unwrap().contains("got-yes"), "{out}");
}

#[tokio::test]
async fn output_resuming_brings_a_waiting_task_back_to_running() {
    let fixture = Fixture::new();
    let server = fixture
        .serve_with(|c| {
            c.idle_waiting_secs = 1;
            c.reconcile_secs = 1;
        })
        .await;
    // Quiet for 2.5 s in `select` (which may be waiting for the person: the quiet rule
    // judges it), then prints again and keeps printing.
    let select = "python3 -c 'import select, sys; select.select([sys.stdin], [], [], 2.5)'";
    let task = server
        .create(
            json!({ "command": format!("{select}; while true; do echo tick; sleep 0.2; done") }),
        )
        .await;
    server
        .wait_for_status(&task.id, TaskStatus::WaitingForInput, SOON)
        .await;
    server
        .wait_for_status(&task.id, TaskStatus::Running, SOON)
        .await;
}

#[tokio::test]
async fn the_prompt_is_typed_into_the_program_once_it_is_ready() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let task = server
        .create(json!({"command": "echo 'say something:'; read line; echo heard-$line", "prompt": "hello"}))
        .await;
    server
        .wait_for_status(&task.id, TaskStatus::Completed, SOON)
        .await;
    let (_, out) = server
        .call(Method::GET, &format!("/api/tasks/{}/output", task.id), None)
        .await;
    assert!(
        out["output"].as_str().unwrap().contains("heard-hello"),
        "{out}"
    );
}

#[tokio::test]
async fn kill_stops_the_task_and_removes_its_session() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let task = server.create(json!({"command": "sleep 600"})).await;
    assert!(session_exists(&fixture.socket, &task.id));
    let (status, body) = server
        .call(Method::POST, &format!("/api/tasks/{}/kill", task.id), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "killed");
    assert!(
        !session_exists(&fixture.socket, &task.id),
        "the tmux session is gone"
    );
    let (again, body) = server
        .call(Method::POST, &format!("/api/tasks/{}/kill", task.id), None)
        .await;
    assert_eq!(again, StatusCode::CONFLICT);
    assert!(body["error"].is_string());
    assert_eq!(
        server.task(&task.id).await.status,
        TaskStatus::Killed,
        "a killed task stays killed"
    );
}

/// tmux used to exit with its last session, and a session started in that moment died
/// with it: a task created just as the only other one was killed came up as `error`.
#[tokio::test]
async fn a_task_started_while_the_last_one_is_killed_runs() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    for round in 0..60 {
        let last = server.create(json!({"command": "sleep 600"})).await;
        let kill = format!("/api/tasks/{}/kill", last.id);
        let ((killed, _), started) = tokio::join!(
            server.call(Method::POST, &kill, None),
            server.call(
                Method::POST,
                "/api/tasks",
                Some(json!({"command": "sleep 600"}))
            ),
        );
        assert_eq!(killed, StatusCode::OK);
        let (status, body) = started;
        assert_eq!(status, StatusCode::CREATED, "round {round}: {body}");
        assert_eq!(body["status"], "running", "round {round}: {body}");
        let id = body["id"].as_str().unwrap();
        assert!(
            session_exists(&fixture.socket, id),
            "round {round}: the new task's session is there"
        );
        let (killed, _) = server
            .call(Method::POST, &format!("/api/tasks/{id}/kill"), None)
            .await;
        assert_eq!(killed, StatusCode::OK, "round {round}");
    }
}

#[tokio::test]
async fn delete_is_refused_while_live_and_forgets_a_terminal_task_and_its_output() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let task = server.create(json!({"command": "sleep 600"})).await;
    let path = format!("/api/tasks/{}", task.id);
    let (status, _) = server.call(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        session_exists(&fixture.socket, &task.id),
        "a refused delete changes nothing"
    );

    server
        .call(Method::POST, &format!("{path}/kill"), None)
        .await;
    let (status, body) = server.call(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        server.call(Method::GET, &path, None).await.0,
        StatusCode::NOT_FOUND
    );
    assert!(!output_log(&fixture.data_dir(), &task.id).exists());
    assert_eq!(
        server.call(Method::DELETE, &path, None).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_terminal_task_runs_an_interactive_shell() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let (status, body) = server
        .call(Method::POST, "/api/tasks/terminal", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["kind"], "terminal");
    assert_eq!(body["status"], "running");
    let id = body["id"].as_str().unwrap().to_string();
    let (status, _) = server
        .call(
            Method::POST,
            &format!("/api/tasks/{id}/input"),
            Some(json!({"text": "echo $((6*7)); exit 5", "submit": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let failed = server.wait_for_status(&id, TaskStatus::Failed, SOON).await;
    assert_eq!(failed.exit_code, Some(5));
    let (_, out) = server
        .call(Method::GET, &format!("/api/tasks/{id}/output"), None)
        .await;
    assert!(out["output"].as_str().unwrap().contains("42"), "{out}");

    // Input to a task that is no longer live is refused.
    let (status, _) = server
        .call(
            Method::POST,
            &format!("/api/tasks/{id}/input"),
            Some(json!({"text": "ls"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn rename_changes_the_name_and_rejects_long_names() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let task = server.create(json!({"command": "sleep 600"})).await;
    let path = format!("/api/tasks/{}", task.id);
    let (status, body) = server
        .call(Method::PATCH, &path, Some(json!({"name": "nightly build"})))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["name"], "nightly build");
    let (status, body) = server
        .call(Method::PATCH, &path, Some(json!({"name": "x".repeat(101)})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("100"));
    assert_eq!(server.task(&task.id).await.name, "nightly build");
}

#[tokio::test]
async fn list_is_newest_first_with_an_event_id() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let first = server.create(json!({"command": "sleep 600"})).await;
    let second = server.create(json!({"command": "sleep 600"})).await;
    let (status, body) = server.call(Method::GET, "/api/tasks", None).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = body["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second.id.as_str(), first.id.as_str()]);
    let event_id = body["event_id"].as_str().unwrap();
    assert!(
        event_id.ends_with("-2"),
        "two creations, two events: {event_id}"
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let cases: Vec<(&str, reqwest::RequestBuilder, StatusCode)> = vec![
        (
            "malformed JSON",
            server
                .request(Method::POST, "/api/tasks")
                .header("content-type", "application/json")
                .body("{\"command\":"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "missing command",
            server
                .request(Method::POST, "/api/tasks")
                .json(&json!({"name": "x"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "empty command",
            server
                .request(Method::POST, "/api/tasks")
                .json(&json!({"command": "  "})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "command of the wrong type",
            server
                .request(Method::POST, "/api/tasks")
                .json(&json!({"command": 42})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "name of the wrong type",
            server
                .request(Method::POST, "/api/tasks")
                .json(&json!({"command": "true", "name": ["a"]})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "body over 64 KiB",
            server
                .request(Method::POST, "/api/tasks")
                .json(&json!({"command": "x".repeat(70_000)})),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "missing workdir",
            server
                .request(Method::POST, "/api/tasks")
                .json(&json!({"command": "true", "workdir": "/no/such/dir"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "terminal in a missing workdir",
            server
                .request(Method::POST, "/api/tasks/terminal")
                .json(&json!({"workdir": "/no/such/dir"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "name over 100 chars",
            server
                .request(Method::POST, "/api/tasks")
                .json(&json!({"command": "true", "name": "n".repeat(101)})),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (what, req, expected) in cases {
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), expected, "{what}");
        let body: serde_json::Value = res
            .json()
            .await
            .unwrap_or_else(|e| panic!("{what}: body is not JSON: {e}"));
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: {body}"
        );
    }
    let (_, list) = server.call(Method::GET, "/api/tasks", None).await;
    assert_eq!(
        list["tasks"].as_array().unwrap().len(),
        0,
        "nothing was created"
    );

    let (status, body) = server.call(Method::GET, "/api/no-such-route", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].is_string(), "{body}");

    for bad in ["a%2Fb", "has.dot", "semi;colon", &"x".repeat(65)] {
        let (status, body) = server
            .call(Method::GET, &format!("/api/tasks/{bad}"), None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
        assert!(body["error"].is_string(), "{bad}: {body}");
    }
}

#[tokio::test]
async fn a_task_tmux_cannot_start_is_recorded_as_error_never_running() {
    let fixture = Fixture::new();
    // A socket name too long for a unix socket path: tmux cannot start a server.
    let server = fixture
        .serve_with(|c| c.tmux_socket = Some("x".repeat(200)))
        .await;
    let (status, body) = server
        .call(Method::POST, "/api/tasks", Some(json!({"command": "true"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "error");
    assert!(body["error"].as_str().unwrap().contains("tmux"), "{body}");
}

#[tokio::test]
async fn tasks_survive_a_restart_and_an_exit_while_down_gets_its_true_code() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let long = server.create(json!({"command": "sleep 600"})).await;
    let marker = fixture.dir.path().join("go");
    let ends = server
        .create(json!({"command": format!("while [ ! -e {} ]; do sleep 0.05; done; exit 7", marker.display())}))
        .await;
    server.stop().await;

    // While taskwire is down, one task ends.
    std::fs::write(&marker, "").unwrap();
    let exit_file = fixture.data_dir().join("tasks").join(&ends.id).join("exit");
    wait_until("the task to end", SOON, || exit_file.exists()).await;

    let server = fixture.serve().await;
    let ended = server
        .wait_for_status(&ends.id, TaskStatus::Failed, SOON)
        .await;
    assert_eq!(ended.exit_code, Some(7));
    let still = server.task(&long.id).await;
    assert_eq!(still.status, TaskStatus::Running);
    // ...and still controllable.
    let (status, body) = server
        .call(Method::POST, &format!("/api/tasks/{}/kill", long.id), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!session_exists(&fixture.socket, &long.id));
}

#[tokio::test]
async fn a_session_that_vanishes_is_recorded_as_error() {
    let fixture = Fixture::new();
    let server = fixture.serve_with(|c| c.reconcile_secs = 1).await;
    let task = server.create(json!({"command": "sleep 600"})).await;
    // Someone kills the tmux server behind taskwire's back.
    std::process::Command::new("tmux")
        .args(["-L", &fixture.socket, "kill-server"])
        .output()
        .unwrap();
    let gone = server
        .wait_for_status(&task.id, TaskStatus::Error, Duration::from_secs(15))
        .await;
    assert!(gone.error.unwrap().contains("disappeared"));
}

#[tokio::test]
async fn concurrent_reconcile_passes_make_one_transition() {
    let fixture = Fixture::new();
    let server = fixture.serve_with(|c| c.reconcile_secs = 3600).await;
    let mut events = server.events("", None).await;
    events.wait_for("ready", SOON).await;
    // Stop the wake-ups from reaching the background reconciler: run the passes ourselves.
    let task = server.create(json!({"command": "exit 4"})).await;
    let reconciler = server.state.reconciler.clone();
    let passes: Vec<_> = (0..8)
        .map(|_| {
            let reconciler = reconciler.clone();
            std::thread::spawn(move || reconciler.pass(true).unwrap())
        })
        .collect();
    for pass in passes {
        pass.join().unwrap();
    }
    server
        .wait_for_status(&task.id, TaskStatus::Failed, SOON)
        .await;
    // Exactly one terminal task.status for the task, however many passes saw the exit.
    let mut statuses = 0;
    let marker = server.create(json!({"command": "sleep 600"})).await;
    loop {
        let frame = events.next_event(SOON).await.unwrap();
        if frame.name() == "task.created" && frame.json()["id"] == marker.id {
            break;
        }
        if frame.name() == "task.status" && frame.json()["id"] == task.id {
            statuses += 1;
        }
    }
    assert_eq!(statuses, 1);
}
