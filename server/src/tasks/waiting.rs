//! Waiting means waiting: a task is `waiting-for-input` when its program waits for the
//! person, as `/proc` shows it (see `procfs`), within a second, and never because a build
//! is quiet.
//!
//! A pass every `EVERY` looks at each live task's foreground. A verdict counts once two
//! passes in a row agree, so a program caught between two reads of its terminal (a key
//! handled, a prompt redrawn) does not flap between states, and each notice is real.
//!
//! - Reading its terminal → `waiting-for-input` ("terminal").
//! - Running, or blocked on anything else (a child, a timer, disk, a lock) → `running`,
//!   however quiet: the reconcile pass's quiet rule is not applied to it.
//! - In `poll`/`select`/`epoll` (event-loop programs, most TUIs and coding agents) → its
//!   own reports decide, and failing those the quiet rule (in `Tasks::reconcile`).
//!
//! A program's report of waiting is never undone here: it holds until its screen moves
//! on, it is answered, or it reports running (`watch`).

use std::{collections::HashMap, sync::Arc, time::Duration};

use app::model::{TaskKind, TaskStatus, WaitingReason};
use tokio_util::sync::CancellationToken;

use super::{
    now_text, passes,
    procfs::{self, Detector, Shell, Verdict},
    store::{LiveState, Outcome},
    TaskResult, Tasks,
};
use crate::sync::lock;

/// How often a pass looks: two agreeing passes make a verdict, so a program that starts
/// reading its terminal is `waiting-for-input` within about `2 × EVERY`.
pub const EVERY: Duration = Duration::from_millis(250);

/// What one pass remembers for the next: the raw verdicts (a verdict counts once two
/// passes agree) and what `/proc` said of each pane's processes.
#[derive(Default)]
pub struct Passes {
    detector: Detector,
    last: HashMap<String, Verdict>,
    count: u32,
}

/// Every how many passes the pane processes of tasks no longer live are forgotten.
const FORGET_EVERY: u32 = 40;

/// Runs passes until `shutdown`; returns at once where `/proc` cannot tell (the quiet rule
/// then judges every task).
pub async fn run(tasks: Arc<Tasks>, shutdown: CancellationToken) {
    if !procfs::available() {
        tracing::info!(
            "this system does not show what processes wait for: \
             waiting is judged by quiet output alone"
        );
        return;
    }
    passes::every(EVERY, "waiting", tasks, shutdown, Tasks::detect_waiting).await;
}

impl Tasks {
    /// One waiting pass over every live task; returns how many transitions it made.
    pub fn detect_waiting(&self, passes: &mut Passes) -> TaskResult<usize> {
        let live = self.store().live_states()?;
        let in_flight = lock(&self.in_flight).clone();
        let mut raw = HashMap::with_capacity(live.len());
        let mut settled = HashMap::with_capacity(live.len());
        let mut transitions = 0;
        for task in live.iter().filter(|t| !in_flight.contains(&t.id)) {
            let process = lock(&self.pane_processes).get(&task.id).cloned();
            let shell = match task.kind {
                TaskKind::Terminal => Shell::AtPromptIsReading,
                TaskKind::Command => Shell::LikeAnyProgram,
            };
            let Some(verdict) = process.and_then(|p| passes.detector.look(&task.id, &p, shell))
            else {
                continue;
            };
            raw.insert(task.id.clone(), verdict);
            if passes.last.get(&task.id) != Some(&verdict) {
                continue;
            }
            settled.insert(task.id.clone(), verdict);
            if self.follow_verdict(task, verdict)? {
                transitions += 1;
            }
        }
        passes.last = raw;
        passes
            .detector
            .keep_only(live.iter().map(|t| t.id.as_str()));
        *lock(&self.verdicts) = settled;
        passes.count = passes.count.wrapping_add(1);
        if passes.count.is_multiple_of(FORGET_EVERY) {
            self.forget_ended_panes()?;
        }
        Ok(transitions)
    }

    /// Forgets the pane processes of tasks that are no longer live (a pane listed by tmux
    /// after its task ended). Read afresh: a task starting now is recorded before its
    /// pane's process is noted.
    fn forget_ended_panes(&self) -> TaskResult<()> {
        let live: std::collections::HashSet<String> =
            self.store().live_ids()?.into_iter().collect();
        let in_flight = lock(&self.in_flight).clone();
        lock(&self.pane_processes).retain(|id, _| live.contains(id) || in_flight.contains(id));
        Ok(())
    }

    /// Moves a task as its settled verdict says; whether it moved.
    fn follow_verdict(&self, task: &LiveState, verdict: Verdict) -> TaskResult<bool> {
        use TaskStatus::{Running, WaitingForInput as Waiting};
        use WaitingReason::{Quiet, Terminal};
        let reason = task.waiting_reason;
        let to = match (verdict, task.status, reason) {
            (Verdict::Reading, Running, _) => Waiting,
            // Known better now than "it went quiet".
            (Verdict::Reading, Waiting, Some(Quiet)) => {
                return self.rename_reason(&task.id, Quiet, Terminal);
            }
            // It stopped reading (the person answered), or works silently.
            (Verdict::Busy | Verdict::Unsure, Waiting, Some(Terminal)) => Running,
            (Verdict::Busy, Waiting, Some(Quiet)) => Running,
            _ => return Ok(false),
        };
        // Reading its terminal under a prompt: the prompt says what it waits for.
        let prompt = (to == Waiting)
            .then(|| self.prompt_on_screen(&task.id))
            .flatten();
        let outcome = Outcome {
            at: now_text(),
            waiting_reason: Some(if prompt.is_some() {
                WaitingReason::Prompt
            } else {
                Terminal
            }),
            if_reason_was: reason,
            prompt,
            ..Outcome::default()
        };
        Ok(self
            .transition(&task.id, &[task.status], to, outcome)?
            .is_some())
    }

    fn rename_reason(&self, id: &str, from: WaitingReason, to: WaitingReason) -> TaskResult<bool> {
        self.update(|store| store.set_waiting_reason(id, from, to))?;
        Ok(false)
    }
}
