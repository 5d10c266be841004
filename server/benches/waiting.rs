//! One waiting pass over 1,000 live tasks (real tmux sessions: a third reading their
//! terminal, a third sleeping, a third a shell waiting for its sleeping child): wall time
//! per pass and processes spawned. Run: `cargo bench -p server --bench waiting`.
//! Targets: at most 10 ms a pass, 0 processes.

use std::time::{Duration, Instant};

use server::tasks::waiting::Passes;

mod common;

const TASKS: usize = 1000;
const PASSES: usize = 100;

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let started = Instant::now();
    let (bench, _) = common::with_tasks("waiting", TASKS, |n| match n % 3 {
        0 => "read answer".into(),
        1 => "sleep 3600".into(),
        _ => "sleep 3600; echo done".into(),
    });
    let (tasks, tmux) = (&bench.tasks, &bench.tmux);
    eprintln!("started {TASKS} tmux sessions in {:.1?}", started.elapsed());
    // Let every program reach what it blocks on.
    std::thread::sleep(Duration::from_secs(2));

    let mut passes = Passes::default();
    let walk = Instant::now();
    tasks.detect_waiting(&mut passes).unwrap();
    let walk = walk.elapsed();
    // The second pass confirms the first: a third of the tasks start waiting.
    let moved = tasks.detect_waiting(&mut passes).unwrap();

    let spawned_before = tmux.spawned();
    let forks_before = forks_on_this_machine();
    let mut times: Vec<Duration> = (0..PASSES)
        .map(|_| {
            let t = Instant::now();
            let moved = tasks.detect_waiting(&mut passes).unwrap();
            assert_eq!(moved, 0, "nothing changed, so nothing moves");
            t.elapsed()
        })
        .collect();
    let forks = forks_on_this_machine() - forks_before;
    let spawned = tmux.spawned() - spawned_before;
    times.sort();
    let waiting = tasks
        .list()
        .unwrap()
        .tasks
        .iter()
        .filter(|t| t.status == app::model::TaskStatus::WaitingForInput)
        .count();
    println!("waiting pass over {TASKS} live tasks ({waiting} reading their terminal, {moved} moved on the confirming pass):");
    println!(
        "  first pass (walks every process tree): {walk:.2?}; later passes p50 {:.2?}, max {:.2?} (target <= 10 ms)",
        times[times.len() / 2],
        times.last().unwrap()
    );
    println!("  processes spawned over {PASSES} passes: {spawned} by taskwire, {forks} on the whole machine (target 0)");
    tmux.kill_server();
}

/// Processes forked on this machine since boot (`processes` in `/proc/stat`).
fn forks_on_this_machine() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("processes "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}
