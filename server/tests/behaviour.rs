//! One behaviour suite, the same assertions, against a single node and against a fleet of
//! two (requests to node a, tasks run by node b): create, status, events, resume, input,
//! kill, delete, bad input. Real tmux, real SQLite, a real nats-server for the fleet.
mod common;

use std::time::Duration;

use app::model::TaskStatus;
use common::{Fixture, Nats, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const SOON: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_single_node_behaves() {
    let fixture = Fixture::new();
    let server = fixture.serve_with(|c| c.node = Some("solo".into())).await;
    behaves(&server, "solo").await;
}

#[tokio::test]
async fn a_fleet_of_two_behaves_the_same_through_either_node() {
    let nats = Nats::start().await;
    let (fixture_a, fixture_b) = (Fixture::new(), Fixture::new());
    let a = fixture_a.serve_node(&nats, "node-a").await;
    let _b = fixture_b.serve_node(&nats, "node-b").await;
    a.wait_for_node("node-b", true).await;
    behaves(&a, "node-b").await;
}

/// The suite: `server` takes every request; `node` runs the tasks.
async fn behaves(server: &TestServer, node: &str) {
    // Bad input: a clear 4xx with {"error"}, and nothing changes.
    let (_, before) = server.call(Method::GET, "/api/tasks", None).await;
    for (method, path, body, expected) in [
        (
            Method::POST,
            "/api/tasks".to_string(),
            Some(json!({})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/tasks".to_string(),
            Some(json!({"command": "true", "node": "nowhere"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::GET,
            "/api/tasks/no-such-task".to_string(),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "/api/tasks/no-such-task/kill".to_string(),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/api/tasks/..%2Fetc".to_string(),
            None,
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (status, answer) = server.call(method.clone(), &path, body).await;
        assert_eq!(status, expected, "{method} {path}: {answer}");
        assert!(answer["error"].is_string(), "{method} {path}: {answer}");
    }
    let (_, after) = server.call(Method::GET, "/api/tasks", None).await;
    assert_eq!(before["tasks"], after["tasks"]);

    // Create, events, status: a task that asks, is answered, and completes.
    let mut events = server.events("", None).await;
    let cursor = events.wait_for("ready", SOON).await.json()["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, task) = server
        .call(
            Method::POST,
            "/api/tasks",
            Some(json!({"command": "echo asking; read x; echo got-$x", "name": "asks", "node": node})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{task}");
    assert_eq!(task["node"], node);
    let id = task["id"].as_str().unwrap().to_string();
    // At once, through the node that created it (before any event came back).
    let (status, again) = server
        .call(Method::GET, &format!("/api/tasks/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["node"], node);
    let created = events.wait_for("task.created", SOON).await;
    assert_eq!(created.json()["id"], id.as_str());
    server
        .wait_for_status(&id, TaskStatus::WaitingForInput, SOON)
        .await;
    let (status, answer) = server
        .call(
            Method::POST,
            &format!("/api/tasks/{id}/input"),
            Some(json!({"text": "yes", "submit": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let done = server
        .wait_for_status(&id, TaskStatus::Completed, SOON)
        .await;
    assert_eq!(done.exit_code, Some(0));
    let (status, output) = server
        .call(Method::GET, &format!("/api/tasks/{id}/output"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{output}");
    assert!(
        output["output"].as_str().unwrap().contains("got-yes"),
        "{output}"
    );
    let statuses = statuses_of(&mut events, &id, "completed").await;
    assert_eq!(statuses.last().unwrap(), "completed", "{statuses:?}");
    // Input to a finished task changes nothing.
    let (status, _) = server
        .call(
            Method::POST,
            &format!("/api/tasks/{id}/input"),
            Some(json!({"text": "again", "submit": true})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // A prompt on its screen, answered by a reply (a stale one types nothing).
    let asks = concat!(env!("CARGO_MANIFEST_DIR"), "/../end2end/fixtures/asks.py");
    let menu = server
        .create(json!({"command": format!("python3 {asks} cursor"), "node": node}))
        .await;
    let asking = server
        .wait_for(&menu.id, |t| t.prompt.is_some(), SOON)
        .await;
    let prompt = asking.prompt.unwrap();
    let reply_path = format!("/api/tasks/{}/reply", menu.id);
    let reply = |body: serde_json::Value| server.call(Method::POST, &reply_path, Some(body));
    let (status, _) = reply(json!({"prompt": "not-this-one", "choice": "2"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, answered) = reply(json!({"prompt": prompt.id, "choice": "2"})).await;
    assert_eq!(status, StatusCode::OK, "{answered}");
    assert_eq!(answered["status"], "running");
    let got = server
        .wait_for_status(&menu.id, TaskStatus::Completed, SOON)
        .await;
    assert_eq!(got.prompt, None);
    let (_, output) = server
        .call(Method::GET, &format!("/api/tasks/{}/output", menu.id), None)
        .await;
    assert!(
        output["output"]
            .as_str()
            .unwrap()
            .contains("got: Green keys='\\x1b[B\\n'"),
        "{output}"
    );

    // Resume: a stream from the first cursor gets the same events again.
    let mut resumed = server.events("", Some(&cursor)).await;
    let ready = resumed.wait_for("ready", SOON).await;
    assert_eq!(ready.json()["resumed"], true, "{}", ready.data);
    let again = resumed.wait_for("task.created", SOON).await;
    assert_eq!(again.id, created.id);

    // Kill, then delete.
    let (_, sleeper) = server
        .call(
            Method::POST,
            "/api/tasks",
            Some(json!({"command": "sleep 600", "node": node})),
        )
        .await;
    let sleeper = sleeper["id"].as_str().unwrap().to_string();
    let (status, killed) = server
        .call(Method::POST, &format!("/api/tasks/{sleeper}/kill"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{killed}");
    assert_eq!(killed["status"], "killed");
    let (status, _) = server
        .call(Method::POST, &format!("/api/tasks/{sleeper}/kill"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = server
        .call(Method::DELETE, &format!("/api/tasks/{sleeper}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let deleted = events.wait_for("task.deleted", SOON).await;
    assert_eq!(deleted.json()["id"], sleeper.as_str());
    let (status, _) = server
        .call(Method::GET, &format!("/api/tasks/{sleeper}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The statuses `task.status` events give task `id`, until `last`.
async fn statuses_of(events: &mut common::SseClient, id: &str, last: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let task: Value = events.wait_for("task.status", SOON).await.json();
        if task["id"] != id {
            continue;
        }
        let status = task["status"].as_str().unwrap().to_string();
        seen.push(status.clone());
        if status == last {
            return seen;
        }
    }
}
