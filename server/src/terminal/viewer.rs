//! One viewer of a live task: a tmux client attached to the task's session in a pty of its
//! own, as a terminal would attach, so the viewer gets tmux's own rendering of the pane.
//!
//! The pty is read and written by two threads (pty descriptors block). A viewer that stops
//! reading fills only its own channel and its own tmux client's buffer: tmux never lets a
//! slow client hold up a pane or the other clients. Keys go the other way through a
//! bounded channel: a program that reads none of them holds up only its own viewer's
//! socket (see `terminal::view_live`), never the server's memory.

use std::{
    fmt::Display,
    io::{self, Read, Write},
};

use portable_pty::{native_pty_system, Child, CommandBuilder, MasterPty, PtySize};
use tokio::sync::mpsc;

use crate::tasks::{screen::PaneSize, Tasks};

/// Output chunks in flight between the pty and the WebSocket, per viewer.
const OUTPUT_CHUNKS: usize = 16;
/// Input chunks in flight between the WebSocket and the pty, per viewer, each at most
/// `INPUT_CHUNK_BYTES`: at most 1 MiB of keys waits for a program.
const INPUT_CHUNKS: usize = 16;
pub const INPUT_CHUNK_BYTES: usize = 64 * 1024;

pub struct Viewer {
    /// What the tmux client draws; closed when it exits (the session ended).
    pub output: mpsc::Receiver<Vec<u8>>,
    /// Keystrokes and pastes, typed into the task as they are (`INPUT_CHUNK_BYTES` at most
    /// each); full while the program does not read.
    pub input: mpsc::Sender<Vec<u8>>,
    master: Box<dyn MasterPty + Send>,
    /// The tmux client; taken when the viewer is dropped.
    child: Option<Box<dyn Child + Send + Sync>>,
}

impl Viewer {
    /// Attaches a new tmux client to the task's session, drawing at `size`.
    pub fn attach(tasks: &Tasks, id: &str, size: PaneSize) -> io::Result<Viewer> {
        let pair = native_pty_system()
            .openpty(pty_size(size))
            .map_err(pty_error)?;
        let argv = tasks.runtime.attach_command(id);
        let mut command = CommandBuilder::from_argv(argv.into_iter().map(Into::into).collect());
        command.env("TERM", "xterm-256color");
        // A taskwire started from inside tmux must not look nested to the client.
        command.env_remove("TMUX");
        let child = pair.slave.spawn_command(command).map_err(pty_error)?;
        // Only the client holds the pty's other end, so its exit ends our reads.
        drop(pair.slave);
        let (output_tx, output) = mpsc::channel(OUTPUT_CHUNKS);
        let mut reader = pair.master.try_clone_reader().map_err(pty_error)?;
        std::thread::Builder::new()
            .name("terminal-read".into())
            .spawn(move || {
                let mut buf = vec![0; 16 * 1024];
                while let Ok(n @ 1..) = reader.read(&mut buf) {
                    if output_tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            })?;
        let (input, mut input_rx) = mpsc::channel::<Vec<u8>>(INPUT_CHUNKS);
        let mut writer = pair.master.take_writer().map_err(pty_error)?;
        std::thread::Builder::new()
            .name("terminal-write".into())
            .spawn(move || {
                while let Some(bytes) = input_rx.blocking_recv() {
                    if writer.write_all(&bytes).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Viewer {
            output,
            input,
            master: pair.master,
            child: Some(child),
        })
    }

    /// The viewer's new size; tmux sizes the pane for its largest viewer.
    pub fn resize(&self, size: PaneSize) {
        let _ = self.master.resize(pty_size(size));
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        // Detach: the session and its program run on. The client is reaped off the
        // async threads.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            std::thread::spawn(move || {
                let _ = child.wait();
            });
        }
    }
}

fn pty_size(size: PaneSize) -> PtySize {
    PtySize {
        rows: size.rows,
        cols: size.cols,
        pixel_width: 0,
        pixel_height: 0,
    }
}

fn pty_error(e: impl Display) -> io::Error {
    io::Error::other(format!("pty: {e}"))
}
