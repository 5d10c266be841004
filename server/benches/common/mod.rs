//! What the task benchmarks share: `Tasks` on a data dir and tmux socket of their own, with
//! live tasks in real tmux sessions.
#![allow(dead_code)]

use std::{sync::Arc, time::Duration};

use server::{
    events::broker::Broker,
    tasks::{runtime::Tmux, store::Store, NewCommand, Tasks},
};

pub struct Bench {
    /// Removed when the bench ends.
    pub dir: tempfile::TempDir,
    pub tmux: Tmux,
    pub tasks: Arc<Tasks>,
}

/// `Tasks` on a fresh data dir and the tmux socket `twbench-<name>-<pid>` (call inside a
/// tokio runtime), with `count` tasks running `sleep 3600`; their ids.
pub fn with_sleeping_tasks(name: &str, count: usize) -> (Bench, Vec<String>) {
    with_tasks(name, count, |_| "sleep 3600".into())
}

/// The same with the `n`th task running `command(n)`.
pub fn with_tasks(
    name: &str,
    count: usize,
    command: impl Fn(usize) -> String,
) -> (Bench, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    std::fs::create_dir_all(data.join("tasks")).unwrap();
    let socket = format!("twbench-{name}-{}", std::process::id());
    let tmux = Tmux::new(&socket, &data).unwrap();
    let store = Store::open(&data.join("taskwire.db")).unwrap();
    let tasks = Arc::new(Tasks::new(
        store,
        tmux.clone(),
        Broker::new(1024, 10),
        data,
        Duration::from_secs(3600),
        "bench".into(),
    ));
    let ids = (0..count)
        .map(|n| {
            tasks
                .create_command(NewCommand {
                    command: command(n),
                    name: Some(format!("bench {n}")),
                    workdir: None,
                    prompt: None,
                    workspace: None,
                })
                .unwrap()
                .id
        })
        .collect();
    (Bench { dir, tmux, tasks }, ids)
}
