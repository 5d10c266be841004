//! Prompts: a task whose screen asks is `waiting-for-input` (reason `prompt`) within a
//! second, with the prompt's question and choices, whatever it repaints meanwhile; a reply
//! types what picks the choice, and a reply to a prompt that is gone types nothing. Real
//! tmux, real programs that draw from an event loop and repaint while they wait
//! (`end2end/fixtures/asks.py`), and real `top`.
mod common;

use std::time::{Duration, Instant};

use app::model::{Task, TaskStatus, WaitingReason};
use common::{Fixture, SseClient, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// What the issue promises: waiting within a second of the menu appearing.
const AT_ONCE: Duration = Duration::from_secs(1);
const SOON: Duration = Duration::from_secs(10);
/// How long a wait is watched for holding: six of the programs' repaints.
const REPAINTS: Duration = Duration::from_secs(3);

fn asks(args: &str) -> String {
    let program = concat!(env!("CARGO_MANIFEST_DIR"), "/../end2end/fixtures/asks.py");
    format!("python3 {program} {args}")
}

/// Starts `asks.py` with `args` and waits for its prompt (timed from its start).
async fn asking(server: &TestServer, args: &str) -> Task {
    let task = server.create(json!({"command": asks(args)})).await;
    server
        .wait_for(&task.id, |t| t.prompt.is_some(), AT_ONCE)
        .await
}

fn labels(task: &Task) -> Vec<String> {
    let prompt = task.prompt.as_ref().expect("a prompt");
    prompt.choices.iter().map(|c| c.label.clone()).collect()
}

async fn reply(server: &TestServer, id: &str, body: Value) -> (StatusCode, Value) {
    server
        .call(Method::POST, &format!("/api/tasks/{id}/reply"), Some(body))
        .await
}

/// The `task.status` events of task `id` for `window`.
async fn status_events_during(events: &mut SseClient, id: &str, window: Duration) -> Vec<Value> {
    let mut moves = Vec::new();
    let end = tokio::time::Instant::now() + window;
    while let Ok(Some(frame)) = tokio::time::timeout_at(end, events.next()).await {
        if frame.event.as_deref() == Some("task.status") && frame.json()["id"] == id {
            moves.push(frame.json());
        }
    }
    moves
}

/// Waits until the task's screen and scrollback show `text`.
async fn wait_for_output(server: &TestServer, id: &str, text: &str) -> String {
    let deadline = Instant::now() + SOON;
    loop {
        let output = server.output(id, 100).await;
        if output.contains(text) {
            return output;
        }
        assert!(Instant::now() < deadline, "no {text:?} in:\n{output}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn each_style_of_prompt_waits_within_a_second_and_a_reply_picks_the_choice() {
    let fixture = Fixture::new();
    // The quiet rule would take a minute and a half; the screen takes a second.
    let server = fixture.serve_with(|c| c.idle_waiting_secs = 90).await;
    // (style, the labels it shows, the choice replied, what the program then says it got)
    let cases = [
        (
            "numbered",
            vec![
                "Yes",
                "Yes, and always allow access to /tmp from this project",
                "No",
            ],
            json!({"choice": "3"}),
            "got: No keys='3'",
        ),
        (
            "numbered --alt",
            vec![
                "Yes",
                "Yes, and always allow access to /tmp from this project",
                "No",
            ],
            json!({"choice": "2"}),
            "got: Yes, and always allow access to /tmp from this project keys='2'",
        ),
        (
            "codex",
            vec![
                "Yes, proceed (y)",
                "Yes, and don't ask again for this command (p)",
                "No, and tell Codex what to do differently (esc)",
            ],
            json!({"choice": "2"}),
            "got: Yes, and don't ask again for this command (p) keys='2'",
        ),
        // No digits: the arrows from the marked choice, then Enter.
        (
            "cursor",
            vec!["Red", "Green", "Blue"],
            json!({"choice": "3"}),
            r"got: Blue keys='\x1b[B\x1b[B\n'",
        ),
        (
            "reverse --alt",
            vec!["staging", "production", "local"],
            json!({"choice": "2"}),
            r"got: production keys='\x1b[B\n'",
        ),
        (
            "yesno",
            vec!["Yes", "No"],
            json!({"choice": "no"}),
            "got: n keys='n'",
        ),
        (
            "words",
            vec![],
            json!({"text": "fix-login"}),
            "got: fix-login",
        ),
    ];
    for (style, wanted, answer, got) in cases {
        let task = asking(&server, style).await;
        assert_eq!(
            task.status,
            TaskStatus::WaitingForInput,
            "{style}: {task:?}"
        );
        assert_eq!(task.waiting_reason, Some(WaitingReason::Prompt), "{style}");
        assert_eq!(labels(&task), wanted, "{style}");
        let prompt = task.prompt.as_ref().unwrap();
        assert!(prompt.question.contains('?'), "{style}: {prompt:?}");

        let mut body = answer.clone();
        body["prompt"] = json!(prompt.id);
        let (status, answered) = reply(&server, &task.id, body).await;
        assert_eq!(status, StatusCode::OK, "{style}: {answered}");
        assert_eq!(answered["status"], "running", "{style}: {answered}");
        assert_eq!(answered["prompt"], Value::Null, "{style}");
        wait_for_output(&server, &task.id, got).await;
        let done = server
            .wait_for_status(&task.id, TaskStatus::Completed, SOON)
            .await;
        assert_eq!(done.prompt, None);
    }
}

#[tokio::test]
async fn a_menu_that_repaints_keeps_its_task_waiting_until_it_is_answered() {
    let fixture = Fixture::new();
    let server = fixture.serve_with(|c| c.idle_waiting_secs = 90).await;
    let mut events = server.events("", None).await;
    events.wait_for("ready", SOON).await;
    let task = asking(&server, "numbered").await;
    // Six repaints of the whole frame (spinner, clock): not one change of status.
    let moves = status_events_during(&mut events, &task.id, REPAINTS).await;
    assert!(
        moves.iter().all(|t| t["status"] == "waiting-for-input"),
        "the wait did not hold through repaints: {moves:?}"
    );
    assert_eq!(
        server.task(&task.id).await.waiting_reason,
        Some(WaitingReason::Prompt)
    );
    // A key in the terminal (here: Enter, through `input`) answers it.
    let (status, body) = server
        .call(
            Method::POST,
            &format!("/api/tasks/{}/input", task.id),
            Some(json!({"text": "", "submit": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "running");
    wait_for_output(&server, &task.id, r"got: Yes keys='\n'").await;
}

/// A program that said it waits and then repaints a corner of its screen still waits;
/// new lines of output end the wait.
#[tokio::test]
async fn a_reported_wait_holds_through_repaints_and_ends_with_new_output() {
    let fixture = Fixture::new();
    let server = fixture.serve_with(|c| c.idle_waiting_secs = 90).await;
    let go = fixture.data_dir().join("go-on");
    let program = format!(
        r#"python3 -c '
import json, os, time, urllib.request
url = os.environ["TASKWIRE_URL"] + "/api/tasks/" + os.environ["TASKWIRE_TASK_ID"] + "/state"
request = urllib.request.Request(url, data=json.dumps({{"state": "waiting-for-input"}}).encode(),
    headers={{"Authorization": "Bearer " + os.environ["TASKWIRE_TASK_TOKEN"], "Content-Type": "application/json"}})
print("> ready for your next message")
urllib.request.urlopen(request).read()
while not os.path.exists("{go}"):
    print("\x1b7\x1b[1;70H" + time.strftime("%H:%M:%S") + " ⠋\x1b8", end="", flush=True)
    time.sleep(0.5)
for n in range(5):
    print("new line", n, flush=True)
time.sleep(30)
'"#,
        go = go.display()
    );
    let task = server.create(json!({"command": program})).await;
    let waiting = server
        .wait_for_status(&task.id, TaskStatus::WaitingForInput, SOON)
        .await;
    assert_eq!(waiting.waiting_reason, Some(WaitingReason::Reported));
    let mut events = server.events("", None).await;
    events.wait_for("ready", SOON).await;
    let moves = status_events_during(&mut events, &task.id, REPAINTS).await;
    assert!(moves.is_empty(), "a repaint ended the wait: {moves:?}");
    std::fs::write(&go, "").unwrap();
    server
        .wait_for_status(&task.id, TaskStatus::Running, SOON)
        .await;
}

/// Output that flows is never a prompt: numbered steps scrolling by, a progress bar, a
/// menu with output printed below it, and `top`.
#[tokio::test]
async fn output_that_flows_is_never_a_prompt() {
    let fixture = Fixture::new();
    let server = fixture.serve_with(|c| c.idle_waiting_secs = 90).await;
    let mut events = server.events("", None).await;
    events.wait_for("ready", SOON).await;
    let mut ids = Vec::new();
    for command in [
        asks("build"),
        asks("progress"),
        asks("scrolling-menu"),
        "timeout 4 top".to_string(),
    ] {
        ids.push(server.create(json!({"command": command})).await.id);
    }
    let mut finished = 0;
    while finished < ids.len() {
        let frame = events.wait_for("task.status", SOON).await;
        let task: Task = serde_json::from_value(frame.json()).unwrap();
        if !ids.contains(&task.id) {
            continue;
        }
        assert!(
            task.waiting_reason != Some(WaitingReason::Prompt) && task.prompt.is_none(),
            "taken for a prompt: {task:?}"
        );
        if task.status.is_terminal() {
            finished += 1;
        }
    }
}

#[tokio::test]
async fn a_reply_to_a_prompt_that_changed_is_refused_and_types_nothing() {
    let fixture = Fixture::new();
    let server = fixture.serve_with(|c| c.idle_waiting_secs = 90).await;
    let first = asking(&server, "numbered --change-after 1.5").await;
    let stale = first.prompt.clone().unwrap().id;
    let changed = server
        .wait_for(
            &first.id,
            |t| t.prompt.as_ref().is_some_and(|p| p.id != stale),
            SOON,
        )
        .await;
    let current = changed.prompt.unwrap();
    assert!(current.question.contains("second step"), "{current:?}");

    let (status, body) = reply(&server, &first.id, json!({"prompt": stale, "choice": "2"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "the prompt has changed");
    // An unknown choice, and a reply without one, change nothing either.
    let (status, body) = reply(
        &server,
        &first.id,
        json!({"prompt": current.id, "choice": "9"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) = reply(&server, &first.id, json!({"prompt": current.id})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        server.task(&first.id).await.status,
        TaskStatus::WaitingForInput
    );

    let (status, body) = reply(
        &server,
        &first.id,
        json!({"prompt": current.id, "choice": "1"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The only key it ever received is the one that answered.
    wait_for_output(&server, &first.id, "got: Yes keys='1'").await;
    // The same tap again: already answered.
    let (status, _) = reply(
        &server,
        &first.id,
        json!({"prompt": current.id, "choice": "1"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    server
        .wait_for_status(&first.id, TaskStatus::Completed, SOON)
        .await;
    let (status, body) = reply(
        &server,
        &first.id,
        json!({"prompt": current.id, "choice": "1"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

/// An agent asking the same question twice (leave for one command, then again): the second
/// asking waits anew, with an id of its own, so a late tap meant for the first (another
/// device, a notification) is refused rather than typed into the second.
#[tokio::test]
async fn the_same_question_asked_again_is_a_prompt_of_its_own() {
    let fixture = Fixture::new();
    let server = fixture.serve_with(|c| c.idle_waiting_secs = 90).await;
    let first = asking(&server, "numbered --again").await;
    let first_id = first.prompt.clone().unwrap().id;
    let (status, body) = reply(
        &server,
        &first.id,
        json!({"prompt": first_id, "choice": "1"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for_output(&server, &first.id, "running the command (2)").await;
    let again = server
        .wait_for(
            &first.id,
            |t| t.prompt.as_ref().is_some_and(|p| p.id != first_id),
            SOON,
        )
        .await;
    assert_eq!(again.status, TaskStatus::WaitingForInput);
    assert_eq!(
        again.prompt.as_ref().unwrap().question,
        first.prompt.unwrap().question
    );
    let (status, body) = reply(
        &server,
        &first.id,
        json!({"prompt": first_id, "choice": "1"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let second_id = again.prompt.unwrap().id;
    let (status, body) = reply(
        &server,
        &first.id,
        json!({"prompt": second_id, "choice": "3"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for_output(&server, &first.id, "got: Yes then No keys='13'").await;
}
