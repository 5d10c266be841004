//! Waiting means waiting: a task is `waiting-for-input` when its program waits for the
//! person (seen in `/proc`), within a second, and never because it is quiet. Real tmux, real
//! programs (sh, python3, a login shell).
mod common;

use std::time::{Duration, Instant};

use app::model::{ReportedState, TaskStatus, WaitingReason};
use common::{Fixture, SseClient, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const SOON: Duration = Duration::from_secs(10);
/// What the issue promises: waiting within a second of the program blocking.
const AT_ONCE: Duration = Duration::from_secs(1);

/// Types `text` and Enter into a task, as the page's input box does.
async fn answer(server: &TestServer, id: &str, text: &str) {
    let (status, body) = server
        .call(
            Method::POST,
            &format!("/api/tasks/{id}/input"),
            Some(json!({"text": text, "submit": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A server whose quiet rule acts after 1 s (checked every second), and its event stream.
async fn quick_to_call_quiet(fixture: &Fixture) -> (TestServer, SseClient) {
    let server = fixture
        .serve_with(|c| {
            c.idle_waiting_secs = 1;
            c.reconcile_secs = 1;
        })
        .await;
    let mut events = server.events("", None).await;
    events.wait_for("ready", SOON).await;
    (server, events)
}

/// The statuses `task.status` events give the task, in order, until it finishes.
async fn statuses_until_finished(events: &mut SseClient, id: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = events.wait_for("task.status", left).await;
        let task: Value = frame.json();
        if task["id"] != id {
            continue;
        }
        let status = task["status"].as_str().unwrap().to_string();
        seen.push(status.clone());
        if TaskStatus::parse(&status).is_some_and(TaskStatus::is_terminal) {
            return seen;
        }
    }
}

#[tokio::test]
async fn a_program_reading_its_terminal_waits_at_once_and_runs_again_when_answered() {
    let fixture = Fixture::new();
    // The quiet rule alone would take a minute and a half.
    let server = fixture.serve_with(|c| c.idle_waiting_secs = 90).await;
    let task = server
        .create(json!({"command": "echo 'name?'; read x; echo hello-$x; sleep 0.5"}))
        .await;
    let waiting = server
        .wait_for_status(&task.id, TaskStatus::WaitingForInput, AT_ONCE)
        .await;
    assert_eq!(waiting.waiting_reason, Some(WaitingReason::Terminal));

    let mut events = server.events("", None).await;
    events.wait_for("ready", SOON).await;
    answer(&server, &task.id, "ada").await;
    let after = statuses_until_finished(&mut events, &task.id).await;
    assert_eq!(after, ["running", "completed"], "{after:?}");
    let done = server.task(&task.id).await;
    assert_eq!(done.waiting_reason, None);
}

#[tokio::test]
async fn python_asking_for_input_waits_at_once() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let task = server
        .create(json!({"command": "python3 -c 'input(\"name? \")'"}))
        .await;
    let waiting = server
        .wait_for_status(&task.id, TaskStatus::WaitingForInput, AT_ONCE)
        .await;
    // Blocked reading its terminal, under a question: the question says what it waits for.
    assert!(
        matches!(
            waiting.waiting_reason,
            Some(WaitingReason::Terminal | WaitingReason::Prompt)
        ),
        "{waiting:?}"
    );
    let asks = server
        .wait_for(&task.id, |t| t.prompt.is_some(), AT_ONCE)
        .await;
    assert_eq!(asks.waiting_reason, Some(WaitingReason::Prompt));
    let prompt = asks.prompt.unwrap();
    assert_eq!(prompt.question, "name?");
    assert!(prompt.choices.is_empty());
}

/// Quiet work, however long against `IDLE_WAITING_SECS`, never counts as waiting: not a
/// script sleeping after its result, not a silent computation.
#[tokio::test]
async fn quiet_work_never_waits() {
    let fixture = Fixture::new();
    let (server, mut events) = quick_to_call_quiet(&fixture).await;
    let sleeper = server
        .create(json!({"command": "echo result: 42; sleep 5"}))
        .await;
    let spinner = server
        .create(json!({"command": "python3 -c 'import time\nend = time.time() + 5\nwhile time.time() < end: pass'"}))
        .await;
    let mut sleeper_seen = None;
    let mut spinner_seen = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut log = Vec::new();
    while sleeper_seen.is_none() || spinner_seen.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let task: Value = events.wait_for("task.status", left).await.json();
        log.push(format!("{} {}", task["id"], task["status"]));
        let finished = TaskStatus::parse(task["status"].as_str().unwrap())
            .is_some_and(TaskStatus::is_terminal);
        if finished && task["id"] == sleeper.id.as_str() {
            sleeper_seen = Some(task["status"].clone());
        }
        if finished && task["id"] == spinner.id.as_str() {
            spinner_seen = Some(task["status"].clone());
        }
    }
    assert_eq!(sleeper_seen.unwrap(), "completed");
    assert_eq!(spinner_seen.unwrap(), "completed");
    // The only status events were the two completions: neither task ever waited.
    assert_eq!(log.len(), 2, "{log:?}");
}

/// A program in `select` on its terminal may be waiting for the person or for something
/// else: the quiet rule judges it, and what it says of itself wins.
#[tokio::test]
async fn a_program_in_select_is_judged_by_its_silence_until_it_reports() {
    let fixture = Fixture::new();
    let (server, mut events) = quick_to_call_quiet(&fixture).await;
    // Waits in select on stdin for 6 s, then ends.
    let select = "python3 -c 'import select, sys; select.select([sys.stdin], [], [], 6)'";
    let started = Instant::now();
    let task = server.create(json!({ "command": select })).await;
    let quiet = server
        .wait_for_status(&task.id, TaskStatus::WaitingForInput, SOON)
        .await;
    assert_eq!(quiet.waiting_reason, Some(WaitingReason::Quiet));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waiting after {:?}, before it was quiet for IDLE_WAITING_SECS",
        started.elapsed()
    );

    // It says it runs: it runs, and its silence no longer makes it wait (the quiet rule
    // would have had 4 more seconds, over 1-second passes, to take it back).
    let tasks = &server.state.tasks;
    tasks
        .report_state(&task.id, ReportedState::Running, None)
        .unwrap();
    let after = statuses_until_finished(&mut events, &task.id).await;
    let from_report = after
        .iter()
        .skip_while(|s| *s != "running")
        .collect::<Vec<_>>();
    assert_eq!(from_report, ["running", "completed"], "{after:?}");
}

#[tokio::test]
async fn a_program_in_select_that_says_it_waits_shows_what_it_said() {
    let fixture = Fixture::new();
    let server = fixture.serve_with(|c| c.idle_waiting_secs = 90).await;
    let select = "python3 -c 'import select, sys; select.select([sys.stdin], [], [])'";
    let task = server.create(json!({ "command": select })).await;
    let reported = server
        .state
        .tasks
        .report_state(
            &task.id,
            ReportedState::WaitingForInput,
            Some("Allow edits?".into()),
        )
        .unwrap();
    assert_eq!(reported.waiting_reason, Some(WaitingReason::Reported));
    assert_eq!(reported.message.as_deref(), Some("Allow edits?"));
    // Several waiting passes later it still waits because it said so.
    let before = server.task(&task.id).await;
    let mut events = server.events("", None).await;
    events.wait_for("ready", SOON).await;
    let probe = server.create(json!({"command": "read x"})).await;
    server
        .wait_for_status(&probe.id, TaskStatus::WaitingForInput, SOON)
        .await;
    assert_eq!(server.task(&task.id).await, before);
}

#[tokio::test]
async fn a_terminal_at_its_prompt_waits_and_runs_while_a_command_does() {
    let fixture = Fixture::new();
    let server = fixture.serve_with(|c| c.idle_waiting_secs = 90).await;
    let (status, body) = server
        .call(Method::POST, "/api/tasks/terminal", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let at_prompt = server
        .wait_for_status(&id, TaskStatus::WaitingForInput, SOON)
        .await;
    assert_eq!(at_prompt.waiting_reason, Some(WaitingReason::Terminal));

    let typed = Instant::now();
    answer(&server, &id, "sleep 3").await;
    server
        .wait_for_status(&id, TaskStatus::Running, AT_ONCE)
        .await;
    // Back at the prompt only once the sleep is over.
    server
        .wait_for_status(&id, TaskStatus::WaitingForInput, SOON)
        .await;
    assert!(
        typed.elapsed() >= Duration::from_secs(3),
        "waiting again after {:?}, while `sleep 3` ran",
        typed.elapsed()
    );
}

#[tokio::test]
async fn a_task_started_before_a_restart_is_seen_waiting_after_it() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let go = fixture.dir.path().join("go");
    let command = format!(
        "while [ ! -e '{}' ]; do sleep 0.1; done; read x",
        go.display()
    );
    let task = server.create(json!({ "command": command })).await;
    server.stop().await;

    std::fs::write(&go, "").unwrap();
    let server = fixture.serve().await;
    let waiting = server
        .wait_for_status(&task.id, TaskStatus::WaitingForInput, SOON)
        .await;
    assert_eq!(waiting.waiting_reason, Some(WaitingReason::Terminal));
}
