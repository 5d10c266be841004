//! The task runtime: every task is a session `tw-<id>` on a dedicated tmux server.
//!
//! tmux owns the processes, so tasks outlive taskwire. The server is started with our own
//! config file, which makes panes stay around after their program exits (so the exit status
//! can be read), touches a wake file whenever a pane dies (so the reconciler hears about
//! exits at once instead of waiting for its next pass), and keeps the server running when its
//! last session ends: a server on its way out takes down a session created in that moment
//! ("server exited unexpectedly"), and tasks are often started just as the last one is removed.

use super::screen::PaneSize;

use std::{
    collections::HashMap,
    io,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

/// One pane as `tmux list-panes -a` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaneState {
    pub dead: bool,
    /// The exit status of a dead pane's program, when it exited rather than being signalled.
    pub exit_status: Option<i32>,
    /// The signal that ended a dead pane's program, if any.
    pub exit_signal: Option<i32>,
    pub size: PaneSize,
}

#[derive(Clone, Debug)]
pub struct Tmux {
    socket: String,
    config_file: PathBuf,
    wake_file: PathBuf,
    /// Processes spawned so far: the reconciler's cost must not grow with the task count.
    spawned: Arc<AtomicU64>,
}

impl Tmux {
    /// A runtime whose tmux config and wake file live in `data_dir`.
    pub fn new(socket: &str, data_dir: &Path) -> io::Result<Tmux> {
        let tmux = Tmux {
            socket: socket.to_string(),
            config_file: data_dir.join("tmux.conf"),
            wake_file: data_dir.join("tmux-wake"),
            spawned: Arc::default(),
        };
        std::fs::write(&tmux.config_file, tmux.config_text())?;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&tmux.wake_file)?;
        // A tmux server left running by an earlier taskwire read an older config: apply ours.
        if tmux.server_running() {
            let _ = tmux.run(&["source-file", &path_str(&tmux.config_file)]);
        }
        Ok(tmux)
    }

    pub fn wake_file(&self) -> &Path {
        &self.wake_file
    }

    /// How many tmux processes this runtime has spawned.
    pub fn spawned(&self) -> u64 {
        self.spawned.load(Ordering::Relaxed)
    }

    /// `tmux -L <socket>`, counted.
    fn tmux(&self) -> Command {
        self.spawned.fetch_add(1, Ordering::Relaxed);
        let mut command = Command::new("tmux");
        command.args(["-L", &self.socket]);
        command
    }

    fn config_text(&self) -> String {
        let touch = format!("touch {}", shell_quote(&path_str(&self.wake_file)));
        format!(
            "# Written by taskwire at every start.\n\
             set -g remain-on-exit on\n\
             set -g exit-empty off\n\
             set -g default-shell /bin/sh\n\
             set -g history-limit 5000\n\
             set -g default-size 200x50\n\
             set -g status off\n\
             set -g window-size largest\n\
             set-hook -g pane-died {wake}\n\
             set-hook -g client-attached {wake}\n\
             set-hook -g client-detached {wake}\n\
             set-hook -g client-resized {wake}\n",
            wake = tmux_quote(&format!("run-shell -b {}", tmux_quote(&touch)))
        )
    }

    pub fn session_name(id: &str) -> String {
        format!("tw-{id}")
    }

    /// Starts `command` (run by `shell -c`) in a new session. A placeholder runs until
    /// `pipe-pane` is attached, then the real command replaces it, so not even the first line
    /// of output is lost. The command's exit status is written to `exit_file`: tmux 3.3 does
    /// not always learn the status of a pane's program, so it cannot be the only witness.
    pub fn start(
        &self,
        id: &str,
        shell: &str,
        command: &str,
        workdir: &Path,
        log: &Path,
        exit_file: &Path,
    ) -> io::Result<()> {
        let session = Self::session_name(id);
        let workdir = path_str(workdir);
        let pipe = format!("exec cat >> {}", shell_quote(&path_str(log)));
        // Then it touches the wake file itself: tmux's pane-died hook is not reliable either
        // when tmux misses the status.
        let command = format!(
            "{} -c {}; echo $? > {}; touch {}",
            shell_quote(shell),
            shell_quote(command),
            shell_quote(&path_str(exit_file)),
            shell_quote(&path_str(&self.wake_file))
        );
        let config = path_str(&self.config_file);
        let out = self
            .tmux()
            .args(["-f", &config])
            .args(["new-session", "-d", "-s", &session, "-x", "200", "-y", "50"])
            .args(["-c", &workdir, "sleep 86400"])
            .args([";", "pipe-pane", "-t", &session, &pipe])
            .args([
                ";",
                "respawn-pane",
                "-k",
                "-t",
                &session,
                "-c",
                &workdir,
                &command,
            ])
            .output()?;
        check(out)
    }

    /// The command line of a tmux client attached to the task's session (a terminal
    /// viewer runs it in a pty of its own).
    pub fn attach_command(&self, id: &str) -> Vec<String> {
        ["tmux", "-L", &self.socket, "attach-session", "-t"]
            .into_iter()
            .map(str::to_string)
            .chain([Self::session_name(id)])
            .collect()
    }

    /// Types `text` literally, then Enter when `submit`.
    pub fn send_input(&self, id: &str, text: &str, submit: bool) -> io::Result<()> {
        let session = Self::session_name(id);
        if !text.is_empty() {
            self.run(&["send-keys", "-t", &session, "-l", "--", text])?;
        }
        if submit {
            self.run(&["send-keys", "-t", &session, "Enter"])?;
        }
        Ok(())
    }

    pub fn kill(&self, id: &str) -> io::Result<()> {
        self.run(&["kill-session", "-t", &Self::session_name(id)])
    }

    /// Every taskwire pane in one tmux call, keyed by task id. An empty map when no tmux
    /// server runs (none started yet, or someone killed it).
    pub fn list_panes(&self) -> io::Result<HashMap<String, PaneState>> {
        let out = self
            .tmux()
            .args(["list-panes", "-a", "-F"])
            .arg("#{session_name}\t#{pane_dead}\t#{pane_dead_status}\t#{pane_dead_signal}\t#{pane_width}\t#{pane_height}")
            .output()?;
        if !out.status.success() {
            if self.server_missing(&out) {
                return Ok(HashMap::new());
            }
            return Err(tmux_error(&out));
        }
        let mut panes = HashMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut fields = line.split('\t');
            let (Some(session), Some(dead), status, signal, cols, rows) = (
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
            ) else {
                continue;
            };
            let Some(id) = session.strip_prefix("tw-") else {
                continue;
            };
            panes.insert(
                id.to_string(),
                PaneState {
                    dead: dead == "1",
                    exit_status: status.and_then(|s| s.parse().ok()),
                    exit_signal: signal.and_then(|s| s.parse().ok()),
                    size: PaneSize {
                        cols: cols.and_then(|c| c.parse().ok()).unwrap_or(0),
                        rows: rows.and_then(|r| r.parse().ok()).unwrap_or(0),
                    },
                },
            );
        }
        Ok(panes)
    }

    pub fn has_session(&self, id: &str) -> bool {
        self.run(&["has-session", "-t", &Self::session_name(id)])
            .is_ok()
    }

    fn server_running(&self) -> bool {
        self.run(&["list-sessions"]).is_ok()
    }

    fn server_missing(&self, out: &Output) -> bool {
        let err = String::from_utf8_lossy(&out.stderr);
        // Also seen while the server exits after its last session ended.
        [
            "no server running",
            "error connecting",
            "no current target",
            "no sessions",
        ]
        .iter()
        .any(|m| err.contains(m))
    }

    /// Stops the whole tmux server and every task on it (tests and benches clean up with it).
    pub fn kill_server(&self) {
        let _ = self.run(&["kill-server"]);
    }

    fn run(&self, args: &[&str]) -> io::Result<()> {
        check(self.tmux().args(args).output()?)
    }
}

fn check(out: Output) -> io::Result<()> {
    if out.status.success() {
        Ok(())
    } else {
        Err(tmux_error(&out))
    }
}

fn tmux_error(out: &Output) -> io::Error {
    let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
    io::Error::other(format!("tmux: {msg}"))
}

fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Quotes for /bin/sh: single quotes, with embedded ones closed and escaped.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Quotes for tmux's config parser: double quotes with `\`, `"` and `$` escaped.
fn tmux_quote(text: &str) -> String {
    let mut quoted = String::from("\"");
    for c in text.chars() {
        if matches!(c, '\\' | '"' | '$') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

impl Tmux {
    /// Removes several sessions with one tmux call.
    pub fn kill_sessions(&self, ids: &[String]) -> io::Result<()> {
        let mut args: Vec<String> = Vec::new();
        for id in ids {
            if !args.is_empty() {
                args.push(";".into());
            }
            args.extend(["kill-session".into(), "-t".into(), Self::session_name(id)]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&args)
    }
}
