//! The task runtime: every task is a session `tw-<id>` on a dedicated tmux server.
//!
//! tmux owns the processes, so tasks outlive taskwire. The server is started with our own
//! config file, which makes panes stay around after their program exits (so the exit status
//! can be read), touches a wake file whenever a pane dies (so the reconciler hears about
//! exits at once instead of waiting for its next pass), and keeps the server running when its
//! last session ends: a server on its way out takes down a session created in that moment
//! ("server exited unexpectedly"), and tasks are often started just as the last one is removed.

use super::{procfs::PaneProcess, prompt::Key, screen::PaneSize};

use std::{
    collections::HashMap,
    io,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Arc,
    },
};

/// The tmux user option that names the data dir of the taskwire a tmux server belongs to.
const OWNER_OPTION: &str = "@taskwire_owner";

/// The socket of the data dir's tmux server when `TASKWIRE_TMUX_SOCKET` is not set:
/// `taskwire-<hash of the data dir>`, so two taskwires never share one. A server on the
/// socket of earlier versions (`taskwire`) that this data dir's tasks run on is kept: it
/// belongs to this data dir (it says so), or says nothing and holds one of `live` (the ids
/// of this data dir's live tasks).
pub fn default_socket(data_dir: &Path, live: &[String]) -> String {
    let legacy = Tmux::on_socket("taskwire", data_dir);
    let ours = match legacy.owner() {
        Some(owner) => Path::new(&owner) == data_dir,
        None => legacy.has_any_session(live),
    };
    if ours {
        return legacy.socket;
    }
    // The same name from every build (std's hasher may change between versions).
    let hash = app::fnv::Fnv::of(path_str(data_dir).as_bytes());
    format!("taskwire-{:08x}", hash as u32)
}

/// What `tmux list-panes -a` found.
#[derive(Debug)]
pub enum Listing {
    /// The server answered: every taskwire pane, keyed by task id.
    Panes(HashMap<String, PaneState>),
    /// No tmux server runs (none started yet, or it exited or was killed).
    NoServer,
}

/// One pane as `tmux list-panes -a` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaneState {
    pub dead: bool,
    /// The exit status of a dead pane's program, when it exited rather than being signalled.
    pub exit_status: Option<i32>,
    /// The signal that ended a dead pane's program, if any.
    pub exit_signal: Option<i32>,
    pub size: PaneSize,
    /// The pane's first process and its tty (`None` if tmux did not say).
    pub process: Option<PaneProcess>,
}

#[derive(Clone, Debug)]
pub struct Tmux {
    socket: String,
    config_file: PathBuf,
    wake_file: PathBuf,
    /// Processes spawned so far: the reconciler's cost must not grow with the task count.
    spawned: Arc<AtomicU64>,
    /// The tmux server's pid as it last told us (0: not known).
    server_pid: Arc<AtomicU32>,
    /// taskwire's own settings in its environment (`TASKWIRE_*`), kept from tmux.
    own_settings: Arc<[std::ffi::OsString]>,
}

/// A task's own files, each created empty and private to the user before it starts.
pub struct TaskFiles {
    /// What the pane prints (tmux `pipe-pane`).
    pub log: PathBuf,
    /// The command's exit status, written by the pane's shell when it ends.
    pub exit: PathBuf,
    /// Where the shell writes it first (created private, so the renamed file is too).
    pub exit_pending: PathBuf,
    /// The task's environment variables, sourced by the pane's shell.
    pub env: PathBuf,
}

impl Tmux {
    /// A runtime whose tmux config and wake file live in `data_dir` (canonical). A tmux
    /// server on `socket` that belongs to the taskwire of another data dir is refused: two
    /// taskwires on one server would sweep each other's sessions as orphans, and the later
    /// would take the earlier's hooks.
    pub fn new(socket: &str, data_dir: &Path) -> io::Result<Tmux> {
        let tmux = Tmux::on_socket(socket, data_dir);
        if let Some(owner) = tmux.owner().filter(|owner| Path::new(owner) != data_dir) {
            return Err(io::Error::other(format!(
                "the tmux server on socket {socket:?} belongs to the taskwire of {owner}: give \
                 this one a socket of its own (TASKWIRE_TMUX_SOCKET), or leave it unset"
            )));
        }
        std::fs::write(&tmux.config_file, tmux.config_text(data_dir))?;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&tmux.wake_file)?;
        // A tmux server left running by an earlier taskwire read an older config: apply ours.
        if tmux.server_running() {
            let _ = tmux.run(&["source-file", &path_str(&tmux.config_file)]);
            tmux.learn_server_pid();
        }
        Ok(tmux)
    }

    /// The tmux socket name (`tmux -L`).
    pub fn socket(&self) -> &str {
        &self.socket
    }

    pub fn wake_file(&self) -> &Path {
        &self.wake_file
    }

    /// How many tmux processes this runtime has spawned.
    pub fn spawned(&self) -> u64 {
        self.spawned.load(Ordering::Relaxed)
    }

    /// `tmux -L <socket>`, counted, without taskwire's own settings in its environment:
    /// the tmux server inherits the environment of the client that starts it, and every
    /// task that of the server, so the token, a NATS URL with its password, the webhook's
    /// URL would reach every program taskwire runs.
    fn tmux(&self) -> Command {
        self.spawned.fetch_add(1, Ordering::Relaxed);
        let mut command = Command::new("tmux");
        command.args(["-L", &self.socket]);
        for name in self.own_settings.iter() {
            command.env_remove(name);
        }
        command
    }

    fn on_socket(socket: &str, data_dir: &Path) -> Tmux {
        Tmux {
            socket: socket.to_string(),
            config_file: data_dir.join("tmux.conf"),
            wake_file: data_dir.join("tmux-wake"),
            spawned: Arc::default(),
            server_pid: Arc::default(),
            own_settings: std::env::vars_os()
                .map(|(name, _)| name)
                .filter(|name| name.to_string_lossy().starts_with("TASKWIRE_"))
                .collect(),
        }
    }

    /// Whether a session of one of the tasks `ids` runs on this socket.
    fn has_any_session(&self, ids: &[String]) -> bool {
        let Ok(out) = self
            .tmux()
            .args(["list-sessions", "-F", "#{session_name}"])
            .output()
        else {
            return false;
        };
        let names = String::from_utf8_lossy(&out.stdout);
        names
            .lines()
            .filter_map(|name| name.strip_prefix("tw-"))
            .any(|id| ids.iter().any(|live| live == id))
    }

    /// The data dir of the taskwire whose tmux server runs on this socket, if one runs and
    /// says.
    fn owner(&self) -> Option<String> {
        let out = self
            .tmux()
            .args(["show-options", "-gqv", OWNER_OPTION])
            .output()
            .ok()?;
        let owner = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !owner.is_empty()).then_some(owner)
    }

    fn config_text(&self, data_dir: &Path) -> String {
        let touch = format!("touch {}", shell_quote(&path_str(&self.wake_file)));
        format!(
            "# Written by taskwire at every start.\n\
             set -g {OWNER_OPTION} {owner}\n\
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
            wake = tmux_quote(&format!("run-shell -b {}", tmux_quote(&touch))),
            owner = tmux_quote(&path_str(data_dir)),
        )
    }

    pub fn session_name(id: &str) -> String {
        format!("tw-{id}")
    }

    /// Starts `command` (run by `shell -c`) in a new session. A placeholder runs until
    /// `pipe-pane` is attached, then the real command replaces it, so not even the first line
    /// of output is lost. The command's exit status is written to `exit_file`: tmux 3.3 does
    /// not always learn the status of a pane's program, so it cannot be the only witness.
    /// Returns the pane's process, as the same tmux call reports it.
    pub fn start(
        &self,
        id: &str,
        shell: &str,
        command: &str,
        workdir: &Path,
        env: &[(&str, String)],
        files: &TaskFiles,
    ) -> io::Result<Option<PaneProcess>> {
        let session = Self::session_name(id);
        // tmux expands formats (`#(…)` runs a command) in a start directory and in a
        // pipe-pane command, never in the command of a pane: the workdir is reached with `cd`
        // inside the pane's command, and our own paths in pipe-pane have `#` escaped.
        let pipe = tmux_escape(&format!(
            "exec cat >> {}",
            shell_quote(&path_str(&files.log))
        ));
        // The task's variables (its own token among them) reach it through a file only its
        // user may read, sourced by the pane's shell: a command line is readable by every
        // local user (`/proc/*/cmdline`), and tmux's server keeps its first one for life.
        let exports: String = env
            .iter()
            .map(|(name, value)| format!("export {name}={}\n", shell_quote(value)))
            .collect();
        std::fs::write(&files.env, exports)?;
        // The exit status is written beside the exit file, synced, and renamed into place
        // (then the directory synced): after a power loss it is there whole or not at all.
        // Then the shell touches the wake file itself: tmux's pane-died hook is not
        // reliable either when tmux misses the status.
        let (pending, exit) = (
            shell_quote(&path_str(&files.exit_pending)),
            shell_quote(&path_str(&files.exit)),
        );
        let dir = shell_quote(&path_str(files.exit.parent().unwrap_or(Path::new("."))));
        let command = format!(
            ". {} && cd -- {} && {} -c {}; echo $? > {pending}; sync {pending}; mv -f {pending} {exit}; sync {dir}; touch {}",
            shell_quote(&path_str(&files.env)),
            shell_quote(&path_str(workdir)),
            shell_quote(shell),
            shell_quote(command),
            shell_quote(&path_str(&self.wake_file))
        );
        let config = path_str(&self.config_file);
        let out = self
            .tmux()
            .args(["-f", &config])
            .args(["new-session", "-d", "-s", &session, "-x", "200", "-y", "50"])
            .arg("sleep 86400")
            .args([";", "pipe-pane", "-t", &session, &pipe])
            .args([";", "respawn-pane", "-k", "-t", &session, &command])
            .args([";", "display-message", "-p", "-t", &session])
            .arg("#{pane_pid}\t#{pane_tty}")
            .output()?;
        let printed = String::from_utf8_lossy(&out.stdout).into_owned();
        check(out)?;
        if self.running_server().is_none() {
            self.learn_server_pid();
        }
        let mut fields = printed.trim_end().split('\t');
        Ok(pane_process(fields.next(), fields.next()))
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

    /// Types `text` exactly as given, then Enter when `submit`. The text goes through a
    /// paste buffer loaded from stdin: `send-keys` arguments are parsed by tmux (a trailing
    /// `;` ends the command, and a long one is "command too long").
    pub fn send_input(&self, id: &str, text: &str, submit: bool) -> io::Result<()> {
        let session = Self::session_name(id);
        if !text.is_empty() {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let buffer = format!("tw-input-{}", NEXT.fetch_add(1, Ordering::Relaxed));
            let mut child = self
                .tmux()
                .args(["load-buffer", "-b", &buffer, "-"])
                .args([
                    ";",
                    "paste-buffer",
                    "-d",
                    "-r",
                    "-b",
                    &buffer,
                    "-t",
                    &session,
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(text.as_bytes())?;
            }
            check(child.wait_with_output()?)?;
        }
        if submit {
            self.run(&["send-keys", "-t", &session, "Enter"])?;
        }
        Ok(())
    }

    /// Presses `keys` in the task's pane, in one tmux call: named keys as the pane's
    /// program expects them (tmux knows whether it asked for application cursor keys).
    pub fn send_keys(&self, id: &str, keys: &[Key]) -> io::Result<()> {
        let session = Self::session_name(id);
        let mut args: Vec<&str> = Vec::new();
        for key in keys {
            if !args.is_empty() {
                args.push(";");
            }
            args.extend(["send-keys", "-t", &session]);
            match key {
                Key::Chars(chars) => args.extend(["-l", chars]),
                Key::Named(name) => args.push(name),
            }
        }
        self.run(&args)
    }

    pub fn kill(&self, id: &str) -> io::Result<()> {
        self.run(&["kill-session", "-t", &Self::session_name(id)])
    }

    /// Every taskwire pane in one tmux call, keyed by task id, or that no tmux server runs.
    ///
    /// A failure to connect is not taken for a server that is gone: a `/tmp` cleaner may
    /// have removed its socket, or the file table may be full. When the server we last saw
    /// still runs, it is asked to recreate its socket (tmux does on `SIGUSR1`) and the call
    /// fails, so nothing is concluded from it.
    pub fn list_panes(&self) -> io::Result<Listing> {
        let out = self
            .tmux()
            .args(["list-panes", "-a", "-F"])
            .arg("#{pid}\t#{session_name}\t#{pane_dead}\t#{pane_dead_status}\t#{pane_dead_signal}\t#{pane_width}\t#{pane_height}\t#{pane_pid}\t#{pane_tty}")
            .output()?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            if ["no current target", "no sessions"]
                .iter()
                .any(|m| err.contains(m))
            {
                return Ok(Listing::Panes(HashMap::new()));
            }
            if !["no server running", "error connecting"]
                .iter()
                .any(|m| err.contains(m))
            {
                return Err(tmux_error(&out));
            }
            return match self.running_server() {
                Some(pid) => {
                    tracing::error!(
                        "cannot reach the tmux server (pid {pid}) of the tasks: {}; \
                         asking it to recreate its socket",
                        err.trim()
                    );
                    // SAFETY: a plain signal to a process we checked is our tmux server.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGUSR1) };
                    Err(tmux_error(&out))
                }
                None => Ok(Listing::NoServer),
            };
        }
        let mut panes = HashMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut fields = line.split('\t');
            let (Some(pid), Some(session), Some(dead), status, signal, cols, rows) = (
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
            ) else {
                continue;
            };
            self.note_server_pid(pid.parse().ok());
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
                    process: pane_process(fields.next(), fields.next()),
                },
            );
        }
        Ok(Listing::Panes(panes))
    }

    /// Whether the task's session exists; an error when tmux could not be asked.
    pub fn has_session(&self, id: &str) -> io::Result<bool> {
        let out = self
            .tmux()
            .args(["has-session", "-t", &Self::session_name(id)])
            .output()?;
        if out.status.success() {
            return Ok(true);
        }
        let err = String::from_utf8_lossy(&out.stderr);
        if ["can't find session", "no current target", "no sessions"]
            .iter()
            .any(|m| err.contains(m))
        {
            return Ok(false);
        }
        if err.contains("no server running") && self.running_server().is_none() {
            return Ok(false);
        }
        Err(tmux_error(&out))
    }

    /// The pid of our tmux server, asked of the server itself (at start, and after starting
    /// a task): what tells a lost socket from a server that is gone.
    fn learn_server_pid(&self) {
        if let Ok(out) = self
            .tmux()
            .args(["display-message", "-p", "#{pid}"])
            .output()
        {
            let pid = String::from_utf8_lossy(&out.stdout).trim().parse().ok();
            self.note_server_pid(pid);
        }
    }

    fn note_server_pid(&self, pid: Option<u32>) {
        if let Some(pid) = pid {
            self.server_pid.store(pid, Ordering::Relaxed);
        }
    }

    /// The tmux server we last saw, if that process still runs.
    fn running_server(&self) -> Option<u32> {
        let pid = self.server_pid.load(Ordering::Relaxed);
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (pid != 0 && comm.starts_with("tmux")).then_some(pid)
    }

    fn server_running(&self) -> bool {
        self.run(&["list-sessions"]).is_ok()
    }

    /// Stops the whole tmux server and every task on it (tests and benches clean up with it).
    pub fn kill_server(&self) {
        let _ = self.run(&["kill-server"]);
    }

    fn run(&self, args: &[&str]) -> io::Result<()> {
        check(self.tmux().args(args).output()?)
    }
}

/// A pane's process from tmux's `#{pane_pid}` and `#{pane_tty}`.
fn pane_process(pid: Option<&str>, tty: Option<&str>) -> Option<PaneProcess> {
    let pid = pid?.trim().parse().ok().filter(|&p: &i32| p > 0)?;
    let tty = tty?.trim();
    (!tty.is_empty()).then(|| PaneProcess {
        pid,
        tty: tty.to_string(),
    })
}

/// `#` doubled: tmux reads it as a literal `#` where it expands formats.
fn tmux_escape(text: &str) -> String {
    text.replace('#', "##")
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
