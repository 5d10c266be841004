//! A task's changes: the files it changed against the commit it started from, with their
//! hunks, fetched again whenever its counts move (they come as events while it works).
//! Lines picked in a hunk take a review comment; the comments go to the agent as one
//! message. A task in a worktree of its own also has commit, merge and discard here.

use leptos::{prelude::*, task::spawn_local};

use crate::{
    client,
    model::{Diff, DiffLine, FileDiff, FileStatus, LineKind, Task},
};

/// Lines picked in one file: indexes into its lines, hunk after hunk.
#[derive(Clone, Debug, PartialEq)]
struct Picked {
    path: String,
    from: usize,
    to: usize,
}

/// A review comment on lines of a file, waiting to be sent.
#[derive(Clone, Debug, PartialEq)]
struct Comment {
    path: String,
    lines: String,
    quoted: Vec<String>,
    text: String,
}

impl Comment {
    /// `src/a.rs lines 3–4 ("let x = 1;" ⏎ "x += 1;"): why twice?`
    fn as_message(&self) -> String {
        let mut quoted: Vec<String> = self
            .quoted
            .iter()
            .take(3)
            .map(|line| format!("\"{}\"", shorten(line.trim(), 80)))
            .collect();
        if self.quoted.len() > 3 {
            quoted.push("…".into());
        }
        format!(
            "{} {} ({}): {}",
            self.path,
            self.lines,
            quoted.join(" ⏎ "),
            self.text.trim()
        )
    }
}

fn shorten(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// All review comments as the one line typed into the agent.
fn review_message(comments: &[Comment]) -> String {
    let parts: Vec<String> = comments.iter().map(Comment::as_message).collect();
    format!("Review comments: {}", parts.join(" ; "))
}

/// What a file's diff shows, in 64 bits (FNV-1a over its hunks' text): a file whose diff
/// did not change is not drawn again.
fn fingerprint(file: &FileDiff) -> u64 {
    let mut hash = crate::fnv::Fnv::default();
    let texts = file.hunks.iter().flat_map(|h| {
        std::iter::once(h.header.as_str()).chain(h.lines.iter().map(|l| l.text.as_str()))
    });
    for text in texts {
        hash.write(text.as_bytes());
        hash.write(b"\n");
    }
    hash.finish() ^ u64::from(file.binary) ^ (u64::from(file.too_large) << 1)
}

/// The lines of a file, hunk after hunk (what `Picked` indexes).
fn lines_of(file: &FileDiff) -> Vec<&DiffLine> {
    file.hunks.iter().flat_map(|h| h.lines.iter()).collect()
}

/// `line 4` or `lines 3–5`, by the new side's numbers where a line has one.
fn line_range(lines: &[&DiffLine]) -> String {
    let number = |l: &&DiffLine| l.new.or(l.old).unwrap_or(0);
    match (lines.first().map(number), lines.last().map(number)) {
        (Some(a), Some(b)) if a != b => format!("lines {a}–{b}"),
        (Some(a), _) => format!("line {a}"),
        _ => String::new(),
    }
}

#[component]
pub fn Changes(id: String, task: Memo<Option<Task>>) -> impl IntoView {
    let counts = Memo::new(move |_| task.with(|t| t.as_ref().and_then(|t| t.changes)));
    let diff = RwSignal::new(None::<Result<Diff, String>>);
    // The latest fetch wins: an older answer landing late is dropped.
    let asked = StoredValue::new(0u32);
    Effect::new({
        let id = id.clone();
        move |_| {
            if counts.get().is_none() {
                return;
            }
            asked.update_value(|n| *n += 1);
            let mine = asked.get_value();
            let id = id.clone();
            spawn_local(async move {
                let answer = client::diff(&id).await.map_err(|e| e.message);
                if asked.get_value() == mine {
                    diff.set(Some(answer));
                }
            });
        }
    });
    let picked = RwSignal::new(None::<Picked>);
    let comments = RwSignal::new(Vec::<Comment>::new());
    // The comment being written: kept here, as the diff is drawn anew while the agent works.
    let draft = RwSignal::new(String::new());
    let summary = move || {
        counts.get().map(|c| {
            let files = if c.files == 1 {
                "1 file".to_string()
            } else {
                format!("{} files", c.files)
            };
            format!("{files} · +{} −{}", c.insertions, c.deletions)
        })
    };
    view! {
        <Show when=move || counts.get().is_some()>
            <section class="changes" data-testid="changes" aria-label="Changes">
                <header class="changes-head">
                    <h2>"Changes"</h2>
                    <span class="changes-count">{summary}</span>
                    {move || task.get().and_then(|t| t.workspace).map(|w| view! {
                        <code class="branch" title="Its branch">{w.branch}</code>
                    })}
                </header>
                <Finish id=id.clone() task/>
                <Review id=id.clone() task comments/>
                {move || match diff.get() {
                    None => Some(view! { <p class="empty">"Reading the changes…"</p> }.into_any()),
                    Some(Err(e)) => Some(view! { <p class="error">{e}</p> }.into_any()),
                    Some(Ok(d)) if d.files.is_empty() => Some(view! {
                        <p class="empty">"Nothing changed yet."</p>
                    }.into_any()),
                    Some(Ok(_)) => None,
                }}
                // Keyed: a file that did not change keeps its lines (and the ones picked)
                // while the others are drawn anew.
                <For
                    each=move || diff.get().and_then(Result::ok).map(|d| d.files).unwrap_or_default()
                    key=|f| (f.path.clone(), fingerprint(f))
                    children=move |file| view! { <FileView file picked comments draft/> }
                />
            </section>
        </Show>
    }
}

#[component]
fn FileView(
    file: FileDiff,
    picked: RwSignal<Option<Picked>>,
    comments: RwSignal<Vec<Comment>>,
    draft: RwSignal<String>,
) -> impl IntoView {
    let path = file.path.clone();
    let status = match file.status {
        FileStatus::Added => "added",
        FileStatus::Modified => "modified",
        FileStatus::Deleted => "deleted",
        FileStatus::Renamed => "renamed",
    };
    let note = if file.binary {
        Some("Binary file: not shown.")
    } else if file.too_large {
        Some("Too large to show here.")
    } else {
        None
    };
    let lines: Vec<DiffLine> = lines_of(&file).into_iter().cloned().collect();
    let pick = {
        let path = path.clone();
        move |at: usize| {
            picked.update(|p| {
                *p = match p.take() {
                    Some(p) if p.path == path && p.from == p.to && p.from != at => Some(Picked {
                        path: path.clone(),
                        from: p.from.min(at),
                        to: p.from.max(at),
                    }),
                    _ => Some(Picked {
                        path: path.clone(),
                        from: at,
                        to: at,
                    }),
                }
            })
        }
    };
    let is_picked = {
        let path = path.clone();
        move |at: usize| {
            picked.with(|p| {
                p.as_ref()
                    .is_some_and(|p| p.path == path && (p.from..=p.to).contains(&at))
            })
        }
    };
    let mut at = 0;
    let hunks = file.hunks.iter().map(|hunk| {
        let rows = hunk.lines.iter().map(|line| {
            let here = at;
            at += 1;
            let (kind, sign) = match line.kind {
                LineKind::Add => ("add", "+"),
                LineKind::Del => ("del", "−"),
                LineKind::Context => ("context", " "),
            };
            let pick = pick.clone();
            let is_picked = is_picked.clone();
            view! {
                <button type="button" class=format!("line {kind}") class:picked=move || is_picked(here)
                    on:click=move |_| pick(here)>
                    <span class="no">{line.old.map(|n| n.to_string())}</span>
                    <span class="no">{line.new.map(|n| n.to_string())}</span>
                    <span class="sign">{sign}</span>
                    <span class="text">{line.text.clone()}</span>
                </button>
            }
        }).collect_view();
        view! {
            <div class="hunk">
                <div class="hunk-head">{hunk.header.clone()}</div>
                {rows}
            </div>
        }
    }).collect_view();
    let label = match &file.old_path {
        Some(old) => format!("{old} → {}", file.path),
        None => file.path.clone(),
    };
    view! {
        <details class="file" open data-path=path.clone()>
            <summary>
                <span class=format!("file-status {status}")>{status}</span>
                <span class="file-path">{label}</span>
                <span class="file-count">{format!("+{} −{}", file.insertions, file.deletions)}</span>
            </summary>
            {note.map(|n| view! { <p class="note">{n}</p> })}
            <div class="hunks">{hunks}</div>
            <CommentForm path=path.clone() lines picked comments text=draft/>
        </details>
    }
}

/// Under a file with picked lines: the comment on them.
#[component]
fn CommentForm(
    path: String,
    lines: Vec<DiffLine>,
    picked: RwSignal<Option<Picked>>,
    comments: RwSignal<Vec<Comment>>,
    text: RwSignal<String>,
) -> impl IntoView {
    let here = {
        let path = path.clone();
        move || {
            picked.with(|p| {
                p.as_ref()
                    .filter(|p| p.path == path)
                    .map(|p| (p.from, p.to))
            })
        }
    };
    let chosen = {
        let here = here.clone();
        move || {
            here().map(|(from, to)| lines[from..=to.min(lines.len().saturating_sub(1))].to_vec())
        }
    };
    let add = {
        let chosen = chosen.clone();
        let path = path.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            let (Some(lines), words) = (chosen(), text.get_untracked()) else {
                return;
            };
            if words.trim().is_empty() {
                return;
            }
            let refs: Vec<&DiffLine> = lines.iter().collect();
            comments.update(|c| {
                c.push(Comment {
                    path: path.clone(),
                    lines: line_range(&refs),
                    quoted: lines.iter().map(|l| l.text.clone()).collect(),
                    text: words,
                })
            });
            text.set(String::new());
            picked.set(None);
        }
    };
    let range = move || {
        chosen()
            .map(|l| line_range(&l.iter().collect::<Vec<_>>()))
            .unwrap_or_default()
    };
    view! {
        <Show when=move || here().is_some()>
            <form class="comment-form" on:submit=add.clone()>
                <label class="comment-label">"Comment on " {range.clone()}</label>
                <textarea rows="2" placeholder="What should the agent change here?" bind:value=text></textarea>
                <div class="comment-actions">
                    <button class="button primary" type="submit">"Add comment"</button>
                    <button class="button" type="button" on:click=move |_| picked.set(None)>"Cancel"</button>
                </div>
            </form>
        </Show>
    }
}

/// The comments waiting to be sent, and the button that sends them.
#[component]
fn Review(id: String, task: Memo<Option<Task>>, comments: RwSignal<Vec<Comment>>) -> impl IntoView {
    let error = RwSignal::new(None::<String>);
    let is_live = move || task.with(|t| t.as_ref().is_some_and(|t| t.status.is_live()));
    let send = move |_| {
        let id = id.clone();
        let message = comments.with_untracked(|c| review_message(c));
        spawn_local(async move {
            match client::send_input(&id, &message).await {
                Ok(_) => {
                    comments.set(Vec::new());
                    error.set(None);
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    view! {
        <Show when=move || comments.with(|c| !c.is_empty())>
            <div class="review" data-testid="review">
                <ol>
                    {move || comments.get().into_iter().enumerate().map(|(n, c)| view! {
                        <li>
                            <code>{format!("{} {}", c.path, c.lines)}</code> " " {c.text.clone()}
                            <button class="link" type="button" aria-label="Remove this comment"
                                on:click=move |_| comments.update(|all| { all.remove(n); })>"✕"</button>
                        </li>
                    }).collect_view()}
                </ol>
                <button class="button primary" type="button" disabled=move || !is_live() on:click=send.clone()>
                    {move || format!("Send to the agent ({})", comments.with(Vec::len))}
                </button>
                {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            </div>
        </Show>
    }
}

/// Commit, merge and discard, for a task in a worktree of its own.
#[component]
fn Finish(id: String, task: Memo<Option<Task>>) -> impl IntoView {
    let workspace = move || task.with(|t| t.as_ref().and_then(|t| t.workspace.clone()));
    let is_live = move || task.with(|t| t.as_ref().is_some_and(|t| t.status.is_live()));
    let said = RwSignal::new(None::<Result<String, String>>);
    let message = RwSignal::new(String::new());
    let confirming = RwSignal::new(false);
    let act = Callback::new(move |action: &'static str| {
        let id = id.clone();
        let text = message.get_untracked();
        let base = workspace().map(|w| w.base).unwrap_or_default();
        spawn_local(async move {
            let outcome = match action {
                "commit" => client::commit(&id, &text)
                    .await
                    .map(|_| "Committed on its branch.".to_string()),
                "merge" => client::merge(&id)
                    .await
                    .map(|_| format!("Merged into {base}.")),
                _ => client::discard(&id)
                    .await
                    .map(|_| "The worktree and its branch are gone.".to_string()),
            };
            if outcome.is_ok() && action == "commit" {
                message.set(String::new());
            }
            said.set(Some(outcome.map_err(|e| e.message)));
        });
    });
    let commit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        act.run("commit");
    };
    let merge = move |_| act.run("merge");
    let discard = move |_| {
        confirming.set(false);
        act.run("discard");
    };
    view! {
        <Show when=move || workspace().is_some()>
            <form class="finish" on:submit=commit>
                <label for="commit-message" class="sr-only">"Commit message"</label>
                <input id="commit-message" autocomplete="off" bind:value=message
                    placeholder=move || task.with(|t| t.as_ref().map(|t| t.name.clone()).unwrap_or_default())/>
                <button class="button" type="submit">"Commit"</button>
                <button class="button primary" type="button" on:click=merge>
                    {move || format!("Merge into {}", workspace().map(|w| w.base).unwrap_or_default())}
                </button>
                <Show when=move || !confirming.get() fallback=move || view! {
                    <span class="confirm" role="alert">"Remove the worktree and its branch?"</span>
                    <button class="button danger" type="button" on:click=discard>"Yes, discard"</button>
                    <button class="button" type="button" on:click=move |_| confirming.set(false)>"Cancel"</button>
                }>
                    <button class="button danger" type="button" disabled=is_live
                        title=move || if is_live() { "Kill the task first" } else { "" }
                        on:click=move |_| confirming.set(true)>"Discard"</button>
                </Show>
            </form>
            {move || said.get().map(|r| match r {
                Ok(m) => view! { <p class="said" role="status">{m}</p> }.into_any(),
                Err(e) => view! { <p class="error" role="alert">{e}</p> }.into_any(),
            })}
        </Show>
    }
}
