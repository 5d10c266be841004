//! `/`: the task list, with counts, filters and live tails.

use std::collections::HashMap;

use leptos::prelude::*;
use leptos_router::components::A;
use reactive_stores::Field;

use crate::{
    components::StatusPill,
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
