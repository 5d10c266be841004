//! Tasks in git: the workdir a task starts in (a new worktree, or a directory that is in a
//! repository), its `changes` kept current while it runs, and the actions on its worktree
//! (diff, commit, merge, discard). The folders git tracks are watched (inotify), so a task
//! whose files do not change costs nothing, and one whose files change is recounted at
//! most twice a second.

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
/// its changes are counted against (with the count at start, for a new worktree).
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
                // One git process at most, and none outside a repository: a create is
                // answered at once (its changes are counted by the first pass after it).
                let git_base = workspaces::git::inside_a_repository(&dir)
                    .then(|| workspaces::git::commit_of(&dir, "HEAD"))
                    .flatten();
                Ok(Started {
                    dir,
                    workspace: None,
                    git_base,
                    changes: None,
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
                watch.watch(id, Path::new(workdir));
                lock(&watch.dirty).insert(id.clone());
            }
        }
        watch.watch_made();
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

/// What the pass keeps: a watcher per live task in git, the tasks whose files changed,
/// and the folders made since the last pass (watched once git is asked whether it
/// ignores them).
#[derive(Default)]
pub struct WorkdirWatch {
    watchers: HashMap<String, Watching>,
    dirty: Arc<Mutex<HashSet<String>>>,
    made: Arc<Mutex<Vec<(String, PathBuf)>>>,
}

struct Watching {
    watcher: notify::RecommendedWatcher,
    root: PathBuf,
}

/// At most this many folders are watched per task (inotify's watches are a budget of the
/// whole machine's).
const MAX_FOLDERS: usize = 20_000;

impl WorkdirWatch {
    /// Watches the folders of `dir` that git does not ignore, each on its own (not
    /// recursively: an ignored `target/` or `node_modules/` of a million files is never
    /// walked), marking task `id` dirty whenever a file in one changes, and noting
    /// folders made there.
    fn watch(&mut self, id: &str, dir: &Path) {
        let (task, dirty, made) = (id.to_string(), self.dirty.clone(), self.made.clone());
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if event.kind.is_access() {
                return;
            }
            let ours: Vec<&PathBuf> = event
                .paths
                .iter()
                .filter(|p| !p.components().any(|c| c.as_os_str() == ".git"))
                .collect();
            if ours.is_empty() {
                return;
            }
            lock(&dirty).insert(task.clone());
            if event.kind.is_create() {
                let folders = ours.into_iter().filter(|p| p.is_dir()).cloned();
                lock(&made).extend(folders.map(|p| (task.clone(), p)));
            }
        });
        let Ok(mut watcher) = watcher else { return };
        for folder in folders_to_watch(dir).into_iter().take(MAX_FOLDERS) {
            let _ = watcher.watch(&folder, RecursiveMode::NonRecursive);
        }
        let root = dir.to_path_buf();
        self.watchers
            .insert(id.to_string(), Watching { watcher, root });
    }

    /// Watches the folders made since the last pass that git does not ignore.
    fn watch_made(&mut self) {
        let made: Vec<(String, PathBuf)> = lock(&self.made).drain(..).collect();
        for (id, folder) in made {
            let Some(watching) = self.watchers.get_mut(&id) else {
                continue;
            };
            let ignored = workspaces::git::run(
                &watching.root,
                &["check-ignore", "--quiet", "--", &folder.to_string_lossy()],
            )
            .is_ok();
            if !ignored {
                let _ = watching.watcher.watch(&folder, RecursiveMode::NonRecursive);
            }
        }
    }
}

/// `dir` and every folder in it that git does not ignore: those holding files it tracks,
/// and untracked ones (empty folders too, as `--directory` lists them, with a `/`).
fn folders_to_watch(dir: &Path) -> Vec<PathBuf> {
    let list = |args: &[&str]| workspaces::git::run(dir, args).unwrap_or_default();
    let files = list(&[
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
    ]);
    let untracked = list(&[
        "ls-files",
        "-z",
        "--others",
        "--exclude-standard",
        "--directory",
    ]);
    let mut folders: HashSet<PathBuf> = HashSet::from([dir.to_path_buf()]);
    let entries = files.split('\0').chain(untracked.split('\0'));
    for entry in entries.filter(|f| !f.is_empty()) {
        // `docs/` names the folder itself; `docs/a.md` its file.
        let path = Path::new(entry);
        let mut folder = if entry.ends_with('/') {
            Some(path)
        } else {
            path.parent()
        };
        while let Some(f) = folder.filter(|f| !f.as_os_str().is_empty()) {
            if !folders.insert(dir.join(f)) {
                break;
            }
            folder = f.parent();
        }
    }
    folders.into_iter().collect()
}

/// Keeps the changes of live tasks in git current, until `shutdown`.
pub async fn run(tasks: Arc<Tasks>, shutdown: CancellationToken) {
    passes::every(EVERY, "changes", tasks, shutdown, Tasks::recount_changed).await;
}
