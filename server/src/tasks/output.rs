//! A task's output read back: the last lines of its screen (tails, `/output`) through its
//! terminal model, and the plain text of its log from an offset (the output stream).

use std::collections::HashMap;

use app::model::TaskTail;

use crate::sync::lock;

use super::{
    screen::{PaneSize, Screen, DEFAULT_SIZE},
    watch::Watched,
    TaskError, TaskResult, Tasks,
};

impl Tasks {
    /// The last `lines` lines of the task's screen and scrollback, as plain text.
    pub fn output_tail(&self, id: &str, lines: usize) -> TaskResult<String> {
        self.get(id)?;
        let mut screen = Screen::of_log_end(&self.output_path(id), self.pane_size(id), lines)
            .map_err(TaskError::reading)?;
        Ok(screen.last_lines(lines))
    }

    /// The tails (see `Screen::tail`) of every live task whose output grew since `sizes`
    /// (log lengths by task id, as returned by the previous call; empty at first).
    pub fn tails_since(
        &self,
        sizes: &mut HashMap<String, u64>,
        lines: usize,
    ) -> TaskResult<Vec<TaskTail>> {
        let live = self.store().live_ids()?;
        let mut grown = Vec::new();
        let mut now = HashMap::with_capacity(live.len());
        let mut watched = lock(&self.watched);
        for id in live {
            let log = self.output_path(&id);
            let pane = self.pane_size(&id);
            let screen = &mut Watched::of(&mut watched, &id, pane).screen;
            let size = screen.log_len(&log).map_err(TaskError::reading)?;
            if size > 0 && sizes.get(&id) != Some(&size) {
                screen.resize(pane);
                screen.catch_up(size).map_err(TaskError::reading)?;
                grown.push(TaskTail {
                    id: id.clone(),
                    text: screen.tail(lines),
                });
            }
            now.insert(id, size);
        }
        // The models of tasks that ended are let go of.
        watched.retain(|id, _| now.contains_key(id));
        *sizes = now;
        Ok(grown)
    }

    /// The task's pane size as tmux last reported it, else the size panes start with.
    pub fn pane_size(&self, id: &str) -> PaneSize {
        lock(&self.pane_sizes)
            .get(id)
            .copied()
            .unwrap_or(DEFAULT_SIZE)
    }
}

/// Terminal output as plain text: escape sequences removed, CRLF as LF, lone CRs dropped.
pub fn plain_text(bytes: &[u8]) -> String {
    let stripped = strip_ansi_escapes::strip(bytes);
    String::from_utf8_lossy(&stripped)
        .replace("\r\n", "\n")
        .replace('\r', "")
}

/// The most one output frame carries; more follows at once.
pub const READ_MAX: usize = 256 * 1024;

pub async fn read_from(path: &std::path::Path, offset: u64) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    let mut bytes = Vec::new();
    file.take(READ_MAX as u64).read_to_end(&mut bytes).await?;
    Ok(bytes)
}

/// How much of `bytes` ends on a UTF-8 character boundary (a character split across two
/// reads waits for its other half).
pub fn utf8_complete_len(bytes: &[u8]) -> usize {
    match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => bytes.len(),
    }
}
