//! Nothing is lost on a crash: the real binary is killed with SIGKILL at moments spread over
//! bursts of creates, inputs and kills, then started again on the same data dir and tmux
//! server. After each restart's sweep: no live record without a session, no session without
//! a live record, and every task that was running (its create answered, no kill sent) is
//! running still.

mod common;

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use app::model::{Task, TaskList, TaskStatus};
use common::Binary;
use serde_json::json;

const TOKEN: &str = "crash-token";
const ROUNDS: u64 = 8;

fn start(data_dir: &std::path::Path, socket: &str) -> Binary {
    let mut binary = Binary::start(
        data_dir,
        socket,
        &[("TASKWIRE_TOKEN", TOKEN), ("TASKWIRE_RECONCILE_SECS", "1")],
    );
    // The tasks outlive every crash; the test's own end stops their server.
    binary.keep_tmux = true;
    binary
}

/// A burst of creates, inputs and kills, all at once; the ids whose create was answered
/// and that no kill was sent to.
async fn burst(client: &reqwest::Client, base: &str, round: u64) -> Vec<String> {
    let creates = (0..16).map(|n| {
        let command = if n % 2 == 0 { "sleep 600" } else { "cat" };
        client
            .post(format!("{base}/api/tasks"))
            .bearer_auth(TOKEN)
            .json(&json!({ "command": command, "name": format!("round {round} task {n}") }))
            .send()
    });
    // Each create's answer is acted on as it comes, so kills and inputs run among the
    // creates still under way.
    let mut creates: futures::stream::FuturesUnordered<_> = creates
        .enumerate()
        .map(|(n, create)| async move { (n, create.await) })
        .collect();
    let mut running = Vec::new();
    while let Some((n, answer)) = futures::StreamExt::next(&mut creates).await {
        let Ok(answer) = answer else { continue };
        let Ok(task) = answer.json::<Task>().await else {
            continue;
        };
        if n % 4 == 3 {
            // Killed: whatever it ends as, it is not one that must still run.
            let kill = client
                .post(format!("{base}/api/tasks/{}/kill", task.id))
                .bearer_auth(TOKEN)
                .send();
            tokio::spawn(kill);
        } else {
            let input = client
                .post(format!("{base}/api/tasks/{}/input", task.id))
                .bearer_auth(TOKEN)
                .json(&json!({"text": "typed"}))
                .send();
            tokio::spawn(input);
            running.push(task.id);
        }
    }
    running
}

fn sessions(socket: &str) -> HashSet<String> {
    let out = std::process::Command::new("tmux")
        .args(["-L", socket, "list-sessions", "-F", "#{session_name}"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|name| name.strip_prefix("tw-"))
        .map(str::to_string)
        .collect()
}

async fn list(client: &reqwest::Client, base: &str) -> Vec<Task> {
    let answer = client
        .get(format!("{base}/api/tasks"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    answer.json::<TaskList>().await.unwrap().tasks
}

/// Waits until the records and the sessions agree: every live record has its session and
/// every session its live record (the sweep needs two passes asking tmux to remove one).
async fn wait_until_agreed(client: &reqwest::Client, base: &str, socket: &str) -> Vec<Task> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let tasks = list(client, base).await;
        let live: HashSet<String> = tasks
            .iter()
            .filter(|t| t.status.is_live())
            .map(|t| t.id.clone())
            .collect();
        let sessions = sessions(socket);
        if live == sessions {
            return tasks;
        }
        assert!(
            Instant::now() < deadline,
            "records and sessions disagree: live without a session {:?}, sessions without a \
             live record {:?}",
            live.difference(&sessions).collect::<Vec<_>>(),
            sessions.difference(&live).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_still_running(tasks: &[Task], must_run: &[String]) {
    for id in must_run {
        let task = tasks
            .iter()
            .find(|t| &t.id == id)
            .expect("the task is kept");
        assert_eq!(task.status, TaskStatus::Running, "after a crash: {task:?}");
    }
}

#[tokio::test]
async fn a_crash_at_any_moment_loses_no_running_task() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let socket = format!("twcrash-{}", std::process::id());
    let client = reqwest::Client::new();
    let mut must_run: Vec<String> = Vec::new();
    for round in 0..ROUNDS {
        let binary = start(&data_dir, &socket);
        let tasks = wait_until_agreed(&client, &binary.base, &socket).await;
        assert_still_running(&tasks, &must_run);
        // The crash comes at a moment spread over the burst: 0, 20, 40, … ms into it (a
        // loaded machine answers the first create of a burst some 80 ms in).
        let base = binary.base.clone();
        let work = tokio::spawn({
            let client = client.clone();
            async move { burst(&client, &base, round).await }
        });
        tokio::time::sleep(Duration::from_millis(20 * round)).await;
        drop(binary);
        // What was answered before the crash must have survived it.
        if let Ok(running) = work.await {
            eprintln!(
                "round {round}: {} running tasks answered before the crash",
                running.len()
            );
            must_run.extend(running);
        }
    }
    let binary = start(&data_dir, &socket);
    let tasks = wait_until_agreed(&client, &binary.base, &socket).await;
    assert_still_running(&tasks, &must_run);
    // The crashes fell where they should: on creates under way (recorded, never started,
    // so `error`) as well as between answered ones.
    let statuses: Vec<&str> = tasks.iter().map(|t| t.status.as_str()).collect();
    eprintln!("{} tasks in all: {statuses:?}", tasks.len());
    assert!(
        !must_run.is_empty(),
        "some tasks were answered before a crash"
    );
    let _ = std::process::Command::new("tmux")
        .args(["-L", &socket, "kill-server"])
        .output();
}
