//! `/tasks/:id`: one task. What a person came for comes first: what it asks (with a button
//! per answer), then its terminal and input; its details fold into one line that opens,
//! and rename, kill and delete come last.

use leptos::{prelude::*, task::spawn_local};
use leptos_router::hooks::{use_navigate, use_params_map};

use crate::{
    client,
    components::{Changes, PromptButtons, StatusPill, Terminal},
    format::{status_label, waiting_why},
    live::use_live,
    model::{Task, TaskStatus},
};

#[component]
pub fn TaskPage() -> impl IntoView {
    let live = use_live();
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let task = Memo::new(move |_| live.task(&id()));
    // The server draws "Loading…" (its store is empty). This page is loaded lazily, so the
    // first fetch of the tasks can land before it hydrates: drawing the task then, where
    // the server drew the fallback, broke hydration (a panic, and a dead page, in about
    // half the fresh loads). So the page draws as the server did until it is in place.
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    let loaded = move || hydrated.get() && live.loaded.get();
    view! {
        <Show
            when=move || hydrated.get() && task.get().is_some()
            fallback=move || view! {
                <p class="empty">{move || if loaded() { "No such task (it may have been deleted)." } else { "Loading…" }}</p>
            }
        >
            // Rebuilt when the route names another task, never for a change of this one.
            {move || view! { <TaskDetail id=id() task/> }}
        </Show>
    }
}

#[lazy]
fn changes_view(id: String, task: Memo<Option<Task>>) -> AnyView {
    view! { <Changes id task/> }.into_any()
}

#[component]
fn TaskDetail(id: String, task: Memo<Option<Task>>) -> impl IntoView {
    let live = use_live();
    let get = move |f: fn(&Task) -> String| move || task.get().map(|t| f(&t)).unwrap_or_default();
    let is_live = move || task.get().is_some_and(|t| t.status.is_live());
    let error = RwSignal::new(None::<String>);
    let report = move |result: Result<(), client::ApiError>| {
        error.set(result.err().map(|e| e.message));
    };
    let navigate = use_navigate();

    let rename_to = RwSignal::new(task.get_untracked().map(|t| t.name).unwrap_or_default());
    let rename = {
        let id = id.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            let id = id.clone();
            spawn_local(async move {
                report(
                    client::rename(&id, &rename_to.get_untracked())
                        .await
                        .map(|_| ()),
                )
            });
        }
    };
    let input = RwSignal::new(String::new());
    let send = {
        let id = id.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            let id = id.clone();
            let text = input.get_untracked();
            spawn_local(async move {
                let result = client::send_input(&id, &text).await;
                if result.is_ok() {
                    input.set(String::new());
                }
                report(result.map(|_| ()));
            });
        }
    };
    let confirming = RwSignal::new(None::<&'static str>);
    let confirm = {
        let id = id.clone();
        move |_| {
            let id = id.clone();
            let action = confirming.get_untracked();
            confirming.set(None);
            let navigate = navigate.clone();
            spawn_local(async move {
                match action {
                    Some("kill") => report(client::kill(&id).await.map(|_| ())),
                    Some("delete") => match client::delete(&id).await {
                        Ok(()) => navigate("/", Default::default()),
                        Err(e) => report(Err(e)),
                    },
                    _ => {}
                }
            });
        }
    };
    // Opening a finished task is looking at it: it leaves the default list, on every device.
    Effect::new({
        let id = id.clone();
        move |_| {
            if task.get().is_some_and(|t| !t.status.is_live() && !t.seen) {
                client::mark_seen_soon(id.clone());
            }
        }
    });
    let in_git = Memo::new(move |_| task.with(|t| t.as_ref().is_some_and(|t| t.changes.is_some())));
    let status = Signal::derive(move || task.get().map_or(TaskStatus::Running, |t| t.status));
    let label = Signal::derive(move || task.get().map(|t| status_label(&t)).unwrap_or_default());
    let prompt = Signal::derive(move || {
        task.get()
            .filter(|t| t.status == TaskStatus::WaitingForInput)
            .and_then(|t| t.prompt)
    });
    view! {
        <article class="task-detail">
            <header class="detail-head">
                <h1>{get(|t| t.name.clone())}</h1>
                <StatusPill status label/>
            </header>
            <PromptButtons id=id.clone() prompt/>
            // Why it waits, unless its prompt says it already.
            {move || task.get().filter(|t| t.prompt.is_none()).and_then(|t| waiting_why(&t, live.now.get())).map(|why| view! {
                <p class="why" role="status" data-testid="waiting-why">"Waiting: " {why}</p>
            })}
            // What it said, unless the line above says it already.
            {move || task.get().filter(|t| t.waiting_reason.is_none()).and_then(|t| t.message).map(|m| view! {
                <p class="message" role="status">{m}</p>
            })}
            {move || task.get().and_then(|t| t.error).map(|e| view! { <p class="error">{e}</p> })}
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}

            <Terminal id=id.clone()/>

            <Show when=is_live>
                <form class="inline-form" on:submit=send.clone()>
                    <label for="input" class="sr-only">"Send input"</label>
                    <input id="input" placeholder="Type a reply and press Enter" autocomplete="off" bind:value=input/>
                    <button class="button primary" type="submit">"Send"</button>
                </form>
            </Show>

            // Loaded when a task in git is opened (a chunk of its own: most of the task
            // page's code is the diff and the review).
            // Made once, not again at each change of the task (that re-made it, and fetched
            // its diff anew, at every event).
            {
                let id = id.clone();
                move || in_git.get().then(|| {
                    let id = id.clone();
                    Suspend::new(async move { changes_view(id, task).await })
                })
            }

            <details class="about">
                <summary>
                    <span class="about-label">"Details"</span>
                    <code class="about-command">{get(|t| t.command.clone())}</code>
                </summary>
                <dl class="facts">
                    <dt>"Command"</dt><dd><code>{get(|t| t.command.clone())}</code></dd>
                    <dt>"Directory"</dt><dd><code>{get(|t| t.workdir.clone())}</code></dd>
                    {move || task.get().and_then(|t| t.workspace).map(|w| view! {
                        <dt>"Worktree of"</dt><dd><code>{w.repo}</code> " at " <code>{w.base}</code></dd>
                    })}
                    <dt>"Node"</dt>
                    // Its tasks keep their last status while it is away: CSS says so.
                    <dd class:offline=move || task.with(|t| t.as_ref().is_some_and(|t| live.node_online(&t.node) == Some(false)))>
                        {get(|t| t.node.clone())}
                    </dd>
                    <dt>"Kind"</dt><dd>{get(|t| t.kind.as_str().to_string())}</dd>
                    <dt>"Started"</dt><dd>{get(|t| t.created_at.clone())}</dd>
                    <dt>"Finished"</dt><dd>{get(|t| t.finished_at.clone().unwrap_or_else(|| "—".into()))}</dd>
                    <dt>"Id"</dt><dd><code>{id.clone()}</code></dd>
                </dl>
            </details>

            <form class="inline-form" on:submit=rename>
                <label for="rename" class="sr-only">"Name"</label>
                <input id="rename" maxlength="100" bind:value=rename_to/>
                <button class="button" type="submit">"Rename"</button>
            </form>

            <div class="actions">
                <Show when=move || confirming.get().is_none()>
                    <Show when=is_live fallback=move || view! {
                        <button class="button danger" on:click=move |_| confirming.set(Some("delete"))>"Delete"</button>
                    }>
                        <button class="button danger" on:click=move |_| confirming.set(Some("kill"))>"Kill"</button>
                    </Show>
                </Show>
                <Show when=move || confirming.get().is_some()>
                    <span class="confirm" role="alert">
                        {move || if confirming.get() == Some("kill") { "Kill this task?" } else { "Delete this task and its output?" }}
                    </span>
                    <button class="button danger" on:click=confirm.clone()>
                        {move || if confirming.get() == Some("kill") { "Yes, kill it" } else { "Yes, delete it" }}
                    </button>
                    <button class="button" on:click=move |_| confirming.set(None)>"Cancel"</button>
                </Show>
            </div>
        </article>
    }
    .into_any()
}
