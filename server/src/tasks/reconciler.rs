//! The reconciler: keeps the records true to tmux. It runs a pass at start (tasks that ended
//! while taskwire was down get their real exit status), whenever tmux reports a dead pane
//! (through the wake file its hook touches, watched with inotify), when a task is created,
//! and every `RECONCILE_SECS` as a safety net that also notices output going quiet.
//!
//! Timed passes read files only; every `TMUX_CHECK_EVERY`th one, and every pass that was
//! woken up, also asks tmux (one process for all tasks).

use std::{sync::Arc, time::Duration};

use notify::{RecursiveMode, Watcher};
use tokio_util::sync::CancellationToken;

use crate::tasks::Tasks;

/// Every how many timed passes one also asks tmux.
const TMUX_CHECK_EVERY: u32 = 6;

/// How soon to look again at an exit tmux has not finished reporting.
const UNSETTLED_RETRY: Duration = Duration::from_millis(20);

/// Runs passes until `shutdown`. Passes never overlap: they run on this one task.
pub async fn run(tasks: Arc<Tasks>, every: Duration, shutdown: CancellationToken) {
    let _watcher = watch_wake_file(&tasks);
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first pass, at start, asks tmux: things happened while taskwire was down.
    let mut ask_tmux = true;
    let mut timed_passes = 0u32;
    loop {
        let pass_tasks = tasks.clone();
        let unsettled =
            match tokio::task::spawn_blocking(move || pass_tasks.reconcile(ask_tmux)).await {
                Ok(Ok(pass)) => pass.unsettled,
                Ok(Err(e)) => {
                    tracing::warn!("reconcile pass failed: {e:?}");
                    false
                }
                Err(e) => {
                    tracing::error!("reconcile pass panicked: {e}");
                    false
                }
            };
        let soon = tokio::time::sleep(if unsettled { UNSETTLED_RETRY } else { every });
        ask_tmux = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {
                timed_passes += 1;
                timed_passes.is_multiple_of(TMUX_CHECK_EVERY)
            }
            _ = soon, if unsettled => true,
            _ = tasks.reconcile_now.notified() => true,
        };
    }
}

/// Turns touches of the tmux wake file into `reconcile_now` notifications. Without a
/// watcher (inotify unavailable) the periodic pass still notices every exit.
fn watch_wake_file(tasks: &Arc<Tasks>) -> Option<notify::RecommendedWatcher> {
    let wake_file = tasks.runtime.wake_file().to_path_buf();
    let dir = wake_file.parent()?.to_path_buf();
    let weak = Arc::downgrade(tasks);
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if event.paths.iter().any(|p| p == &wake_file) {
            if let Some(tasks) = weak.upgrade() {
                tasks.reconcile_now.notify_one();
            }
        }
    })
    .map_err(|e| tracing::warn!("cannot watch for task exits: {e}"))
    .ok()?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| tracing::warn!("cannot watch {}: {e}", dir.display()))
        .ok()?;
    Some(watcher)
}
