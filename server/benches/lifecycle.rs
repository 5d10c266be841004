//! Creates and kills per second: 200 tasks (`sleep 3600` in real tmux sessions) created one
//! after another, then killed one after another, through `Tasks` (what the API calls). Each
//! create and each kill writes the store (SQLite, synced as the store is configured) and
//! runs tmux. Run: `cargo bench -p server --bench lifecycle`.

use std::time::Instant;

mod common;

const TASKS: usize = 200;

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let started = Instant::now();
    let (bench, ids) = common::with_sleeping_tasks("lifecycle", TASKS);
    let created = started.elapsed();
    let started = Instant::now();
    for id in &ids {
        bench.tasks.kill(id).unwrap();
    }
    let killed = started.elapsed();
    println!(
        "creates: {:.0}/s ({TASKS} in {created:.2?}); kills: {:.0}/s ({TASKS} in {killed:.2?})",
        TASKS as f64 / created.as_secs_f64(),
        TASKS as f64 / killed.as_secs_f64(),
    );
    bench.tmux.kill_server();
}
