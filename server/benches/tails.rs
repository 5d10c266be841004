//! One tails pass over 1,000 live tasks whose logs all grew since the last pass: each log
//! read from where its terminal model stopped and run through it. Also `/output?tail=3` of
//! a 20 KB log against a 20 MB one without newlines, and the memory the models hold.
//! Run: `cargo bench -p server --bench tails`. Target: a pass <= 20 ms.

use std::{
    collections::HashMap,
    io::Write,
    time::{Duration, Instant},
};

mod common;

const TASKS: usize = 1000;
/// Passes while the screens fill up, then as many with full screens (the steady state of
/// a task that has printed a screenful).
const PASSES: usize = 30;

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let (bench, ids) = common::with_sleeping_tasks("tails", TASKS);
    let (tasks, tmux) = (&bench.tasks, &bench.tmux);

    let rss_before = rss_kib();
    let mut sizes = HashMap::new();
    let mut filling = Vec::new();
    let mut full = Vec::new();
    for pass in 0..=2 * PASSES {
        // Every log grows: a few lines, then a progress bar redrawn in place.
        for id in &ids {
            let mut log = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(tasks.output_path(id))
                .unwrap();
            write!(log, "compiling crate {pass}\r\n\x1b[32mok\x1b[0m\r\n").unwrap();
            for p in 0..10 {
                write!(log, "\rprogress {}%", pass * 10 + p).unwrap();
            }
        }
        let t = Instant::now();
        let tails = tasks.tails_since(&mut sizes, 3).unwrap();
        let took = t.elapsed();
        assert_eq!(tails.len(), TASKS, "every log grew");
        // The first pass starts every model.
        match pass {
            0 => {}
            p if p <= PASSES => filling.push(took),
            _ => full.push(took),
        }
    }
    let models_kib = rss_kib().saturating_sub(rss_before);
    for (label, mut times) in [("screens filling", filling), ("screens full", full)] {
        times.sort();
        println!(
            "tails pass over {TASKS} live tasks whose logs grew ({label}): p50 {:.2?}, max {:.2?} (target <= 20 ms)",
            times[times.len() / 2],
            times.last().unwrap()
        );
    }
    println!(
        "  memory of the {TASKS} terminal models: {:.1} MiB ({:.0} KiB each)",
        models_kib as f64 / 1024.0,
        models_kib as f64 / TASKS as f64
    );

    // A short tail reads a short window, however large the log.
    for (label, len) in [("20 KB", 20 * 1024), ("20 MB", 20 * 1024 * 1024)] {
        std::fs::write(tasks.output_path(&ids[0]), vec![b'x'; len]).unwrap();
        let mut runs: Vec<Duration> = (0..20)
            .map(|_| {
                let t = Instant::now();
                tasks.output_tail(&ids[0], 3).unwrap();
                t.elapsed()
            })
            .collect();
        runs.sort();
        println!(
            "/output?tail=3 of a {label} log without newlines: p50 {:.2?}",
            runs[10]
        );
    }
    tmux.kill_server();
}

/// This process's resident memory.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
