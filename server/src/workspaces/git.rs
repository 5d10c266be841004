//! Running the machine's `git`: in a directory, with no prompt and no environment of the
//! server's that would point it elsewhere, in the C locale (its words are shown to people
//! and parsed here).

use std::{path::Path, process::Command};

/// What a failed git said.
#[derive(Debug)]
pub struct Failed {
    /// Its exit code (`None` when it could not be started or was killed).
    pub code: Option<i32>,
    /// What it printed on stderr (else stdout), trimmed.
    pub words: String,
}

/// `git -C dir args…`; its standard output, or what it said.
pub fn run(dir: &Path, args: &[&str]) -> Result<String, Failed> {
    output(command(dir, args))
}

/// A copy of a working tree's index (beside it, in the repository's git folder), for
/// commands that only read: `git diff` refreshes the stat data of the index it reads and
/// writes it back under `index.lock`, whatever `GIT_OPTIONAL_LOCKS` says, and on the
/// agent's own index its `git add` or `git commit` could fail at that moment. Made once for
/// all the commands of one count or diff, and removed when dropped.
pub struct IndexCopy {
    dir: std::path::PathBuf,
    /// `None` where there is no index yet (a repository without a commit): nothing to take.
    copy: Option<std::path::PathBuf>,
}

impl IndexCopy {
    pub fn of(dir: &Path) -> Result<IndexCopy, Failed> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let index = run(
            dir,
            &["rev-parse", "--path-format=absolute", "--git-path", "index"],
        )?;
        let index = Path::new(index.trim());
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let copy = index.with_file_name(format!("taskwire-index-{}-{n}", std::process::id()));
        // The copy keeps the index's mtime: git trusts a file's stat data only if the file
        // is older than the index, and a copy made now would pass off a file rewritten in
        // the index's second, at the same size, as unchanged.
        let copied = std::fs::copy(index, &copy).is_ok()
            && std::fs::metadata(index)
                .and_then(|m| m.modified())
                .and_then(|at| {
                    std::fs::File::options()
                        .write(true)
                        .open(&copy)?
                        .set_modified(at)
                })
                .is_ok();
        if !copied {
            let _ = std::fs::remove_file(&copy);
        }
        let copy = copied.then_some(copy);
        Ok(IndexCopy {
            dir: dir.to_path_buf(),
            copy,
        })
    }

    /// `run` in the working tree, on the copy.
    pub fn run(&self, args: &[&str]) -> Result<String, Failed> {
        let mut command = command(&self.dir, args);
        if let Some(copy) = &self.copy {
            command.env("GIT_INDEX_FILE", copy);
        }
        output(command)
    }
}

impl Drop for IndexCopy {
    fn drop(&mut self) {
        if let Some(copy) = &self.copy {
            let _ = std::fs::remove_file(copy);
            let _ = std::fs::remove_file(copy.with_extension("lock"));
        }
    }
}

fn output(mut command: Command) -> Result<String, Failed> {
    let output = command.output().map_err(|e| Failed {
        code: None,
        words: format!("could not run git: {e}"),
    })?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    Err(Failed {
        code: output.status.code(),
        words: if stderr.is_empty() {
            stdout.trim().to_string()
        } else {
            stderr
        },
    })
}

/// The command, ready to run.
pub fn command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("git");
    command
        .arg("-C")
        .arg(dir)
        // Paths as they are (not quoted with octal escapes), whatever the user's config.
        .args(["-c", "core.quotepath=off"])
        .args(args)
        .env("LC_ALL", "C")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .stdin(std::process::Stdio::null());
    command
}

/// The commit `rev` names in `dir`, if it names one.
pub fn commit_of(dir: &Path, rev: &str) -> Option<String> {
    let spec = format!("{rev}^{{commit}}");
    run(
        dir,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &spec,
        ],
    )
    .ok()
    .map(|s| s.trim().to_string())
    .filter(|s| !s.is_empty())
}

/// The top of the working tree `dir` is in, if it is in one.
pub fn toplevel(dir: &Path) -> Option<String> {
    run(dir, &["rev-parse", "--show-toplevel"])
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Whether `dir` or a folder above it holds `.git` (a repository, or a worktree's link to
/// one): looked up without starting git.
pub fn inside_a_repository(dir: &Path) -> bool {
    dir.ancestors().any(|d| d.join(".git").exists())
}

/// Whether `refs/heads/<branch>` exists in `dir`'s repository.
pub fn branch_exists(dir: &Path, branch: &str) -> bool {
    run(
        dir,
        &[
            "show-ref",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}"),
        ],
    )
    .is_ok()
}

/// `run`, for a command that writes a commit: where git knows no one (a fresh machine, a
/// service account), the commit is taskwire's rather than refused.
pub fn run_committing(dir: &Path, args: &[&str]) -> Result<String, Failed> {
    if run(dir, &["config", "user.email"]).is_ok() {
        return run(dir, args);
    }
    let mut with = vec![
        "-c",
        "user.name=taskwire",
        "-c",
        "user.email=taskwire@localhost",
    ];
    with.extend_from_slice(args);
    run(dir, &with)
}
