//! What a task changed in its git workdir against the commit it started from: tracked
//! files as `git diff <base>` sees them (staged, unstaged and committed alike), and
//! untracked ones that are not ignored, as added. The counts cost what `git diff` costs
//! (a look at each file's stat, against the index), not the repository's history.

use std::path::Path;

use app::model::{Changes, DiffLine, FileDiff, FileStatus, Hunk, LineKind};

use super::{git, WorkspaceError, WorkspaceResult};

/// A file over this is counted, not shown.
const MAX_SHOWN_BYTES: u64 = 512 * 1024;
const MAX_SHOWN_LINES: usize = 5_000;

/// One changed file as `git diff --numstat` and `ls-files --others` list it.
struct Listed {
    path: String,
    old_path: Option<String>,
    insertions: u32,
    deletions: u32,
    binary: bool,
    untracked: bool,
}

/// The counts of what changed in `dir` since `base`.
pub fn count(dir: &Path, base: &str) -> WorkspaceResult<Changes> {
    let listed = list(&index_copy(dir)?, dir, base)?;
    Ok(Changes {
        files: listed.len() as u32,
        insertions: listed.iter().map(|f| f.insertions).sum(),
        deletions: listed.iter().map(|f| f.deletions).sum(),
    })
}

/// Every changed file of `dir` since `base`, with its hunks.
pub fn diff(dir: &Path, base: &str) -> WorkspaceResult<Vec<FileDiff>> {
    let index = index_copy(dir)?;
    let listed = list(&index, dir, base)?;
    let patch = index
        .run(&["diff", "--no-color", "--no-ext-diff", "-M", base, "--"])
        .map_err(|e| WorkspaceError::Git(e.words))?;
    let mut patches = split_patch(&patch).into_iter();
    let mut files = Vec::with_capacity(listed.len());
    for file in listed {
        let (status, hunks) = if file.untracked {
            (
                FileStatus::Added,
                added_hunks(&dir.join(&file.path), file.binary),
            )
        } else {
            let patch = patches.next().unwrap_or_default();
            (status_of(&patch, &file), hunks_of(&patch))
        };
        let too_large = hunks
            .as_ref()
            .is_none_or(|h| h.iter().map(|h| h.lines.len()).sum::<usize>() > MAX_SHOWN_LINES)
            && !file.binary;
        files.push(FileDiff {
            path: file.path,
            old_path: file.old_path,
            status,
            insertions: file.insertions,
            deletions: file.deletions,
            binary: file.binary,
            too_large,
            hunks: if too_large {
                Vec::new()
            } else {
                hunks.unwrap_or_default()
            },
        });
    }
    Ok(files)
}

fn index_copy(dir: &Path) -> WorkspaceResult<git::IndexCopy> {
    git::IndexCopy::of(dir).map_err(|e| WorkspaceError::Git(e.words))
}

/// The changed files: tracked ones in `git diff`'s order (the patch's), then untracked.
fn list(index: &git::IndexCopy, dir: &Path, base: &str) -> WorkspaceResult<Vec<Listed>> {
    let numstat = index
        .run(&["diff", "--numstat", "-z", "-M", base, "--"])
        .map_err(|e| WorkspaceError::Git(e.words))?;
    let mut files = parse_numstat(&numstat);
    let others = index
        .run(&["ls-files", "--others", "--exclude-standard", "-z"])
        .map_err(|e| WorkspaceError::Git(e.words))?;
    for path in others.split('\0').filter(|p| !p.is_empty()) {
        let (lines, binary) = read_lines(&dir.join(path)).unwrap_or((0, false));
        files.push(Listed {
            path: path.to_string(),
            old_path: None,
            insertions: lines,
            deletions: 0,
            binary,
            untracked: true,
        });
    }
    Ok(files)
}

/// `--numstat -z`: `ins\tdel\tpath\0`, or for a rename `ins\tdel\t\0old\0new\0`; a binary
/// file counts `-`.
fn parse_numstat(text: &str) -> Vec<Listed> {
    let mut files = Vec::new();
    let mut fields = text.split('\0');
    while let Some(record) = fields.next() {
        let mut parts = record.splitn(3, '\t');
        let (Some(ins), Some(del), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let (path, old_path) = if path.is_empty() {
            let old = fields.next().unwrap_or_default().to_string();
            (fields.next().unwrap_or_default().to_string(), Some(old))
        } else {
            (path.to_string(), None)
        };
        files.push(Listed {
            path,
            old_path,
            insertions: ins.parse().unwrap_or(0),
            deletions: del.parse().unwrap_or(0),
            binary: ins == "-",
            untracked: false,
        });
    }
    files
}

/// A file's lines (for an untracked file's count), and whether it is binary (a NUL in its
/// first 8 KiB, as git judges).
fn read_lines(path: &Path) -> std::io::Result<(u32, bool)> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Ok((0, false));
    }
    let bytes = std::fs::read(path)?;
    if bytes[..bytes.len().min(8192)].contains(&0) {
        return Ok((0, true));
    }
    let mut lines = bytecount(&bytes);
    if !bytes.is_empty() && !bytes.ends_with(b"\n") {
        lines += 1;
    }
    Ok((lines, false))
}

fn bytecount(bytes: &[u8]) -> u32 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u32
}

/// The whole of an untracked file as one hunk of added lines (`None`: too large to show).
fn added_hunks(path: &Path, binary: bool) -> Option<Vec<Hunk>> {
    if binary {
        return Some(Vec::new());
    }
    if std::fs::metadata(path).ok()?.len() > MAX_SHOWN_BYTES {
        return None;
    }
    let text = String::from_utf8_lossy(&std::fs::read(path).ok()?).into_owned();
    let lines: Vec<DiffLine> = text
        .lines()
        .enumerate()
        .map(|(n, line)| DiffLine {
            kind: LineKind::Add,
            old: None,
            new: Some(n as u32 + 1),
            text: line.to_string(),
        })
        .collect();
    if lines.is_empty() {
        return Some(Vec::new());
    }
    Some(vec![Hunk {
        header: format!("@@ -0,0 +1,{} @@", lines.len()),
        lines,
    }])
}

/// The patch of each file, in order: the text from one `diff --git` line to the next.
fn split_patch(patch: &str) -> Vec<String> {
    let mut files: Vec<String> = Vec::new();
    for line in patch.split_inclusive('\n') {
        if line.starts_with("diff --git ") || files.is_empty() {
            files.push(String::new());
        }
        if let Some(file) = files.last_mut() {
            file.push_str(line);
        }
    }
    files
}

fn status_of(patch: &str, file: &Listed) -> FileStatus {
    let head: Vec<&str> = patch.lines().take_while(|l| !l.starts_with("@@")).collect();
    if file.old_path.is_some() || head.iter().any(|l| l.starts_with("rename from ")) {
        FileStatus::Renamed
    } else if head.iter().any(|l| l.starts_with("new file mode")) {
        FileStatus::Added
    } else if head.iter().any(|l| l.starts_with("deleted file mode")) {
        FileStatus::Deleted
    } else {
        FileStatus::Modified
    }
}

/// The hunks of one file's patch, each line with its numbers on the old and new side.
fn hunks_of(patch: &str) -> Option<Vec<Hunk>> {
    if patch.len() as u64 > MAX_SHOWN_BYTES * 2 {
        return None;
    }
    let mut hunks: Vec<Hunk> = Vec::new();
    let (mut old, mut new) = (0u32, 0u32);
    for line in patch.lines() {
        if let Some(rest) = line.strip_prefix("@@ -") {
            let (o, n) = hunk_starts(rest);
            (old, new) = (o, n);
            hunks.push(Hunk {
                header: line.to_string(),
                lines: Vec::new(),
            });
            continue;
        }
        let Some(hunk) = hunks.last_mut() else {
            continue;
        };
        let (kind, text) = match line.as_bytes().first() {
            Some(b'+') => (LineKind::Add, &line[1..]),
            Some(b'-') => (LineKind::Del, &line[1..]),
            Some(b' ') => (LineKind::Context, &line[1..]),
            _ => continue, // "\ No newline at end of file"
        };
        let (o, n) = match kind {
            LineKind::Add => (None, Some(new)),
            LineKind::Del => (Some(old), None),
            LineKind::Context => (Some(old), Some(new)),
        };
        if o.is_some() {
            old += 1;
        }
        if n.is_some() {
            new += 1;
        }
        hunk.lines.push(DiffLine {
            kind,
            old: o,
            new: n,
            text: text.to_string(),
        });
    }
    Some(hunks)
}

/// `12,7 +12,9 @@ …` → (12, 12).
fn hunk_starts(rest: &str) -> (u32, u32) {
    let mut parts = rest.split(' ');
    let old = parts.next().unwrap_or("0");
    let new = parts.next().unwrap_or("+0").trim_start_matches('+');
    let start = |s: &str| {
        s.split(',')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (start(old), start(new))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numstat_reads_renames_and_binaries() {
        let files = parse_numstat(concat!(
            "3\t1\tsrc/a.rs\0",
            "-\t-\tlogo.png\0",
            "0\t0\t\0old.txt\0new.txt\0"
        ));
        let names: Vec<_> = files
            .iter()
            .map(|f| (f.path.as_str(), f.old_path.as_deref()))
            .collect();
        assert_eq!(
            names,
            [
                ("src/a.rs", None),
                ("logo.png", None),
                ("new.txt", Some("old.txt"))
            ]
        );
        assert!(files[1].binary && !files[0].binary);
        assert_eq!((files[0].insertions, files[0].deletions), (3, 1));
    }

    #[test]
    fn hunk_lines_carry_their_numbers() {
        let patch = "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -2,3 +2,3 @@ fn\n a\n-b\n+B\n c\n";
        let hunks = hunks_of(patch).unwrap();
        let numbers: Vec<_> = hunks[0]
            .lines
            .iter()
            .map(|l| (l.kind, l.old, l.new))
            .collect();
        assert_eq!(
            numbers,
            [
                (LineKind::Context, Some(2), Some(2)),
                (LineKind::Del, Some(3), None),
                (LineKind::Add, None, Some(3)),
                (LineKind::Context, Some(4), Some(4)),
            ]
        );
    }
}
