//! `GET /api/events` over real HTTP, against DESIGN.md's "Events" section.
mod common;

use std::time::{Duration, Instant};

use common::{Fixture, TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::json;

const SOON: Duration = Duration::from_secs(10);

#[tokio::test]
async fn the_stream_has_the_right_headers_and_starts_with_ready() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let req = server
        .request(Method::GET, "/api/events")
        .header("accept-encoding", "gzip, br");
    let mut events = common::SseClient::connect(req).await;
    assert_eq!(events.status, StatusCode::OK);
    assert_eq!(events.headers["content-type"], "text/event-stream");
    assert_eq!(events.headers["cache-control"], "no-cache");
    assert_eq!(events.headers["x-accel-buffering"], "no");
    assert!(
        events.headers.get("content-encoding").is_none(),
        "never compressed"
    );

    let ready = events.next_within(SOON).await.unwrap();
    assert_eq!(ready.name(), "ready");
    let epoch = server.state.tasks.broker.epoch().to_string();
    assert_eq!(ready.id.as_deref(), Some(format!("{epoch}-0").as_str()));
    assert_eq!(
        ready.json(),
        json!({"event_id": format!("{epoch}-0"), "resumed": false})
    );
    let retry = ready.retry.expect("ready sets retry");
    assert!((1000..3000).contains(&retry), "retry {retry} ms");
}

#[tokio::test]
async fn every_change_is_an_event_with_the_task() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let mut events = server.events("", None).await;
    events.wait_for("ready", SOON).await;

    let task = server.create(json!({"command": "sleep 600"})).await;
    let created = events.next_event(SOON).await.unwrap();
    assert_eq!(created.name(), "task.created");
    assert_eq!(created.json()["id"], task.id);
    assert_eq!(created.json()["status"], "running");

    server
        .call(
            Method::PATCH,
            &format!("/api/tasks/{}", task.id),
            Some(json!({"name": "renamed"})),
        )
        .await;
    let updated = events.next_event(SOON).await.unwrap();
    assert_eq!(updated.name(), "task.updated");
    assert_eq!(updated.json()["name"], "renamed");

    server
        .call(Method::POST, &format!("/api/tasks/{}/kill", task.id), None)
        .await;
    let killed = events.next_event(SOON).await.unwrap();
    assert_eq!(killed.name(), "task.status");
    assert_eq!(killed.json()["status"], "killed");

    server
        .call(Method::DELETE, &format!("/api/tasks/{}", task.id), None)
        .await;
    let deleted = events.next_event(SOON).await.unwrap();
    assert_eq!(deleted.name(), "task.deleted");
    assert_eq!(deleted.json(), json!({"id": task.id}));

    let (_, term) = server.call(Method::POST, "/api/tasks/terminal", None).await;
    let created = events.next_event(SOON).await.unwrap();
    assert_eq!(created.name(), "task.created");
    assert_eq!(created.json()["kind"], "terminal");
    assert_eq!(created.json()["id"], term["id"]);

    // Ids count up by one per event.
    let seqs: Vec<u64> = [&killed, &deleted, &created]
        .iter()
        .map(|f| {
            f.id.as_ref()
                .unwrap()
                .rsplit_once('-')
                .unwrap()
                .1
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, [3, 4, 5]);
}

#[tokio::test]
async fn a_task_that_ends_produces_exactly_one_terminal_status_and_a_quiet_one_none() {
    let fixture = Fixture::new();
    let server = fixture.serve_with(|c| c.reconcile_secs = 1).await;
    let mut events = server.events("", None).await;
    events.wait_for("ready", SOON).await;
    let steady = server.create(json!({"command": "sleep 600"})).await;
    let ends = server.create(json!({"command": "sleep 0.2; exit 3"})).await;
    let started = Instant::now();
    let mut statuses = Vec::new();
    // Several reconcile passes go by in this window.
    while started.elapsed() < Duration::from_secs(3) {
        let left = Duration::from_secs(3).saturating_sub(started.elapsed());
        let Ok(Some(frame)) = tokio::time::timeout(left, events.next()).await else {
            break;
        };
        if frame.name() == "task.status" {
            statuses.push(frame.json());
        }
    }
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(statuses[0]["id"], ends.id);
    assert_eq!(statuses[0]["status"], "failed");
    assert_eq!(statuses[0]["exit_code"], 3);
    assert!(
        statuses.iter().all(|s| s["id"] != steady.id),
        "a task that did not change sent nothing"
    );
}

#[tokio::test]
async fn an_exit_is_pushed_within_moments_without_waiting_for_the_periodic_pass() {
    let fixture = Fixture::new();
    // The safety-net pass is an hour away: only the tmux hook can bring the news in time.
    let server = fixture.serve_with(|c| c.reconcile_secs = 3600).await;
    let mut events = server.events("", None).await;
    events.wait_for("ready", SOON).await;
    let task = server.create(json!({"command": "sleep 1"})).await;
    let status = events.wait_for("task.status", Duration::from_secs(5)).await;
    assert_eq!(status.json()["id"], task.id);
    assert_eq!(status.json()["status"], "completed");
}

#[tokio::test]
async fn heartbeats_fill_the_quiet() {
    let fixture = Fixture::new();
    let server = fixture.serve_with(|c| c.heartbeat_secs = 1).await;
    let mut events = server.events("", None).await;
    events.wait_for("ready", SOON).await;
    let beat = events.next_within(Duration::from_secs(3)).await.unwrap();
    assert_eq!(beat.comment.as_deref(), Some(" keep-alive"));
    assert!(beat.event.is_none() && beat.id.is_none());
}

#[tokio::test]
async fn a_stream_ends_with_end_at_its_lifetime() {
    let fixture = Fixture::new();
    let server = fixture.serve_with(|c| c.stream_max_secs = 1).await;
    let mut events = server.events("", None).await;
    events.wait_for("ready", SOON).await;
    let end = events.next_event(Duration::from_secs(3)).await.unwrap();
    assert_eq!(end.name(), "end");
    assert_eq!(end.json(), json!({"reason": "lifetime"}));
    assert!(end.id.is_some());
    assert!(
        events.next_within(Duration::from_secs(3)).await.is_none(),
        "the server closed it"
    );
}

async fn publish_tasks(server: &common::TestServer, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(server.create(json!({"command": "sleep 600"})).await.id);
    }
    ids
}

#[tokio::test]
async fn resume_by_header_and_by_query_replays_in_order_none_twice_none_missing() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let (_, list) = server.call(Method::GET, "/api/tasks", None).await;
    let cursor = list["event_id"].as_str().unwrap().to_string();
    let mut ids = publish_tasks(&server, 3).await;

    for (query, header) in [
        (format!("?since={cursor}"), None),
        (String::new(), Some(cursor.as_str())),
    ] {
        let mut events = server.events(&query, header).await;
        let ready = events.next_within(SOON).await.unwrap();
        assert_eq!(ready.name(), "ready");
        assert_eq!(ready.json()["resumed"], true);
        let mut replayed = Vec::new();
        for _ in 0..ids.len() {
            let frame = events.next_event(SOON).await.unwrap();
            assert_eq!(frame.name(), "task.created");
            replayed.push(frame.json()["id"].as_str().unwrap().to_string());
        }
        assert_eq!(replayed, ids);
        // Then live, with nothing repeated.
        let live = server.create(json!({"command": "sleep 600"})).await;
        let frame = events.next_event(SOON).await.unwrap();
        assert_eq!(frame.json()["id"], live.id);
        events.close();
        ids.push(live.id);
    }
}

#[tokio::test]
async fn events_published_while_subscribing_arrive_once() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let broker = server.state.tasks.broker.clone();
    let cursor = broker.newest_id();
    // Publish from another thread while streams connect with the same cursor.
    let publisher = std::thread::spawn(move || {
        for n in 0..200 {
            broker.publish("task.updated", format!("{{\"n\":{n}}}"));
        }
    });
    let mut events = server.events(&format!("?since={cursor}"), None).await;
    publisher.join().unwrap();
    let ready = events.next_within(SOON).await.unwrap();
    assert_eq!(ready.json()["resumed"], true);
    for n in 0..200 {
        let frame = events.next_event(SOON).await.unwrap();
        assert_eq!(frame.json()["n"], n, "in order, none twice, none missing");
    }
}

#[tokio::test]
async fn an_unknown_cursor_is_not_resumed() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    publish_tasks(&server, 1).await;
    for cursor in ["1-1", "nonsense", "", "99999999999999999999-1"] {
        let mut events = server.events("", Some(cursor)).await;
        let ready = events.next_within(SOON).await.unwrap();
        assert_eq!(ready.json()["resumed"], false, "{cursor:?}");
        assert_eq!(
            ready.json()["event_id"],
            format!("{}-1", server.state.tasks.broker.epoch())
        );
    }
}

#[tokio::test]
async fn a_cursor_older_than_what_is_kept_is_not_resumed() {
    let fixture = Fixture::new();
    let server = fixture.serve_with(|c| c.replay = 4).await;
    publish_tasks(&server, 10).await;
    let epoch = server.state.tasks.broker.epoch();
    let mut events = server.events("", Some(&format!("{epoch}-1"))).await;
    let ready = events.next_within(SOON).await.unwrap();
    assert_eq!(ready.json()["resumed"], false);
    assert_eq!(ready.json()["event_id"], format!("{epoch}-10"));
    // It goes on live from there, with nothing from before.
    let created = publish_tasks(&server, 1).await;
    let next = events.next_event(SOON).await.unwrap();
    assert_eq!(next.json()["id"], created[0], "{next:?}");
}

#[tokio::test]
async fn a_cursor_from_before_a_restart_is_not_resumed() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    publish_tasks(&server, 2).await;
    let (_, list) = server.call(Method::GET, "/api/tasks", None).await;
    let old_cursor = list["event_id"].as_str().unwrap().to_string();
    server.stop().await;
    let server = fixture.serve().await;
    let mut events = server.events("", Some(&old_cursor)).await;
    let ready = events.next_within(SOON).await.unwrap();
    assert_eq!(ready.json()["resumed"], false);
}

#[tokio::test]
async fn a_subscriber_too_far_behind_is_sent_resync_and_goes_on_live() {
    let fixture = Fixture::new();
    let server = fixture.serve_with(|c| c.replay = 8).await;
    let mut events = server.events("", None).await;
    events.wait_for("ready", SOON).await;
    // Far more than the buffer and the socket hold, while the client reads nothing.
    let broker = server.state.tasks.broker.clone();
    let big = "x".repeat(64 * 1024);
    for _ in 0..200 {
        broker.publish("task.updated", format!("{{\"pad\":\"{big}\"}}"));
    }
    broker.publish("task.updated", r#"{"last":true}"#.into());
    let resync = events.wait_for("resync", SOON).await;
    assert_eq!(resync.json(), json!({}));
    assert!(resync.id.is_some());
    // After the resync the stream goes on with live events.
    loop {
        let frame = events.next_event(SOON).await.unwrap();
        if frame.json()["last"] == true {
            break;
        }
    }
    let (_, metrics) = server.call(Method::GET, "/metrics", None).await;
    let text = metrics.as_str().unwrap().to_string();
    assert!(!text.contains("taskwire_resyncs_sent_total 0"), "{text}");
}

#[tokio::test]
async fn streams_beyond_the_cap_get_503_with_retry_after_and_closed_ones_free_their_place() {
    let fixture = Fixture::new();
    let server = fixture.serve_with(|c| c.max_subscribers = 2).await;
    let mut first = server.events("", None).await;
    let _second = server.events("", None).await;
    first.wait_for("ready", SOON).await;
    let refused = server
        .request(Method::GET, "/api/events")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(body["error"].is_string());

    first.close();
    let open = &server.state.tasks.broker.metrics.open_streams;
    common::wait_until("the closed stream to be freed", SOON, || {
        open.load(std::sync::atomic::Ordering::Relaxed) == 1
    })
    .await;
    let mut third = server.events("", None).await;
    assert_eq!(third.status, StatusCode::OK);
    third.wait_for("ready", SOON).await;
}

#[tokio::test]
async fn shutdown_closes_every_stream_at_once_and_tasks_keep_running() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let task = server.create(json!({"command": "sleep 600"})).await;
    let mut streams = Vec::new();
    for _ in 0..5 {
        let mut events = server.events("", None).await;
        events.wait_for("ready", SOON).await;
        streams.push(events);
    }
    let started = Instant::now();
    server.stop().await; // fails unless the server stops within 5 s
    for events in &mut streams {
        loop {
            match events.next_within(Duration::from_secs(2)).await {
                None => break,
                Some(frame) => assert!(frame.event.is_none() || frame.name() != "ready"),
            }
        }
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        common::session_exists(&fixture.socket, &task.id),
        "the task still runs in tmux"
    );
}

#[tokio::test]
async fn the_output_stream_sends_what_the_task_prints_then_end() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let task = server
        .create(json!({"command": "echo first; sleep 0.5; echo second; sleep 0.3"}))
        .await;
    let req = server.request(
        Method::GET,
        &format!("/api/tasks/{}/output/stream", task.id),
    );
    let mut stream = common::SseClient::connect(req).await;
    assert_eq!(stream.status, StatusCode::OK);
    let mut text = String::new();
    loop {
        let frame = stream.next_event(SOON).await.expect("end before close");
        match frame.name() {
            "output" => text.push_str(frame.json()["text"].as_str().unwrap()),
            "end" => break,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        text.contains("first") && text.contains("second"),
        "{text:?}"
    );
    assert!(text.find("first") < text.find("second"));

    let missing = server
        .request(Method::GET, "/api/tasks/nope/output/stream")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn metrics_count_streams_events_and_tasks() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let mut events = server.events("", None).await;
    events.wait_for("ready", SOON).await;
    server.create(json!({"command": "sleep 600"})).await;
    let res = server
        .client
        .get(server.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    for line in [
        "taskwire_event_streams_open 1",
        "taskwire_events_published_total 1",
        "taskwire_events_dropped_total 0",
        "taskwire_resyncs_sent_total 0",
        "taskwire_tasks{status=\"running\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from\n{text}"
        );
    }
}

#[tokio::test]
async fn the_tails_stream_sends_the_last_lines_of_live_tasks_as_they_grow() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let task = server
        .create(json!({"command": "for i in 1 2 3 4 5 6 7 8 9; do echo line-$i; sleep 0.3; done; sleep 600"}))
        .await;
    let req = server.request(Method::GET, "/api/tails/stream");
    let mut tails = common::SseClient::connect(req).await;
    assert_eq!(tails.status, StatusCode::OK);
    // Tails follow the output: wait until one shows the ninth line, with the lines before it.
    loop {
        let frame = tails.next_event(SOON).await.expect("tails keep coming");
        assert_eq!(frame.name(), "tail");
        assert_eq!(frame.json()["id"], task.id);
        let text = frame.json()["text"].as_str().unwrap().to_string();
        assert!(text.lines().count() <= 3, "{text:?}");
        if text.contains("line-9") {
            assert_eq!(text, "line-7\nline-8\nline-9");
            break;
        }
    }
}
