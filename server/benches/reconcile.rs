//! One reconcile pass over 1,000 live tasks (real tmux sessions running `sleep`): processes
//! spawned and wall time per pass, for the timed pass (files only) and the pass that also
//! asks tmux. Run: `cargo bench -p server --bench reconcile`.
//! Targets: at most 2 spawns and 20 ms a pass.

use std::time::{Duration, Instant};

use server::tasks::{reconciler::Reconciler, runtime::Tmux};

mod common;

const TASKS: usize = 1000;
const PASSES: usize = 30;

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let started = Instant::now();
    let (bench, _) = common::with_sleeping_tasks("reconcile", TASKS);
    let tmux = &bench.tmux;
    let reconciler = Reconciler::new(bench.tasks.clone());
    eprintln!("started {TASKS} tmux sessions in {:.1?}", started.elapsed());

    // A first pass settles everything (no transitions are expected: all are running).
    reconciler.pass(true).unwrap();
    for ask_tmux in [false, true] {
        measure(&reconciler, tmux, ask_tmux);
    }
    tmux.kill_server();
}

fn measure(reconciler: &Reconciler, tmux: &Tmux, ask_tmux: bool) {
    let mut times = Vec::new();
    let mut spawns = Vec::new();
    for _ in 0..PASSES {
        let before = tmux.spawned();
        let t = Instant::now();
        let pass = reconciler.pass(ask_tmux).unwrap();
        times.push(t.elapsed());
        spawns.push(tmux.spawned() - before);
        assert_eq!(
            pass.transitions, 0,
            "nothing changed, so nothing transitions"
        );
    }
    // Where the time goes: the one tmux call on its own.
    let mut tmux_times: Vec<Duration> = (0..10)
        .map(|_| {
            let t = Instant::now();
            tmux.list_panes().unwrap();
            t.elapsed()
        })
        .collect();
    tmux_times.sort();
    times.sort();
    let p50 = times[times.len() / 2];
    let max = *times.last().unwrap();
    let max_spawns = spawns.iter().max().unwrap();
    let kind = if ask_tmux {
        "pass asking tmux"
    } else {
        "timed pass (files)"
    };
    println!("{kind} over {TASKS} live tasks: p50 {p50:.2?}, max {max:.2?}, spawns per pass {max_spawns} (targets: <= 20 ms, <= 2)");
    if ask_tmux {
        println!(
            "  of which the one `tmux list-panes -a` call: p50 {:.2?}",
            tmux_times[5]
        );
    }
}
