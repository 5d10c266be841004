//! Watching the screens of live tasks: a prompt that stays put at the bottom of a screen
//! makes its task wait within a second, whatever else it repaints, and a wait ends when
//! the screen moves on, not when a waiting program redraws a spinner, a clock or a footer.
//!
//! Coding agents draw from an event loop, so `/proc` cannot tell that they wait, and they
//! repaint while they do, so neither can their output's timing. Their screens can: each
//! live task has a terminal model (`screen`), fed from where it last read, and a pass every
//! `EVERY` looks at the models whose logs grew.
//!
//! - A prompt (`prompt::find`) counts once it has stayed the same, in the same place, for
//!   `SETTLE`: a screen still scrolling or redrawing it is not asking yet.
//! - A wait that carries a prompt ends once that prompt has been off the screen for `GONE`
//!   (a redraw caught half-way is not an answer).
//! - A wait without one (the program said so, or went quiet) ends when the screen moved on
//!   from how it looked when the wait began: new rows below, or more than `REPAINT_ROWS`
//!   rows changed.
//! - Keys typed in the terminal, input, a reply, or the program reporting `running` end a
//!   wait at once, and the prompt they answered is no reason to wait again until the screen
//!   shows another (`answered`). Only a wait seen in `/proc` is left to `/proc`.

use std::{
    collections::{HashMap, HashSet},
    io,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use app::model::{Prompt, TaskKind, TaskStatus, WaitingReason};
use tokio_util::sync::CancellationToken;

use super::{
    now_text, passes,
    procfs::Verdict,
    prompt::{self, Sighting},
    screen::{PaneSize, Screen},
    store::{LiveState, Outcome},
    TaskResult, Tasks,
};
use crate::sync::lock;

/// How often the screens are looked at.
pub const EVERY: Duration = Duration::from_millis(200);
/// How long a prompt stays the same before it counts.
const SETTLE: Duration = Duration::from_millis(300);
/// How long a prompt is off the screen before its wait ends.
const GONE: Duration = Duration::from_millis(300);
/// The most rows a waiting program may redraw without having moved on.
const REPAINT_ROWS: usize = 3;

/// A live task's terminal model and what its watcher remembers of it.
pub struct Watched {
    pub screen: Screen,
    /// The log length at the last look (a look at a log that did not grow reuses it).
    looked_at: Option<(u64, PaneSize)>,
    /// The screen's last written row at the last look: where the next looks from.
    last_row: u16,
    /// The prompt the screen showed at the last look, and since when.
    seen: Option<(Sighting, Instant)>,
    /// Since when the prompt the record carries has been off the screen.
    gone_since: Option<Instant>,
    /// The prompt (`prompt::find`'s id) the person answered: no reason to wait until a
    /// look shows another, or none (the same question asked again).
    answered: Option<String>,
    /// How many prompts were answered here: part of the ids the API shows, so a reply to
    /// one never answers the next that looks the same.
    asked: u32,
    /// For a wait without a prompt: the last written row when it began, and the screen's
    /// rows at the last look.
    wait_began: Option<(Option<usize>, Vec<String>)>,
}

impl Watched {
    fn new(size: PaneSize) -> Watched {
        Watched {
            screen: Screen::new(size),
            looked_at: None,
            last_row: 0,
            seen: None,
            gone_since: None,
            answered: None,
            asked: 0,
            wait_began: None,
        }
    }

    /// Task `id`'s, made at its pane's size the first time (without a new key each time:
    /// every pass looks up every live task).
    pub fn of<'a>(
        watched: &'a mut HashMap<String, Watched>,
        id: &str,
        size: PaneSize,
    ) -> &'a mut Watched {
        if !watched.contains_key(id) {
            watched.insert(id.to_string(), Watched::new(size));
        }
        watched.get_mut(id).expect("just made")
    }

    /// The prompt on the screen that is not already answered, settled or not.
    fn unanswered(&self) -> Option<&Sighting> {
        let (sighting, _) = self.seen.as_ref()?;
        (self.answered.as_ref() != Some(&sighting.prompt.id)).then_some(sighting)
    }

    /// A sighting as the API shows it: its id counts the prompts answered before it.
    fn shown(&self, sighting: &Sighting) -> Prompt {
        let mut prompt = sighting.prompt.clone();
        prompt.id = format!("{}-{}", prompt.id, self.asked);
        prompt
    }

    /// The unanswered prompt that has stayed put for `SETTLE`.
    fn settled(&self, now: Instant) -> Option<&Sighting> {
        let (_, since) = self.seen.as_ref()?;
        self.unanswered()
            .filter(|_| now.duration_since(*since) >= SETTLE)
    }

    /// Feeds the model what the log gained and looks for a prompt again if the screen
    /// changed (`words`: see `prompt::find`).
    fn refresh(&mut self, log: &Path, size: PaneSize, words: bool, now: Instant) -> io::Result<()> {
        let len = self.screen.log_len(log)?;
        if self.looked_at == Some((len, size)) {
            return Ok(());
        }
        self.screen.resize(size);
        self.screen.catch_up(len)?;
        self.looked_at = Some((len, size));
        let (found, last_row) = prompt::find_near(self.screen.vt(), words, self.last_row);
        self.last_row = last_row.unwrap_or(0);
        self.seen = match (found, self.seen.take()) {
            (Some(found), Some((before, since))) if found.signature() == before.signature() => {
                Some((found, since))
            }
            (Some(found), _) => Some((found, now)),
            (None, _) => None,
        };
        // Another prompt, or none: what was answered is gone.
        if self.seen.as_ref().map(|(s, _)| &s.prompt.id) != self.answered.as_ref() {
            self.answered = None;
        }
        Ok(())
    }

    /// The person answered what the screen shows now (or showed at the last look).
    fn note_answered(&mut self) {
        if let Some((sighting, _)) = &self.seen {
            self.answered = Some(sighting.prompt.id.clone());
            self.asked = self.asked.wrapping_add(1);
        }
        self.gone_since = None;
        self.wait_began = None;
    }
}

/// What a look decided for one task.
enum Step {
    /// A running task's screen asks: it waits, with its prompt.
    Wait(Prompt),
    /// A waiting task's screen asks (anew): it carries this prompt.
    Show(Prompt),
    /// Its wait is over (answered, or the screen moved on).
    Run(Option<WaitingReason>),
}

/// Runs passes until `shutdown`.
pub async fn run(tasks: Arc<Tasks>, shutdown: CancellationToken) {
    let pass = |tasks: &Tasks, _: &mut ()| tasks.watch_screens();
    passes::every(EVERY, "screen", tasks, shutdown, pass).await;
}

impl Tasks {
    /// One look at every live task's screen; returns how many tasks it changed.
    pub fn watch_screens(&self) -> TaskResult<usize> {
        let live = self.store().live_states()?;
        let in_flight = lock(&self.in_flight).clone();
        let typed = std::mem::take(&mut *lock(&self.typed));
        let verdicts = lock(&self.verdicts).clone();
        let now = Instant::now();
        let mut steps = Vec::new();
        {
            let mut watched = lock(&self.watched);
            for task in live.iter().filter(|t| !in_flight.contains(&t.id)) {
                let size = self.pane_size(&task.id);
                let entry = Watched::of(&mut watched, &task.id, size);
                let look = Look {
                    task,
                    now,
                    typed: typed.contains(&task.id),
                    verdict: verdicts.get(&task.id).copied(),
                };
                match self.look(entry, size, &look) {
                    Ok(Some(step)) => steps.push((task, step)),
                    Ok(None) => {}
                    Err(e) => tracing::debug!(task = %task.id, "reading its screen: {e:?}"),
                }
            }
            let live: HashSet<&str> = live.iter().map(|t| t.id.as_str()).collect();
            watched.retain(|id, _| live.contains(id.as_str()) || in_flight.contains(id));
        }
        let mut changed = 0;
        for (task, step) in steps {
            if self.take_step(task, step)? {
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Reads what the task's log gained and decides what it means.
    fn look(&self, watched: &mut Watched, size: PaneSize, look: &Look) -> TaskResult<Option<Step>> {
        let task = look.task;
        if look.typed {
            // What the keys answered is what the screen showed before them.
            watched.note_answered();
        }
        let words = task.kind == TaskKind::Command;
        watched
            .refresh(&self.output_path(&task.id), size, words, look.now)
            .map_err(super::TaskError::reading)?;
        Ok(match task.status {
            TaskStatus::Running => {
                watched.gone_since = None;
                watched.wait_began = None;
                let settled = watched.settled(look.now).filter(|s| look.allows(s));
                settled.map(|s| Step::Wait(watched.shown(s)))
            }
            TaskStatus::WaitingForInput => self.look_at_wait(watched, look),
            _ => None,
        })
    }

    /// Whether a waiting task still waits, and for which prompt.
    fn look_at_wait(&self, watched: &mut Watched, look: &Look) -> Option<Step> {
        let task = look.task;
        let reason = task.waiting_reason;
        if look.typed && reason != Some(WaitingReason::Terminal) {
            return Some(Step::Run(reason));
        }
        let settled = watched.settled(look.now).filter(|s| look.allows(s));
        if let Some(settled) = settled.map(|s| watched.shown(s)) {
            watched.gone_since = None;
            return (task.prompt.as_deref() != Some(settled.id.as_str()))
                .then_some(Step::Show(settled));
        }
        if task.prompt.is_some() {
            let still_shown = watched
                .unanswered()
                .is_some_and(|s| task.prompt.as_deref() == Some(watched.shown(s).id.as_str()));
            if still_shown {
                watched.gone_since = None;
                return None;
            }
            let since = *watched.gone_since.get_or_insert(look.now);
            return (look.now.duration_since(since) >= GONE).then_some(Step::Run(reason));
        }
        if !matches!(reason, Some(WaitingReason::Reported | WaitingReason::Quiet)) {
            return None;
        }
        let rows = watched.screen.rows();
        match &mut watched.wait_began {
            None => {
                watched.wait_began = Some((last_written(&rows), rows));
                None
            }
            Some((last_at_start, before)) => {
                let moved = moved_on(*last_at_start, before, &rows);
                *before = rows;
                moved.then_some(Step::Run(reason))
            }
        }
    }

    fn take_step(&self, task: &LiveState, step: Step) -> TaskResult<bool> {
        use TaskStatus::{Running, WaitingForInput as Waiting};
        match step {
            Step::Wait(prompt) => {
                let outcome = Outcome {
                    at: now_text(),
                    waiting_reason: Some(WaitingReason::Prompt),
                    prompt: Some(prompt),
                    ..Outcome::default()
                };
                Ok(self
                    .transition(&task.id, &[Running], Waiting, outcome)?
                    .is_some())
            }
            Step::Show(prompt) => Ok(self
                .update(|store| store.show_prompt(&task.id, &prompt))?
                .is_some()),
            Step::Run(reason) => {
                let outcome = Outcome {
                    at: now_text(),
                    if_reason_was: reason,
                    ..Outcome::default()
                };
                Ok(self
                    .transition(&task.id, &[Waiting], Running, outcome)?
                    .is_some())
            }
        }
    }

    /// The person typed into the task's terminal: the next look ends its wait.
    pub fn note_keys(&self, id: &str) {
        lock(&self.typed).insert(id.to_string());
    }

    /// The prompt on the task's screen was answered (a reply, input, or the program said it
    /// runs): it is no reason to wait again.
    pub(super) fn note_answered(&self, id: &str) {
        if let Some(watched) = lock(&self.watched).get_mut(id) {
            watched.note_answered();
        }
    }

    /// The prompt the task's screen shows now, answered or not yet settled aside.
    pub(super) fn prompt_on_screen(&self, id: &str) -> Option<Prompt> {
        let watched = lock(&self.watched);
        let entry = watched.get(id)?;
        entry.unanswered().map(|s| entry.shown(s))
    }

    /// The unanswered prompt the screen shows now, read up to the end of the log, if it is
    /// `prompt_id`: what a reply answers. It is marked answered at once, under the lock, so
    /// that of two replies at the same moment only one types (`undo_answering` takes that
    /// back if its keys could not be typed). Keys typed in the terminal since the last look
    /// have answered it already.
    pub(super) fn prompt_to_answer(
        &self,
        task_id: &str,
        kind: TaskKind,
        prompt_id: &str,
    ) -> TaskResult<Option<Answering>> {
        let size = self.pane_size(task_id);
        let mut watched = lock(&self.watched);
        let entry = Watched::of(&mut watched, task_id, size);
        let words = kind == TaskKind::Command;
        entry
            .refresh(&self.output_path(task_id), size, words, Instant::now())
            .map_err(super::TaskError::reading)?;
        if lock(&self.typed).contains(task_id) {
            return Ok(None);
        }
        let Some(sighting) = entry
            .unanswered()
            .filter(|s| entry.shown(s).id == prompt_id)
            .cloned()
        else {
            return Ok(None);
        };
        let before = (entry.answered.clone(), entry.asked);
        entry.note_answered();
        Ok(Some(Answering { sighting, before }))
    }

    /// A reply's keys could not be typed: its prompt is unanswered again.
    pub(super) fn undo_answering(&self, task_id: &str, answering: Answering) {
        if let Some(entry) = lock(&self.watched).get_mut(task_id) {
            (entry.answered, entry.asked) = answering.before;
        }
    }
}

/// A prompt a reply is answering, and what its watcher knew before.
pub(super) struct Answering {
    pub sighting: Sighting,
    before: (Option<String>, u32),
}

/// What one look knows of a task besides its screen.
struct Look<'a> {
    task: &'a LiveState,
    now: Instant,
    /// Keys were typed into its terminal since the last look.
    typed: bool,
    /// What `/proc` says its program does, where it says.
    verdict: Option<Verdict>,
}

impl Look<'_> {
    /// Whether `sighting` may count: never while `/proc` sees the program at work, and a
    /// question wanting words (the weakest shape: `Building:` and a pause look the same)
    /// only while `/proc` sees it reading its terminal.
    fn allows(&self, sighting: &Sighting) -> bool {
        match self.verdict {
            Some(Verdict::Busy) => false,
            Some(Verdict::Reading) => true,
            _ => !sighting.wants_words(),
        }
    }
}

/// Whether a waiting screen moved on: rows written below the last one written when the
/// wait began, or more rows changed since the last look than a repaint of a spinner, a
/// clock and a footer (scrolling moves every row at once).
fn moved_on(last_at_start: Option<usize>, before: &[String], now: &[String]) -> bool {
    if last_written(now) > last_at_start {
        return true;
    }
    let changed = before.iter().zip(now).filter(|(a, b)| a != b).count();
    changed > REPAINT_ROWS
}

fn last_written(rows: &[String]) -> Option<usize> {
    rows.iter().rposition(|r| !r.trim().is_empty())
}
