//! Tasks in git worktrees, with real git and real tmux, through `Tasks` and the changes
//! pass (inotify watchers mark a task dirty; every 500 ms the dirty ones are recounted):
//! a repository of 50,000 files (500 folders × 100 small files, one commit); creating a
//! task in a new worktree of it; a file written → the `task.updated` carrying the new
//! `changes`, p50/p99 over 30 writes; the CPU the server process and its git children use
//! while nothing is written, and while an agent writes a file every 100 ms for 10 s, with
//! the recounts; `git diff --numstat` and `git ls-files --others` timed by themselves; the
//! diff of 1,000 changed files (wall time, p50 over 5, and its JSON); a count in a fresh
//! worktree as `git worktree add` leaves its index, with every entry racily clean (a
//! checkout within one second), and once the index is refreshed.
//! Run: `cargo bench -p server --bench workspaces`. Target: write → event p99 <= 2 s.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use app::model::{Changes, NewWorkspace, Task};
use server::{events::event::Event, tasks::NewCommand, workspaces};
use tokio::{runtime::Runtime, sync::broadcast};
use tokio_util::sync::CancellationToken;

mod common;

const DIRS: usize = 500;
const FILES_PER_DIR: usize = 100;
const LINES: usize = 10;
/// How often the changes pass runs (`tasks::workdirs`).
const PASS_EVERY: Duration = Duration::from_millis(500);
const WRITES: usize = 30;
const IDLE_FOR: Duration = Duration::from_secs(5);
const AGENT_EVERY: Duration = Duration::from_millis(100);
const AGENT_WRITES: usize = 100;
const BY_HAND: usize = 10;
const CHANGED: usize = 1000;
const DIFFS: usize = 5;
const SOON: Duration = Duration::from_secs(30);

type Live = broadcast::Receiver<Arc<Event>>;

fn main() {
    let runtime = Runtime::new().unwrap();
    let _guard = runtime.enter();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {} cores, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split(' ').take(3).collect::<Vec<_>>().join(" ")
    );
    let (bench, _) = common::with_sleeping_tasks("workspaces", 0);
    let tasks = bench.tasks.clone();
    let shutdown = CancellationToken::new();
    runtime.spawn(server::tasks::workdirs::run(
        tasks.clone(),
        shutdown.clone(),
    ));

    // 1. The repository, and a task in a new worktree of it.
    let repo_dir = tempfile::tempdir().unwrap();
    let repo = repo_dir.path().join("big");
    let made = Instant::now();
    make_repo(&repo);
    println!(
        "repository of {} files ({DIRS} folders × {FILES_PER_DIR}, {LINES} lines each), one commit, packed: made in {:.1?}",
        DIRS * FILES_PER_DIR,
        made.elapsed()
    );
    let mut live = tasks.broker.follow_after(None).1.into_live();
    let started = Instant::now();
    let task = tasks
        .create_command(NewCommand {
            command: "sleep 3600".into(),
            name: Some("bench worktree".into()),
            workdir: None,
            prompt: None,
            workspace: Some(NewWorkspace {
                repo: repo.to_string_lossy().into_owned(),
                ..NewWorkspace::default()
            }),
        })
        .unwrap();
    let created = started.elapsed();
    let workspace = task.workspace.clone().expect("a worktree");
    let worktree = PathBuf::from(&workspace.path);
    let id = task.id.clone();
    println!(
        "create a task in a new worktree (git worktree add of {} files, tmux session): {created:.2?}",
        DIRS * FILES_PER_DIR
    );
    println!(
        "  the new worktree's index: {} of {} entries racily clean",
        racy(&worktree),
        DIRS * FILES_PER_DIR
    );
    // Let a pass or two set up the task's watcher (a watch on each of its folders).
    std::thread::sleep(3 * PASS_EVERY);

    // 2. A file written → its `task.updated`. Writes fall at every point of the pass's
    // period: after each event, a wait of i/30 of it.
    let mut expected = Changes::default();
    let mut touched = Vec::new();
    let mut latencies = Vec::new();
    for i in 0..WRITES {
        std::thread::sleep(PASS_EVERY * i as u32 / WRITES as u32);
        let file = file_path(&worktree, i % DIRS, 0);
        append(&file, "one more line\n");
        touched.push((i % DIRS, 0));
        let wrote = Instant::now();
        expected.files += 1;
        expected.insertions += 1;
        let (_, at) = wait_for(&runtime, &mut live, &id, &expected);
        latencies.push(at - wrote);
    }
    latencies.sort();
    println!(
        "file written → task.updated with its changes ({WRITES} writes, one at a time): p50 {:.0?}, p99 {:.0?}, max {:.0?} (target p99 <= 2 s)",
        nearest_rank(&latencies, 0.50),
        nearest_rank(&latencies, 0.99),
        latencies.last().unwrap()
    );

    // 3. What keeping `changes` current costs: nothing written, then an agent writing.
    let before = Usage::now();
    std::thread::sleep(IDLE_FOR);
    let idle = Usage::now().since(&before);
    let idle_events = drain(&mut live, &id);
    println!(
        "nothing written for {IDLE_FOR:.0?}: {:.4} CPU s/s (server {:.4}, git {:.4}), {idle_events} recounts published",
        idle.per_second(),
        idle.own_per_second(),
        idle.children_per_second()
    );
    let before = Usage::now();
    let start = Instant::now();
    for k in 0..AGENT_WRITES {
        let at = start + AGENT_EVERY * k as u32;
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        append(&file_path(&worktree, k % DIRS, 1), "the agent wrote this\n");
        touched.push((k % DIRS, 1));
        expected.files += 1;
        expected.insertions += 1;
    }
    let writing = start.elapsed();
    // Until the last write is counted: its recount is part of the cost.
    let (recounts, at) = wait_for(&runtime, &mut live, &id, &expected);
    let busy = Usage::now().since(&before);
    println!(
        "agent writing a file every {AGENT_EVERY:.0?} ({AGENT_WRITES} writes over {writing:.1?}; measured until its last write was counted, {:.1?}): {:.3} CPU s/s (server {:.3}, git {:.3}); {recounts} recounts published, {:.1} ms CPU each",
        busy.wall,
        busy.per_second(),
        busy.own_per_second(),
        busy.children_per_second(),
        busy.cpu().as_secs_f64() * 1000.0 / recounts.max(1) as f64
    );
    println!(
        "  last write → its event: {:.0?}",
        at.saturating_duration_since(start + AGENT_EVERY * (AGENT_WRITES as u32 - 1))
    );

    // What a recount is made of, each part timed by itself (130 files changed by now).
    println!(
        "  the worktree's index: {} of {} entries racily clean (their files read by every count)",
        racy(&worktree),
        DIRS * FILES_PER_DIR
    );
    let base = workspace.base_commit.clone();
    by_hand(
        "one count (changes::count: both, and each untracked file read)",
        || {
            workspaces::changes::count(&worktree, &base).unwrap();
        },
    );
    by_hand("git diff --numstat -z -M <base>", || {
        workspaces::git::run(&worktree, &["diff", "--numstat", "-z", "-M", &base, "--"]).unwrap();
    });
    by_hand("git ls-files --others --exclude-standard -z", || {
        workspaces::git::run(
            &worktree,
            &["ls-files", "--others", "--exclude-standard", "-z"],
        )
        .unwrap();
    });

    // 4. The diff of 1,000 changed files: what was written goes back, then 1,000 files
    // each get one line changed and one added. The files put back are stat-dirty with
    // their content unchanged, so the next `git diff` rewrites the index (it takes
    // index.lock for that whatever GIT_OPTIONAL_LOCKS says): no racily clean entries after.
    let index_before = index_written(&worktree);
    for (d, f) in touched {
        std::fs::write(file_path(&worktree, d, f), content(d, f)).unwrap();
    }
    let start = Instant::now();
    for n in 0..CHANGED {
        let (d, f) = (n % DIRS, 50 + n / DIRS);
        let mut text = content(d, f).replace("line 5\n", "line 5, changed\n");
        text.push_str("and a line more\n");
        std::fs::write(file_path(&worktree, d, f), text).unwrap();
    }
    let expected = Changes {
        files: CHANGED as u32,
        insertions: 2 * CHANGED as u32,
        deletions: CHANGED as u32,
    };
    let (_, at) = wait_for(&runtime, &mut live, &id, &expected);
    println!(
        "{CHANGED} files changed → task.updated with {CHANGED} files: {:.0?} from the first write",
        at - start
    );
    println!(
        "  the worktree's index: {} racily clean now ({})",
        racy(&worktree),
        if index_written(&worktree) != index_before {
            "the recount's git diff rewrote it"
        } else {
            "as before"
        }
    );
    diffs(&tasks, &id);
    by_hand(&format!("one count, {CHANGED} files changed"), || {
        workspaces::changes::count(&worktree, &base).unwrap();
    });
    by_hand(
        "the diff's patch, git diff --no-color --no-ext-diff -M <base>",
        || {
            workspaces::git::run(
                &worktree,
                &["diff", "--no-color", "--no-ext-diff", "-M", &base, "--"],
            )
            .unwrap();
        },
    );

    // Where a recount's time goes: `git worktree add` writes its index in the second it
    // wrote its last files, which leaves those racily clean, and a diff that may not write
    // the index (GIT_OPTIONAL_LOCKS=0, as the server runs git) reads them every time. A
    // plain worktree of the same commit, as git leaves it and once its index is refreshed.
    let plain = repo_dir.path().join("plain");
    let plain_text = plain.to_string_lossy().into_owned();
    git(
        &repo,
        &[
            "worktree",
            "add",
            "--quiet",
            "-b",
            "plain",
            &plain_text,
            &base,
        ],
    );
    let label = format!(
        "fresh worktree (0 changes) as git worktree add left it ({} entries racily clean), one count",
        racy(&plain)
    );
    by_hand(&label, || {
        workspaces::changes::count(&plain, &base).unwrap();
    });
    // As when the checkout fits in the second its index is written (a smaller repository,
    // a faster disk): the index dated back to the checkout's first second.
    let first = entry_mtimes(&plain).into_iter().min().unwrap();
    std::fs::File::options()
        .write(true)
        .open(index_path(&plain))
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(first as u64))
        .unwrap();
    let label = format!(
        "the same, its checkout within one second ({} racily clean), one count",
        racy(&plain)
    );
    by_hand(&label, || {
        workspaces::changes::count(&plain, &base).unwrap();
    });
    std::thread::sleep(Duration::from_secs(1));
    git(&plain, &["update-index", "-q", "--refresh"]);
    let label = format!(
        "the same after git update-index -q --refresh ({} racily clean), one count",
        racy(&plain)
    );
    by_hand(&label, || {
        workspaces::changes::count(&plain, &base).unwrap();
    });

    shutdown.cancel();
    let _ = tasks.kill(&id);
    bench.tmux.kill_server();
}

/// The entries of `dir`'s index that are racily clean: their file's mtime is not older
/// than the index, to the second (as this git compares them), so git cannot trust their
/// stat data and every diff reads and compares their files. They stay so until the index is
/// written again (`git diff` writes it only when it met 2 or more stat-dirty files whose
/// content had not changed).
fn racy(dir: &Path) -> usize {
    let written = index_written(dir);
    entry_mtimes(dir)
        .into_iter()
        .filter(|&mtime| mtime >= written)
        .count()
}

/// The mtimes (seconds) of the files as `dir`'s index recorded them.
fn entry_mtimes(dir: &Path) -> Vec<i64> {
    workspaces::git::run(dir, &["ls-files", "--debug"])
        .unwrap()
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("mtime: "))
        .filter_map(|t| t.split(':').next()?.parse().ok())
        .collect()
}

/// When `dir`'s index was last written, in seconds.
fn index_written(dir: &Path) -> i64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(index_path(dir)).unwrap().mtime()
}

/// The index of `dir`'s worktree.
fn index_path(dir: &Path) -> PathBuf {
    let path = workspaces::git::run(
        dir,
        &["rev-parse", "--path-format=absolute", "--git-path", "index"],
    )
    .unwrap();
    PathBuf::from(path.trim())
}

/// Times the task's diff DIFFS times (and its JSON), and shows it.
fn diffs(tasks: &server::tasks::Tasks, id: &str) {
    let (mut walls, mut encodes) = (Vec::new(), Vec::new());
    let mut shown = (0, 0, 0);
    for _ in 0..DIFFS {
        let t = Instant::now();
        let diff = tasks.diff(id).unwrap();
        walls.push(t.elapsed());
        let t = Instant::now();
        let json = serde_json::to_vec(&diff).unwrap();
        encodes.push(t.elapsed());
        let hunks = diff.files.iter().map(|f| f.hunks.len()).sum::<usize>();
        shown = (diff.files.len(), hunks, json.len());
    }
    walls.sort();
    encodes.sort();
    let (files, hunks, size) = shown;
    assert_eq!(files, CHANGED, "every changed file is in the diff");
    println!(
        "diff of {files} changed files (Tasks::diff, GET /api/tasks/{{id}}/diff, {DIFFS} runs): p50 {:.0?}, max {:.0?}; to JSON p50 {:.1?}; {hunks} hunks, {:.0} KiB of JSON ({:.0} bytes a file)",
        nearest_rank(&walls, 0.50),
        walls.last().unwrap(),
        nearest_rank(&encodes, 0.50),
        size as f64 / 1024.0,
        size as f64 / files as f64
    );
}

/// `d/f` of the repository (or a worktree of it).
fn file_path(root: &Path, d: usize, f: usize) -> PathBuf {
    root.join(format!("d{d:03}")).join(format!("f{f:03}.txt"))
}

fn content(d: usize, f: usize) -> String {
    (0..LINES)
        .map(|n| format!("folder {d} file {f} line {n}\n"))
        .collect()
}

fn make_repo(repo: &Path) {
    for d in 0..DIRS {
        std::fs::create_dir_all(repo.join(format!("d{d:03}"))).unwrap();
        for f in 0..FILES_PER_DIR {
            std::fs::write(file_path(repo, d, f), content(d, f)).unwrap();
        }
    }
    git(repo, &["init", "--quiet", "-b", "main"]);
    git(repo, &["add", "-A"]);
    git(
        repo,
        &["-c", "gc.auto=0", "commit", "--quiet", "-m", "50,000 files"],
    );
    // Packed, as a repository's objects mostly are (and no gc left running behind).
    git(repo, &["repack", "-a", "-d", "-q"]);
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn append(path: &Path, line: &str) {
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(line.as_bytes()).unwrap();
}

/// The task's changes in a `task.updated` event, if it is one of task `id`'s.
fn changes_in(event: &Event, id: &str) -> Option<Changes> {
    if event.name != "task.updated" {
        return None;
    }
    let task: Task = serde_json::from_str(&event.data).ok()?;
    (task.id == id).then_some(task.changes).flatten()
}

/// Waits for the `task.updated` of task `id` carrying `expected`: how many of the task's
/// `task.updated` came until then (that one included), and when that one arrived.
fn wait_for(runtime: &Runtime, live: &mut Live, id: &str, expected: &Changes) -> (usize, Instant) {
    let deadline = Instant::now() + SOON;
    let mut seen = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = match runtime.block_on(tokio::time::timeout(left, live.recv())) {
            Ok(Ok(event)) => event,
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(e)) => panic!("the broker went away: {e}"),
            Err(_) => panic!("no task.updated with {expected:?} within {SOON:?}"),
        };
        let at = Instant::now();
        if let Some(changes) = changes_in(&event, id) {
            seen += 1;
            if &changes == expected {
                return (seen, at);
            }
        }
    }
}

/// The task's `task.updated` events already received, read without waiting.
fn drain(live: &mut Live, id: &str) -> usize {
    let mut seen = 0;
    while let Ok(event) = live.try_recv() {
        seen += usize::from(changes_in(&event, id).is_some());
    }
    seen
}

/// Runs `work` BY_HAND times: p50 of its wall time, and the CPU it and its git used each.
fn by_hand(label: &str, mut work: impl FnMut()) {
    let before = Usage::now();
    let mut times: Vec<Duration> = (0..BY_HAND)
        .map(|_| {
            let t = Instant::now();
            work();
            t.elapsed()
        })
        .collect();
    let used = Usage::now().since(&before);
    times.sort();
    println!(
        "  by itself, {label}: p50 {:.1?}, max {:.1?}; {:.1} ms CPU each (git {:.1})",
        nearest_rank(&times, 0.50),
        times.last().unwrap(),
        used.cpu().as_secs_f64() * 1000.0 / BY_HAND as f64,
        used.children.as_secs_f64() * 1000.0 / BY_HAND as f64
    );
}

/// The `p` quantile of sorted `times`, nearest rank.
fn nearest_rank(times: &[Duration], p: f64) -> Duration {
    let rank = (p * times.len() as f64).ceil() as usize;
    times[rank.clamp(1, times.len()) - 1]
}

/// CPU used (user + system) by this process's threads and by its children that ended
/// (git), at a moment; or between two.
struct Usage {
    wall: Duration,
    own: Duration,
    children: Duration,
    at: Instant,
}

impl Usage {
    fn now() -> Usage {
        Usage {
            wall: Duration::ZERO,
            own: rusage(libc::RUSAGE_SELF),
            children: rusage(libc::RUSAGE_CHILDREN),
            at: Instant::now(),
        }
    }

    fn since(&self, before: &Usage) -> Usage {
        Usage {
            wall: self.at - before.at,
            own: self.own - before.own,
            children: self.children - before.children,
            at: self.at,
        }
    }

    fn cpu(&self) -> Duration {
        self.own + self.children
    }

    fn per_second(&self) -> f64 {
        self.cpu().as_secs_f64() / self.wall.as_secs_f64()
    }

    fn own_per_second(&self) -> f64 {
        self.own.as_secs_f64() / self.wall.as_secs_f64()
    }

    fn children_per_second(&self) -> f64 {
        self.children.as_secs_f64() / self.wall.as_secs_f64()
    }
}

fn rusage(who: libc::c_int) -> Duration {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    let ok = unsafe { libc::getrusage(who, &mut usage) };
    assert_eq!(ok, 0, "getrusage");
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}
