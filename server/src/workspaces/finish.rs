//! Finishing a task's worktree: commit its changes on its branch, merge the branch into
//! the base branch (all or nothing: a conflict or a dirty target leaves both branches as
//! they were, and no merge half-done), or discard the worktree and its branch.

use std::path::Path;

use app::model::Workspace;

use super::{git, WorkspaceError, WorkspaceResult};

/// Commits everything changed in the worktree (untracked files too, ignored ones not).
pub fn commit(workspace: &Workspace, message: &str) -> WorkspaceResult<String> {
    let path = Path::new(&workspace.path);
    git::run(path, &["add", "--all"]).map_err(|e| WorkspaceError::Git(e.words))?;
    let staged = git::run(path, &["diff", "--cached", "--quiet"]);
    if staged.is_ok() {
        return Err(WorkspaceError::Conflict(
            "nothing to commit".into(),
            Vec::new(),
        ));
    }
    git::run_committing(path, &["commit", "--quiet", "--no-verify", "-m", message])
        .map_err(|e| WorkspaceError::Git(format!("git commit: {}", e.words)))?;
    head(path)
}

/// Merges the task's branch into its base branch: a fast-forward when the base has not
/// moved, else a merge commit. Where the base branch is checked out, its working tree
/// follows (and must be clean); elsewhere only the branch moves.
pub fn merge(workspace: &Workspace) -> WorkspaceResult<String> {
    let repo = Path::new(&workspace.repo);
    let target = format!("refs/heads/{}", workspace.base);
    if !git::branch_exists(repo, &workspace.base) {
        return Err(WorkspaceError::Conflict(
            format!(
                "the base {:?} is not a branch: there is nothing to merge into",
                workspace.base
            ),
            Vec::new(),
        ));
    }
    let uncommitted = changed_files(Path::new(&workspace.path))?;
    if !uncommitted.is_empty() {
        return Err(WorkspaceError::Conflict(
            "the worktree has changes that are not committed: commit them first".into(),
            uncommitted,
        ));
    }
    match checked_out_at(repo, &target)? {
        Some(there) => merge_in_checkout(&there, workspace),
        None => merge_branch_only(repo, &target, workspace),
    }
}

/// Removes the worktree and its branch (`git worktree prune` leaves nothing of it).
pub fn remove(workspace: &Workspace) -> WorkspaceResult<()> {
    let repo = Path::new(&workspace.repo);
    let removed = git::run(
        repo,
        &["worktree", "remove", "--force", "--force", &workspace.path],
    );
    if removed.is_err() && Path::new(&workspace.path).exists() {
        std::fs::remove_dir_all(&workspace.path).map_err(|e| WorkspaceError::Git(e.to_string()))?;
    }
    let _ = git::run(repo, &["worktree", "prune"]);
    if git::branch_exists(repo, &workspace.branch) {
        git::run(repo, &["branch", "-D", &workspace.branch])
            .map_err(|e| WorkspaceError::Git(format!("git branch -D: {}", e.words)))?;
    }
    Ok(())
}

fn head(dir: &Path) -> WorkspaceResult<String> {
    git::commit_of(dir, "HEAD").ok_or_else(|| WorkspaceError::Git("no HEAD".into()))
}

/// Tracked files changed in `dir`'s working tree or index (what a merge there would touch).
fn changed_files(dir: &Path) -> WorkspaceResult<Vec<String>> {
    let status = git::run(
        dir,
        &["status", "--porcelain", "-z", "--untracked-files=no"],
    )
    .map_err(|e| WorkspaceError::Git(e.words))?;
    Ok(status
        .split('\0')
        .filter(|entry| entry.len() > 3)
        .map(|entry| entry[3..].to_string())
        .collect())
}

/// The working tree where `branch` (a full ref) is checked out, if one is.
fn checked_out_at(repo: &Path, branch: &str) -> WorkspaceResult<Option<String>> {
    let list = git::run(repo, &["worktree", "list", "--porcelain"])
        .map_err(|e| WorkspaceError::Git(e.words))?;
    let mut path = None;
    for line in list.lines() {
        if let Some(p) = line.strip_prefix("worktree ") {
            path = Some(p.to_string());
        } else if line.strip_prefix("branch ") == Some(branch) {
            return Ok(path);
        }
    }
    Ok(None)
}

fn merge_in_checkout(there: &str, workspace: &Workspace) -> WorkspaceResult<String> {
    let there = Path::new(there);
    let dirty = changed_files(there)?;
    if !dirty.is_empty() {
        return Err(WorkspaceError::Conflict(
            format!(
                "{} has changes that are not committed where {} is checked out ({}): nothing was merged",
                workspace.base,
                workspace.base,
                there.display()
            ),
            dirty,
        ));
    }
    let message = format!("Merge {} (taskwire)", workspace.branch);
    match git::run_committing(
        there,
        &["merge", "--no-edit", "-m", &message, &workspace.branch],
    ) {
        Ok(_) => head(there),
        Err(failed) => {
            let files = git::run(there, &["diff", "--name-only", "--diff-filter=U", "-z"])
                .map(|s| {
                    s.split('\0')
                        .filter(|f| !f.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            // Back to where it was: no MERGE_HEAD, no conflict markers, the branch unmoved.
            let _ = git::run(there, &["merge", "--abort"]);
            Err(WorkspaceError::Conflict(
                format!("git merge: {}", failed.words),
                files,
            ))
        }
    }
}

/// Merges without a working tree (the base branch is checked out nowhere): `merge-tree`
/// makes the merged tree, or names the conflicts, and the branch moves only if it is still
/// where it was.
fn merge_branch_only(repo: &Path, target: &str, workspace: &Workspace) -> WorkspaceResult<String> {
    let base_now =
        git::commit_of(repo, target).ok_or_else(|| WorkspaceError::Git("no base".into()))?;
    let theirs = git::commit_of(repo, &workspace.branch)
        .ok_or_else(|| WorkspaceError::Git("no branch".into()))?;
    let fast_forward = git::run(repo, &["merge-base", "--is-ancestor", &base_now, &theirs]).is_ok();
    let merged = if fast_forward {
        theirs
    } else {
        let tree = match merge_tree(repo, &base_now, &theirs)? {
            Ok(tree) => tree,
            Err(files) => {
                return Err(WorkspaceError::Conflict(
                    format!(
                        "merging {} into {} conflicts: nothing was merged",
                        workspace.branch, workspace.base
                    ),
                    files,
                ))
            }
        };
        let message = format!("Merge {} (taskwire)", workspace.branch);
        git::run_committing(
            repo,
            &[
                "commit-tree",
                &tree,
                "-p",
                &base_now,
                "-p",
                &theirs,
                "-m",
                &message,
            ],
        )
        .map_err(|e| WorkspaceError::Git(e.words))?
        .trim()
        .to_string()
    };
    git::run(repo, &["update-ref", target, &merged, &base_now]).map_err(|e| {
        WorkspaceError::Conflict(
            format!("{} moved meanwhile: {}", workspace.base, e.words),
            Vec::new(),
        )
    })?;
    Ok(merged)
}

/// `git merge-tree --write-tree`: the merged tree, or the files that conflict. Its
/// output is the tree, then (on a conflict, exit code 1) the conflicted names, then a blank
/// field and its messages.
fn merge_tree(
    repo: &Path,
    ours: &str,
    theirs: &str,
) -> WorkspaceResult<Result<String, Vec<String>>> {
    let output = git::command(
        repo,
        &[
            "merge-tree",
            "--write-tree",
            "--name-only",
            "-z",
            ours,
            theirs,
        ],
    )
    .output()
    .map_err(|e| WorkspaceError::Git(format!("could not run git: {e}")))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut fields = stdout.split("\0\0").next().unwrap_or_default().split('\0');
    let tree = fields.next().unwrap_or_default().trim().to_string();
    match output.status.code() {
        Some(0) => Ok(Ok(tree)),
        Some(1) => Ok(Err(fields
            .filter(|f| !f.is_empty())
            .map(str::to_string)
            .collect())),
        _ => Err(WorkspaceError::Git(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        )),
    }
}
