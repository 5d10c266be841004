//! Recognising a prompt on a task's screen, and the keys that answer it.
//!
//! What counts is the shape of the bottom of the screen, never an agent's words (their
//! wording changes from one release to the next):
//! - a menu: 2 to 12 rows aligned on one column, exactly one of them marked as the current
//!   one (a cursor glyph before it, or drawn in reverse video), under a question (a row with
//!   a `?` or ending in `:`), at the bottom of the screen or above a short footer set off by
//!   a blank row;
//! - a yes/no question: the row the cursor waits on ends in `[Y/n]`, `(y/N)`, `(yes/no)`…;
//! - a question that wants words: the cursor waits right after a row ending in `?` or `:`.
//!
//! A numbered list in scrolling output has no marked row; a menu that scrolled up is not at
//! the bottom. Whether the screen has stopped changing is for the watcher to judge
//! (`watch`): here is only what one screen shows.

use app::model::{Choice, Prompt};

use super::screen::is_box_drawing;

/// A prompt seen on a screen.
#[derive(Clone, Debug, PartialEq)]
pub struct Sighting {
    pub prompt: Prompt,
    style: Style,
    /// Which choice is marked current (a menu's).
    marked: Option<usize>,
    /// The screen row its block ends on: a prompt that moved (the screen scrolled) is
    /// another sighting.
    bottom: u16,
}

/// What a watcher compares from one look to the next: the same prompt, marked alike, in
/// the same place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    id: String,
    marked: Option<usize>,
    bottom: u16,
}

#[derive(Clone, Debug, PartialEq)]
enum Style {
    /// One key per choice: its digit, or the letter the menu shows beside it, else the
    /// arrows from the marked one and Enter.
    Menu { keys: Vec<Option<Key>> },
    /// `y`/`n` (or `yes`/`no`) and Enter.
    YesNo { words: bool },
    /// Words and Enter.
    Text,
}

/// A key typed into a task, as tmux names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    /// Characters typed as they are (`send-keys -l`).
    Chars(String),
    /// A key by its tmux name: `Down`, `Up`, `Enter`, `Escape`.
    Named(&'static str),
}

/// What answers a prompt: keys, or words pasted and then Enter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Keys(Vec<Key>),
    Words(String),
}

/// Why a reply cannot answer a prompt.
#[derive(Debug, PartialEq, Eq)]
pub enum Unanswerable {
    UnknownChoice(String),
    /// A menu takes a choice, not words; a question that wants words takes text.
    WrongKind(&'static str),
}

impl std::fmt::Display for Unanswerable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unanswerable::UnknownChoice(choice) => {
                write!(f, "the prompt has no choice {choice:?}")
            }
            Unanswerable::WrongKind(what) => f.write_str(what),
        }
    }
}

/// The most rows a menu has.
const MAX_CHOICES: usize = 12;
/// How far above its choices a menu's question may be.
const QUESTION_REACH: u16 = 6;
/// The most rows of a footer under a menu.
const MAX_FOOTER: u16 = 3;
/// Longer rows are output, not a choice.
const MAX_LABEL_CHARS: usize = 160;
/// Cursor glyphs that mark a menu's current choice.
const MARKERS: [char; 9] = ['❯', '›', '>', '▶', '►', '→', '➜', '➤', '»'];

impl Sighting {
    pub fn signature(&self) -> Signature {
        Signature {
            id: self.prompt.id.clone(),
            marked: self.marked,
            bottom: self.bottom,
        }
    }

    /// Whether this prompt is a question that wants words (the weakest shape: a program
    /// that printed `Building:` and went on working looks the same for a moment).
    pub fn wants_words(&self) -> bool {
        self.style == Style::Text
    }

    /// The keys that pick `choice`, or the words that answer a question wanting them.
    pub fn answer(&self, choice: Option<&str>, text: Option<&str>) -> Result<Answer, Unanswerable> {
        match (&self.style, choice, text) {
            (Style::Text, None, Some(text)) => Ok(Answer::Words(text.to_string())),
            (Style::Text, Some(_), _) => Err(Unanswerable::WrongKind(
                "this question wants words: send `text`",
            )),
            (Style::YesNo { .. }, None, Some(text)) => Ok(Answer::Words(text.to_string())),
            (Style::Menu { .. }, None, Some(_)) => Err(Unanswerable::WrongKind(
                "this prompt takes one of its choices: send `choice`",
            )),
            (_, Some(choice), None) => self.choose(choice),
            _ => Err(Unanswerable::WrongKind("send one of `choice` and `text`")),
        }
    }

    fn choose(&self, choice: &str) -> Result<Answer, Unanswerable> {
        let index = self
            .prompt
            .choices
            .iter()
            .position(|c| c.id == choice)
            .ok_or_else(|| Unanswerable::UnknownChoice(choice.to_string()))?;
        match &self.style {
            Style::YesNo { words } => {
                let word = match (index, words) {
                    (0, true) => "yes",
                    (0, false) => "y",
                    (_, true) => "no",
                    (_, false) => "n",
                };
                Ok(Answer::Keys(vec![
                    Key::Chars(word.into()),
                    Key::Named("Enter"),
                ]))
            }
            Style::Menu { keys } => Ok(Answer::Keys(match &keys[index] {
                Some(key) => vec![key.clone()],
                None => self.arrows_to(index),
            })),
            Style::Text => Err(Unanswerable::UnknownChoice(choice.to_string())),
        }
    }

    /// From the marked choice to `index` with the arrow keys, then Enter.
    fn arrows_to(&self, index: usize) -> Vec<Key> {
        let from = self.marked.unwrap_or(0);
        let arrow = if index > from { "Down" } else { "Up" };
        let mut keys = vec![Key::Named(arrow); index.abs_diff(from)];
        keys.push(Key::Named("Enter"));
        keys
    }
}

/// The prompt at the bottom of `screen`, if it shows one. Questions that want words are
/// looked for only with `words` (a terminal task's shell prompt can end in `:`).
pub fn find(screen: &vt100::Screen, words: bool) -> Option<Sighting> {
    let bottom = screen.size().0.get() - 1;
    find_near(screen, words, bottom).0
}

/// `find`, starting from `hint`, the last written row of the screen at an earlier look:
/// also returns the last written row now, the hint for the next look.
///
/// Most of a look is reading rows (each is its every cell), and most of a screen still
/// filling up is blank rows below the cursor. On the main screen a program writes above
/// its cursor, or a little below it (a list under a question where the cursor waits), so
/// the rows further down are not read there; a full-screen program may draw anywhere on
/// the alternate screen, which is read from the bottom up.
pub fn find_near(
    screen: &vt100::Screen,
    words: bool,
    hint: u16,
) -> (Option<Sighting>, Option<u16>) {
    let mut view = View::new(screen);
    let Some(last) = view.last_written_row(hint) else {
        return (None, None);
    };
    if let Some(found) = line_question(&mut view, last, words) {
        return (Some(found), Some(last));
    }
    let menu = menu_ending_at(&mut view, last).or_else(|| {
        let above_footer = view.above_footer(last)?;
        menu_ending_at(&mut view, above_footer)
    });
    (menu, Some(last))
}

/// A yes/no question or one wanting words, on the row the cursor waits on.
fn line_question(view: &mut View, last: u16, words: bool) -> Option<Sighting> {
    let (row, col) = view.screen.cursor_position();
    if row != last || view.screen.hide_cursor() {
        return None;
    }
    let line = view.line(row);
    // The cursor right after the question (a space or two may follow it).
    let end = line.end_col?;
    if col <= end || col > end + 3 {
        return None;
    }
    let question = line.text().trim().to_string();
    let (style, choices) = if let Some(words) = yes_no(&question) {
        let choices = vec![choice("yes", "Yes"), choice("no", "No")];
        (Style::YesNo { words }, choices)
    } else if words && (question.ends_with('?') || question.ends_with(':')) {
        (Style::Text, Vec::new())
    } else {
        return None;
    };
    Some(Sighting {
        prompt: prompt(question, choices),
        style,
        marked: None,
        bottom: row,
    })
}

/// Whether `question` ends in a yes/no choice, and whether it wants the whole words.
fn yes_no(question: &str) -> Option<bool> {
    let trimmed = question.trim_end_matches(|c: char| c == ':' || c == '?' || c.is_whitespace());
    let close = trimmed.chars().last()?;
    let open = match close {
        ']' => '[',
        ')' => '(',
        _ => return None,
    };
    let start = trimmed.rfind(open)?;
    let inner = trimmed[start + 1..trimmed.len() - 1].trim().to_lowercase();
    match inner.as_str() {
        "y/n" => Some(false),
        "yes/no" => Some(true),
        _ => None,
    }
}

/// A menu whose last row (a choice, or the end of one) is `end`.
fn menu_ending_at(view: &mut View, end: u16) -> Option<Sighting> {
    let top = end.saturating_sub(MAX_CHOICES as u16 * 2);
    // The marked row: exactly one in the block, found from the bottom up.
    let marked_row = (top..=end)
        .rev()
        .find(|&r| view.line(r).marked().is_some())?;
    let body = view.line(marked_row).marked()?.body_col;
    let numbered = number_of(&view.line(marked_row).from(body)).is_some();
    let start = block_start(view, marked_row, body, numbered);
    let mut items: Vec<Item> = Vec::new();
    let mut marked = None;
    for row in start..=end {
        let line = view.line(row).clone();
        let is_item = if line.marked().is_some() {
            if marked.is_some() || line.marked().map(|m| m.body_col) != Some(body) {
                return None;
            }
            marked = Some(items.len());
            true
        } else if line.indent == Some(body) {
            true
        } else if line.indent.is_some_and(|i| i > body) && !items.is_empty() {
            // A label wrapped onto the next row.
            let last = items.last_mut()?;
            last.label.push(' ');
            last.label.push_str(line.text().trim());
            false
        } else {
            return None;
        };
        if is_item {
            items.push(Item::parse(line.from(body).trim_end(), numbered)?);
        }
    }
    let marked = marked?;
    if !(2..=MAX_CHOICES).contains(&items.len()) || !numbered_in_order(&items, numbered) {
        return None;
    }
    if items
        .iter()
        .any(|i| i.label.chars().count() > MAX_LABEL_CHARS)
    {
        return None;
    }
    let question = view.question_above(start)?;
    let keys = keys_of(&items);
    let choices = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let id = item
                .number
                .map_or_else(|| (i + 1).to_string(), |n| n.to_string());
            choice(&id, &item.label)
        })
        .collect();
    Some(Sighting {
        prompt: prompt(question, choices),
        style: Style::Menu { keys },
        marked: Some(marked),
        bottom: end,
    })
}

/// The first row of the block around `marked_row`: rows above it aligned on `body` (and
/// wrapped labels under them), up to the first that is not a choice.
fn block_start(view: &mut View, marked_row: u16, body: usize, numbered: bool) -> u16 {
    let mut start = marked_row;
    let mut row = marked_row;
    while row > 0 && marked_row - row < MAX_CHOICES as u16 * 2 {
        row -= 1;
        let line = view.line(row);
        let Some(indent) = line.indent else { break };
        if indent == body && is_choice_text(&line.from(body), numbered) {
            start = row;
        } else if indent <= body {
            break;
        }
    }
    start
}

/// Whether a row's text (from its choice column) can be a choice: numbered where the menu
/// is, and not the question itself.
fn is_choice_text(text: &str, numbered: bool) -> bool {
    if numbered {
        return number_of(text).is_some();
    }
    let text = text.trim_end();
    !(text.ends_with('?') || text.ends_with(':'))
}

fn numbered_in_order(items: &[Item], numbered: bool) -> bool {
    if !numbered {
        return true;
    }
    items
        .windows(2)
        .all(|w| matches!((w[0].number, w[1].number), (Some(a), Some(b)) if b == a + 1))
}

struct Item {
    number: Option<u32>,
    label: String,
    key: Option<Key>,
}

impl Item {
    /// A choice's text from its column: `2. Label`, or the label alone.
    fn parse(text: &str, numbered: bool) -> Option<Item> {
        let (number, label) = if numbered {
            let (number, rest) = number_of(text)?;
            (Some(number), rest)
        } else {
            (None, text)
        };
        let label = label.trim().to_string();
        if label.is_empty() {
            return None;
        }
        // One digit picks a choice at once; `10` would pick 1 and leave a 0 behind.
        let key = match number {
            Some(n @ 1..=9) => Some(Key::Chars(n.to_string())),
            Some(_) => None,
            None => hinted_key(&label),
        };
        Some(Item { number, label, key })
    }
}

/// The key of each choice; a letter shown beside more than one choice is nobody's (the
/// arrows pick those).
fn keys_of(items: &[Item]) -> Vec<Option<Key>> {
    items
        .iter()
        .map(|item| {
            let key = item.key.as_ref()?;
            let shared = items.iter().filter(|i| i.key.as_ref() == Some(key)).count() > 1;
            (!shared).then(|| key.clone())
        })
        .collect()
}

/// `12. rest` or `12) rest`: the number and the rest.
fn number_of(text: &str) -> Option<(u32, &str)> {
    let digits = text.len() - text.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || digits > 2 {
        return None;
    }
    let rest = &text[digits..];
    let rest = rest.strip_prefix('.').or_else(|| rest.strip_prefix(')'))?;
    if !rest.starts_with(' ') {
        return None;
    }
    Some((text[..digits].parse().ok()?, rest))
}

/// The key a label names at its end, as `(y)` or `(esc)`.
fn hinted_key(label: &str) -> Option<Key> {
    let inner = label.strip_suffix(')')?.rsplit_once('(')?.1;
    match inner {
        "esc" => Some(Key::Named("Escape")),
        _ if inner.chars().count() == 1 && inner.chars().all(|c| c.is_ascii_alphabetic()) => {
            Some(Key::Chars(inner.into()))
        }
        _ => None,
    }
}

fn choice(id: &str, label: &str) -> Choice {
    Choice {
        id: id.into(),
        label: label.into(),
    }
}

fn prompt(question: String, choices: Vec<Choice>) -> Prompt {
    let mut hash = app::fnv::Fnv::default();
    hash.write(question.as_bytes());
    for choice in &choices {
        hash.write(&[0]);
        hash.write(choice.id.as_bytes());
        hash.write(&[1]);
        hash.write(choice.label.as_bytes());
    }
    Prompt {
        id: format!("{:016x}", hash.finish()),
        question,
        choices,
    }
}

/// One row of the screen as a prompt is judged: its cells' characters with a box's lines
/// blanked out, where its text starts, and whether it is drawn in reverse video.
#[derive(Clone, Debug)]
struct Line {
    /// One char per cell, so that a column is an index (trailing spaces cut).
    chars: Vec<char>,
    /// The column of its first character; `None` for a blank row.
    indent: Option<usize>,
    /// The column of its last character.
    end_col: Option<u16>,
    inverse: bool,
}

/// A marked row: where its text starts after the marker.
struct Mark {
    body_col: usize,
}

impl Line {
    /// Its text from column `col` on.
    fn from(&self, col: usize) -> String {
        self.chars.get(col..).unwrap_or_default().iter().collect()
    }

    fn text(&self) -> String {
        self.from(0)
    }

    fn marked(&self) -> Option<Mark> {
        let indent = self.indent?;
        let glyph = MARKERS.contains(&self.chars[indent]);
        if glyph && self.chars.get(indent + 1) == Some(&' ') {
            let body_col = (indent + 1..self.chars.len()).find(|&c| self.chars[c] != ' ')?;
            return Some(Mark { body_col });
        }
        (self.inverse && !glyph).then_some(Mark { body_col: indent })
    }
}

/// The screen's rows, each read once and only when asked for: most screens are judged from
/// their last few rows.
struct View<'a> {
    screen: &'a vt100::Screen,
    rows: u16,
    read: Vec<Option<Line>>,
}

impl<'a> View<'a> {
    fn new(screen: &'a vt100::Screen) -> View<'a> {
        let rows = screen.size().0;
        View {
            screen,
            rows: rows.get(),
            read: vec![None; usize::from(rows.get())],
        }
    }

    fn line(&mut self, row: u16) -> &Line {
        let index = usize::from(row);
        if self.read[index].is_none() {
            self.read[index] = Some(read_line(self.screen, row));
        }
        self.read[index].as_ref().expect("just read")
    }

    /// The last row with something on it (see `find_near` for where it is looked for).
    fn last_written_row(&mut self, hint: u16) -> Option<u16> {
        let bottom = self.rows - 1;
        let from = if self.screen.alternate_screen() {
            bottom
        } else {
            hint.max(self.screen.cursor_position().0).min(bottom)
        };
        // Down from there, across a blank row or two (a footer under a menu).
        let (mut last, mut blanks) = (None, 0);
        for row in from..=bottom {
            if self.written(row) {
                (last, blanks) = (Some(row), 0);
            } else {
                blanks += 1;
                if blanks > 2 {
                    break;
                }
            }
        }
        last.or_else(|| (0..from).rev().find(|&r| self.written(r)))
    }

    fn written(&mut self, row: u16) -> bool {
        self.line(row).indent.is_some()
    }

    /// The last row above a footer that ends at `last`: up to `MAX_FOOTER` rows, set off
    /// by a blank row.
    fn above_footer(&mut self, last: u16) -> Option<u16> {
        let mut row = last;
        let mut footer = 0;
        while self.line(row).indent.is_some() {
            footer += 1;
            if footer > MAX_FOOTER || row == 0 {
                return None;
            }
            row -= 1;
        }
        // One blank row or two, then the menu.
        let gap_end = row;
        while self.line(row).indent.is_none() {
            if row == 0 || gap_end - row >= 2 {
                return None;
            }
            row -= 1;
        }
        Some(row)
    }

    /// The question of a menu whose first choice is on `start`: the nearest row above with
    /// a `?` or ending in `:`, with the rows between it and the choices (what it asks about,
    /// e.g. a command).
    fn question_above(&mut self, start: u16) -> Option<String> {
        let reach = start.saturating_sub(QUESTION_REACH);
        let mut row = start;
        let mut detail = Vec::new();
        while row > reach {
            row -= 1;
            let text = self.line(row).text().trim().to_string();
            if text.contains('?') || text.ends_with(':') {
                detail.push(text);
                detail.reverse();
                return Some(detail.join("\n"));
            }
            if !text.is_empty() {
                detail.push(text);
            }
        }
        None
    }
}

fn read_line(screen: &vt100::Screen, row: u16) -> Line {
    // The row's text in one read (reaching a cell walks the rows before it, so reading a
    // row cell by cell cost more than the rest of a look), and none of the next.
    let text = screen.contents_between(row, 0, row + 1, 0);
    let text = text.trim_end_matches('\n');
    let mut chars: Vec<char> = text
        .chars()
        // A box's lines are drawing, not text: a menu in a box reads as the menu.
        .map(|c| if is_box_drawing(c) { ' ' } else { c })
        .collect();
    while chars.last().is_some_and(|c| c.is_whitespace()) {
        chars.pop();
    }
    let indent = chars.iter().position(|c| !c.is_whitespace());
    let end_col = chars.len().checked_sub(1).map(|c| c as u16);
    let inverse = indent.is_some_and(|first| drawn_inverse(screen, row, first, chars.len()));
    Line {
        indent,
        end_col,
        inverse,
        chars,
    }
}

/// Whether every character of the row from `first` to `end` is drawn in reverse video
/// (one look at the first settles it for most rows).
fn drawn_inverse(screen: &vt100::Screen, row: u16, first: usize, end: usize) -> bool {
    let inverse = |col: usize| {
        screen
            .cell(row, col as u16)
            .map(|c| (c.has_contents(), c.inverse()))
    };
    if !inverse(first).is_some_and(|(_, inverse)| inverse) {
        return false;
    }
    (first..end).all(|col| match inverse(col) {
        Some((true, inverse)) => {
            inverse
                || screen
                    .cell(row, col as u16)
                    .is_some_and(|c| c.contents().trim().is_empty())
        }
        _ => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn screen(bytes: &str) -> vt100::Parser {
        let size = |n| std::num::NonZeroU16::new(n).unwrap();
        let mut parser = vt100::Parser::new(size(24), size(80), 0);
        parser.process(bytes.replace('\n', "\r\n").as_bytes());
        parser
    }

    fn found(bytes: &str) -> Option<Sighting> {
        find(screen(bytes).screen(), true)
    }

    #[test]
    fn a_numbered_menu_with_a_cursor_and_a_footer() {
        let s = found(
            "Bash command\n  echo hi\n\n Do you want to proceed?\n ❯ 1. Yes\n   2. Yes, and always allow\n   3. No\n\n Esc to cancel · Tab to amend",
        )
        .expect("a menu");
        assert_eq!(s.prompt.question, "Do you want to proceed?");
        let labels: Vec<_> = s.prompt.choices.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, ["Yes", "Yes, and always allow", "No"]);
        assert_eq!(
            s.answer(Some("3"), None),
            Ok(Answer::Keys(vec![Key::Chars("3".into())]))
        );
        assert_eq!(
            s.answer(Some("7"), None),
            Err(Unanswerable::UnknownChoice("7".into()))
        );
    }

    #[test]
    fn a_cursor_only_menu_is_answered_with_arrows() {
        let s = found("? Pick a colour (Use arrow keys)\n  Red\n❯ Green\n  Blue").expect("a menu");
        assert_eq!(s.prompt.choices.len(), 3);
        assert_eq!(
            s.answer(Some("1"), None),
            Ok(Answer::Keys(vec![Key::Named("Up"), Key::Named("Enter")]))
        );
        assert_eq!(
            s.answer(Some("3"), None),
            Ok(Answer::Keys(vec![Key::Named("Down"), Key::Named("Enter")]))
        );
    }

    #[test]
    fn a_reverse_video_menu_in_a_box() {
        let s = found("┌──────┐\n│ Deploy where?   │\n│   staging   │\n│   \x1b[7mproduction\x1b[0m   │\n│   local   │\n└──────┘")
            .expect("a menu");
        assert_eq!(s.prompt.question, "Deploy where?");
        assert_eq!(s.marked, Some(1));
    }

    #[test]
    fn yes_no_and_words() {
        let s = found("Overwrite out.txt? [Y/n] ").expect("yes/no");
        assert_eq!(s.prompt.choices.len(), 2);
        assert_eq!(
            s.answer(Some("no"), None),
            Ok(Answer::Keys(vec![
                Key::Chars("n".into()),
                Key::Named("Enter")
            ]))
        );
        let s = found("What should the branch be called? ").expect("words");
        assert!(s.prompt.choices.is_empty());
        assert!(find(screen("Name: ").screen(), false).is_none());
    }

    #[test]
    fn not_prompts() {
        // Numbered steps: nothing marked.
        assert!(found("Build plan?\n 1. fetch\n 2. compile\n 3. link").is_none());
        // A menu with output below it.
        assert!(found("Proceed?\n❯ 1. Yes\n  2. No\ncompiling a\ncompiling b").is_none());
        // Output that ends in a question, with the cursor on the next row.
        assert!(found("Is this ok?\n").is_none());
        assert!(found("downloading 40%").is_none());
    }
}
