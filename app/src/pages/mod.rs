//! The pages: the task list, one task, and the form for a new task or terminal.

use std::collections::HashMap;

use leptos::{prelude::*, task::spawn_local};
use leptos_router::{
    components::A,
    hooks::{use_navigate, use_params_map},
};
use reactive_stores::Field;

use crate::{
    client,
    format::{duration_short, parse_ms, status_label, STALE_AFTER_MS},
    live::{use_live, Live, TasksStoreFields},
    model::{Task, TaskStatus, TaskStoreFields},
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tab {
    Running,
    All,
}

#[component]
pub fn TaskListPage() -> impl IntoView {
    let live = use_live();
    let tails = RwSignal::new(HashMap::<String, String>::new());
    follow_tails(tails);
    let tab = RwSignal::new(Tab::Running);
    let filter = RwSignal::new(String::new());
    let tasks = live.store.tasks();
    let running_count = move || tasks.read().iter().filter(|t| t.status.is_live()).count();
    let all_count = move || tasks.read().len();
    let matches = move |task: &Task| {
        let needle = filter.get().to_lowercase();
        let in_tab = tab.get() == Tab::All || task.status.is_live();
        in_tab
            && (needle.is_empty()
                || task.name.to_lowercase().contains(&needle)
                || task.command.to_lowercase().contains(&needle)
                || task.id.contains(&needle))
    };
    let shown = move || tasks.read().iter().filter(|t| matches(t)).count();
    let tab_button =
        move |which: Tab, label: &'static str, count: Box<dyn Fn() -> usize + Send + Sync>| {
            view! {
                <button
                    role="tab"
                    class="tab"
                    aria-selected=move || (tab.get() == which).to_string()
                    on:click=move |_| tab.set(which)
                >
                    {label}
                    <span class="count">{move || count()}</span>
                </button>
            }
            .into_any()
        };
    view! {
        <section class="toolbar">
            <div role="tablist" aria-label="Which tasks">
                {tab_button(Tab::Running, "Running", Box::new(running_count))}
                {tab_button(Tab::All, "All", Box::new(all_count))}
            </div>
            <input
                class="filter"
                type="search"
                placeholder="Filter by name or command"
                aria-label="Filter tasks"
                bind:value=filter
            />
        </section>
        <Show when=move || live.loaded.get() fallback=|| view! { <p class="empty">"Loading tasks…"</p> }>
            <ul class="task-list" aria-label="Tasks">
                <For
                    each=move || tasks.into_iter().filter(move |row| matches(&row.read()))
                    key=|row| row.read().id.clone()
                    let:row
                >
                    <TaskRow task=row live tails/>
                </For>
            </ul>
            <Show when=move || shown() == 0>
                <p class="empty">
                    {move || match tab.get() {
                        Tab::Running if filter.get().is_empty() => "Nothing is running. Start a task with “New task”.",
                        _ => "No tasks match.",
                    }}
                </p>
            </Show>
        </Show>
    }
    .into_any()
}

/// Keeps `tails` up to date from `GET /api/tails/stream`: one connection for every row's
/// live tail, held only while the page is visible. Browsers allow six HTTP/1.1 connections
/// per host across all tabs, so hidden tabs keep just their event stream.
fn follow_tails(tails: RwSignal<HashMap<String, String>>) {
    #[cfg(feature = "hydrate")]
    {
        use std::{cell::RefCell, rc::Rc};
        use wasm_bindgen::{prelude::Closure, JsCast};
        use web_sys::{EventSource, MessageEvent};

        let source: Rc<RefCell<Option<EventSource>>> = Rc::default();
        let on_tail = Rc::new(Closure::<dyn FnMut(MessageEvent)>::new(
            move |m: MessageEvent| {
                let data = m.data().as_string().unwrap_or_default();
                if let Ok(tail) = serde_json::from_str::<crate::model::TaskTail>(&data) {
                    tails.update(|tails| {
                        tails.insert(tail.id, tail.text);
                    });
                }
            },
        ));
        let sync = {
            let source = source.clone();
            move || {
                let mut source = source.borrow_mut();
                let visible = !document().hidden();
                if visible && source.is_none() {
                    if let Ok(opened) = EventSource::new("/api/tails/stream") {
                        let listener = (*on_tail).as_ref().unchecked_ref();
                        let _ = opened.add_event_listener_with_callback("tail", listener);
                        *source = Some(opened);
                    }
                } else if !visible {
                    if let Some(open) = source.take() {
                        open.close();
                    }
                }
            }
        };
        sync();
        let on_visibility = Closure::<dyn FnMut()>::new(sync);
        let _ = document().add_event_listener_with_callback(
            "visibilitychange",
            on_visibility.as_ref().unchecked_ref(),
        );
        let kept = send_wrapper::SendWrapper::new((source, on_visibility));
        on_cleanup(move || {
            let (source, on_visibility) = &*kept;
            let _ = document().remove_event_listener_with_callback(
                "visibilitychange",
                on_visibility.as_ref().unchecked_ref(),
            );
            if let Some(open) = source.borrow_mut().take() {
                open.close();
            }
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = tails;
}

#[component]
fn TaskRow(
    #[prop(into)] task: Field<Task>,
    live: Live,
    tails: RwSignal<HashMap<String, String>>,
) -> impl IntoView {
    let id = task.id().get_untracked();
    let href = format!("/tasks/{id}");
    let status = task.status();
    let idle_ms = move || {
        let last = parse_ms(&task.last_activity_at().get())?;
        (status.get() == TaskStatus::WaitingForInput).then(|| live.now.get() - last)
    };
    let tail = {
        let id = id.clone();
        move || {
            tails
                .with(|tails| tails.get(&id).cloned())
                .unwrap_or_default()
        }
    };
    view! {
        <li class="task-row" data-id=id.clone() data-status=move || status.get().as_str()>
            <div class="row-head">
                <A href=href attr:class="task-name">{move || task.name().get()}</A>
                <StatusPill status label=Signal::derive(move || status_label(&task.read()))/>
                {move || idle_ms().map(|ms| view! {
                    <span class="idle" title="time since the last output">"idle " {duration_short(ms)}</span>
                })}
                {move || idle_ms().filter(|&ms| ms >= STALE_AFTER_MS).map(|_| view! {
                    <span class="pill pill-stale">"stale"</span>
                })}
            </div>
            <code class="command">{move || task.command().get()}</code>
            <Show when={
                let tail = tail.clone();
                move || status.get().is_live() && !tail().trim().is_empty()
            }>
                <pre class="tail" aria-label="Latest output">{tail.clone()}</pre>
            </Show>
        </li>
    }
    .into_any()
}

#[component]
fn StatusPill(
    #[prop(into)] status: Signal<TaskStatus>,
    #[prop(into)] label: Signal<String>,
) -> impl IntoView {
    view! {
        <span class=move || format!("pill pill-{}", status.get().as_str()) data-testid="status">
            {label}
        </span>
    }
}

#[component]
pub fn NewTaskPage() -> impl IntoView {
    let _live = use_live();
    let name = RwSignal::new(String::new());
    let command = RwSignal::new(String::new());
    let workdir = RwSignal::new(String::new());
    let prompt = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let navigate = use_navigate();
    let open_task = move |result: Result<Task, client::ApiError>| match result {
        Ok(task) => navigate(&format!("/tasks/{}", task.id), Default::default()),
        Err(e) => {
            error.set(Some(e.message));
            busy.set(false);
        }
    };
    let start = {
        let open_task = open_task.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            busy.set(true);
            let open_task = open_task.clone();
            spawn_local(async move {
                let result = client::create_task(
                    &name.get_untracked(),
                    &command.get_untracked(),
                    &workdir.get_untracked(),
                    &prompt.get_untracked(),
                )
                .await;
                open_task(result);
            });
        }
    };
    let terminal = move |_| {
        busy.set(true);
        let open_task = open_task.clone();
        spawn_local(async move {
            open_task(client::create_terminal(&workdir.get_untracked()).await);
        });
    };
    view! {
        <section class="card">
            <h1>"New task"</h1>
            <form class="new-task" on:submit=start>
                <label for="command">"Command"</label>
                <input id="command" name="command" required placeholder="cargo test" autocomplete="off" bind:value=command/>
                <label for="name">"Name " <span class="hint">"(optional)"</span></label>
                <input id="name" name="name" maxlength="100" placeholder="tests" bind:value=name/>
                <label for="workdir">"Working directory " <span class="hint">"(optional; the server's by default)"</span></label>
                <input id="workdir" name="workdir" placeholder="/home/me/project" bind:value=workdir/>
                <label for="prompt">"Prompt " <span class="hint">"(optional; typed in once the program is ready)"</span></label>
                <textarea id="prompt" name="prompt" rows="3" bind:value=prompt></textarea>
                {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
                <div class="actions">
                    <button class="button primary" type="submit" disabled=move || busy.get()>"Start"</button>
                    <button class="button" type="button" on:click=terminal disabled=move || busy.get()>"Open a terminal"</button>
                </div>
            </form>
        </section>
    }
    .into_any()
}

#[component]
pub fn TaskPage() -> impl IntoView {
    let live = use_live();
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let task = Memo::new(move |_| {
        let id = id();
        live.store
            .tasks()
            .read()
            .iter()
            .find(|t| t.id == id)
            .cloned()
    });
    view! {
        <Show
            when=move || task.get().is_some()
            fallback=move || view! {
                <p class="empty">{move || if live.loaded.get() { "No such task (it may have been deleted)." } else { "Loading…" }}</p>
            }
        >
            // Rebuilt when the route names another task, never for a change of this one.
            {move || view! { <TaskDetail id=id() task/> }}
        </Show>
    }
}

#[component]
fn TaskDetail(id: String, task: Memo<Option<Task>>) -> impl IntoView {
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
    let status = Signal::derive(move || task.get().map_or(TaskStatus::Running, |t| t.status));
    let label = Signal::derive(move || task.get().map(|t| status_label(&t)).unwrap_or_default());
    view! {
        <article class="task-detail">
            <header class="detail-head">
                <h1>{get(|t| t.name.clone())}</h1>
                <StatusPill status label/>
            </header>
            <dl class="facts">
                <dt>"Command"</dt><dd><code>{get(|t| t.command.clone())}</code></dd>
                <dt>"Directory"</dt><dd><code>{get(|t| t.workdir.clone())}</code></dd>
                <dt>"Kind"</dt><dd>{get(|t| t.kind.as_str().to_string())}</dd>
                <dt>"Started"</dt><dd>{get(|t| t.created_at.clone())}</dd>
                <dt>"Finished"</dt><dd>{get(|t| t.finished_at.clone().unwrap_or_else(|| "—".into()))}</dd>
                <dt>"Id"</dt><dd><code>{id.clone()}</code></dd>
            </dl>
            {move || task.get().and_then(|t| t.error).map(|e| view! { <p class="error">{e}</p> })}
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}

            <OutputView id=id.clone()/>

            <Show when=is_live>
                <form class="inline-form" on:submit=send.clone()>
                    <label for="input" class="sr-only">"Send input"</label>
                    <input id="input" placeholder="Type a reply and press Enter" autocomplete="off" bind:value=input/>
                    <button class="button primary" type="submit">"Send"</button>
                </form>
            </Show>

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

/// The task's output, live from its output stream.
#[component]
fn OutputView(id: String) -> impl IntoView {
    let output = RwSignal::new(String::new());
    let pre = NodeRef::<leptos::html::Pre>::new();
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::{prelude::Closure, JsCast};
        use web_sys::{EventSource, MessageEvent};
        // Keep the page light: the newest 200 KB of output is plenty to read.
        const KEEP: usize = 200 * 1024;
        let url = format!("/api/tasks/{id}/output/stream");
        if let Ok(source) = EventSource::new(&url) {
            let on_output = Closure::<dyn FnMut(MessageEvent)>::new(move |m: MessageEvent| {
                let data = m.data().as_string().unwrap_or_default();
                let Ok(chunk) = serde_json::from_str::<crate::model::OutputChunk>(&data) else {
                    return;
                };
                output.update(|text| {
                    text.push_str(&chunk.text);
                    if text.len() > KEEP {
                        let mut cut = text.len() - KEEP;
                        while !text.is_char_boundary(cut) {
                            cut += 1;
                        }
                        text.drain(..cut);
                    }
                });
                if let Some(pre) = pre.get_untracked() {
                    pre.set_scroll_top(pre.scroll_height());
                }
            });
            let closer = source.clone();
            let on_end = Closure::<dyn FnMut(MessageEvent)>::new(move |_| closer.close());
            let _ = source
                .add_event_listener_with_callback("output", on_output.as_ref().unchecked_ref());
            let _ = source.add_event_listener_with_callback("end", on_end.as_ref().unchecked_ref());
            let listeners = send_wrapper::SendWrapper::new((source, on_output, on_end));
            on_cleanup(move || listeners.0.close());
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = id;
    view! {
        <pre class="output" node_ref=pre aria-label="Output" tabindex="0">{move || output.get()}</pre>
    }
}
