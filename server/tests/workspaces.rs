//! Tasks in git worktrees, with real git and real tmux: a worktree of its own per task,
//! what it changed (live, and as a diff), commit, merge (all or nothing), discard.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use app::model::{Task, TaskStatus};
use common::{Fixture, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const SOON: Duration = Duration::from_secs(10);

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository on `main` with two committed files, an ignored `.env` and `target/`.
fn repo(dir: &Path) -> PathBuf {
    let repo = dir.join("proj");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "--quiet", "-b", "main"]);
    std::fs::write(repo.join("a.txt"), "one\ntwo\nthree\n").unwrap();
    std::fs::write(repo.join("b.txt"), "bee\nbuzz\n").unwrap();
    std::fs::write(repo.join(".gitignore"), ".env\ntarget/\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "--quiet", "-m", "start"]);
    std::fs::write(repo.join(".env"), "SECRET=1\n").unwrap();
    repo
}

/// A task in a new worktree of `repo` that, once `go` exists, runs `then`, then waits.
async fn agent(server: &TestServer, repo: &Path, go: &Path, then: &str) -> Task {
    let command = format!(
        "while [ ! -e {go} ]; do sleep 0.05; done; {then}; echo done-writing; sleep 600",
        go = go.display()
    );
    let (status, body) = server
        .call(
            Method::POST,
            "/api/tasks",
            Some(json!({"command": command, "name": "Fix the bug", "workspace": {"repo": repo, "copy": [".env"]}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    serde_json::from_value(body).unwrap()
}

/// `POST /api/tasks/{id}/<action>` without a body.
async fn act(server: &TestServer, id: &str, action: &str) -> (StatusCode, Value) {
    server
        .call(Method::POST, &format!("/api/tasks/{id}/{action}"), None)
        .await
}

async fn diff(server: &TestServer, id: &str) -> Value {
    let (status, body) = server
        .call(Method::GET, &format!("/api/tasks/{id}/diff"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn a_task_in_its_own_worktree_shows_what_it_changed_live_and_leaves_the_checkout_alone() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let repo = repo(fixture.dir.path());
    let go = fixture.dir.path().join("go");
    let task = agent(
        &server,
        &repo,
        &go,
        "echo four >> a.txt; rm b.txt; printf 'x\\ny\\n' > new.txt",
    )
    .await;
    let workspace = task.workspace.clone().expect("a workspace");
    assert_eq!(workspace.base, "main");
    assert_eq!(workspace.base_commit, git(&repo, &["rev-parse", "main"]));
    assert!(
        workspace
            .branch
            .starts_with(&format!("taskwire/{}-fix-the-bug", task.id)),
        "{workspace:?}"
    );
    assert_eq!(task.workdir, workspace.path);
    let path = PathBuf::from(&workspace.path);
    assert_eq!(
        std::fs::read_to_string(path.join(".env")).unwrap(),
        "SECRET=1\n",
        ".env copied in"
    );
    let changes = task.changes.expect("changes of a clean worktree");
    assert_eq!(
        (changes.files, changes.insertions, changes.deletions),
        (0, 0, 0)
    );

    // The agent writes: an event says so within 2 s.
    let mut events = server.events("", None).await;
    events.wait_for("ready", SOON).await;
    std::fs::write(&go, "").unwrap();
    let wrote = Instant::now();
    let deadline = wrote + SOON;
    let updated = loop {
        let frame = events
            .next_event(deadline - Instant::now())
            .await
            .expect("an event");
        let data = frame.json();
        if frame.name() == "task.updated"
            && data["id"] == task.id.as_str()
            && data["changes"]["files"] == 3
        {
            break data;
        }
    };
    assert!(
        wrote.elapsed() < Duration::from_secs(2),
        "task.updated after {:?}",
        wrote.elapsed()
    );
    assert_eq!(
        updated["changes"],
        json!({"files": 3, "insertions": 3, "deletions": 2})
    );

    let body = diff(&server, &task.id).await;
    assert_eq!(body["base_commit"], workspace.base_commit.as_str());
    let files: Vec<(String, String)> = body["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        files,
        [
            ("a.txt".into(), "modified".into()),
            ("b.txt".into(), "deleted".into()),
            ("new.txt".into(), "added".into())
        ]
    );
    let a = &body["files"][0]["hunks"][0]["lines"];
    let added: Vec<&Value> = a
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] == "add")
        .collect();
    assert_eq!(added.len(), 1);
    assert_eq!(added[0]["text"], "four");
    assert_eq!(added[0]["new"], 4);
    // .env is ignored: neither counted nor shown.
    assert!(!files.iter().any(|(p, _)| p == ".env"));

    // The person's checkout is as it was; another agent's worktree sees none of it.
    assert_eq!(
        std::fs::read_to_string(repo.join("a.txt")).unwrap(),
        "one\ntwo\nthree\n"
    );
    assert!(repo.join("b.txt").exists() && !repo.join("new.txt").exists());
    let other = agent(&server, &repo, &go, "true").await;
    let other_path = PathBuf::from(&other.workspace.as_ref().unwrap().path);
    assert!(!other_path.join("new.txt").exists() && other_path.join("b.txt").exists());
    assert_ne!(other.workspace.unwrap().branch, workspace.branch);
    server.stop().await;
}

#[tokio::test]
async fn commit_and_merge_land_on_the_base_a_conflict_changes_nothing_and_discard_cleans_up() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let repo = repo(fixture.dir.path());
    let go = fixture.dir.path().join("go");
    std::fs::write(&go, "").unwrap();
    let first = agent(&server, &repo, &go, "echo first > a.txt").await;
    let second = agent(&server, &repo, &go, "echo second > a.txt").await;
    for task in [&first, &second] {
        server
            .wait_for(
                task.id.as_str(),
                |t| t.changes.is_some_and(|c| c.files == 1),
                SOON,
            )
            .await;
    }
    // Merging uncommitted work is refused, with the files.
    let (status, body) = act(&server, &first.id, "merge").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["files"], json!(["a.txt"]));

    for task in [&first, &second] {
        let (status, body) = server
            .call(
                Method::POST,
                &format!("/api/tasks/{}/commit", task.id),
                Some(json!({"message": format!("work of {}", task.id)})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = act(&server, &first.id, "commit").await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "nothing more to commit: {body}"
    );

    let (status, body) = act(&server, &first.id, "merge").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(git(&repo, &["log", "--format=%s", "main"]).contains(&format!("work of {}", first.id)));
    // main is checked out in the repo: its working tree followed.
    assert_eq!(
        std::fs::read_to_string(repo.join("a.txt")).unwrap(),
        "first\n"
    );

    // The second changed the same line: 409 naming the file, and neither branch moved.
    let main_before = git(&repo, &["rev-parse", "main"]);
    let second_branch = second.workspace.as_ref().unwrap().branch.clone();
    let branch_before = git(&repo, &["rev-parse", &second_branch]);
    let (status, body) = act(&server, &second.id, "merge").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["files"], json!(["a.txt"]));
    assert!(
        body["error"].as_str().unwrap().contains("CONFLICT")
            || body["error"].as_str().unwrap().contains("conflict"),
        "{body}"
    );
    assert_eq!(git(&repo, &["rev-parse", "main"]), main_before);
    assert_eq!(git(&repo, &["rev-parse", &second_branch]), branch_before);
    assert!(
        !repo.join(".git/MERGE_HEAD").exists(),
        "no merge left half-done"
    );
    assert_eq!(
        git(&repo, &["status", "--porcelain", "--untracked-files=no"]),
        ""
    );

    // Discard: refused while it runs; then the worktree and its branch are gone.
    let path = PathBuf::from(&second.workspace.as_ref().unwrap().path);
    let (status, _) = act(&server, &second.id, "discard").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(path.exists());
    act(&server, &second.id, "kill").await;
    server
        .wait_for_status(&second.id, TaskStatus::Killed, SOON)
        .await;
    assert!(path.exists(), "a worktree stays after its task ends");
    // Nor does forgetting the task leave its worktree behind unnamed.
    let (status, body) = server
        .call(Method::DELETE, &format!("/api/tasks/{}", second.id), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("merge or discard"),
        "{body}"
    );
    let (status, body) = act(&server, &second.id, "discard").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert!(!path.exists());
    assert!(!git(&repo, &["branch", "--list", &second_branch]).contains(&second_branch));
    git(&repo, &["worktree", "prune"]);
    assert!(!git(&repo, &["worktree", "list"]).contains(&path.to_string_lossy().to_string()));
    let gone = server.task(&second.id).await;
    assert!(gone.workspace.is_none() && gone.changes.is_none());
    let (status, _) = server
        .call(Method::DELETE, &format!("/api/tasks/{}", second.id), None)
        .await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "deleted once its worktree is gone"
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_workspaces_are_refused_and_create_nothing() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let repo = repo(fixture.dir.path());
    git(&repo, &["branch", "taken"]);
    let plain = fixture.dir.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::write(fixture.dir.path().join("outside"), "x").unwrap();
    let cases = [
        (json!({"repo": plain}), "not a git repository"),
        (
            json!({"repo": fixture.dir.path().join("nowhere")}),
            "does not exist",
        ),
        (json!({"repo": repo, "branch": "taken"}), "exists"),
        (
            json!({"repo": repo, "base": "no-such-base"}),
            "does not name a commit",
        ),
        (
            json!({"repo": repo, "copy": ["../outside"]}),
            "inside the repository",
        ),
        (
            json!({"repo": repo, "copy": ["missing.env"]}),
            "does not exist",
        ),
    ];
    for (workspace, says) in cases {
        let (status, body) = server
            .call(
                Method::POST,
                "/api/tasks",
                Some(json!({"command": "true", "workspace": workspace})),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{workspace} → {body}"
        );
        assert!(body["error"].as_str().unwrap().contains(says), "{body}");
    }
    let (_, list) = server.call(Method::GET, "/api/tasks", None).await;
    assert_eq!(list["tasks"], json!([]), "no task recorded");
    assert_eq!(
        git(&repo, &["worktree", "list"]).lines().count(),
        1,
        "no worktree made"
    );
    assert!(
        !fixture.data_dir().join("worktrees").exists()
            || std::fs::read_dir(fixture.data_dir().join("worktrees"))
                .unwrap()
                .count()
                == 0
    );
    server.stop().await;
}

#[tokio::test]
async fn a_task_in_a_plain_checkout_shows_its_changes_against_the_commit_it_started_from() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let repo = repo(fixture.dir.path());
    let task = server
        .create(json!({"command": "echo more >> b.txt; sleep 600", "workdir": repo}))
        .await;
    assert!(task.workspace.is_none());
    let task = server
        .wait_for(
            &task.id,
            |t| t.changes.is_some_and(|c| c.insertions == 1),
            SOON,
        )
        .await;
    assert_eq!(task.changes.unwrap().files, 1);
    assert_eq!(diff(&server, &task.id).await["files"][0]["path"], "b.txt");
    // Not in git: no changes, and no diff.
    let elsewhere = server
        .create(json!({"command": "sleep 600", "workdir": fixture.dir.path()}))
        .await;
    assert!(elsewhere.changes.is_none());
    let (status, _) = server
        .call(
            Method::GET,
            &format!("/api/tasks/{}/diff", elsewhere.id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn in_a_fleet_a_worktree_task_is_made_diffed_and_committed_through_either_node() {
    let nats = common::Nats::start().await;
    let (fixture_a, fixture_b) = (Fixture::new(), Fixture::new());
    let a = fixture_a.serve_node(&nats, "node-a").await;
    let b = fixture_b.serve_node(&nats, "node-b").await;
    a.wait_for_node("node-b", true).await;
    let repo = repo(fixture_b.dir.path());
    let command = "echo new > new.txt; sleep 600";
    let (status, body) = a
        .call(
            Method::POST,
            "/api/tasks",
            Some(json!({"command": command, "node": "node-b", "workspace": {"repo": repo}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let task: Task = serde_json::from_value(body).unwrap();
    assert_eq!(task.node, "node-b");
    // Through node a: the diff, and a commit, of node b's worktree.
    let deadline = Instant::now() + SOON;
    loop {
        let (status, body) = a
            .call(Method::GET, &format!("/api/tasks/{}/diff", task.id), None)
            .await;
        if status == StatusCode::OK && body["files"][0]["path"] == "new.txt" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no diff through node a: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = act(&a, &task.id, "commit").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let branch = task.workspace.unwrap().branch;
    assert_eq!(git(&repo, &["log", "--format=%s", "-1", &branch]), command);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn files_in_a_folder_the_agent_makes_are_followed_too() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let repo = repo(fixture.dir.path());
    let go = fixture.dir.path().join("go");
    std::fs::write(&go, "").unwrap();
    // A folder made, a file in it, then a line more in that file: only a watch on the new
    // folder sees the last write.
    let task = agent(
        &server,
        &repo,
        &go,
        "mkdir docs; sleep 1; echo one > docs/a.md; sleep 1; echo two >> docs/a.md",
    )
    .await;
    let task = server
        .wait_for(
            &task.id,
            |t| t.changes.is_some_and(|c| c.insertions == 2),
            SOON,
        )
        .await;
    assert_eq!(task.changes.unwrap().files, 1);
    server.stop().await;
}

#[tokio::test]
async fn counting_never_rewrites_the_agents_index() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let repo = repo(fixture.dir.path());
    let go = fixture.dir.path().join("go");
    // Files touched (stat changed, content not) make `git diff` refresh the index it reads
    // and write it back under index.lock: the agent's `git add` could fail then.
    let task = agent(
        &server,
        &repo,
        &go,
        "touch -d '2001-01-01' a.txt b.txt .gitignore; echo x > new.txt",
    )
    .await;
    let path = PathBuf::from(&task.workspace.as_ref().unwrap().path);
    let index = PathBuf::from(git(
        &path,
        &["rev-parse", "--path-format=absolute", "--git-path", "index"],
    ));
    let before = std::fs::metadata(&index).unwrap().modified().unwrap();
    std::fs::write(&go, "").unwrap();
    let task = server
        .wait_for(&task.id, |t| t.changes.is_some_and(|c| c.files == 1), SOON)
        .await;
    assert_eq!(task.changes.unwrap().insertions, 1);
    diff(&server, &task.id).await;
    let after = std::fs::metadata(&index).unwrap().modified().unwrap();
    assert_eq!(before, after, "the worktree's index was rewritten");
    server.stop().await;
}
