//! Git worktrees of tasks: making one for a task (`create`), what a task changed in its
//! git workdir (`changes`: the counts kept on the task, and the diff with its hunks), and
//! finishing (`finish`: commit, merge into the base branch, discard). Real `git` does the
//! work (`git`); nothing here removes a worktree by itself. Uses only the wire types.

pub mod changes;
pub mod create;
pub mod finish;
pub mod git;

/// Why a workspace action was refused.
#[derive(Debug)]
pub enum WorkspaceError {
    /// The request names something that is not there or not allowed (`422`).
    Invalid(String),
    /// The repository is not in a state for it (`409`), with the files concerned.
    Conflict(String, Vec<String>),
    /// git failed in a way no request explains (`500`).
    Git(String),
}

pub type WorkspaceResult<T> = Result<T, WorkspaceError>;
