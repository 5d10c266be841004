//! Wire types shared by the server and the browser: the JSON of DESIGN.md.

use reactive_stores::{Patch, Store};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskStatus {
    Running,
    WaitingForInput,
    Completed,
    Failed,
    Killed,
    Error,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 6] = [
        TaskStatus::Running,
        TaskStatus::WaitingForInput,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Killed,
        TaskStatus::Error,
    ];

    /// A terminal task never changes status again.
    pub fn is_terminal(self) -> bool {
        !self.is_live()
    }

    /// Live tasks still have a tmux session that takes input.
    pub fn is_live(self) -> bool {
        matches!(self, TaskStatus::Running | TaskStatus::WaitingForInput)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Running => "running",
            TaskStatus::WaitingForInput => "waiting-for-input",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Killed => "killed",
            TaskStatus::Error => "error",
        }
    }

    pub fn parse(text: &str) -> Option<TaskStatus> {
        TaskStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    Command,
    Terminal,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Command => "command",
            TaskKind::Terminal => "terminal",
        }
    }

    pub fn parse(text: &str) -> Option<TaskKind> {
        match text {
            "command" => Some(TaskKind::Command),
            "terminal" => Some(TaskKind::Terminal),
            _ => None,
        }
    }
}

/// One task as the API and the events carry it. Timestamps are RFC 3339 UTC with
/// milliseconds, kept as text so the browser needs no date library.
///
/// `Store` and `Patch` let the browser hold tasks in a keyed store and patch a task field
/// by field, so only what changed re-renders.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Store, Patch)]
pub struct Task {
    pub id: String,
    pub name: String,
    #[patch(|this, new| *this = new)]
    pub kind: TaskKind,
    pub command: String,
    pub workdir: String,
    #[patch(|this, new| *this = new)]
    pub status: TaskStatus,
    pub exit_code: Option<i32>,
    pub created_at: String,
    pub finished_at: Option<String>,
    pub last_activity_at: String,
    pub error: Option<String>,
    /// What the program last said about its state (`POST /api/tasks/{id}/state`), kept
    /// until it runs again.
    #[serde(default)]
    pub message: Option<String>,
    /// A finished task the person has looked at (opened it, or dismissed it from the list).
    /// The default list shows live tasks and finished ones not seen yet.
    #[serde(default)]
    pub seen: bool,
    /// Why a `waiting-for-input` task counts as waiting (null otherwise).
    #[serde(default)]
    #[patch(|this, new| *this = new)]
    pub waiting_reason: Option<WaitingReason>,
    /// The taskwire node whose tmux runs the task.
    #[serde(default)]
    pub node: String,
    /// The prompt its screen shows while it waits (null otherwise).
    #[serde(default)]
    #[patch(|this, new| *this = new)]
    pub prompt: Option<Prompt>,
    /// The git worktree the task runs in, if it was started in a new one.
    #[serde(default)]
    #[patch(|this, new| *this = new)]
    pub workspace: Option<Workspace>,
    /// What the task changed in its git workdir against the commit it started from (null
    /// when its workdir is not in a git repository).
    #[serde(default)]
    #[patch(|this, new| *this = new)]
    pub changes: Option<Changes>,
}

/// A task's git worktree: made from `repo` at `base` (`base_commit`), on its own `branch`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(not(feature = "hydrate"), derive(Deserialize))]
pub struct Workspace {
    pub repo: String,
    pub base: String,
    pub base_commit: String,
    pub branch: String,
    pub path: String,
}

/// Counts of what changed: files, and lines added and removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(not(feature = "hydrate"), derive(Deserialize))]
pub struct Changes {
    pub files: u32,
    pub insertions: u32,
    pub deletions: u32,
}

// In the browser, every task carries these two, and each derived decoder costs the list's
// first load about a kilobyte of wasm: there they are read from a JSON value, whose decoder
// the app has already.
#[cfg(feature = "hydrate")]
impl<'de> Deserialize<'de> for Workspace {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let text = |key: &str| v[key].as_str().unwrap_or_default().to_string();
        Ok(Workspace {
            repo: text("repo"),
            base: text("base"),
            base_commit: text("base_commit"),
            branch: text("branch"),
            path: text("path"),
        })
    }
}

#[cfg(feature = "hydrate")]
impl<'de> Deserialize<'de> for Changes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let count = |key: &str| v[key].as_u64().unwrap_or(0) as u32;
        Ok(Changes {
            files: count("files"),
            insertions: count("insertions"),
            deletions: count("deletions"),
        })
    }
}

/// `"workspace"` of `POST /api/tasks`: run the task in a new worktree of `repo`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewWorkspace {
    pub repo: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Untracked files of the repo to copy in (`.env`), relative to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copy: Vec<String>,
}

/// `GET /api/tasks/{id}/diff`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diff {
    pub base_commit: String,
    pub files: Vec<FileDiff>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileStatus {
    Added,
    Modified,
    Deleted,
    Renamed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDiff {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_path: Option<String>,
    pub status: FileStatus,
    pub insertions: u32,
    pub deletions: u32,
    pub binary: bool,
    /// Too large to show: its hunks are left out, and it says so.
    #[serde(default)]
    pub too_large: bool,
    pub hunks: Vec<Hunk>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hunk {
    pub header: String,
    pub lines: Vec<DiffLine>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LineKind {
    Context,
    Add,
    Del,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffLine {
    pub kind: LineKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<u32>,
    pub text: String,
}

/// A prompt on a task's screen: a question and the choices that answer it (none for a
/// question that wants words). `id` changes whenever the question or its choices do, so a
/// reply names the prompt it answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    pub id: String,
    pub question: String,
    pub choices: Vec<Choice>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    pub id: String,
    pub label: String,
}

/// The body of `POST /api/tasks/{id}/reply`: one of `choice` and `text`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// Why a task counts as `waiting-for-input`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WaitingReason {
    /// Its program is blocked reading its terminal (seen in `/proc`).
    Terminal,
    /// Its screen shows a prompt (`Task::prompt`).
    Prompt,
    /// Its program said so (`POST /api/tasks/{id}/state`).
    Reported,
    /// It printed nothing for `IDLE_WAITING_SECS`, and nothing better is known.
    Quiet,
}

impl WaitingReason {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitingReason::Terminal => "terminal",
            WaitingReason::Prompt => "prompt",
            WaitingReason::Reported => "reported",
            WaitingReason::Quiet => "quiet",
        }
    }

    pub fn parse(text: &str) -> Option<WaitingReason> {
        [
            WaitingReason::Terminal,
            WaitingReason::Prompt,
            WaitingReason::Reported,
            WaitingReason::Quiet,
        ]
        .into_iter()
        .find(|r| r.as_str() == text)
    }
}

/// One node of `GET /api/nodes`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    pub online: bool,
    /// When it was last heard from (RFC 3339).
    pub last_seen: String,
    /// How many tasks it holds.
    pub tasks: usize,
}

/// `GET /api/nodes`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeList {
    pub nodes: Vec<NodeInfo>,
}

/// The data of a `node.status` event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub name: String,
    pub online: bool,
}

/// `GET /api/tasks`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskList {
    pub tasks: Vec<Task>,
    /// The id of the newest event when the list was read: connect with `?since=` this.
    pub event_id: String,
}

/// What a program may say of its state: `POST /api/tasks/{id}/state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReportedState {
    WaitingForInput,
    Running,
}

/// The body of `POST /api/tasks/{id}/state`. `state` may come in the query instead
/// (`?state=waiting-for-input`), so that a hook can send the JSON its agent gave it as it
/// is: its `message` is kept, its other fields are ignored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateReport {
    #[serde(default)]
    pub state: Option<ReportedState>,
    #[serde(default)]
    pub message: Option<String>,
}

/// What `TASKWIRE_NOTIFY_URL` receives on a transition to `waiting-for-input`, `failed` or
/// `completed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub event: String,
    pub task: Task,
    pub url: String,
}

/// `ready`, the first frame of every event stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ready {
    pub event_id: String,
    pub resumed: bool,
}

/// `task.deleted`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deleted {
    pub id: String,
}

/// `GET /api/tasks/{id}/output`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Output {
    pub output: String,
}

/// The data of an `output` event of `GET /api/tasks/{id}/output/stream`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputChunk {
    pub text: String,
}

/// The data of a `tail` event of `GET /api/tails/stream`: the last lines of a live task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskTail {
    pub id: String,
    pub text: String,
}

/// The body of every refusal: `{"error": "<what is wrong>"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

impl ErrorBody {
    pub fn new(error: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: error.into(),
        }
    }
}

/// Event names of `GET /api/events`.
pub mod event {
    pub const READY: &str = "ready";
    pub const TASK_CREATED: &str = "task.created";
    pub const TASK_STATUS: &str = "task.status";
    pub const TASK_UPDATED: &str = "task.updated";
    pub const TASK_DELETED: &str = "task.deleted";
    pub const NODE_STATUS: &str = "node.status";
    pub const RESYNC: &str = "resync";
    pub const END: &str = "end";
}

/// Whether `id` may name a task: `[A-Za-z0-9_-]{1,64}`.
pub fn is_valid_task_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
