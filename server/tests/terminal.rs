//! A task's terminal (WebSocket) and the text views that come from its terminal model:
//! real tmux clients in real ptys, real programs.
mod common;

use std::time::{Duration, Instant};

use app::model::TaskStatus;
use common::{output_log, wait_until, Fixture, TestServer, TOKEN};
use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::{
    tungstenite::{client::IntoClientRequest, protocol::frame::coding::CloseCode, Message},
    MaybeTlsStream, WebSocketStream,
};

const SOON: Duration = Duration::from_secs(10);

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// The handshake, with the token and an `Origin` when given; the refusal's status if any.
async fn open(
    server: &TestServer,
    id: &str,
    token: Option<&str>,
    origin: Option<&str>,
) -> Result<Socket, u16> {
    let url = format!(
        "{}/api/tasks/{id}/terminal?cols=100&rows=30",
        server.base.replacen("http", "ws", 1)
    );
    let mut request = url.into_client_request().unwrap();
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().unwrap();
        request.headers_mut().insert("authorization", value);
    }
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("handshake failed: {e}"),
    }
}

async fn open_ok(server: &TestServer, id: &str) -> Socket {
    open(server, id, Some(TOKEN), None)
        .await
        .expect("the terminal opens")
}

/// What the terminal drew (escape sequences and all) until it contains `wanted`.
async fn read_until(socket: &mut Socket, wanted: &str) -> String {
    let deadline = Instant::now() + SOON;
    let mut drawn = String::new();
    while !drawn.contains(wanted) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, socket.next()).await {
            Ok(Some(Ok(Message::Binary(bytes)))) => {
                drawn.push_str(&String::from_utf8_lossy(&bytes))
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("no {wanted:?} in the terminal ({other:?}); drawn so far: {drawn:?}"),
        }
    }
    drawn
}

/// The frames until the server closes, and the close code.
async fn read_to_close(socket: &mut Socket) -> (Vec<Message>, Option<CloseCode>) {
    let mut frames = Vec::new();
    loop {
        match tokio::time::timeout(SOON, socket.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return (frames, frame.map(|f| f.code)),
            Ok(Some(Ok(message))) => frames.push(message),
            Ok(None) | Ok(Some(Err(_))) => return (frames, None),
            Err(_) => panic!("the terminal did not close"),
        }
    }
}

fn replayed_text(frames: &[Message]) -> String {
    frames
        .iter()
        .filter_map(|m| match m {
            Message::Binary(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn the_terminal_refuses_strangers_foreign_pages_and_unknown_tasks() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let task = server.create(json!({"command": "sleep 30"})).await;

    assert_eq!(open(&server, &task.id, None, None).await.err(), Some(401));
    let evil = Some("http://evil.example");
    assert_eq!(
        open(&server, &task.id, Some(TOKEN), evil).await.err(),
        Some(403)
    );
    assert_eq!(
        open(&server, "nosuchid", Some(TOKEN), None).await.err(),
        Some(404)
    );
    assert_eq!(
        open(&server, "../etc", Some(TOKEN), None).await.err(),
        Some(404)
    );
    // The dashboard's own page may open it.
    let own = server.base.clone();
    assert!(open(&server, &task.id, Some(TOKEN), Some(&own))
        .await
        .is_ok());
}

#[tokio::test]
async fn keys_typed_in_the_terminal_reach_the_program_and_the_end_closes_it_cleanly() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let script = "printf 'colour: \\033[31mRED\\033[0m\\n'; read answer; echo got:$answer";
    let task = server.create(json!({ "command": script })).await;
    let mut socket = open_ok(&server, &task.id).await;
    let drawn = read_until(&mut socket, "RED").await;
    // tmux draws the word in red (SGR 31 in some form) before it.
    assert!(
        drawn.contains("\x1b[31m") || drawn.contains(";31m"),
        "{drawn:?}"
    );

    socket
        .send(Message::Binary(b"yes\r".to_vec().into()))
        .await
        .unwrap();
    server
        .wait_for_status(&task.id, TaskStatus::Completed, SOON)
        .await;
    let (frames, code) = read_to_close(&mut socket).await;
    assert_eq!(code, Some(CloseCode::Normal));
    // Its final screen: the recorded output, replayed at the pane's size.
    let size = frames.iter().find_map(|m| match m {
        Message::Text(text) => serde_json::from_str::<Value>(text).ok(),
        _ => None,
    });
    assert_eq!(
        size.as_ref().map(|s| s["type"].clone()),
        Some(json!("size")),
        "{frames:?}"
    );
    assert!(replayed_text(&frames).contains("got:yes"), "{frames:?}");
}

#[tokio::test]
async fn two_viewers_see_what_either_types() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let task = server.create(json!({"command": "cat"})).await;
    let mut first = open_ok(&server, &task.id).await;
    let mut second = open_ok(&server, &task.id).await;
    wait_until("both viewers to attach", SOON, || {
        clients(&fixture.socket, &task.id) == 2
    })
    .await;
    first
        .send(Message::Binary(b"from-first\r".to_vec().into()))
        .await
        .unwrap();
    read_until(&mut second, "from-first").await;
    second
        .send(Message::Binary(b"from-second\r".to_vec().into()))
        .await
        .unwrap();
    read_until(&mut first, "from-second").await;
    // Closing the page detaches its viewer; the task runs on.
    drop((first, second));
    wait_until("the viewers' tmux clients to go", SOON, || {
        clients(&fixture.socket, &task.id) == 0
    })
    .await;
    assert_eq!(server.task(&task.id).await.status, TaskStatus::Running);
    assert!(common::session_exists(&fixture.socket, &task.id));
}

#[tokio::test]
async fn a_malformed_control_message_is_counted_and_the_terminal_goes_on() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let task = server.create(json!({"command": "cat"})).await;
    let mut socket = open_ok(&server, &task.id).await;
    socket
        .send(Message::Text("{not json".into()))
        .await
        .unwrap();
    socket
        .send(Message::Text(r#"{"type":"resize","cols":"wide"}"#.into()))
        .await
        .unwrap();
    socket
        .send(Message::Binary(b"still-here\r".to_vec().into()))
        .await
        .unwrap();
    read_until(&mut socket, "still-here").await;
    let (_, metrics) = server.call(Method::GET, "/metrics", None).await;
    let metrics = metrics.as_str().unwrap().to_string();
    let bad: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("taskwire_terminal_bad_messages_total "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(bad >= 2, "{metrics}");
}

#[tokio::test]
async fn a_finished_tasks_terminal_replays_its_output_and_closes() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let task = server
        .create(json!({"command": "printf 'line one\\nline two\\n'"}))
        .await;
    server
        .wait_for_status(&task.id, TaskStatus::Completed, SOON)
        .await;
    let mut socket = open_ok(&server, &task.id).await;
    let (frames, code) = read_to_close(&mut socket).await;
    assert_eq!(code, Some(CloseCode::Normal));
    let text = replayed_text(&frames);
    assert!(text.contains("line one\r\nline two"), "{text:?}");
}

async fn wait_for_output(server: &TestServer, id: &str, lines: usize, wanted: &str) -> String {
    let deadline = Instant::now() + SOON;
    loop {
        let text = server.output(id, lines).await;
        if text == wanted || Instant::now() >= deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_progress_bars_output_is_its_latest_value() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let script = "for i in 1 2 3 4 5 6 7 8 9 10; do printf '\\rprogress %d%%' $((i*10)); sleep 0.02; done; sleep 30";
    let task = server.create(json!({ "command": script })).await;
    let text = wait_for_output(&server, &task.id, 3, "progress 100%").await;
    assert_eq!(text, "progress 100%");
}

#[tokio::test]
async fn a_full_screen_programs_output_is_what_its_screen_shows() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    // The alternate screen, cleared, two lines drawn by cursor moves, a spinner redrawn in place.
    let script = "printf '\\033[?1049h\\033[2J\\033[3;5HDo you want to make this edit?\\033[5;5H> 1. Yes'; \
                  for s in '|' '/' '-' '*'; do printf '\\033[7;5H%s working' \"$s\"; sleep 0.02; done; sleep 30";
    let task = server.create(json!({ "command": script })).await;
    let wanted = "    Do you want to make this edit?\n\n    > 1. Yes\n\n    * working";
    let text = wait_for_output(&server, &task.id, 5, wanted).await;
    assert_eq!(text, wanted);
}

#[tokio::test]
async fn a_short_tail_of_a_huge_log_without_newlines_reads_only_its_end() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let task = server.create(json!({"command": "true"})).await;
    server
        .wait_for_status(&task.id, TaskStatus::Completed, SOON)
        .await;
    // 20 MB without a newline, ending in a marker.
    let mut log = vec![b'x'; 20 * 1024 * 1024];
    log.extend_from_slice(b"THE-END");
    std::fs::write(output_log(&fixture.data_dir(), &task.id), &log).unwrap();
    let text = server.output(&task.id, 3).await;
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() <= 3, "{} lines", lines.len());
    assert!(
        lines.iter().all(|l| l.len() <= 200),
        "a line is wider than the pane"
    );
    assert!(
        text.ends_with("THE-END"),
        "{:?}",
        &text[text.len().saturating_sub(50)..]
    );
}

#[tokio::test]
async fn the_tails_stream_shows_a_progress_bars_latest_value() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let script = "for i in 1 2 3 4 5; do printf '\\rstep %d/5' $i; sleep 0.02; done; sleep 30";
    let task = server.create(json!({ "command": script })).await;
    // The first tails read after the bar finished drawing shows only its latest value.
    wait_for_output(&server, &task.id, 1, "step 5/5").await;
    let mut tails =
        common::SseClient::connect(server.request(Method::GET, "/api/tails/stream")).await;
    let frame = tails.wait_for("tail", SOON).await;
    let tail: Value = frame.json();
    assert_eq!(tail["id"], json!(task.id));
    assert_eq!(tail["text"], json!("step 5/5"));
}

/// The tmux clients attached to the task's session.
fn clients(socket: &str, id: &str) -> usize {
    let out = std::process::Command::new("tmux")
        .args(["-L", socket, "list-clients", "-t", &format!("tw-{id}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[tokio::test]
async fn the_tail_of_a_menu_in_a_box_is_the_menu() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    // A box drawn with the line characters of a curses program, the menu inside, and empty
    // boxed rows below it (the bottom of the screen).
    let script = "printf '\\033[2J\\033[1;1H┌──────────┐\\r\\n│ > 1. Yes │\\r\\n│   2. No  │\\r\\n│          │\\r\\n│          │\\r\\n└──────────┘'; sleep 30";
    let task = server.create(json!({ "command": script })).await;
    wait_for_output(
        &server,
        &task.id,
        6,
        "┌──────────┐\n│ > 1. Yes │\n│   2. No  │\n│          │\n│          │\n└──────────┘",
    )
    .await;
    let mut tails =
        common::SseClient::connect(server.request(Method::GET, "/api/tails/stream")).await;
    let tail: Value = tails.wait_for("tail", SOON).await.json();
    assert_eq!(tail["text"], json!("> 1. Yes\n2. No"));
}

#[tokio::test]
async fn a_viewer_that_stops_reading_slows_neither_the_task_nor_other_viewers() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let go = fixture.dir.path().join("go");
    let script = format!(
        "while [ ! -e {} ]; do sleep 0.05; done; head -c 5000000 /dev/zero | tr '\\0' x; echo; echo END-MARK; sleep 600",
        go.display()
    );
    let task = server.create(json!({ "command": script })).await;
    // This one reads nothing from here on.
    let _stalled = open_ok(&server, &task.id).await;
    let mut reading = open_ok(&server, &task.id).await;
    wait_until("both viewers to attach", SOON, || {
        clients(&fixture.socket, &task.id) == 2
    })
    .await;
    std::fs::write(&go, "").unwrap();
    let log = output_log(&fixture.data_dir(), &task.id);
    wait_until("the task to print all of it", SOON, || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("END-MARK"))
    })
    .await;
    read_until(&mut reading, "END-MARK").await;
}

/// This process's resident memory (the server runs in it), in KiB.
fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// 32 MiB of keys into the terminal of a raw-mode program that reads none of them: the
/// server takes them only as fast as the terminal does, so its memory stays bounded.
#[tokio::test]
async fn keys_a_program_does_not_read_do_not_pile_up_in_the_server() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let program = "import sys, termios, time, tty\n\
                   tty.setraw(0)\n\
                   print('raw', flush=True)\n\
                   time.sleep(600)";
    let task = server
        .create(json!({"command": format!("python3 -c \"{program}\"")}))
        .await;
    let mut socket = open_ok(&server, &task.id).await;
    read_until(&mut socket, "raw").await;
    let before = resident_kib();
    let chunk = vec![b'k'; 256 * 1024];
    let mut peak = before;
    let mut sent_mib = 0.0;
    for _ in 0..128 {
        // A send waits while the server does not take more (TCP backpressure): bounded by
        // time, not by a count of retries.
        let sent = tokio::time::timeout(Duration::from_millis(200), async {
            socket.send(Message::Binary(chunk.clone().into())).await
        })
        .await;
        peak = peak.max(resident_kib());
        if sent.is_err() {
            break;
        }
        sent_mib += 0.25;
    }
    let grown_mib = peak.saturating_sub(before) / 1024;
    eprintln!("server memory grew by {grown_mib} MiB; {sent_mib} of 32 MiB of keys taken");
    assert!(
        grown_mib < 16,
        "the server held {grown_mib} MiB of unread keys"
    );
    // The task is still there and answers.
    server
        .call(Method::POST, &format!("/api/tasks/{}/kill", task.id), None)
        .await;
}
