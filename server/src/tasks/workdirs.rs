//! Tasks in git: the workdir a task starts in (a new worktree, or a directory that is in a
//! repository), its `changes` kept current while it runs, and the actions on its worktree
//! (diff, commit, merge, discard). Files are watched (inotify), so a task whose files do
//! not change costs nothing; one whose files change is recounted at most twice a second.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use app::model::{Changes, Diff, NewWorkspace, Task, Workspace};
use notify::{RecursiveMode, Watcher};
use tokio_util::sync::CancellationToken;

use super::{passes, TaskError, TaskResult, Tasks};
use crate::{
    sync::lock,
    workspaces::{self, WorkspaceError},
};

/// How often changed workdirs are recounted.
const EVERY: Duration = Duration::from_millis(500);

/// Where a new task runs.
pub enum Workdir {
    Dir(PathBuf),
    NewWorktree(NewWorkspace),
}

/// A task's workdir as it starts: the directory, its worktree if it has one, and the commit
/// its changes are counted against (with the count at start).
pub struct Started {
    pub dir: PathBuf,
    pub workspace: Option<Workspace>,
    pub git_base: Option<String>,
    pub changes: Option<Changes>,
}

impl From<WorkspaceError> for TaskError {
    fn from(e: WorkspaceError) -> Self {
        match e {
            WorkspaceError::Invalid(m) => TaskError::Unprocessable(m),
            WorkspaceError::Conflict(m, files) if files.is_empty() => TaskError::Conflict(m),
            WorkspaceError::Conflict(m, files) => {
                TaskError::Conflict(format!("{m}: {}", files.join(", ")))
            }
            WorkspaceError::Git(m) => TaskError::Internal(m),
        }
    }
}

impl Tasks {
    /// Makes the workdir of task `id` (named `name`): a new worktree, or the directory given.
    pub(super) fn start_workdir(
        &self,
        id: &str,
        name: &str,
        workdir: Workdir,
    ) -> TaskResult<Started> {
        match workdir {
            Workdir::NewWorktree(new) => {
                let workspace =
                    workspaces::create::create(&new, id, name, &self.data_dir.join("worktrees"))?;
                Ok(Started {
                    dir: PathBuf::from(&workspace.path),
                    git_base: Some(workspace.base_commit.clone()),
                    // A new worktree is clean: zeros, not null.
                    changes: Some(Changes::default()),
                    workspace: Some(workspace),
                })
            }
            Workdir::Dir(dir) => {
                let git_base = workspaces::git::toplevel(&dir)
                    .and_then(|_| workspaces::git::commit_of(&dir, "HEAD"));
                let changes = git_base
                    .as_deref()
                    .and_then(|base| workspaces::changes::count(&dir, base).ok());
                Ok(Started {
                    dir,
                    workspace: None,
                    git_base,
                    changes,
                })
            }
        }
    }

    /// `GET /api/tasks/{id}/diff`.
    pub fn diff(&self, id: &str) -> TaskResult<Diff> {
        let task = self.get(id)?;
        let base = self.git_base_of(&task)?;
        let files = workspaces::changes::diff(Path::new(&task.workdir), &base)?;
        Ok(Diff {
            base_commit: base,
            files,
        })
    }

    /// Commits the worktree's changes on its branch.
    pub fn commit(&self, id: &str, message: Option<&str>) -> TaskResult<Task> {
        let task = self.get(id)?;
        let workspace = worktree_of(&task)?;
        let message = message
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map_or_else(|| task.name.clone(), str::to_string);
        workspaces::finish::commit(workspace, &message)?;
        self.recount(&task)
    }

    /// Merges the task's branch into its base branch; a refusal names the files concerned
    /// (a conflict, a dirty target, changes not committed).
    pub fn merge(&self, id: &str) -> TaskResult<Result<Task, (String, Vec<String>)>> {
        let task = self.get(id)?;
        match workspaces::finish::merge(worktree_of(&task)?) {
            Ok(_) => Ok(Ok(self.get(id)?)),
            Err(WorkspaceError::Conflict(message, files)) => Ok(Err((message, files))),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the worktree and its branch: refused while the task runs.
    pub fn discard(&self, id: &str) -> TaskResult<()> {
        let task = self.get(id)?;
        if task.status.is_live() {
            return Err(TaskError::Conflict(format!(
                "task is {}: kill it before discarding its worktree",
                task.status.as_str()
            )));
        }
        workspaces::finish::remove(worktree_of(&task)?)?;
        self.update(|store| store.forget_workspace(id))?;
        Ok(())
    }

    fn git_base_of(&self, task: &Task) -> TaskResult<String> {
        self.store().git_base(&task.id)?.ok_or(TaskError::NotFound)
    }

    /// Counts the task's changes again, and publishes them if they moved.
    fn recount(&self, task: &Task) -> TaskResult<Task> {
        let base = self.git_base_of(task)?;
        let changes = workspaces::changes::count(Path::new(&task.workdir), &base)?;
        Ok(self
            .update(|store| store.set_changes(&task.id, &changes))?
            .unwrap_or_else(|| task.clone()))
    }

    /// One pass: recounts the live tasks whose files changed since the last.
    fn recount_changed(&self, watch: &mut WorkdirWatch) -> TaskResult<usize> {
        let live = self.store().live_in_git()?;
        let ids: HashSet<&str> = live.iter().map(|(id, ..)| id.as_str()).collect();
        // A task that ended is counted once more, as it was left.
        let ended: Vec<String> = watch
            .watchers
            .keys()
            .filter(|id| !ids.contains(id.as_str()))
            .cloned()
            .collect();
        for id in &ended {
            watch.watchers.remove(id);
            lock(&watch.dirty).insert(id.clone());
        }
        for (id, workdir, _) in &live {
            if !watch.watchers.contains_key(id) {
                if let Some(watcher) = watch_files(id, Path::new(workdir), &watch.dirty) {
                    watch.watchers.insert(id.clone(), watcher);
                }
                lock(&watch.dirty).insert(id.clone());
            }
        }
        let dirty: Vec<String> = lock(&watch.dirty).drain().collect();
        let mut changed = 0;
        for id in dirty {
            let Ok(task) = self.get(&id) else { continue };
            if task.changes.is_none() && task.workspace.is_none() && !ids.contains(id.as_str()) {
                continue;
            }
            match self.recount(&task) {
                Ok(after) if after.changes != task.changes => changed += 1,
                Ok(_) => {}
                Err(e) => tracing::debug!(task = %id, "counting its changes: {e:?}"),
            }
        }
        Ok(changed)
    }
}

fn worktree_of(task: &Task) -> TaskResult<&Workspace> {
    task.workspace
        .as_ref()
        .ok_or_else(|| TaskError::Conflict("the task has no worktree of its own".into()))
}

/// What the pass keeps: a watcher per live task in git, and the tasks whose files changed.
#[derive(Default)]
pub struct WorkdirWatch {
    watchers: HashMap<String, notify::RecommendedWatcher>,
    dirty: Arc<Mutex<HashSet<String>>>,
}

/// Marks task `id` dirty whenever a file under `dir` changes (git's own files aside).
fn watch_files(
    id: &str,
    dir: &Path,
    dirty: &Arc<Mutex<HashSet<String>>>,
) -> Option<notify::RecommendedWatcher> {
    let (id, dirty) = (id.to_string(), dirty.clone());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let ours = event
            .paths
            .iter()
            .any(|p| !p.components().any(|c| c.as_os_str() == ".git"));
        if ours && !event.kind.is_access() {
            lock(&dirty).insert(id.clone());
        }
    })
    .ok()?;
    watcher.watch(dir, RecursiveMode::Recursive).ok()?;
    Some(watcher)
}

/// Keeps the changes of live tasks in git current, until `shutdown`.
pub async fn run(tasks: Arc<Tasks>, shutdown: CancellationToken) {
    passes::every(EVERY, "changes", tasks, shutdown, Tasks::recount_changed).await;
}
