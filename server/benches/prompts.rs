//! The screen watcher's pass over 1,000 live tasks, beside a tails pass over the same
//! screens: every log grew since the last pass (a spinner and a clock repainted, as a
//! waiting agent does), a third of the screens showing a menu under a question. Also the
//! pass when nothing grew, and the processes spawned (none: a pass reads files).
//! Run: `cargo bench -p server --bench prompts`. Target: a pass <= 20 ms.

use std::{collections::HashMap, io::Write, time::Instant};

use app::model::TaskStatus;

mod common;

const TASKS: usize = 1000;
const PASSES: usize = 30;

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let (bench, ids) = common::with_sleeping_tasks("prompts", TASKS);
    let (tasks, tmux) = (&bench.tasks, &bench.tmux);
    for (n, id) in ids.iter().enumerate() {
        let screen = if n % 3 == 0 {
            "\x1b[2J\x1b[H Bash command\r\n   echo hello\r\n\r\n Do you want to proceed?\r\n \
             ❯ 1. Yes\r\n   2. Yes, and always allow access to /tmp\r\n   3. No\r\n\r\n \
             Esc to cancel · Tab to amend\r\n"
        } else {
            "\x1b[2J\x1b[H   Compiling server v0.1.0\r\n   Compiling app v0.1.0\r\n"
        };
        append(&tasks.output_path(id), screen);
    }

    let spawned_before = tmux.spawned();
    let forks_before = forks();
    let (mut watch, mut tails, mut idle) = (Vec::new(), Vec::new(), Vec::new());
    let mut sizes = HashMap::new();
    for pass in 0..PASSES {
        // Every screen repaints its spinner and its clock.
        for id in &ids {
            let repaint = format!("\x1b7\x1b[1;1H⠋ {pass}s\x1b[1;190H12:00:{pass:02}\x1b8");
            append(&tasks.output_path(id), &repaint);
        }
        let t = Instant::now();
        tasks.watch_screens().unwrap();
        let took = t.elapsed();
        // The first passes start every model and settle the menus (a status write each).
        if pass >= 3 {
            watch.push(took);
        }
        let t = Instant::now();
        tasks.tails_since(&mut sizes, 3).unwrap();
        tails.push(t.elapsed());
        let t = Instant::now();
        tasks.watch_screens().unwrap();
        idle.push(t.elapsed());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let spawned = tmux.spawned() - spawned_before;
    let forks = forks() - forks_before;
    let waiting = tasks
        .list()
        .unwrap()
        .tasks
        .iter()
        .filter(|t| t.status == TaskStatus::WaitingForInput && t.prompt.is_some())
        .count();
    assert_eq!(
        waiting,
        TASKS.div_ceil(3),
        "every menu was seen, nothing else"
    );
    for (label, times) in [
        ("screen pass, every log grew", watch),
        ("tails pass, the same screens", tails),
        ("screen pass, nothing grew", idle),
    ] {
        let mut times = times;
        times.sort();
        println!(
            "{label} ({TASKS} live tasks): p50 {:.2?}, max {:.2?} (target <= 20 ms)",
            times[times.len() / 2],
            times.last().unwrap()
        );
    }
    println!("  {waiting} waiting with their menu as prompt");
    println!("  processes spawned over the passes: {spawned} by taskwire, {forks} on the whole machine (target 0)");
    tmux.kill_server();
}

fn append(path: &std::path::Path, text: &str) {
    let mut log = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    log.write_all(text.as_bytes()).unwrap();
}

/// Processes forked on this machine since boot (`processes` in `/proc/stat`).
fn forks() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("processes "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}
