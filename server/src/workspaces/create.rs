//! A new worktree for a task: its repository, base and branch checked first (nothing is
//! made for a request that names the wrong ones), then `git worktree add`, then the
//! untracked files the person asked for (`.env`: a fresh worktree lacks them).

use std::path::{Component, Path, PathBuf};

use app::model::{NewWorkspace, Workspace};

use super::{git, WorkspaceError, WorkspaceResult};

/// Makes the worktree of task `id` (named `name`) under `root`, as `new` asks.
pub fn create(new: &NewWorkspace, id: &str, name: &str, root: &Path) -> WorkspaceResult<Workspace> {
    let asked = Path::new(new.repo.trim());
    let repo = asked
        .canonicalize()
        .map_err(|_| invalid(format!("repo {:?} does not exist", new.repo)))?;
    let top = git::toplevel(&repo)
        .ok_or_else(|| invalid(format!("repo {:?} is not a git repository", new.repo)))?;
    let top = PathBuf::from(top);
    let base = match new.base.as_deref().map(str::trim).filter(|b| !b.is_empty()) {
        Some(base) => base.to_string(),
        None => current_branch(&top),
    };
    let base_commit = git::commit_of(&top, &base).ok_or_else(|| {
        invalid(format!(
            "base {base:?} does not name a commit in {}",
            top.display()
        ))
    })?;
    let branch = match new
        .branch
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty())
    {
        Some(branch) => branch.to_string(),
        None => format!("taskwire/{id}-{}", slug(name)),
    };
    if git::run(&top, &["check-ref-format", "--branch", &branch]).is_err() {
        return Err(invalid(format!("{branch:?} is not a valid branch name")));
    }
    if git::branch_exists(&top, &branch) {
        return Err(invalid(format!("branch {branch:?} exists already")));
    }
    let copies = new
        .copy
        .iter()
        .map(|path| inside(&top, path))
        .collect::<WorkspaceResult<Vec<_>>>()?;

    let path = root.join(id);
    std::fs::create_dir_all(root).map_err(|e| WorkspaceError::Git(e.to_string()))?;
    let path_text = path.to_string_lossy().into_owned();
    git::run(
        &top,
        &[
            "worktree",
            "add",
            "--quiet",
            "-b",
            &branch,
            &path_text,
            &base_commit,
        ],
    )
    .map_err(|e| WorkspaceError::Git(format!("git worktree add: {}", e.words)))?;
    let workspace = Workspace {
        repo: top.to_string_lossy().into_owned(),
        base,
        base_commit,
        branch,
        path: path_text,
    };
    for (from, relative) in copies {
        if let Err(e) = copy(&from, &path.join(&relative)) {
            // Nothing half-made: the worktree and its branch go again.
            let _ = super::finish::remove(&workspace);
            return Err(WorkspaceError::Git(format!(
                "copying {}: {e}",
                relative.display()
            )));
        }
    }
    Ok(workspace)
}

fn invalid(message: String) -> WorkspaceError {
    WorkspaceError::Invalid(message)
}

/// The branch checked out in `top`, else `HEAD` (detached).
fn current_branch(top: &Path) -> String {
    git::run(top, &["symbolic-ref", "--quiet", "--short", "HEAD"])
        .map(|b| b.trim().to_string())
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "HEAD".into())
}

/// `path` of the repository at `top`, which must exist and stay inside it; with the path
/// relative to `top`.
fn inside(top: &Path, path: &str) -> WorkspaceResult<(PathBuf, PathBuf)> {
    let relative = Path::new(path);
    let plain = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if path.is_empty() || !plain {
        return Err(invalid(format!(
            "copy: {path:?} must be a path inside the repository, relative to it"
        )));
    }
    let full = top.join(relative);
    // A symbolic link may still lead outside.
    let real = full
        .canonicalize()
        .map_err(|_| invalid(format!("copy: {path:?} does not exist in the repository")))?;
    if !real.starts_with(top) {
        return Err(invalid(format!(
            "copy: {path:?} leads outside the repository"
        )));
    }
    Ok((real, relative.to_path_buf()))
}

/// Copies a file, or a folder with everything in it.
fn copy(from: &Path, to: &Path) -> std::io::Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if from.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        std::fs::copy(from, to).map(|_| ())
    }
}

/// `Fix the login bug!` → `fix-the-login-bug`: at most 40 characters of a branch name.
fn slug(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= 40 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        "task".into()
    } else {
        slug.into()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_slug_is_short_lowercase_and_dashed() {
        assert_eq!(super::slug("Fix the login bug!"), "fix-the-login-bug");
        assert_eq!(super::slug("  ***  "), "task");
        assert!(super::slug(&"word ".repeat(30)).len() <= 40);
    }
}
