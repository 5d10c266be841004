//! The terminal model of a task's pane: its output run through `vt100` at the pane's size,
//! so that every text view shows what the screen shows (a progress bar's latest value, an
//! agent's current status line), not the log with every redraw glued together.
//!
//! What a screen shows comes from the end of the log, so a model never reads more than a
//! window of it: reading a tail costs the tail, however long the log has grown.

use std::{fs::File, io, num::NonZeroU16, os::unix::fs::FileExt, path::Path};

/// A pane's size, in character cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PaneSize {
    pub cols: u16,
    pub rows: u16,
}

/// The size tasks' panes are created with (`tasks::runtime`).
pub const DEFAULT_SIZE: PaneSize = PaneSize {
    cols: 200,
    rows: 50,
};

/// The most of a log a live model reads at once: when it starts, and when the log grew by
/// more than this since it last looked (what is older than that is off the screen).
const LIVE_WINDOW: u64 = 256 * 1024;
/// Scrollback lines a one-off model keeps at most (each line costs 32 bytes a column).
const MAX_SCROLLBACK: usize = 2000;

/// A model kept up to date with a log it reads from where it stopped.
pub struct Screen {
    parser: vt100::Parser,
    /// How far into the log the model has read.
    offset: u64,
    /// The log, kept open between reads: a tails pass looks at every live task's log each
    /// second, and opening it each time cost more than reading what it gained.
    log: Option<File>,
}

impl Screen {
    /// A model without scrollback: what the tails need.
    pub fn new(size: PaneSize) -> Screen {
        Screen {
            parser: parser(size, 0),
            offset: 0,
            log: None,
        }
    }

    /// A model of the end of `log`, with up to `lines` lines of scrollback, for one read.
    pub fn of_log_end(log: &Path, size: PaneSize, lines: usize) -> io::Result<Screen> {
        let scrollback = lines.min(MAX_SCROLLBACK);
        // A line of the screen is rarely more than a few hundred bytes of output, however
        // it was drawn; a short tail reads a short window.
        let window = (scrollback as u64 + u64::from(size.rows)) * 256;
        let mut screen = Screen {
            parser: parser(size, scrollback),
            offset: 0,
            log: None,
        };
        let len = screen.log_len(log)?;
        screen.read_log(len, window.clamp(16 * 1024, 4 * 1024 * 1024))?;
        Ok(screen)
    }

    /// How long `log` is now (0 while it does not exist).
    pub fn log_len(&mut self, log: &Path) -> io::Result<u64> {
        if self.log.is_none() {
            match File::open(log) {
                Ok(file) => self.log = Some(file),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(e),
            }
        }
        self.log
            .as_ref()
            .map_or(Ok(0), |file| Ok(file.metadata()?.len()))
    }

    /// Feeds what the log gained up to `len` (its length, from `log_len`), at most the last
    /// `LIVE_WINDOW` bytes.
    pub fn catch_up(&mut self, len: u64) -> io::Result<()> {
        self.read_log(len, LIVE_WINDOW)
    }

    fn read_log(&mut self, len: u64, window: u64) -> io::Result<()> {
        let Some(file) = &self.log else {
            return Ok(());
        };
        if len < self.offset || len - self.offset > window {
            // Too far behind (or the log was replaced): start over near the end.
            let size = self.size();
            let scrollback = self.parser.screen().scrollback_capacity();
            self.parser = parser(size, scrollback);
            self.offset = len.saturating_sub(window);
        }
        if len == self.offset {
            return Ok(());
        }
        let mut bytes = vec![0; (len - self.offset) as usize];
        file.read_exact_at(&mut bytes, self.offset)?;
        self.offset = len;
        self.parser.process(&bytes);
        Ok(())
    }

    pub fn size(&self) -> PaneSize {
        let (rows, cols) = self.parser.screen().size();
        PaneSize {
            cols: cols.get(),
            rows: rows.get(),
        }
    }

    pub fn resize(&mut self, size: PaneSize) {
        if size != self.size() {
            let (rows, cols) = cells(size);
            self.parser.set_size(rows, cols);
        }
    }

    /// The last `lines` lines of what the screen shows now that say something: a row
    /// that holds only spaces and the borders of a box is left out, and a row's own borders
    /// are cut off (a full-screen program's menu in a box reads as the menu).
    pub fn tail(&self, lines: usize) -> String {
        let screen = self.parser.screen();
        let rows = self.size().rows;
        let says_something = |c: char| !c.is_whitespace() && !is_box_drawing(c);
        let mut kept = Vec::with_capacity(lines);
        // From the bottom up, row by row, until enough rows say something: this runs for
        // every live task whose output grew, and reading every row of every screen was
        // most of a tails pass.
        for row in (0..rows).rev() {
            if kept.len() == lines {
                break;
            }
            // The row and none of the next: vt100 reaches a row this way without reading
            // the rows before it (`rows().nth()` would draw each of them).
            let text = screen.contents_between(row, 0, row + 1, 0);
            let text = text.trim_matches(|c: char| !says_something(c));
            if !text.is_empty() {
                kept.push(text.to_string());
            }
        }
        kept.reverse();
        kept.join("\n")
    }

    /// The last `lines` lines of the scrollback and the screen (blank rows below the last
    /// written one left out).
    pub fn last_lines(&mut self, lines: usize) -> String {
        let mut shown = self.rows();
        while shown.last().is_some_and(String::is_empty) {
            shown.pop();
        }
        let wanted = lines.saturating_sub(shown.len());
        let mut above = self.scrollback_rows(wanted);
        above.append(&mut shown);
        above[above.len().saturating_sub(lines)..].join("\n")
    }

    /// The emulated screen itself.
    pub fn vt(&self) -> &vt100::Screen {
        self.parser.screen()
    }

    /// The screen's rows, without trailing spaces.
    pub fn rows(&self) -> Vec<String> {
        let cols = self.size().cols;
        self.parser
            .screen()
            .rows(0, cols)
            .map(|row| row.trim_end().to_string())
            .collect()
    }

    /// The last `wanted` lines of the scrollback, oldest first.
    fn scrollback_rows(&mut self, wanted: usize) -> Vec<String> {
        let size = self.size();
        let screen = self.parser.screen_mut();
        // Scrolled up by `offset`, the view's first row is the scrollback line that many
        // lines above the screen.
        screen.set_scrollback(usize::MAX);
        let mut offset = wanted.min(screen.scrollback());
        let mut rows = Vec::with_capacity(offset);
        while offset > 0 {
            screen.set_scrollback(offset);
            let chunk = offset.min(usize::from(size.rows));
            rows.extend(
                screen
                    .rows(0, size.cols)
                    .take(chunk)
                    .map(|row| row.trim_end().to_string()),
            );
            offset -= chunk;
        }
        screen.set_scrollback(0);
        rows
    }
}

/// The lines and corners of boxes (U+2500 to U+257F).
pub fn is_box_drawing(c: char) -> bool {
    ('\u{2500}'..='\u{257f}').contains(&c)
}

fn parser(size: PaneSize, scrollback: usize) -> vt100::Parser {
    let (rows, cols) = cells(size);
    vt100::Parser::new(rows, cols, scrollback)
}

fn cells(size: PaneSize) -> (NonZeroU16, NonZeroU16) {
    (
        NonZeroU16::new(size.rows).unwrap_or(NonZeroU16::MIN),
        NonZeroU16::new(size.cols).unwrap_or(NonZeroU16::MIN),
    )
}
