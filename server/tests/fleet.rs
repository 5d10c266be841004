//! A fleet of two nodes on a real nats-server (JetStream), each node with its own data dir
//! and tmux socket: one dashboard of every task, one event sequence, actions anywhere.
mod common;

use std::time::{Duration, Instant};

use common::{session_exists, Fixture, Nats, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const SOON: Duration = Duration::from_secs(15);

/// Waits until `server` lists task `id` with `status`.
async fn wait_listed(server: &TestServer, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + SOON;
    loop {
        let (_, body) = server.call(Method::GET, "/api/tasks", None).await;
        let task = body["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["id"] == id)
            .cloned();
        if let Some(task) = task.filter(|t| t["status"] == status) {
            return task;
        }
        assert!(
            Instant::now() < deadline,
            "{id} not listed as {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_task_started_through_one_node_on_another_is_seen_and_controlled_from_both() {
    let nats = Nats::start().await;
    let (fixture_a, fixture_b) = (Fixture::new(), Fixture::new());
    let a = fixture_a.serve_node(&nats, "node-a").await;
    let b = fixture_b.serve_node(&nats, "node-b").await;
    a.wait_for_node("node-b", true).await;

    let mut events_a = a.events("", None).await;
    let ready_a = events_a.wait_for("ready", SOON).await;
    let mut events_b = b.events("", None).await;
    events_b.wait_for("ready", SOON).await;

    // Bad input changes nothing, wherever it is sent.
    let (status, body) = a
        .call(
            Method::POST,
            "/api/tasks",
            Some(json!({"command": "true", "node": "nope"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"].as_str().unwrap().contains("nope"));

    let (status, task) = a
        .call(
            Method::POST,
            "/api/tasks",
            Some(json!({"command": "sleep 600", "name": "on b", "node": "node-b"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{task}");
    assert_eq!(task["node"], "node-b");
    let id = task["id"].as_str().unwrap().to_string();
    assert!(
        session_exists(&fixture_b.socket, &id),
        "runs in node b's tmux"
    );
    assert!(!session_exists(&fixture_a.socket, &id));

    // The same event, with the same id, on both nodes.
    let created_a = events_a.wait_for("task.created", SOON).await;
    let created_b = events_b.wait_for("task.created", SOON).await;
    assert_eq!(created_a.json()["id"], id.as_str());
    assert_eq!(created_a.id, created_b.id);
    // A browser that was on node a resumes on node b.
    let mut moved = b
        .events("", Some(ready_a.json()["event_id"].as_str().unwrap()))
        .await;
    let ready = moved.wait_for("ready", SOON).await;
    assert_eq!(ready.json()["resumed"], true, "{}", ready.data);
    let replayed = moved.wait_for("task.created", SOON).await;
    assert_eq!(replayed.id, created_a.id);

    wait_listed(&a, &id, "running").await;
    let (status, body) = a.call(Method::GET, &format!("/api/tasks/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["node"], "node-b");

    // The program's own report, sent to node a, is checked and made by node b.
    let token = b.state.tasks.task_token(&id).unwrap();
    let report = |token: String| {
        a.client
            .post(a.url(&format!("/api/tasks/{id}/state")))
            .bearer_auth(token)
            .json(&json!({"state": "waiting-for-input", "message": "Deploy?"}))
            .send()
    };
    let refused = report("not-its-token".into()).await.unwrap();
    assert_eq!(
        refused.status(),
        StatusCode::FORBIDDEN,
        "as node b itself answers"
    );
    let reported = report(token).await.unwrap();
    assert_eq!(reported.status(), StatusCode::OK);
    let waiting = wait_listed(&a, &id, "waiting-for-input").await;
    assert_eq!(waiting["message"], "Deploy?");

    // Killed from node a.
    let (status, body) = a
        .call(Method::POST, &format!("/api/tasks/{id}/kill"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "killed");
    assert!(!session_exists(&fixture_b.socket, &id));
    wait_listed(&a, &id, "killed").await;
    wait_listed(&b, &id, "killed").await;

    // Deleted from node a: gone everywhere.
    let (status, body) = a
        .call(Method::DELETE, &format!("/api/tasks/{id}"), None)
        .await;
    assert!(status.is_success(), "{status} {body}");
    let deleted = events_b.wait_for("task.deleted", SOON).await;
    assert_eq!(deleted.json()["id"], id.as_str());
    let (_, list) = b.call(Method::GET, "/api/tasks", None).await;
    assert!(!list["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == id.as_str()));
}

#[tokio::test]
async fn a_stopped_node_is_offline_its_tasks_answer_503_and_it_comes_back() {
    let nats = Nats::start().await;
    let (fixture_a, fixture_b) = (Fixture::new(), Fixture::new());
    let a = fixture_a.serve_node(&nats, "node-a").await;
    let b = fixture_b.serve_node(&nats, "node-b").await;
    let marker = fixture_b.dir.path().join("go");
    let command = format!(
        "while [ ! -e '{}' ]; do sleep 0.1; done; exit 3",
        marker.display()
    );
    let task = b.create(json!({ "command": command })).await;
    let lasting = b.create(json!({ "command": "sleep 600" })).await;
    wait_listed(&a, &task.id, "running").await;
    wait_listed(&a, &lasting.id, "running").await;

    // Created the moment before the node stops: a stopping node sends its last changes.
    let last = b.create(json!({ "command": "sleep 600" })).await;
    b.stop().await;
    a.wait_for_node("node-b", false).await;
    wait_listed(&a, &last.id, "running").await;
    let (status, body) = a
        .call(Method::POST, &format!("/api/tasks/{}/kill", task.id), None)
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "node node-b is offline");
    // Its task keeps its last status meanwhile, and goes on running in tmux.
    wait_listed(&a, &task.id, "running").await;
    std::fs::write(&marker, "").unwrap();

    // Back: the task that ended meanwhile has its true exit code, everywhere.
    let b = fixture_b.serve_node(&nats, "node-b").await;
    a.wait_for_node("node-b", true).await;
    let ended = wait_listed(&a, &task.id, "failed").await;
    assert_eq!(ended["exit_code"], 3);
    let (status, _) = a
        .call(Method::DELETE, &format!("/api/tasks/{}", task.id), None)
        .await;
    assert!(status.is_success());
    // The one still running is live and controllable from node a again.
    let (status, killed) = a
        .call(
            Method::POST,
            &format!("/api/tasks/{}/kill", lasting.id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{killed}");
    assert!(!common::session_exists(&fixture_b.socket, &lasting.id));
    drop(b);
}

/// The ids of the events a stream delivers until it has seen `last_status` for `id`.
async fn event_ids_until(
    events: &mut common::SseClient,
    id: &str,
    last_status: &str,
) -> Vec<String> {
    let mut ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = events
            .next_event(left)
            .await
            .expect("the stream stays open");
        if let Some(frame_id) = &frame.id {
            ids.push(frame_id.clone());
        }
        let data = frame.json();
        if frame.name() == "task.status" && data["id"] == id && data["status"] == last_status {
            return ids;
        }
    }
}

#[tokio::test]
async fn nats_restarting_loses_and_doubles_nothing_and_an_exit_meanwhile_reaches_the_fleet() {
    let mut nats = Nats::start().await;
    let (fixture_a, fixture_b) = (Fixture::new(), Fixture::new());
    let a = fixture_a.serve_node(&nats, "node-a").await;
    let b = fixture_b.serve_node(&nats, "node-b").await;
    let marker = fixture_a.dir.path().join("go");
    let command = format!(
        "while [ ! -e '{}' ]; do sleep 0.1; done; exit 5",
        marker.display()
    );
    let task = a.create(json!({ "command": command })).await;
    wait_listed(&b, &task.id, "running").await;
    let mut events = b.events("", None).await;
    let cursor = events.wait_for("ready", SOON).await.json()["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    events.close();
    // Events before the outage, from both nodes' tasks.
    let before = b.create(json!({"command": "sleep 600"})).await;

    // NATS away for 10 s; the task on node a ends meanwhile.
    nats.stop();
    std::fs::write(&marker, "").unwrap();
    a.wait_for_status(&task.id, app::model::TaskStatus::Failed, SOON)
        .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    nats.restart().await;
    let ended = wait_listed(&b, &task.id, "failed").await;
    assert_eq!(ended["exit_code"], 5);
    wait_listed(&b, &before.id, "running").await;

    // A browser resuming from before the outage, on either node, gets the same events,
    // each once and in order.
    let mut ids = Vec::new();
    for server in [&a, &b] {
        wait_back_in_the_fleet(server, &cursor).await;
        let mut events = server.events("", Some(&cursor)).await;
        let ready = events.wait_for("ready", SOON).await;
        assert_eq!(ready.json()["resumed"], true, "{}", ready.data);
        ids.push(event_ids_until(&mut events, &task.id, "failed").await);
    }
    assert_eq!(ids[0], ids[1]);
    let seqs: Vec<u64> = ids[0]
        .iter()
        .map(|id| id.rsplit_once('-').unwrap().1.parse().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert!(seqs.len() >= 2, "{seqs:?}");
}

#[tokio::test]
async fn another_nodes_task_has_its_terminal_relayed() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

    let nats = Nats::start().await;
    let (fixture_a, fixture_b) = (Fixture::new(), Fixture::new());
    let a = fixture_a.serve_node(&nats, "node-a").await;
    let b = fixture_b.serve_node(&nats, "node-b").await;
    let task = b
        .create(json!({"command": "echo ready; read line; echo heard-$line; sleep 0.3"}))
        .await;
    wait_listed(&a, &task.id, "running").await;

    let url = format!(
        "{}/api/tasks/{}/terminal?cols=100&rows=30",
        a.base.replacen("http", "ws", 1),
        task.id
    );
    let mut request = url.into_client_request().unwrap();
    let bearer = format!("Bearer {}", common::TOKEN).parse().unwrap();
    request.headers_mut().insert("authorization", bearer);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut drawn = String::new();
    let mut typed = false;
    let deadline = Instant::now() + SOON;
    let close = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, socket.next()).await {
            Ok(Some(Ok(Message::Binary(bytes)))) => {
                drawn.push_str(&String::from_utf8_lossy(&bytes))
            }
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => {}
            other => panic!("the relayed terminal broke ({other:?}); drawn: {drawn:?}"),
        }
        if drawn.contains("ready") && !typed {
            // An open relayed viewer holds a stream slot on both nodes.
            assert_eq!(a.state.stream_slots.open(), 1, "on the relaying node");
            assert_eq!(b.state.stream_slots.open(), 1, "on the owner");
            socket
                .send(Message::Binary(b"relayed\r".to_vec().into()))
                .await
                .unwrap();
            typed = true;
        }
    };
    assert!(drawn.contains("heard-relayed"), "{drawn:?}");
    assert_eq!(u16::from(close.expect("a close frame").code), 1000);
    wait_listed(&a, &task.id, "completed").await;
}

#[tokio::test]
async fn a_browser_further_behind_than_the_ring_resumes_from_the_stream() {
    let nats = Nats::start().await;
    let (fixture_a, fixture_b) = (Fixture::new(), Fixture::new());
    let url = nats.url();
    // A ring of 4 events: the 30 missed below are read back from JetStream.
    let a = fixture_a
        .serve_with(|c| {
            c.nats_url = Some(url.clone());
            c.nats_insecure = true;
            c.node = Some("node-a".into());
            c.replay = 4;
        })
        .await;
    let b = fixture_b.serve_node(&nats, "node-b").await;
    let task = b.create(json!({"command": "sleep 600"})).await;
    wait_listed(&a, &task.id, "running").await;
    let mut first = a.events("", None).await;
    let cursor = first.wait_for("ready", SOON).await.json()["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    first.close();

    for n in 0..30 {
        let (status, body) = b
            .call(
                Method::PATCH,
                &format!("/api/tasks/{}", task.id),
                Some(json!({ "name": format!("rename {n}") })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let deadline = Instant::now() + SOON;
    while a
        .call(Method::GET, &format!("/api/tasks/{}", task.id), None)
        .await
        .1["name"]
        != "rename 29"
    {
        assert!(
            Instant::now() < deadline,
            "node a never heard of the last rename"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut resumed = a.events("", Some(&cursor)).await;
    let ready = resumed.wait_for("ready", SOON).await;
    assert_eq!(ready.json()["resumed"], true, "{}", ready.data);
    let mut names = Vec::new();
    let mut last_seq = cursor.rsplit_once('-').unwrap().1.parse::<u64>().unwrap();
    while names.len() < 30 {
        let frame = resumed
            .next_event(SOON)
            .await
            .expect("the stream stays open");
        let seq: u64 = frame
            .id
            .as_ref()
            .unwrap()
            .rsplit_once('-')
            .unwrap()
            .1
            .parse()
            .unwrap();
        assert_eq!(seq, last_seq + 1, "in order, none missing");
        last_seq = seq;
        if frame.name() == "task.updated" {
            names.push(frame.json()["name"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(names.first().unwrap(), "rename 0");
    assert_eq!(names.last().unwrap(), "rename 29");
}

/// Waits until `server` serves the fleet's events again (the epoch of `cursor`), which
/// it does a moment after NATS is back and its outbox is sent.
async fn wait_back_in_the_fleet(server: &TestServer, cursor: &str) {
    let epoch = cursor.rsplit_once('-').unwrap().0;
    let deadline = Instant::now() + SOON;
    loop {
        let (_, list) = server.call(Method::GET, "/api/tasks", None).await;
        if list["event_id"].as_str().unwrap().starts_with(epoch) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still away from the fleet: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads a stream until the server ends it.
async fn until_ended(events: &mut common::SseClient) {
    let deadline = Instant::now() + SOON;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if events.next_within(left).await.is_none() {
            return;
        }
    }
}

#[tokio::test]
async fn while_nats_is_away_a_nodes_own_page_follows_its_own_tasks_live() {
    let mut nats = Nats::start().await;
    let (fixture_a, fixture_b) = (Fixture::new(), Fixture::new());
    let a = fixture_a.serve_node(&nats, "node-a").await;
    let b = fixture_b.serve_node(&nats, "node-b").await;
    let remote = b.create(json!({"command": "sleep 600"})).await;
    wait_listed(&a, &remote.id, "running").await;
    let mut events = a.events("", None).await;
    let fleet_epoch = events.wait_for("ready", SOON).await.json()["event_id"]
        .as_str()
        .unwrap()
        .rsplit_once('-')
        .unwrap()
        .0
        .to_string();

    nats.stop();
    // The page is moved to node a's own events: its stream ends, and it starts over.
    until_ended(&mut events).await;
    let mut events = a.events("", None).await;
    let ready = events.wait_for("ready", SOON).await;
    assert!(!ready.json()["event_id"]
        .as_str()
        .unwrap()
        .starts_with(&fleet_epoch));
    let local = a.create(json!({"command": "echo done"})).await;
    let created = events.wait_for("task.created", SOON).await;
    assert_eq!(created.json()["id"], local.id.as_str());
    let status = events.wait_for("task.status", SOON).await;
    assert_eq!(status.json()["status"], "completed");
    // Its list: its own tasks as they are, the rest of the fleet as last known.
    wait_listed(&a, &local.id, "completed").await;
    wait_listed(&a, &remote.id, "running").await;

    nats.restart().await;
    // Back to the fleet's events; the fleet has what happened meanwhile.
    until_ended(&mut events).await;
    let mut events = a.events("", None).await;
    let ready = events.wait_for("ready", SOON).await;
    assert!(ready.json()["event_id"]
        .as_str()
        .unwrap()
        .starts_with(&fleet_epoch));
    wait_listed(&b, &local.id, "completed").await;
    wait_listed(&a, &local.id, "completed").await;
}

#[tokio::test]
async fn a_request_on_nats_with_credentials_of_its_own_is_only_ever_a_state_report() {
    let nats = Nats::start().await;
    let fixture_b = Fixture::new();
    let b = fixture_b.serve_node(&nats, "node-b").await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    // What forward.rs sends for a state report, here for a task creation instead.
    let forged = json!({
        "method": "POST",
        "uri": "/api/tasks",
        "body": json!({"command": "touch /tmp/forged"}).to_string(),
        "authorization": "Bearer not-the-token",
    });
    let reply = client
        .request("taskwire.act.node-b", forged.to_string().into())
        .await
        .unwrap();
    let answer: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(answer["status"], 403, "{answer}");
    let (_, list) = b.call(Method::GET, "/api/tasks", None).await;
    assert_eq!(list["tasks"].as_array().unwrap().len(), 0, "{list}");
}

#[tokio::test]
async fn a_nats_server_that_lets_anyone_in_is_refused_unless_insecure_is_said() {
    let nats = Nats::start().await;
    let fixture = Fixture::new();
    let mut config = fixture.config();
    config.nats_url = Some(nats.url());
    config.node = Some("node-a".into());
    let leptos = leptos::prelude::LeptosOptions::builder()
        .output_name("taskwire")
        .build();
    let refused = server::AppState::open(config, leptos)
        .unwrap()
        .join_fleet()
        .await
        .err()
        .expect("an open NATS server is refused")
        .to_string();
    assert!(refused.contains("lets anyone in"), "{refused}");
    assert!(refused.contains("TASKWIRE_NATS_INSECURE"), "{refused}");
}

/// The fleet on `recipes/nats-fleet.conf` (one user per node): it works, a node cannot
/// publish on another's subject, and what it says on its own about another node's task is
/// refused by every node, as is an event that does not read.
#[tokio::test]
async fn with_a_user_per_node_no_node_speaks_for_another() {
    let nats = Nats::start_fleet_config().await;
    let (fixture_a, fixture_b) = (Fixture::new(), Fixture::new());
    let node = |name: &str, password: &str| {
        let (url, name) = (nats.url_as(name, password), name.to_string());
        move |c: &mut server::Config| {
            c.nats_url = Some(url);
            c.node = Some(name);
        }
    };
    let a = fixture_a
        .serve_with(node("buildbox-1", "change-me-1"))
        .await;
    let b = fixture_b
        .serve_with(node("buildbox-2", "change-me-2"))
        .await;
    a.wait_for_node("buildbox-2", true).await;
    let task = a
        .create(json!({"command": "sleep 600", "node": "buildbox-2"}))
        .await;
    assert_eq!(task.node, "buildbox-2");
    wait_listed(&a, &task.id, "running").await;

    // buildbox-1 cannot publish as buildbox-2.
    let client = async_nats::ConnectOptions::with_user_and_password(
        "buildbox-1".into(),
        "change-me-1".into(),
    )
    .connect(nats.url())
    .await
    .unwrap();
    let jetstream = async_nats::jetstream::new(client.clone());
    let spoofed = json!({"id": task.id, "name": "mine now"});
    let as_buildbox_2 = [
        (
            "taskwire.events.buildbox-2".to_string(),
            format!("task.updated\n{spoofed}"),
        ),
        // Nor write buildbox-2's record of the task.
        (
            format!("$KV.taskwire_tasks.buildbox-2.{}", task.id),
            spoofed.to_string(),
        ),
    ];
    for (subject, payload) in as_buildbox_2 {
        let published = tokio::time::timeout(Duration::from_secs(3), async {
            jetstream
                .publish(subject.clone(), payload.into())
                .await?
                .await
        })
        .await;
        assert!(
            !matches!(published, Ok(Ok(_))),
            "JetStream took buildbox-1's publish on {subject}"
        );
    }

    // On its own subject: a record of buildbox-2's task re-homed to buildbox-1, and data
    // that does not read (with a raw \r that would add an SSE field).
    let mut record = a.task(&task.id).await;
    record.node = "buildbox-1".into();
    record.name = "re-homed".into();
    let rehomed = serde_json::to_string(&record).unwrap();
    for payload in [
        format!("task.updated\n{rehomed}"),
        "task.updated\n{\"id\":\"x\r\nevent: task.deleted\"".to_string(),
    ] {
        jetstream
            .publish("taskwire.events.buildbox-1", payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    for server in [&a, &b] {
        let refused = || {
            let fleet = server.state.fleet.as_ref().unwrap();
            fleet
                .broker
                .metrics
                .refused
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        common::wait_until("both events refused", SOON, || refused() >= 2).await;
        let seen = server.task(&task.id).await;
        assert_eq!(seen.node, "buildbox-2", "{seen:?}");
        assert_ne!(seen.name, "re-homed");
    }
    // The fleet still works as itself: a kill through buildbox-1 reaches buildbox-2.
    let (status, body) = a
        .call(Method::POST, &format!("/api/tasks/{}/kill", task.id), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!session_exists(&fixture_b.socket, &task.id));
}
