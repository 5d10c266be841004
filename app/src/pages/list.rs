//! `/`: the task list, with counts, filters and live tails.

use std::collections::HashMap;

use leptos::prelude::*;
use leptos_router::components::A;
use reactive_stores::Field;

use crate::{
    client,
    components::{node_select, node_strip, PromptButtons, StatusPill},
    format::{duration_short, parse_ms, status_label, STALE_AFTER_MS},
    live::{is_active, use_live, Live, TasksStoreFields},
    model::{Task, TaskStatus, TaskStoreFields},
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tab {
    /// Live tasks, and finished ones the person has not looked at yet.
    Active,
    All,
}

/// Rows drawn at first, and added by each "Show more": a browser lays out and paints every
/// row it holds, so a list of thousands would cost thousands on every change.
const PAGE: usize = 200;

/// `node`: the node filter's choice, `""` for all nodes.
fn matches_filter(task: &Task, needle: &str, node: &str) -> bool {
    (node.is_empty() || task.node == node)
        && (needle.is_empty()
            || task.name.to_lowercase().contains(needle)
            || task.command.to_lowercase().contains(needle)
            || task.id.contains(needle))
}

#[component]
pub fn TaskListPage() -> impl IntoView {
    let live = use_live();
    let tails = RwSignal::new(HashMap::<String, String>::new());
    follow_tails(tails);
    let tab = RwSignal::new(Tab::Active);
    let filter = RwSignal::new(String::new());
    let needle = Memo::new(move |_| filter.get().to_lowercase());
    let node = RwSignal::new(String::new());
    let filtering = move || !needle.get().is_empty() || !node.get().is_empty();
    let tasks = live.store.tasks();
    let limit = RwSignal::new(PAGE);
    let active_count = move || live.active.with(|active| active.len());
    let all_count = move || live.order.with(Vec::len);
    let in_view = move || match tab.get() {
        Tab::All => all_count(),
        Tab::Active => active_count(),
    };
    // The ids of the rows drawn: the view's newest `limit`, or all of it while filtering.
    // It changes when a task comes, goes, or enters or leaves the view; an event about one
    // task re-renders that row only.
    let drawn = Memo::new(move |_| {
        let all = tab.get() == Tab::All;
        let most = if filtering() { usize::MAX } else { limit.get() };
        live.order.with(|order| {
            live.active.with(|active| {
                order
                    .iter()
                    .filter(|id| all || active.contains(*id))
                    .take(most)
                    .cloned()
                    .collect::<Vec<_>>()
            })
        })
    });
    let more = move || in_view().saturating_sub(drawn.with(Vec::len));
    let has_more = move || more() > 0 && !filtering();
    let shown = move || {
        if !filtering() {
            return in_view();
        }
        let (needle, node, all) = (needle.get(), node.get(), tab.get() == Tab::All);
        tasks
            .read()
            .iter()
            .filter(|t| (all || is_active(t)) && matches_filter(t, &needle, &node))
            .count()
    };
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
                {tab_button(Tab::Active, "Active", Box::new(active_count))}
                {tab_button(Tab::All, "All", Box::new(all_count))}
            </div>
            {node_select(node, "All nodes", false)}
            <input
                class="filter"
                type="search"
                placeholder="Filter by name or command"
                aria-label="Filter tasks"
                bind:value=filter
            />
            {node_strip()}
        </section>
        <Show when=move || live.loaded.get() fallback=|| view! { <p class="empty">"Loading tasks…"</p> }>
            <ul class="task-list" aria-label="Tasks">
                <For
                    each=move || drawn.get()
                    key=|id| id.clone()
                    let:id
                >
                    <TaskRow task=tasks.at_key(id) live tails tab needle node/>
                </For>
            </ul>
            <Show when=has_more>
                <button class="button more" type="button" on:click=move |_| limit.update(|l| *l += PAGE)>
                    "Show more (" {more} " older)"
                </button>
            </Show>
            <Show when=move || shown() == 0>
                <p class="empty">
                    {move || match tab.get() {
                        Tab::Active if filter.get().is_empty() => "Nothing needs you. Start a task with “New task”.",
                        _ => "No tasks match.",
                    }}
                </p>
            </Show>
        </Show>
    }
    .into_any()
}

/// Keeps `tails` up to date from `GET /api/tails/stream`: one stream for every row's live
/// tail, and one for the whole browser (the tab that leads holds it while some tab shows
/// the list), wanted only while this page is visible.
fn follow_tails(tails: RwSignal<HashMap<String, String>>) {
    #[cfg(feature = "hydrate")]
    {
        use std::rc::Rc;
        use wasm_bindgen::{prelude::Closure, JsCast};

        use crate::live::connection;

        let on_tail = Rc::new(Closure::<dyn FnMut(String)>::new(move |data: String| {
            if let Ok(tail) = serde_json::from_str::<crate::model::TaskTail>(&data) {
                tails.update(|tails| {
                    tails.insert(tail.id, tail.text);
                });
            }
        }));
        let sync = {
            let on_tail = on_tail.clone();
            move || connection::follow_tails(!document().hidden(), on_tail.clone())
        };
        sync();
        let on_visibility = Closure::<dyn FnMut()>::new(sync);
        let _ = document().add_event_listener_with_callback(
            "visibilitychange",
            on_visibility.as_ref().unchecked_ref(),
        );
        let kept = send_wrapper::SendWrapper::new((on_tail, on_visibility));
        on_cleanup(move || {
            let (on_tail, on_visibility) = &*kept;
            let _ = document().remove_event_listener_with_callback(
                "visibilitychange",
                on_visibility.as_ref().unchecked_ref(),
            );
            connection::follow_tails(false, on_tail.clone());
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
    tab: RwSignal<Tab>,
    needle: Memo<String>,
    node: RwSignal<String>,
) -> impl IntoView {
    let id = task.id().get_untracked();
    let href = format!("/tasks/{id}");
    let status = task.status();
    let shown = move || {
        let task = task.read();
        (tab.get() == Tab::All || is_active(&task))
            && matches_filter(&task, &needle.get(), &node.get())
    };
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
    let unseen = move || !status.get().is_live() && !task.seen().get();
    let prompt = Signal::derive(move || {
        task.prompt()
            .get()
            .filter(|_| status.get() == TaskStatus::WaitingForInput)
    });
    let dismiss = {
        let id = id.clone();
        move |_| client::mark_seen_soon(id.clone())
    };
    view! {
        <li class="task-row" class:hidden=move || !shown() data-id=id.clone()
            data-status=move || status.get().as_str() data-unseen=move || unseen().to_string()>
            <div class="row-head">
                <A href=href attr:class="task-name">{move || task.name().get()}</A>
                // A task never moves: its node is drawn once.
                <span class="task-node" title="Node" hidden=move || !live.is_fleet()>{task.node().get_untracked()}</span>
                <StatusPill status label=Signal::derive(move || status_label(&task.read()))/>
                {move || idle_ms().map(|ms| view! {
                    <span class="idle" title="time since the last output">"idle " {duration_short(ms)}</span>
                })}
                {move || idle_ms().filter(|&ms| ms >= STALE_AFTER_MS).map(|_| view! {
                    <span class="pill pill-stale">"stale"</span>
                })}
                <Show when=unseen>
                    <button class="dismiss" type="button" title="Mark as seen"
                        aria-label="Mark as seen" on:click=dismiss.clone()>"✓"</button>
                </Show>
            </div>
            {move || task.message().get().map(|m| view! { <p class="message">{m}</p> })}
            <PromptButtons id=id.clone() prompt/>
            <code class="command">{move || task.command().get()}</code>
            // What it changed, when it changed anything (empty, the span is not drawn).
            // (Read through the whole task: a field of its own cost the list 1.2 KiB of wasm.)
            <span class="row-changes" title="What it changed">{move || {
                task.read().changes.filter(|c| c.files > 0).map_or_else(String::new, |c| {
                    format!("{} changed · +{} −{}", c.files, c.insertions, c.deletions)
                })
            }}</span>
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
