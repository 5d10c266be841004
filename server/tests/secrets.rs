//! No secret reaches a task or a log: the real binary, started as the README shows (its
//! secrets in its environment), with a real tmux server and a real webhook URL that fails.

mod common;

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use app::model::{Task, TaskStatus};
use common::Binary;
use serde_json::json;

const MASTER: &str = "master-secret-0f3a9c";
const HOOK_SECRET: &str = "hook-topic-secret-77d1";

fn start(data_dir: &Path, socket: &str) -> Binary {
    let hook = format!("http://127.0.0.1:9/{HOOK_SECRET}");
    Binary::start(
        data_dir,
        socket,
        &[("TASKWIRE_TOKEN", MASTER), ("TASKWIRE_NOTIFY_URL", &hook)],
    )
}

async fn create(client: &reqwest::Client, base: &str, command: &str) -> Task {
    let answer = client
        .post(format!("{base}/api/tasks"))
        .bearer_auth(MASTER)
        .json(&json!({ "command": command }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
    answer.json().await.unwrap()
}

async fn get<T: serde::de::DeserializeOwned>(client: &reqwest::Client, url: String) -> T {
    let answer = client.get(url).bearer_auth(MASTER).send().await.unwrap();
    answer.json().await.unwrap()
}

async fn finished(client: &reqwest::Client, base: &str, id: &str) -> Task {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let task: Task = get(client, format!("{base}/api/tasks/{id}")).await;
        if task.status.is_terminal() {
            return task;
        }
        assert!(Instant::now() < deadline, "task {id} did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn task_token(data_dir: &Path, id: &str) -> String {
    let db = rusqlite::Connection::open(data_dir.join("taskwire.db")).unwrap();
    db.query_row("SELECT token FROM tasks WHERE id = ?1", [id], |row| {
        row.get(0)
    })
    .unwrap()
}

#[tokio::test]
async fn no_task_sees_the_servers_secrets_or_a_task_token_in_any_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let socket = format!("twsecrets-{}", std::process::id());
    let binary = start(&data_dir, &socket);
    let client = reqwest::Client::new();
    // The first task's command is what starts the tmux server (whose command line is that
    // first client's for as long as it runs).
    let first = create(&client, &binary.base, "sleep 30").await;
    let dump = create(
        &client,
        &binary.base,
        "echo ENV; env; echo CMDLINES; cat /proc/[0-9]*/cmdline | tr '\\0' ' '",
    )
    .await;
    let done = finished(&client, &binary.base, &dump.id).await;
    assert_eq!(done.status, TaskStatus::Completed, "{done:?}");
    let url = format!("{}/api/tasks/{}/output?tail=100000", binary.base, dump.id);
    let output: serde_json::Value = get(&client, url).await;
    let output = output["output"].as_str().unwrap();
    let (env, cmdlines) = output.split_once("CMDLINES").expect("both parts printed");
    assert!(
        env.contains("TASKWIRE_TASK_ID="),
        "the task's own variables: {env}"
    );
    for secret in [
        MASTER,
        HOOK_SECRET,
        "TASKWIRE_NOTIFY_URL",
        "TASKWIRE_TOKEN=",
    ] {
        assert!(
            !output.contains(secret),
            "{secret} reached a task: {output}"
        );
    }
    for id in [&first.id, &dump.id] {
        let token = task_token(&data_dir, id);
        assert!(
            !cmdlines.contains(&token),
            "task {id}'s token is in a command line: {cmdlines}"
        );
    }
    // The webhook failed (nothing listens on port 9); its log names no URL.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !binary.printed().contains("webhook:") {
        assert!(Instant::now() < deadline, "no webhook failure logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Everything printed but the sign-in link, which carries the token by design.
    let logged: String = binary
        .printed()
        .lines()
        .filter(|line| !line.starts_with("sign in with "))
        .collect();
    assert!(
        !logged.contains(HOOK_SECRET),
        "the webhook URL was logged: {logged}"
    );
    assert!(!logged.contains(MASTER), "the token was logged: {logged}");
}

#[test]
fn a_bad_nats_url_and_the_help_print_no_password() {
    let dir = tempfile::tempdir().unwrap();
    let failed = Command::new(env!("CARGO_BIN_EXE_taskwire"))
        .env(
            "TASKWIRE_NATS_URL",
            "nats://taskwire:nats-pass-5e2b@127.0.0.1:9",
        )
        .env("TASKWIRE_DATA_DIR", dir.path().join("data"))
        .env(
            "TASKWIRE_TMUX_SOCKET",
            format!("twsecrets-nats-{}", std::process::id()),
        )
        .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!failed.status.success(), "it cannot reach NATS");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&failed.stdout),
        String::from_utf8_lossy(&failed.stderr)
    );
    assert!(printed.contains("cannot reach NATS"), "{printed}");
    assert!(!printed.contains("nats-pass-5e2b"), "{printed}");
    let help = Command::new(env!("CARGO_BIN_EXE_taskwire"))
        .arg("--help")
        .env(
            "TASKWIRE_NATS_URL",
            "nats://taskwire:nats-pass-5e2b@127.0.0.1:9",
        )
        .env(
            "TASKWIRE_NOTIFY_URL",
            format!("https://ntfy.example/{HOOK_SECRET}"),
        )
        .env("TASKWIRE_TOKEN", MASTER)
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("TASKWIRE_NATS_URL"), "{help}");
    for secret in ["nats-pass-5e2b", HOOK_SECRET, MASTER] {
        assert!(!help.contains(secret), "--help printed {secret}: {help}");
    }
}
