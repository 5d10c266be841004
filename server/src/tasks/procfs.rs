//! What a pane's program is blocked on, read from Linux's `/proc` without spawning anything.
//!
//! The processes that own a terminal at a given moment are its foreground process group
//! (`tpgid` in `/proc/<pid>/stat` of any process on it). Each of their threads is either
//! running or blocked in a system call, which `/proc/<pid>/task/<tid>/syscall` names with
//! its arguments. A `read` on a descriptor that is the pane's tty means the program waits
//! for the person; `poll`/`select`/`epoll` may wait for the tty or for anything else;
//! everything else (running, `wait4` for a child, a timer, a lock, disk, a socket) is work.
//!
//! A look walks the pane's process tree once, then keeps the group's leaves (members not
//! waiting for a child): a later look reads one small file per leaf (its system call, which
//! stays the same while it blocks), reads more only when that changed, and walks again only
//! when a leaf is gone, left the group, started waiting for a child, or now and then.

use std::{collections::HashMap, fs::File, io::Read, path::Path};

/// What the foreground of a pane is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Blocked reading the pane's terminal: it waits for the person.
    Reading,
    /// Running, or blocked on something other than the terminal.
    Busy,
    /// Waiting in `poll`/`select`/`epoll`: for the terminal or for something else, `/proc`
    /// cannot tell.
    Unsure,
}

/// A pane's first process and its terminal, as tmux reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaneProcess {
    pub pid: i32,
    /// The tty's path, e.g. `/dev/pts/3`.
    pub tty: String,
}

/// How a look treats the pane's own shell (the child of the pane's first process): a
/// terminal task's shell waiting in `pselect` at its prompt waits for a command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shell {
    AtPromptIsReading,
    LikeAnyProgram,
}

/// Walk the tree again about this often (in looks, spread over panes), to notice members
/// that joined the group without any leaf changing.
const WALK_EVERY: u32 = 40;
/// The most processes one walk visits (a fork bomb in a pane costs a bounded look).
const WALK_LIMIT: usize = 256;

/// Whether this system tells what its processes are blocked on.
pub fn available() -> bool {
    syscalls::KNOWN && Path::new("/proc/self/syscall").exists()
}

/// Looks at panes, remembering what the last look at each found.
#[derive(Default)]
pub struct Detector {
    watches: HashMap<String, Watch>,
}

struct Watch {
    pane: PaneProcess,
    /// The tty's device number (`tty_nr`), and the foreground group the leaves belong to.
    tty_nr: i32,
    tpgid: i32,
    leaves: Vec<Leaf>,
    /// Looks until the next walk.
    looks_left: u32,
}

struct Leaf {
    pid: i32,
    /// The pane's own shell, at its prompt when it is the foreground.
    is_pane_shell: bool,
    /// Its system call as last read, and what it meant: while it reads the same, the
    /// process is still blocked where it was (or still running).
    last: Option<(String, Blocked)>,
}

impl Detector {
    /// What the foreground of the pane of `key` is doing; `None` when it cannot be read
    /// (the pane's process is gone).
    pub fn look(&mut self, key: &str, pane: &PaneProcess, shell: Shell) -> Option<Verdict> {
        let watch = self.watches.get_mut(key).filter(|w| w.pane == *pane);
        let watch = match watch {
            Some(watch) if watch.looks_left > 0 && !watch.leaves.is_empty() => watch,
            _ => {
                let watch = walk(pane)?;
                self.watches.insert(key.to_string(), watch);
                self.watches.get_mut(key)?
            }
        };
        watch.looks_left = watch.looks_left.saturating_sub(1);
        if let Some(verdict) = judge(watch, shell) {
            return Some(verdict);
        }
        // The group changed since the walk: walk again.
        let mut fresh = walk(pane)?;
        let verdict = judge(&mut fresh, shell);
        self.watches.insert(key.to_string(), fresh);
        // Changing under our eyes: no verdict this time.
        verdict
    }

    /// Forgets panes not in `keys` (their tasks ended).
    pub fn keep_only<'a>(&mut self, keys: impl IntoIterator<Item = &'a str>) {
        let keep: std::collections::HashSet<&str> = keys.into_iter().collect();
        self.watches.retain(|k, _| keep.contains(k.as_str()));
    }
}

/// The verdict over the watched leaves; `None` when one of them is no longer a leaf of the
/// same foreground group.
fn judge(watch: &mut Watch, shell: Shell) -> Option<Verdict> {
    let mut verdict = Verdict::Busy;
    for leaf in &mut watch.leaves {
        let blocked = match leaf_blocked(leaf, watch.tpgid, watch.tty_nr, &watch.pane.tty)? {
            Blocked::Child => return None,
            Blocked::Poll if leaf.is_pane_shell && shell == Shell::AtPromptIsReading => {
                Blocked::TtyRead
            }
            other => other,
        };
        verdict = match (verdict, blocked) {
            (_, Blocked::TtyRead) => return Some(Verdict::Reading),
            (_, Blocked::Poll) => Verdict::Unsure,
            (v, _) => v,
        };
    }
    Some(verdict)
}

/// What a leaf is blocked on; `None` when it is gone or left the foreground group.
fn leaf_blocked(leaf: &mut Leaf, tpgid: i32, tty_nr: i32, tty: &str) -> Option<Blocked> {
    let pid = leaf.pid;
    let mut buf = [0; 256];
    let Some(syscall) = read_file(&format!("/proc/{pid}/syscall"), &mut buf) else {
        // Alive but not ours to read (a setuid `sudo` asking for a password; Yama's
        // ptrace_scope): it cannot be told, which is not the same as working.
        return read_stat(pid).map(|_| Blocked::Poll);
    };
    if let Some((last, blocked)) = &leaf.last {
        if last == syscall {
            return Some(*blocked);
        }
    }
    let stat = read_stat(pid)?;
    if stat.pgrp != tpgid || stat.tpgid != tpgid || stat.tty_nr != tty_nr {
        return None;
    }
    if stat.threads > 1 {
        // Another thread may be the one that reads: look at all of them, every time.
        leaf.last = None;
        return Some(blocked_on(pid, &stat, tty));
    }
    let blocked = syscall_blocked(pid, syscall, stat.state, tty);
    leaf.last = Some((syscall.to_string(), blocked));
    Some(blocked)
}

/// Finds the pane's foreground group by walking its process tree from its first process.
fn walk(pane: &PaneProcess) -> Option<Watch> {
    let root = read_stat(pane.pid)?;
    let mut watch = Watch {
        pane: pane.clone(),
        tty_nr: root.tty_nr,
        tpgid: root.tpgid,
        leaves: Vec::new(),
        // Spread over panes, so that one look does not walk every tree at once.
        looks_left: WALK_EVERY / 2 + pane.pid.unsigned_abs() % WALK_EVERY,
    };
    if root.tpgid <= 0 {
        return Some(watch);
    }
    let mut queue = vec![(pane.pid, root.ppid)];
    let mut visited = 0;
    while let Some((pid, ppid)) = queue.pop() {
        visited += 1;
        if visited > WALK_LIMIT {
            break;
        }
        let Some(stat) = (if pid == pane.pid {
            Some(root)
        } else {
            read_stat(pid)
        }) else {
            continue;
        };
        if stat.pgrp == root.tpgid && stat.state != b'Z' {
            let waits_for_child = blocked_on(pid, &stat, &pane.tty) == Blocked::Child;
            if !waits_for_child {
                watch.leaves.push(Leaf {
                    pid,
                    is_pane_shell: ppid == pane.pid,
                    last: None,
                });
            }
        }
        for child in children(pid) {
            queue.push((child, pid));
        }
    }
    Some(watch)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Blocked {
    /// In `read` on the pane's tty.
    TtyRead,
    /// In `poll`, `select` or `epoll`.
    Poll,
    /// In `wait4`/`waitid`: its child decides.
    Child,
    /// Running, or blocked on anything else.
    Work,
}

/// What a process is blocked on, over all its threads: reading the tty wins over waiting
/// in an event loop, which wins over work (a thread of an idle event-loop program may be
/// running its garbage collector).
fn blocked_on(pid: i32, stat: &Stat, tty: &str) -> Blocked {
    if stat.threads <= 1 {
        return thread_blocked(pid, pid, stat.state, tty);
    }
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Blocked::Work;
    };
    let mut seen = Blocked::Work;
    for tid in threads.flatten() {
        let Some(tid) = tid.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let state = if tid == pid {
            stat.state
        } else {
            match read_file(&format!("/proc/{pid}/task/{tid}/stat"), &mut [0; 512]) {
                Some(text) => parse_stat(text).map_or(b'X', |s| s.state),
                None => continue,
            }
        };
        match thread_blocked(pid, tid, state, tty) {
            Blocked::TtyRead => return Blocked::TtyRead,
            Blocked::Poll => seen = Blocked::Poll,
            Blocked::Child if tid == pid && seen == Blocked::Work => seen = Blocked::Child,
            _ => {}
        }
    }
    seen
}

fn thread_blocked(pid: i32, tid: i32, state: u8, tty: &str) -> Blocked {
    // Running (R) or in uninterruptible sleep (D, disk): work, without reading more.
    if state != b'S' {
        return Blocked::Work;
    }
    let mut buf = [0; 256];
    match read_file(&format!("/proc/{pid}/task/{tid}/syscall"), &mut buf) {
        Some(text) => syscall_blocked(pid, text, state, tty),
        // Not ours to read: it cannot be told (see `leaf_blocked`).
        None => Blocked::Poll,
    }
}

/// What the text of a `syscall` file means for a thread of `pid` in `state`.
fn syscall_blocked(pid: i32, text: &str, state: u8, tty: &str) -> Blocked {
    if state != b'S' {
        return Blocked::Work;
    }
    let mut fields = text.split_ascii_whitespace();
    let (Some(Ok(nr)), Some(arg0)) = (fields.next().map(str::parse::<i64>), fields.next()) else {
        return Blocked::Work; // "running", or a kernel thread
    };
    if syscalls::READS.contains(&nr) {
        let fd = i64::from_str_radix(arg0.trim_start_matches("0x"), 16).unwrap_or(-1);
        let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}"));
        return match target {
            Ok(path) if path == Path::new(tty) || path == Path::new("/dev/tty") => Blocked::TtyRead,
            _ => Blocked::Work,
        };
    }
    if syscalls::POLLS.contains(&nr) {
        return Blocked::Poll;
    }
    if syscalls::WAITS.contains(&nr) {
        return Blocked::Child;
    }
    Blocked::Work
}

/// The fields of `/proc/<pid>/stat` a look needs.
#[derive(Clone, Copy, Debug)]
struct Stat {
    state: u8,
    ppid: i32,
    pgrp: i32,
    tty_nr: i32,
    tpgid: i32,
    threads: i32,
}

fn read_stat(pid: i32) -> Option<Stat> {
    let mut buf = [0; 512];
    let len = read_bytes(&format!("/proc/{pid}/stat"), &mut buf)?;
    // A command name may hold any bytes.
    parse_stat(&String::from_utf8_lossy(&buf[..len]))
}

fn parse_stat(text: &str) -> Option<Stat> {
    // The command name may hold spaces and parentheses: the fields start after the last `)`.
    let rest = &text[text.rfind(')')? + 2..];
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    let mut number = || fields.next()?.parse::<i64>().ok();
    let ppid = number()? as i32;
    let pgrp = number()? as i32;
    let _session = number()?;
    let tty_nr = number()? as i32;
    let tpgid = number()? as i32;
    // flags, minflt, cminflt, majflt, cmajflt, utime, stime, cutime, cstime, priority, nice
    for _ in 0..11 {
        number()?;
    }
    let threads = number()? as i32;
    Some(Stat {
        state,
        ppid,
        pgrp,
        tty_nr,
        tpgid,
        threads,
    })
}

/// The children of a process's main thread (a pane's shells fork from it).
fn children(pid: i32) -> Vec<i32> {
    let mut buf = [0; 8192];
    read_file(&format!("/proc/{pid}/task/{pid}/children"), &mut buf)
        .map(|text| {
            text.split_ascii_whitespace()
                .filter_map(|c| c.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Reads a small `/proc` file into `buf` (no allocation for the text).
fn read_file<'b>(path: &str, buf: &'b mut [u8]) -> Option<&'b str> {
    let len = read_bytes(path, buf)?;
    std::str::from_utf8(&buf[..len]).ok()
}

/// Reads a small `/proc` file into `buf`; how many bytes it holds.
fn read_bytes(path: &str, buf: &mut [u8]) -> Option<usize> {
    let mut file = File::open(path).ok()?;
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(_) => return None,
        }
    }
    Some(len)
}

/// System call numbers, which differ by architecture.
#[cfg(target_arch = "x86_64")]
mod syscalls {
    pub const KNOWN: bool = true;
    /// read, pread64, readv, preadv, preadv2
    pub const READS: &[i64] = &[0, 17, 19, 295, 327];
    /// poll, select, pselect6, ppoll, epoll_wait, epoll_pwait, epoll_pwait2
    pub const POLLS: &[i64] = &[7, 23, 270, 271, 232, 281, 441];
    /// wait4, waitid
    pub const WAITS: &[i64] = &[61, 247];
}

#[cfg(target_arch = "aarch64")]
mod syscalls {
    pub const KNOWN: bool = true;
    pub const READS: &[i64] = &[63, 65, 67, 69, 286];
    pub const POLLS: &[i64] = &[72, 73, 22, 441];
    pub const WAITS: &[i64] = &[260, 95];
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod syscalls {
    pub const KNOWN: bool = false;
    pub const READS: &[i64] = &[];
    pub const POLLS: &[i64] = &[];
    pub const WAITS: &[i64] = &[];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_name_with_spaces_and_parentheses_parses() {
        let stat = parse_stat(
            "4063 (my (odd) prog) S 4054 4063 4063 34818 4063 4194560 1 2 3 4 5 6 7 8 20 0 3 0 9",
        )
        .unwrap();
        assert_eq!(stat.state, b'S');
        assert_eq!((stat.ppid, stat.pgrp, stat.tpgid), (4054, 4063, 4063));
        assert_eq!(stat.tty_nr, 34818);
        assert_eq!(stat.threads, 3);
    }
}
