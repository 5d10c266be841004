//! The reconciler: keeps the records true to tmux. It runs a pass at start (tasks that ended
//! while taskwire was down get their real exit status), whenever tmux reports a dead pane
//! (through the wake file its hook touches, watched with inotify), when a task is created,
//! and every `RECONCILE_SECS` as a safety net that also notices output going quiet.
//!
//! Timed passes read files only; every `TMUX_CHECK_EVERY`th one, and every pass that was
//! woken up, also asks tmux (one process for all tasks). Every change a pass makes goes
//! through `Tasks` (conditional status writes: a pass never undoes a change it did not see).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use app::model::{Task, TaskStatus, WaitingReason};
use notify::{RecursiveMode, Watcher};
use tokio_util::sync::CancellationToken;

use super::{
    now_text,
    procfs::Verdict,
    runtime::{Listing, PaneState},
    store::Outcome,
    time_text, TaskResult, Tasks,
};
use crate::sync::lock;

/// Every how many timed passes one also asks tmux.
const TMUX_CHECK_EVERY: u32 = 6;

/// How soon to look again at an exit tmux has not finished reporting.
const UNSETTLED_RETRY: Duration = Duration::from_millis(20);

/// How long a dead pane may go without an exit status before it is recorded as failed.
const UNSETTLED_LIMIT: Duration = Duration::from_secs(2);

/// The panes tmux listed, by task id.
type Panes = HashMap<String, PaneState>;

/// What one reconcile pass did.
#[derive(Debug, Default)]
pub struct Pass {
    pub transitions: usize,
    /// Some exit was seen but not yet complete; another pass (asking tmux) should follow soon.
    pub unsettled: bool,
}

/// The passes and what they remember between them.
pub struct Reconciler {
    tasks: Arc<Tasks>,
    /// Dead panes whose exit status is not known yet, and since when.
    unsettled: Mutex<HashMap<String, Instant>>,
    /// What the last pass asking tmux saw that the next one must confirm before acting:
    /// no tmux server at all, and sessions without a live task.
    suspects: Mutex<Suspects>,
}

#[derive(Default)]
struct Suspects {
    no_server: bool,
    orphans: HashSet<String>,
}

impl Reconciler {
    pub fn new(tasks: Arc<Tasks>) -> Arc<Reconciler> {
        Arc::new(Reconciler {
            tasks,
            unsettled: Mutex::default(),
            suspects: Mutex::default(),
        })
    }

    /// One reconcile pass. Every pass reads files only: the exit status the task's wrapper
    /// wrote, and the output file's time for activity. With `ask_tmux` it also makes one
    /// `tmux list-panes` call for all tasks, which finds sessions that vanished or panes that
    /// died without a recorded status. (tmux 3.3 answers any command slowly when it holds
    /// many sessions, about 35 ms at 1,000, so the reconciler asks it only now and then.)
    pub fn pass(&self, ask_tmux: bool) -> TaskResult<Pass> {
        let tasks = &self.tasks;
        let (live, panes) = self.look(ask_tmux)?;
        let mut pass = Pass::default();
        if live.is_empty() {
            return Ok(pass);
        }
        let quiet = QuietRule {
            now: SystemTime::now(),
            idle_waiting: tasks.idle_waiting,
            verdicts: lock(&tasks.verdicts).clone(),
            reporting: tasks.store().reporting_ids()?,
        };
        let mut finished_sessions = Vec::new();
        for task in live {
            let pane = panes.as_ref().map(|panes| panes.get(&task.id));
            let judged = match self.judge_end(&task, pane, &mut pass) {
                Some(end) => Some(end),
                None => quiet.judge(tasks, &task),
            };
            let Some((to, outcome)) = judged else {
                continue;
            };
            if tasks
                .transition(&task.id, &[task.status], to, outcome)?
                .is_some()
            {
                pass.transitions += 1;
                // A finished program's dead pane has nothing more to tell (a vanished
                // session is already gone). Only the pass that recorded the end removes it.
                if matches!(to, TaskStatus::Completed | TaskStatus::Failed) {
                    finished_sessions.push(task.id.clone());
                }
            }
        }
        if !finished_sessions.is_empty() {
            if let Err(e) = tasks.runtime.kill_sessions(&finished_sessions) {
                tracing::debug!("removing finished sessions: {e}");
            }
        }
        Ok(pass)
    }

    /// The live tasks to judge (none whose session is being started or killed) and, with
    /// `ask_tmux`, the panes; orphan sessions swept.
    ///
    /// Which tasks are in flight is read both between the records and the panes and after
    /// the panes, and a task in either is left alone. A task in the records was in flight
    /// before they were read; if it no longer is at the first look, its session was made
    /// before the panes were listed. A kill begun after the first look is in flight at the
    /// second, or done, and then the task is no longer live for the pass to change.
    fn look(&self, ask_tmux: bool) -> TaskResult<(Vec<Task>, Option<Panes>)> {
        let tasks = &self.tasks;
        let live = tasks.store().list_live()?;
        let mut in_flight = lock(&tasks.in_flight).clone();
        let panes = if ask_tmux {
            self.panes_seen_twice()
        } else {
            None
        };
        if let Some(panes) = &panes {
            self.note_panes(panes);
            self.sweep_orphans(panes)?;
        }
        in_flight.extend(lock(&tasks.in_flight).iter().cloned());
        let live = live
            .into_iter()
            .filter(|t| !in_flight.contains(&t.id))
            .collect();
        Ok((live, panes))
    }

    /// How a task ended, if it did: its recorded exit status, its session gone, or its
    /// dead pane's status; `None` while it runs (or its end is still being reported).
    fn judge_end(
        &self,
        task: &Task,
        pane: Option<Option<&PaneState>>,
        pass: &mut Pass,
    ) -> Option<(TaskStatus, Outcome)> {
        match (self.tasks.recorded_exit(&task.id), pane) {
            (Some(code), _) => Some(exit_outcome(code)),
            (None, Some(None)) => Some(ended(TaskStatus::Error, "the tmux session disappeared")),
            (None, Some(Some(pane))) if pane.dead => match tmux_exit_code(pane) {
                Some(code) => Some(exit_outcome(code)),
                // The status may still be on its way: look again shortly, for a while.
                None if self.unsettled_for(&task.id) < UNSETTLED_LIMIT => {
                    pass.unsettled = true;
                    None
                }
                // Nothing recorded how it ended (its wrapper shell was killed too).
                None => Some(ended(
                    TaskStatus::Failed,
                    "the task ended without an exit status",
                )),
            },
            _ => None,
        }
    }

    /// The panes tmux lists, an empty list only when no tmux server has run on two passes in
    /// a row, `None` when this pass must not conclude anything (tmux could not be reached,
    /// or the server seemed gone for the first time). Ending every live task is for a server
    /// that is really gone, never for a socket that could not be reached once.
    fn panes_seen_twice(&self) -> Option<HashMap<String, PaneState>> {
        let listing = match self.tasks.runtime.list_panes() {
            Ok(listing) => listing,
            Err(e) => {
                tracing::warn!("asking tmux for the panes: {e}");
                return None;
            }
        };
        let mut suspects = lock(&self.suspects);
        match listing {
            Listing::Panes(panes) => {
                suspects.no_server = false;
                Some(panes)
            }
            Listing::NoServer if suspects.no_server => Some(HashMap::new()),
            Listing::NoServer => {
                suspects.no_server = true;
                None
            }
        }
    }

    /// Kills `tw-*` sessions that have no live task (a record deleted or ended while its
    /// session survived), once two passes asking tmux in a row have seen them so.
    fn sweep_orphans(&self, panes: &HashMap<String, PaneState>) -> TaskResult<()> {
        // Read after the panes: a task whose session is in the list was recorded before it.
        let live: HashSet<String> = self
            .tasks
            .store()
            .list_live()?
            .into_iter()
            .map(|t| t.id)
            .collect();
        let in_flight = lock(&self.tasks.in_flight).clone();
        let orphans: HashSet<String> = panes
            .keys()
            .filter(|id| !live.contains(*id) && !in_flight.contains(*id))
            .cloned()
            .collect();
        let mut suspects = lock(&self.suspects);
        let confirmed: Vec<String> = orphans.intersection(&suspects.orphans).cloned().collect();
        suspects.orphans = orphans;
        drop(suspects);
        if !confirmed.is_empty() {
            tracing::warn!("removing tmux sessions without a live task: {confirmed:?}");
            if let Err(e) = self.tasks.runtime.kill_sessions(&confirmed) {
                tracing::warn!("removing orphan sessions: {e}");
            }
        }
        Ok(())
    }

    /// Keeps the panes' sizes for their terminal models (a viewer may have resized one),
    /// and their processes for the waiting passes (a task started before a restart).
    fn note_panes(&self, panes: &HashMap<String, PaneState>) {
        let mut sizes = lock(&self.tasks.pane_sizes);
        for (id, pane) in panes {
            if pane.size.cols > 0 && pane.size.rows > 0 {
                sizes.insert(id.clone(), pane.size);
            }
        }
        drop(sizes);
        let mut processes = lock(&self.tasks.pane_processes);
        for (id, pane) in panes {
            if let (Some(process), false) = (&pane.process, pane.dead) {
                processes.insert(id.clone(), process.clone());
            }
        }
    }

    /// How long a dead pane has been waiting for its exit status.
    fn unsettled_for(&self, id: &str) -> Duration {
        let mut unsettled = lock(&self.unsettled);
        let now = Instant::now();
        unsettled.retain(|_, since| now.duration_since(*since) < UNSETTLED_LIMIT * 2);
        now.duration_since(*unsettled.entry(id.to_string()).or_insert(now))
    }
}

/// Silence, for a live task whose end was not seen: a program nothing else speaks for that
/// stays quiet waits. (Its wait ends when its screen moves on: `watch`.)
struct QuietRule {
    now: SystemTime,
    idle_waiting: Duration,
    verdicts: HashMap<String, Verdict>,
    reporting: HashSet<String>,
}

impl QuietRule {
    fn judge(&self, tasks: &Tasks, task: &Task) -> Option<(TaskStatus, Outcome)> {
        let activity = tasks.observed_activity(task);
        let quiet = self.now.duration_since(activity).unwrap_or_default();
        // Silence means waiting only for a program that neither `/proc` nor its own
        // reports can speak for.
        let judged_by_silence = !self.reporting.contains(&task.id)
            && self
                .verdicts
                .get(&task.id)
                .is_none_or(|v| *v == Verdict::Unsure);
        if task.status != TaskStatus::Running || quiet < self.idle_waiting || !judged_by_silence {
            return None;
        }
        // Input recorded since the snapshot wins over "it has been quiet".
        let outcome = Outcome {
            at: time_text(activity),
            if_activity_was: Some(task.last_activity_at.clone()),
            waiting_reason: Some(WaitingReason::Quiet),
            if_reason_was: task.waiting_reason,
            ..Outcome::default()
        };
        Some((TaskStatus::WaitingForInput, outcome))
    }
}

/// What tmux knows of how a dead pane's program ended: a signal as 128 + signal, as shells
/// report it.
fn tmux_exit_code(pane: &PaneState) -> Option<i32> {
    pane.exit_signal.map(|s| 128 + s).or(pane.exit_status)
}

fn exit_outcome(code: i32) -> (TaskStatus, Outcome) {
    let status = if code == 0 {
        TaskStatus::Completed
    } else {
        TaskStatus::Failed
    };
    (
        status,
        Outcome {
            exit_code: Some(code),
            at: now_text(),
            ..Outcome::default()
        },
    )
}

fn ended(status: TaskStatus, error: &str) -> (TaskStatus, Outcome) {
    (
        status,
        Outcome {
            error: Some(error.into()),
            at: now_text(),
            ..Outcome::default()
        },
    )
}

/// Runs passes until `shutdown`. Passes never overlap: they run on this one task.
pub async fn run(reconciler: Arc<Reconciler>, every: Duration, shutdown: CancellationToken) {
    let tasks = reconciler.tasks.clone();
    let _watcher = watch_wake_file(&tasks);
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first pass, at start, asks tmux: things happened while taskwire was down.
    let mut ask_tmux = true;
    let mut timed_passes = 0u32;
    loop {
        let passes = reconciler.clone();
        let unsettled = match tokio::task::spawn_blocking(move || passes.pass(ask_tmux)).await {
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
