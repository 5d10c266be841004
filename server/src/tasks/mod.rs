//! Tasks: the one place every change goes through. Each change updates the store and
//! publishes its event while holding the store lock, so the order of events is the order of
//! the writes, and `GET /api/tasks` can name the newest event its snapshot includes.

use std::{
    collections::{HashMap, HashSet},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use app::model::{
    event, Deleted, Reply, ReportedState, Task, TaskKind, TaskList, TaskStatus, WaitingReason,
};
use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng;
use tokio::sync::Notify;

use crate::{
    events::{broker::Broker, event::to_json},
    sync::lock,
};

use self::{
    procfs::{PaneProcess, Verdict},
    runtime::{TaskFiles, Tmux},
    store::{Outcome, Store},
};

pub mod output;
mod passes;
pub mod procfs;
pub mod prompt;
pub mod reconciler;
pub mod runtime;
pub mod screen;
pub mod store;
pub mod tails;
pub mod view;
pub mod waiting;
pub mod watch;
pub mod workdirs;

pub const MAX_NAME_CHARS: usize = 100;
/// The longest message a program may leave on its task.
pub const MAX_MESSAGE_CHARS: usize = 500;

#[derive(Debug, PartialEq)]
pub enum TaskError {
    NotFound,
    /// The request is well-formed but the task is in the wrong state for it.
    Conflict(String),
    Invalid(String),
    /// Well-formed JSON whose values are not acceptable (`422`).
    Unprocessable(String),
    /// A part it needs (tmux) could not do it now; nothing changed.
    Unavailable(String),
    Internal(String),
}

impl TaskError {
    /// A task's log or screen could not be read.
    pub(crate) fn reading(e: std::io::Error) -> TaskError {
        TaskError::Internal(format!("reading output: {e}"))
    }
}

impl From<rusqlite::Error> for TaskError {
    fn from(e: rusqlite::Error) -> Self {
        TaskError::Internal(format!("database: {e}"))
    }
}

pub type TaskResult<T> = Result<T, TaskError>;

pub struct NewCommand {
    pub command: String,
    pub name: Option<String>,
    pub workdir: Option<String>,
    pub prompt: Option<String>,
    /// Run it in a new git worktree (instead of `workdir`).
    pub workspace: Option<app::model::NewWorkspace>,
}

/// Every task of this node. Where one of its locks is taken while another is held, the
/// order is `store` → the broker's ring (in `publish`, which also hands the event to the
/// broker's tap), and `watched` → `pane_sizes`, `typed`. `watched` is held while a pass
/// reads the logs of every live task (files, never a process, never the store): a reply
/// waits for a pass at most. The other mutexes here are leaves: nothing is locked, and no
/// process or file is waited for, while one is held.
pub struct Tasks {
    store: Mutex<Store>,
    pub runtime: Tmux,
    pub broker: Arc<Broker>,
    data_dir: PathBuf,
    idle_waiting: Duration,
    /// The node whose tmux runs these tasks (`TASKWIRE_NODE`).
    pub node: String,
    /// Wakes the reconciler for a pass now (a task was created, a pane died).
    pub reconcile_now: Notify,
    /// The terminal models of live tasks, and what the screen watcher remembers of each
    /// (`watch`); the tails are read from the same models (`output`).
    watched: Mutex<HashMap<String, watch::Watched>>,
    /// Tasks whose terminal was typed into since the screen watcher last looked.
    typed: Mutex<HashSet<String>>,
    /// Panes' sizes as tmux last reported them (viewers of a terminal may resize a pane).
    pane_sizes: Mutex<HashMap<String, screen::PaneSize>>,
    /// Live panes' first processes and ttys, where waiting is read from `/proc`.
    pane_processes: Mutex<HashMap<String, PaneProcess>>,
    /// What `/proc` said of each live task on the last two waiting passes alike (a task
    /// not in it is judged by its output alone).
    verdicts: Mutex<HashMap<String, Verdict>>,
    /// This server's address as tasks reach it (`TASKWIRE_URL` in their environment).
    base_url: Mutex<String>,
    /// Tasks whose session is being started or killed: the reconciler leaves them alone
    /// (a session not there yet, or just gone, is not one that vanished).
    in_flight: Mutex<HashSet<String>>,
}

impl Tasks {
    pub fn new(
        store: Store,
        runtime: Tmux,
        broker: Arc<Broker>,
        data_dir: PathBuf,
        idle_waiting: Duration,
        node: String,
    ) -> Tasks {
        if let Err(e) = store.adopt(&node) {
            tracing::warn!("recording this node on older tasks: {e}");
        }
        Tasks {
            store: Mutex::new(store),
            runtime,
            broker,
            data_dir,
            idle_waiting,
            node,
            reconcile_now: Notify::new(),
            watched: Mutex::default(),
            typed: Mutex::default(),
            pane_sizes: Mutex::default(),
            pane_processes: Mutex::default(),
            verdicts: Mutex::default(),
            in_flight: Mutex::default(),
            base_url: Mutex::new("http://127.0.0.1:3000".into()),
        }
    }

    /// The address tasks reach this server at, once it listens.
    pub fn set_base_url(&self, url: String) {
        *lock(&self.base_url) = url;
    }

    pub fn base_url(&self) -> String {
        lock(&self.base_url).clone()
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    pub fn output_path(&self, id: &str) -> PathBuf {
        self.task_dir(id).join("output.log")
    }

    fn exit_path(&self, id: &str) -> PathBuf {
        self.task_dir(id).join("exit")
    }

    fn task_files(&self, id: &str) -> TaskFiles {
        TaskFiles {
            log: self.output_path(id),
            exit: self.exit_path(id),
            exit_pending: self.task_dir(id).join("exit.new"),
            env: self.task_dir(id).join("env"),
        }
    }

    /// The exit status the task's wrapper wrote when its command ended.
    fn recorded_exit(&self, id: &str) -> Option<i32> {
        // Empty until the command ends: the file is created with the task.
        std::fs::read_to_string(self.exit_path(id))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Every task, newest first, with the id of the newest event the list includes.
    pub fn list(&self) -> TaskResult<TaskList> {
        let store = self.store();
        let tasks = store.list()?;
        let event_id = self.broker.newest_id();
        drop(store);
        let tasks = tasks
            .into_iter()
            .map(|t| self.with_observed_activity(t))
            .collect();
        Ok(TaskList { tasks, event_id })
    }

    pub fn get(&self, id: &str) -> TaskResult<Task> {
        let task = self.store().get(id)?.ok_or(TaskError::NotFound)?;
        Ok(self.with_observed_activity(task))
    }

    pub fn create_command(self: &Arc<Self>, new: NewCommand) -> TaskResult<Task> {
        let command = new.command.trim().to_string();
        if command.is_empty() {
            return Err(TaskError::Invalid("`command` must not be empty".into()));
        }
        let name = match new.name.map(|n| n.trim().to_string()) {
            Some(name) if !name.is_empty() => validate_name(&name)?,
            _ => default_name(&command),
        };
        let workdir = match new.workspace {
            Some(_) if new.workdir.as_deref().is_some_and(|w| !w.trim().is_empty()) => {
                return Err(TaskError::Unprocessable(
                    "give `workdir` or `workspace`, not both".into(),
                ))
            }
            Some(workspace) => workdirs::Workdir::NewWorktree(workspace),
            None => workdirs::Workdir::Dir(resolve_workdir(new.workdir.as_deref())?),
        };
        let task = self.start(TaskKind::Command, name, command, workdir)?;
        if let (Some(prompt), true) = (new.prompt.filter(|p| !p.is_empty()), task.status.is_live())
        {
            self.type_prompt_when_ready(task.id.clone(), prompt);
        }
        Ok(task)
    }

    pub fn create_terminal(&self, workdir: Option<&str>) -> TaskResult<Task> {
        let workdir = resolve_workdir(workdir)?;
        self.start(
            TaskKind::Terminal,
            "terminal".into(),
            format!("exec {} -l", user_shell()),
            workdirs::Workdir::Dir(workdir),
        )
    }

    /// Records the task, then starts its tmux session, so that no session ever runs without
    /// a record. The record is published once the outcome is known: `running` if tmux took
    /// it, `error` with the reason if not. Never `running` for a task that did not start.
    fn start(
        &self,
        kind: TaskKind,
        name: String,
        command: String,
        workdir: workdirs::Workdir,
    ) -> TaskResult<Task> {
        let id = self.new_task_dir()?;
        let started = match self.start_workdir(&id, &name, workdir) {
            Ok(started) => started,
            Err(e) => {
                let _ = std::fs::remove_dir_all(self.task_dir(&id));
                return Err(e);
            }
        };
        let workdir = started.dir;
        let now = now_text();
        let mut task = Task {
            id: id.clone(),
            name,
            kind,
            command,
            workdir: workdir.to_string_lossy().into_owned(),
            status: TaskStatus::Running,
            exit_code: None,
            created_at: now.clone(),
            finished_at: None,
            last_activity_at: now,
            error: None,
            message: None,
            seen: false,
            waiting_reason: None,
            node: self.node.clone(),
            prompt: None,
            workspace: started.workspace,
            changes: started.changes,
        };
        let token = new_secret();
        let env = [
            ("TASKWIRE_URL", self.base_url()),
            ("TASKWIRE_TASK_ID", id.clone()),
            ("TASKWIRE_TASK_TOKEN", token.clone()),
        ];
        // Until its session exists, the reconciler must not take the task for vanished.
        lock(&self.in_flight).insert(id.clone());
        let inserted = self
            .store()
            .insert(&task, &token, started.git_base.as_deref());
        if let Err(e) = inserted {
            lock(&self.in_flight).remove(&id);
            let _ = std::fs::remove_dir_all(self.task_dir(&id));
            return Err(e.into());
        }
        let started = self.runtime.start(
            &id,
            &user_shell(),
            &task.command,
            &workdir,
            &env,
            &self.task_files(&id),
        );
        if let Ok(Some(process)) = &started {
            lock(&self.pane_processes).insert(id.clone(), process.clone());
        }
        let store = self.store();
        if let Err(e) = started {
            tracing::warn!(task = %id, "could not start: {e}");
            let outcome = Outcome {
                error: Some(e.to_string()),
                at: now_text(),
                ..Outcome::default()
            };
            task = store
                .transition(&id, TaskStatus::Running, TaskStatus::Error, &outcome)?
                .unwrap_or(task);
        }
        self.broker.publish(event::TASK_CREATED, to_json(&task));
        drop(store);
        lock(&self.in_flight).remove(&id);
        // A command that exits at once may have died before its record was published.
        self.reconcile_now.notify_one();
        Ok(task)
    }

    /// A new task id and its directory, created exclusively (private to the user), with an
    /// empty log and exit file: an id that is taken is never reused, so no other task's
    /// log is ever truncated.
    fn new_task_dir(&self) -> TaskResult<String> {
        let internal = |e: std::io::Error| TaskError::Internal(format!("task directory: {e}"));
        loop {
            let id = new_task_id();
            match std::fs::DirBuilder::new()
                .mode(0o700)
                .create(self.task_dir(&id))
            {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(internal(e)),
            }
            let files = self.task_files(&id);
            for file in [files.log, files.exit, files.exit_pending, files.env] {
                private_file(&file).map_err(internal)?;
            }
            return Ok(id);
        }
    }

    fn task_dir(&self, id: &str) -> PathBuf {
        self.data_dir.join("tasks").join(id)
    }

    /// Moves a task from one of `from` to `to` and publishes `task.status`; `None` when it
    /// was not in `from` any more (another path noticed first).
    pub fn transition(
        &self,
        id: &str,
        from: &[TaskStatus],
        to: TaskStatus,
        outcome: Outcome,
    ) -> TaskResult<Option<Task>> {
        let store = self.store();
        for &status in from {
            if let Some(task) = store.transition(id, status, to, &outcome)? {
                self.broker.publish(event::TASK_STATUS, to_json(&task));
                if to.is_terminal() {
                    lock(&self.pane_processes).remove(id);
                }
                return Ok(Some(task));
            }
        }
        Ok(None)
    }

    pub fn rename(&self, id: &str, name: &str) -> TaskResult<Task> {
        let name = validate_name(name.trim())?;
        if name.is_empty() {
            return Err(TaskError::Invalid("`name` must not be empty".into()));
        }
        let task = self
            .update(|store| store.rename(id, &name))?
            .ok_or(TaskError::NotFound)?;
        Ok(self.with_observed_activity(task))
    }

    /// Makes a change other than a status transition and publishes `task.updated` with the
    /// task as it left it, under the store lock (so the order of events is the order of the
    /// writes); `None` when the change did not apply.
    fn update(
        &self,
        change: impl FnOnce(&Store) -> rusqlite::Result<Option<Task>>,
    ) -> TaskResult<Option<Task>> {
        let store = self.store();
        let task = change(&store)?;
        if let Some(task) = &task {
            self.broker.publish(event::TASK_UPDATED, to_json(task));
        }
        Ok(task)
    }

    /// Types into a live task. Input counts as activity, so a waiting task runs again.
    pub fn input(&self, id: &str, text: &str, submit: bool) -> TaskResult<Task> {
        self.live_task(id)?;
        self.runtime
            .send_input(id, text, submit)
            .map_err(|e| TaskError::Conflict(format!("could not type into the task: {e}")))?;
        self.note_answered(id);
        self.answered(id)
    }

    /// The task, if it is live (`409` if not).
    fn live_task(&self, id: &str) -> TaskResult<Task> {
        let task = self.get(id)?;
        if !task.status.is_live() {
            return Err(TaskError::Conflict(format!(
                "task is {}",
                task.status.as_str()
            )));
        }
        Ok(task)
    }

    /// Answers the prompt on a live task's screen: types what picks `reply.choice` (or the
    /// words of `reply.text`), only if the screen still shows the prompt `reply.prompt` and
    /// nobody answered it yet; a stale tap types nothing.
    pub fn reply(&self, id: &str, reply: &Reply) -> TaskResult<Task> {
        if reply.choice.is_some() == reply.text.is_some() {
            return Err(TaskError::Unprocessable(
                "send one of `choice` and `text`".into(),
            ));
        }
        let task = self.live_task(id)?;
        let answering = self
            .prompt_to_answer(id, task.kind, &reply.prompt)?
            .ok_or_else(|| TaskError::Conflict("the prompt has changed".into()))?;
        let typed = answering
            .sighting
            .answer(reply.choice.as_deref(), reply.text.as_deref())
            .map_err(|e| TaskError::Unprocessable(e.to_string()))
            .and_then(|answer| {
                match answer {
                    prompt::Answer::Keys(keys) => self.runtime.send_keys(id, &keys),
                    prompt::Answer::Words(words) => self.runtime.send_input(id, &words, true),
                }
                .map_err(|e| TaskError::Conflict(format!("could not type into the task: {e}")))
            });
        if let Err(e) = typed {
            self.undo_answering(id, answering);
            return Err(e);
        }
        self.answered(id)
    }

    /// The person answered (and the watcher knows its prompt is answered): the task runs
    /// again.
    fn answered(&self, id: &str) -> TaskResult<Task> {
        let now = now_text();
        self.store().touch_activity(id, &now)?;
        let running = Outcome {
            at: now,
            ..Outcome::default()
        };
        match self.transition(
            id,
            &[TaskStatus::WaitingForInput],
            TaskStatus::Running,
            running,
        )? {
            Some(task) => Ok(task),
            None => self.get(id),
        }
    }

    /// Stops a live task: its session is killed, and only once it is gone is the task
    /// recorded as `killed` (a kill that failed leaves it live, and says so).
    pub fn kill(&self, id: &str) -> TaskResult<Task> {
        let task = self.get(id)?;
        if !task.status.is_live() {
            return Err(TaskError::Conflict(format!(
                "task is already {}",
                task.status.as_str()
            )));
        }
        lock(&self.in_flight).insert(id.to_string());
        let killed = self.kill_session(id);
        let outcome = Outcome {
            at: now_text(),
            ..Outcome::default()
        };
        let live = [TaskStatus::Running, TaskStatus::WaitingForInput];
        let recorded =
            killed.and_then(|()| self.transition(id, &live, TaskStatus::Killed, outcome));
        lock(&self.in_flight).remove(id);
        match recorded? {
            Some(task) => Ok(task),
            None => {
                let task = self.get(id)?;
                Err(TaskError::Conflict(format!(
                    "task is already {}",
                    task.status.as_str()
                )))
            }
        }
    }

    /// The task's own token (what its program reports its state with).
    pub fn task_token(&self, id: &str) -> TaskResult<String> {
        self.store().task_token(id)?.ok_or(TaskError::NotFound)
    }

    /// The program says it waits for the person, or runs again: the move is made at once
    /// (`task.status`), or, when it is already there, the message is updated
    /// (`task.updated`).
    pub fn report_state(
        &self,
        id: &str,
        state: ReportedState,
        message: Option<String>,
    ) -> TaskResult<Task> {
        if message
            .as_ref()
            .is_some_and(|m| m.chars().count() > MAX_MESSAGE_CHARS)
        {
            return Err(TaskError::Unprocessable(format!(
                "`message` is over {MAX_MESSAGE_CHARS} characters"
            )));
        }
        let to = match state {
            ReportedState::WaitingForInput => TaskStatus::WaitingForInput,
            ReportedState::Running => TaskStatus::Running,
        };
        let from = match to {
            TaskStatus::WaitingForInput => TaskStatus::Running,
            _ => TaskStatus::WaitingForInput,
        };
        let outcome = Outcome {
            at: now_text(),
            message: message.clone(),
            waiting_reason: Some(WaitingReason::Reported),
            ..Outcome::default()
        };
        self.store().note_reporting(id)?;
        if to == TaskStatus::Running {
            // The program's word wins over what its screen shows.
            self.note_answered(id);
        }
        if let Some(task) = self.transition(id, &[from], to, outcome)? {
            return Ok(task);
        }
        if let Some(task) = self.update(|store| store.set_message(id, to, message.as_deref()))? {
            return Ok(task);
        }
        let task = self.get(id)?;
        Err(TaskError::Conflict(format!(
            "task is {}",
            task.status.as_str()
        )))
    }

    /// The person has looked at a finished task: it leaves the default list.
    pub fn mark_seen(&self, id: &str) -> TaskResult<Task> {
        match self.update(|store| store.mark_seen(id))? {
            Some(task) => Ok(task),
            None => self.store().get(id)?.ok_or(TaskError::NotFound),
        }
    }

    /// Kills the task's session and makes sure it is gone.
    fn kill_session(&self, id: &str) -> TaskResult<()> {
        match self.runtime.kill(id) {
            Err(e) if self.runtime.has_session(id).unwrap_or(true) => Err(TaskError::Unavailable(
                format!("could not stop the task (it is still running): {e}"),
            )),
            _ => Ok(()),
        }
    }

    /// Forgets a terminal task and its output.
    pub fn delete(&self, id: &str) -> TaskResult<()> {
        let store = self.store();
        let task = store.get(id)?.ok_or(TaskError::NotFound)?;
        if task.status.is_live() {
            return Err(TaskError::Conflict(
                "task is still live; kill it first".into(),
            ));
        }
        // Its worktree may hold work nobody merged: forgetting the task would leave it
        // behind, nameless, and removing it could lose that work. The person decides.
        if let Some(workspace) = &task.workspace {
            return Err(TaskError::Conflict(format!(
                "its worktree ({}, branch {}) is still there: merge or discard it first",
                workspace.path, workspace.branch
            )));
        }
        store.delete(id)?;
        self.broker.publish(
            event::TASK_DELETED,
            to_json(&Deleted { id: id.to_string() }),
        );
        drop(store);
        let _ = std::fs::remove_dir_all(self.task_dir(id));
        Ok(())
    }

    /// The later of the recorded activity (input, transitions) and the output file's mtime.
    fn observed_activity(&self, task: &Task) -> SystemTime {
        let recorded = parse_time(&task.last_activity_at).unwrap_or(SystemTime::UNIX_EPOCH);
        let written = std::fs::metadata(self.output_path(&task.id))
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        recorded.max(written)
    }

    fn with_observed_activity(&self, mut task: Task) -> Task {
        if task.status.is_live() {
            task.last_activity_at = time_text(self.observed_activity(&task));
        }
        task
    }

    /// Types the prompt once the program looks ready: it has printed something and then
    /// gone quiet for a moment (or, failing that, after a few seconds).
    fn type_prompt_when_ready(self: &Arc<Self>, id: String, prompt: String) {
        let tasks = self.clone();
        tokio::task::spawn_blocking(move || {
            let log = tasks.output_path(&id);
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let settle = Duration::from_millis(800);
            let mut last_len = 0;
            let mut since_change = std::time::Instant::now();
            while std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
                let len = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
                if len != last_len {
                    last_len = len;
                    since_change = std::time::Instant::now();
                } else if len > 0 && since_change.elapsed() >= settle {
                    break;
                }
            }
            if let Err(e) = tasks.runtime.send_input(&id, &prompt, true) {
                tracing::warn!(task = %id, "typing the prompt: {e}");
                tasks.tell(&id, &format!("the prompt could not be typed: {e}"));
            }
        });
    }

    /// Leaves a message on a live task for the person (what went wrong on our side).
    fn tell(&self, id: &str, message: &str) {
        // Whichever live status it is in (a failed write is passed over: this is a courtesy).
        let _ = self.update(|store| {
            Ok([TaskStatus::Running, TaskStatus::WaitingForInput]
                .into_iter()
                .find_map(|status| store.set_message(id, status, Some(message)).ok().flatten()))
        });
    }
}

/// The user's shell runs the commands, so their aliases and syntax work as in a terminal.
fn user_shell() -> String {
    std::env::var("SHELL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "/bin/sh".into())
}

fn validate_name(name: &str) -> TaskResult<String> {
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(TaskError::Invalid(format!(
            "`name` must be at most {MAX_NAME_CHARS} characters"
        )));
    }
    Ok(name.to_string())
}

fn default_name(command: &str) -> String {
    let first_line = command.lines().next().unwrap_or(command);
    let mut name: String = first_line.chars().take(60).collect();
    if name.len() < first_line.len() {
        name.push('…');
    }
    name
}

/// The task's working directory: the one asked for, which must exist, or the server's own.
fn resolve_workdir(workdir: Option<&str>) -> TaskResult<PathBuf> {
    match workdir.map(str::trim).filter(|w| !w.is_empty()) {
        None => std::env::current_dir().map_err(|e| TaskError::Internal(e.to_string())),
        Some(dir) => {
            let path = PathBuf::from(dir);
            if path.is_dir() {
                Ok(path.canonicalize().unwrap_or(path))
            } else {
                Err(TaskError::Invalid(format!(
                    "`workdir` {dir:?} is not an existing directory"
                )))
            }
        }
    }
}

/// A new secret: 32 random hex digits (task tokens, the API token, session ids).
pub fn new_secret() -> String {
    let mut rng = rand::rng();
    (0..32)
        .map(|_| format!("{:x}", rng.random_range(0..16u8)))
        .collect()
}

/// Eight lowercase letters and digits: short enough to type, plenty for one user's tasks.
fn new_task_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..8)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

pub fn now_text() -> String {
    time_text(SystemTime::now())
}

/// A time as the API writes it: RFC 3339, UTC, milliseconds.
pub fn time_text(at: SystemTime) -> String {
    DateTime::<Utc>::from(at).to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(crate) fn parse_time(text: &str) -> Option<SystemTime> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(SystemTime::from)
}

/// An empty file only its owner may read (logs hold commands, prompts and output).
fn private_file(path: &std::path::Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
}
