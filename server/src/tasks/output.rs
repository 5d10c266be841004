//! A task's output: its log file read back as plain text, from an offset (the output
//! stream) or from the end (tails).

use std::{
    collections::HashMap,
    io::{Read, Seek, SeekFrom},
    path::Path,
};

use app::model::TaskTail;

use super::{TaskError, TaskResult, Tasks};

impl Tasks {
    /// The last `lines` lines the task printed, as plain text.
    pub fn output_tail(&self, id: &str, lines: usize) -> TaskResult<String> {
        self.get(id)?;
        self.read_output_tail(id, lines)
    }

    /// The last `lines` lines of a known task's output file, as plain text.
    fn read_output_tail(&self, id: &str, lines: usize) -> TaskResult<String> {
        let bytes = read_tail(&self.output_path(id), lines)
            .map_err(|e| TaskError::Internal(format!("reading output: {e}")))?;
        let text = plain_text(&bytes);
        let mut kept: Vec<&str> = text.lines().rev().take(lines).collect();
        kept.reverse();
        Ok(kept.join("\n"))
    }

    /// The last `lines` lines of every live task whose output grew since `sizes` (output
    /// sizes by task id, as returned by the previous call; empty at first).
    pub fn tails_since(
        &self,
        sizes: &mut HashMap<String, u64>,
        lines: usize,
    ) -> TaskResult<Vec<TaskTail>> {
        let live = self.store().list_live()?;
        let mut grown = Vec::new();
        let mut now = HashMap::with_capacity(live.len());
        for task in live {
            let size = std::fs::metadata(self.output_path(&task.id)).map_or(0, |m| m.len());
            if size > 0 && sizes.get(&task.id) != Some(&size) {
                // The task came from the live list: no need to look it up again.
                let text = self.read_output_tail(&task.id, lines)?;
                grown.push(TaskTail {
                    id: task.id.clone(),
                    text,
                });
            }
            now.insert(task.id, size);
        }
        *sizes = now;
        Ok(grown)
    }
}

/// Reads enough of the end of `path` to hold `lines` lines.
fn read_tail(path: &Path, lines: usize) -> std::io::Result<Vec<u8>> {
    const BLOCK: u64 = 64 * 1024;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let mut start = len;
    let mut buf = Vec::new();
    while start > 0 {
        let from = start.saturating_sub(BLOCK);
        let mut block = vec![0; (start - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut block)?;
        block.extend_from_slice(&buf);
        buf = block;
        start = from;
        if buf.iter().filter(|&&b| b == b'\n').count() > lines {
            break;
        }
    }
    Ok(buf)
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
