//! The task records, in SQLite (WAL). Every status write is conditional on the status it
//! replaces, so two paths that notice the same exit make one transition, not two.

use std::{
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

use app::model::{Changes, Prompt, Task, TaskKind, TaskStatus, WaitingReason};
use rusqlite::{params, Connection, OptionalExtension, Row};

pub struct Store {
    conn: Connection,
}

/// What a status transition writes besides the status.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub at: String,
    /// Only if the recorded activity is still this (input sent meanwhile wins).
    pub if_activity_was: Option<String>,
    /// What the program said, for a move between live states (`None` clears it); a task
    /// that finishes keeps the last thing it said.
    pub message: Option<String>,
    /// Why, for a move to `waiting-for-input`.
    pub waiting_reason: Option<WaitingReason>,
    /// Only if the task waits for this reason (a program's report is not undone by a
    /// guess).
    pub if_reason_was: Option<WaitingReason>,
    /// The prompt its screen shows, for a move to `waiting-for-input`.
    pub prompt: Option<Prompt>,
}

const COLUMNS: &str = "id, name, kind, command, workdir, status, exit_code, created_at, \
                       finished_at, last_activity_at, error, message, seen, waiting_reason, node, prompt, \
                       workspace, changes";

impl Store {
    pub fn open(path: &Path) -> rusqlite::Result<Store> {
        // Created private before SQLite opens it: its -wal and -shm files copy its mode.
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Every transaction is on disk before it is published: with NORMAL a power loss
        // could roll back the last ones (a deleted task back without its output, a kill
        // back as `error`), and tmux, gone too, could not repair them.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS tasks (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                kind TEXT NOT NULL,
                command TEXT NOT NULL,
                workdir TEXT NOT NULL,
                status TEXT NOT NULL,
                exit_code INTEGER,
                created_at TEXT NOT NULL,
                finished_at TEXT,
                last_activity_at TEXT NOT NULL,
                error TEXT
            );
            CREATE INDEX IF NOT EXISTS tasks_created ON tasks (created_at);",
        )?;
        // Columns added since the first release; older databases gain them here. Tasks that
        // finished before count as seen.
        for (column, definition) in [
            ("message", "TEXT"),
            ("seen", "INTEGER NOT NULL DEFAULT 1"),
            ("token", "TEXT"),
            ("waiting_reason", "TEXT"),
            // The task's program has reported its state: its reports, not its silence,
            // say when it waits.
            ("reports", "INTEGER NOT NULL DEFAULT 0"),
            // Tasks recorded before nodes existed are this node's (`adopt`).
            ("node", "TEXT NOT NULL DEFAULT ''"),
            // The prompt on its screen while it waits, as JSON.
            ("prompt", "TEXT"),
            // The task's git worktree, and what it changed (JSON); the commit its changes
            // are counted against (a worktree's base, or its git workdir's HEAD at start).
            ("workspace", "TEXT"),
            ("changes", "TEXT"),
            ("git_base", "TEXT"),
        ] {
            let present: bool = conn.query_row(
                "SELECT COUNT(*) FROM pragma_table_info('tasks') WHERE name = ?1",
                [column],
                |row| row.get::<_, i64>(0).map(|n| n > 0),
            )?;
            if !present {
                conn.execute_batch(&format!(
                    "ALTER TABLE tasks ADD COLUMN {column} {definition}"
                ))?;
            }
        }
        Ok(Store { conn })
    }

    /// Tasks recorded before this database knew its node are `node`'s.
    pub fn adopt(&self, node: &str) -> rusqlite::Result<()> {
        self.conn
            .execute("UPDATE tasks SET node = ?1 WHERE node = ''", [node])?;
        Ok(())
    }

    /// Records a new task, with the token its program may report its state with.
    pub fn insert(&self, task: &Task, token: &str, git_base: Option<&str>) -> rusqlite::Result<()> {
        self.conn.execute(
            &format!(
                "INSERT INTO tasks ({COLUMNS}, token, git_base) VALUES (?1, ?2, ?3, ?4, ?5, ?6, \
                 ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)"
            ),
            params![
                task.id,
                task.name,
                task.kind.as_str(),
                task.command,
                task.workdir,
                task.status.as_str(),
                task.exit_code,
                task.created_at,
                task.finished_at,
                task.last_activity_at,
                task.error,
                task.message,
                task.seen,
                task.waiting_reason.map(WaitingReason::as_str),
                task.node,
                prompt_json(task.prompt.as_ref()),
                json(task.workspace.as_ref()),
                json(task.changes.as_ref()),
                token,
                git_base,
            ],
        )?;
        Ok(())
    }

    /// The token a task's program reports its state with.
    pub fn task_token(&self, id: &str) -> rusqlite::Result<Option<String>> {
        self.conn
            .prepare_cached("SELECT token FROM tasks WHERE id = ?1")?
            .query_row([id], |row| row.get(0))
            .optional()
            .map(Option::flatten)
    }

    /// Sets what the program said, for a task that is still in `status`; `None` when it
    /// is not (or does not exist). A waiting task now waits because its program said so.
    pub fn set_message(
        &self,
        id: &str,
        status: TaskStatus,
        message: Option<&str>,
    ) -> rusqlite::Result<Option<Task>> {
        let changed = self.conn.execute(
            "UPDATE tasks SET message = ?3,
                 waiting_reason = CASE WHEN status = 'waiting-for-input'
                     THEN 'reported' ELSE NULL END
             WHERE id = ?1 AND status = ?2",
            params![id, status.as_str(), message],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        self.get(id)
    }

    /// Notes that the task's program reports its state.
    pub fn note_reporting(&self, id: &str) -> rusqlite::Result<()> {
        self.conn
            .execute("UPDATE tasks SET reports = 1 WHERE id = ?1", [id])?;
        Ok(())
    }

    /// The live tasks whose programs report their state.
    pub fn reporting_ids(&self) -> rusqlite::Result<std::collections::HashSet<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id FROM tasks WHERE reports = 1
                 AND status IN ('running', 'waiting-for-input')",
        )?;
        let ids = stmt.query_map([], |row| row.get(0))?.collect();
        ids
    }

    /// A waiting task's reason changes (`None` when it no longer waits for `from`).
    pub fn set_waiting_reason(
        &self,
        id: &str,
        from: WaitingReason,
        to: WaitingReason,
    ) -> rusqlite::Result<Option<Task>> {
        let changed = self.conn.execute(
            "UPDATE tasks SET waiting_reason = ?3
             WHERE id = ?1 AND status = 'waiting-for-input' AND waiting_reason = ?2",
            params![id, from.as_str(), to.as_str()],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        self.get(id)
    }

    /// A waiting task now carries `prompt`; one that waited by a guess (quiet, or reading
    /// its terminal) now waits because its screen asks. `None` when it no longer waits or
    /// already carries it.
    pub fn show_prompt(&self, id: &str, prompt: &Prompt) -> rusqlite::Result<Option<Task>> {
        let json = prompt_json(Some(prompt));
        let changed = self.conn.execute(
            "UPDATE tasks SET prompt = ?2,
                 waiting_reason = CASE WHEN waiting_reason IN ('quiet', 'terminal')
                     THEN 'prompt' ELSE waiting_reason END
             WHERE id = ?1 AND status = 'waiting-for-input' AND prompt IS NOT ?2",
            params![id, json],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        self.get(id)
    }

    /// Marks a finished task seen; `None` when it was already, is live, or does not exist.
    pub fn mark_seen(&self, id: &str) -> rusqlite::Result<Option<Task>> {
        let changed = self.conn.execute(
            "UPDATE tasks SET seen = 1 WHERE id = ?1 AND seen = 0
                 AND status NOT IN ('running', 'waiting-for-input')",
            params![id],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        self.get(id)
    }

    pub fn get(&self, id: &str) -> rusqlite::Result<Option<Task>> {
        self.conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1"))?
            .query_row([id], task_from_row)
            .optional()
    }

    /// Every task, newest first (the order of `view::newest_first`).
    pub fn list(&self) -> rusqlite::Result<Vec<Task>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM tasks ORDER BY created_at DESC, id DESC"
        ))?;
        let tasks = stmt.query_map([], task_from_row)?.collect();
        tasks
    }

    /// Tasks that still have (or should have) a tmux session.
    pub fn list_live(&self) -> rusqlite::Result<Vec<Task>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM tasks WHERE status IN ('running', 'waiting-for-input')"
        ))?;
        let tasks = stmt.query_map([], task_from_row)?.collect();
        tasks
    }

    /// What a waiting-detection pass needs of each live task.
    pub fn live_states(&self) -> rusqlite::Result<Vec<LiveState>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, kind, status, waiting_reason, prompt FROM tasks
                 WHERE status IN ('running', 'waiting-for-input')",
        )?;
        let states = stmt
            .query_map([], |row| {
                Ok(LiveState {
                    id: row.get(0)?,
                    kind: TaskKind::parse(&row.get::<_, String>(1)?).unwrap_or(TaskKind::Command),
                    status: TaskStatus::parse(&row.get::<_, String>(2)?)
                        .unwrap_or(TaskStatus::Running),
                    waiting_reason: reason_from(row.get(3)?),
                    prompt: prompt_from(row.get(4)?).map(|p| p.id),
                })
            })?
            .collect();
        states
    }

    /// The ids of the live tasks (a tails pass needs no more).
    pub fn live_ids(&self) -> rusqlite::Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id FROM tasks WHERE status IN ('running', 'waiting-for-input')",
        )?;
        let ids = stmt.query_map([], |row| row.get(0))?.collect();
        ids
    }

    /// Moves a task from `from` to `to`; returns the new record, or `None` when the task was
    /// no longer in `from` (someone else got there first) or does not exist.
    pub fn transition(
        &self,
        id: &str,
        from: TaskStatus,
        to: TaskStatus,
        outcome: &Outcome,
    ) -> rusqlite::Result<Option<Task>> {
        let finished_at = to.is_terminal().then_some(outcome.at.as_str());
        let changed = self.conn.execute(
            "UPDATE tasks SET status = ?3, exit_code = ?4, error = ?5, finished_at = ?6,
                 last_activity_at = CASE WHEN ?7 > last_activity_at THEN ?7 ELSE last_activity_at END,
                 message = CASE WHEN ?6 IS NOT NULL THEN message ELSE ?9 END,
                 seen = CASE WHEN ?6 IS NOT NULL THEN 0 ELSE seen END,
                 waiting_reason = CASE WHEN ?3 = 'waiting-for-input' THEN ?10 ELSE NULL END,
                 prompt = CASE WHEN ?3 = 'waiting-for-input' THEN ?12 ELSE NULL END
             WHERE id = ?1 AND status = ?2 AND (?8 IS NULL OR last_activity_at = ?8)
                 AND (?11 IS NULL OR waiting_reason = ?11)",
            params![
                id,
                from.as_str(),
                to.as_str(),
                outcome.exit_code,
                outcome.error,
                finished_at,
                outcome.at,
                outcome.if_activity_was,
                outcome.message,
                outcome.waiting_reason.map(WaitingReason::as_str),
                outcome.if_reason_was.map(WaitingReason::as_str),
                prompt_json(outcome.prompt.as_ref()),
            ],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        self.get(id)
    }

    pub fn rename(&self, id: &str, name: &str) -> rusqlite::Result<Option<Task>> {
        let changed = self.conn.execute(
            "UPDATE tasks SET name = ?2 WHERE id = ?1",
            params![id, name],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        self.get(id)
    }

    pub fn touch_activity(&self, id: &str, at: &str) -> rusqlite::Result<()> {
        self.conn.execute(
            "UPDATE tasks SET last_activity_at = ?2 WHERE id = ?1 AND last_activity_at < ?2",
            params![id, at],
        )?;
        Ok(())
    }

    /// The task's changes are now `changes` (`None` if they were so already).
    pub fn set_changes(&self, id: &str, changes: &Changes) -> rusqlite::Result<Option<Task>> {
        let text = json(Some(changes));
        let changed = self.conn.execute(
            "UPDATE tasks SET changes = ?2 WHERE id = ?1 AND changes IS NOT ?2",
            params![id, text],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        self.get(id)
    }

    /// The worktree is gone: the task has no workspace and no changes any more.
    pub fn forget_workspace(&self, id: &str) -> rusqlite::Result<Option<Task>> {
        self.conn.execute(
            "UPDATE tasks SET workspace = NULL, changes = NULL, git_base = NULL WHERE id = ?1",
            [id],
        )?;
        self.get(id)
    }

    /// The commit a task's changes are counted against, if its workdir is in git.
    pub fn git_base(&self, id: &str) -> rusqlite::Result<Option<String>> {
        self.conn
            .prepare_cached("SELECT git_base FROM tasks WHERE id = ?1")?
            .query_row([id], |row| row.get(0))
            .optional()
            .map(Option::flatten)
    }

    /// Live tasks in a git workdir: id, workdir, and the commit counted against.
    pub fn live_in_git(&self) -> rusqlite::Result<Vec<(String, String, String)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, workdir, git_base FROM tasks WHERE git_base IS NOT NULL
                 AND status IN ('running', 'waiting-for-input')",
        )?;
        let rows = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
            .collect();
        rows
    }

    pub fn delete(&self, id: &str) -> rusqlite::Result<bool> {
        Ok(self.conn.execute("DELETE FROM tasks WHERE id = ?1", [id])? > 0)
    }
}

fn task_from_row(row: &Row) -> rusqlite::Result<Task> {
    let kind: String = row.get(2)?;
    let status: String = row.get(5)?;
    Ok(Task {
        id: row.get(0)?,
        name: row.get(1)?,
        kind: TaskKind::parse(&kind).unwrap_or(TaskKind::Command),
        command: row.get(3)?,
        workdir: row.get(4)?,
        status: TaskStatus::parse(&status).unwrap_or(TaskStatus::Error),
        exit_code: row.get(6)?,
        created_at: row.get(7)?,
        finished_at: row.get(8)?,
        last_activity_at: row.get(9)?,
        error: row.get(10)?,
        message: row.get(11)?,
        seen: row.get(12)?,
        waiting_reason: reason_from(row.get(13)?),
        node: row.get(14)?,
        prompt: prompt_from(row.get(15)?),
        workspace: from_json(row.get(16)?),
        changes: from_json(row.get(17)?),
    })
}

fn json<T: serde::Serialize>(value: Option<&T>) -> Option<String> {
    value.and_then(|v| serde_json::to_string(v).ok())
}

fn from_json<T: serde::de::DeserializeOwned>(text: Option<String>) -> Option<T> {
    serde_json::from_str(&text?).ok()
}

fn prompt_json(prompt: Option<&Prompt>) -> Option<String> {
    prompt.and_then(|p| serde_json::to_string(p).ok())
}

fn prompt_from(text: Option<String>) -> Option<Prompt> {
    serde_json::from_str(&text?).ok()
}

fn reason_from(text: Option<String>) -> Option<WaitingReason> {
    text.as_deref().and_then(WaitingReason::parse)
}

/// A live task as a waiting-detection pass sees it.
#[derive(Clone, Debug)]
pub struct LiveState {
    pub id: String,
    pub kind: TaskKind,
    pub status: TaskStatus,
    pub waiting_reason: Option<WaitingReason>,
    /// The id of the prompt it carries.
    pub prompt: Option<String>,
}
