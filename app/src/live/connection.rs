//! The connection (browser only): the EventSource, the full fetches it calls for, and the
//! polling while it is down. WASM is single-threaded, so the connection lives in a
//! thread-local.

use std::{cell::RefCell, time::Duration};

use super::shared::SharedEvents;
use leptos::{prelude::*, task::spawn_local};
use wasm_bindgen::prelude::Closure;

use super::{Connection, Live};
use crate::{
    client,
    model::{event, Deleted, Ready, Task},
};

const POLL_EVERY: Duration = Duration::from_secs(5);
const SAFETY_REFRESH_MS: f64 = 60_000.0;
const MAX_BACKOFF_MS: f64 = 30_000.0;

#[derive(Default)]
struct State {
    live: Option<Live>,
    /// The browser's one event connection (this tab's, or the one another tab relays).
    events: Option<SharedEvents>,
    /// Kept alive as long as `events` uses them.
    callbacks: Vec<Box<dyn std::any::Any>>,
    /// Whether this tab wants the list's live tails, and where they go.
    tails: Option<(bool, std::rc::Rc<Closure<dyn FnMut(String)>>)>,
    ticker: Option<IntervalHandle>,
    /// The newest event id seen (or the first fetch's `event_id`): the resume cursor.
    last_id: Option<String>,
    /// Set by `end` and errors: the next `ready` refetches whatever it says.
    refetch_on_ready: bool,
    fetching: bool,
    /// A refetch was asked for while one was in flight: run one more after it.
    fetch_again: bool,
    /// Events that arrived while a full fetch was in flight, re-applied after it.
    during_fetch: Vec<(String, String)>,
    /// `node.status` events applied so far: a `GET /api/nodes` answer that one overtook is
    /// older than what the store holds, and dropped.
    node_events: u32,
    last_fetch_ms: f64,
    backoff_ms: f64,
    reconnect_pending: bool,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

pub fn open(live: Live) {
    with(|s| s.live = Some(live));
    live.now.set(js_sys::Date::now());
    let ticker = set_interval_with_handle(tick, POLL_EVERY).ok();
    with(|s| s.ticker = ticker);
    // The first fetch names the event to resume after, so nothing falls between the two.
    spawn_local(async {
        refetch().await;
        connect();
    });
}

pub fn close() {
    with(|s| {
        if let Some(events) = s.events.take() {
            events.close();
        }
        s.callbacks.clear();
        if let Some(ticker) = s.ticker.take() {
            ticker.clear();
        }
        s.live = None;
    });
}

fn live() -> Option<Live> {
    with(|s| s.live)
}

/// Every 5 s: update the clock; poll while the stream is down; the safety refresh while up.
fn tick() {
    let Some(live) = live() else { return };
    let now = js_sys::Date::now();
    live.now.set(now);
    let connection = live.connection.get_untracked();
    let due = match connection {
        Connection::Live => now - with(|s| s.last_fetch_ms) >= SAFETY_REFRESH_MS,
        _ => true,
    };
    if connection == Connection::Reconnecting {
        live.connection.set(Connection::Polling);
    }
    if due {
        spawn_local(refetch());
    }
}

async fn refetch() {
    if with(|s| {
        let busy = std::mem::replace(&mut s.fetching, true);
        s.fetch_again |= busy;
        busy
    }) {
        return;
    }
    with(|s| s.last_fetch_ms = js_sys::Date::now());
    // Whatever may have missed a task event may have missed a node's too.
    spawn_local(refetch_nodes());
    let result = client::list_tasks().await;
    let replay = with(|s| {
        s.fetching = false;
        std::mem::take(&mut s.during_fetch)
    });
    let Some(live) = live() else { return };
    match result {
        Ok(list) => {
            live.signed_out.set(false);
            with(|s| {
                if s.last_id.is_none() {
                    s.last_id = Some(list.event_id.clone());
                }
            });
            live.replace_all(list.tasks);
            // Anything pushed while the list was on its way is newer than (or as new
            // as) the list: apply it again on top.
            for (name, data) in replay {
                apply(&live, &name, &data);
            }
        }
        Err(e) if e.unauthorized() => live.signed_out.set(true),
        Err(e) => leptos::logging::warn!("refreshing tasks: {e}"),
    }
    // The list in flight may predate whatever asked for the second fetch.
    if with(|s| std::mem::take(&mut s.fetch_again)) {
        spawn_local(refetch());
    }
}

/// A node's name and whether it is online, from a `node.status` or an entry of
/// `GET /api/nodes`: read from JSON values, which the app decodes already, since each typed
/// decoder adds kilobytes to the wasm.
fn node_of(json: &serde_json::Value) -> Option<(String, bool)> {
    Some((
        json["name"].as_str()?.to_string(),
        json["online"].as_bool()?,
    ))
}

async fn refetch_nodes() {
    let before = with(|s| s.node_events);
    let result = client::list_nodes().await;
    let Some(live) = live() else { return };
    match result {
        Ok(list) if with(|s| s.node_events) == before => {
            let nodes = list["nodes"].as_array().into_iter().flatten();
            live.set_nodes(nodes.filter_map(node_of).collect());
        }
        Ok(_) => {}
        // A 401 is the task list's to report.
        Err(e) if e.unauthorized() => {}
        Err(e) => leptos::logging::warn!("refreshing nodes: {e}"),
    }
}

fn events_url() -> String {
    match with(|s| s.last_id.clone()) {
        Some(id) => format!("/api/events?since={}", js_sys::encode_uri_component(&id)),
        None => "/api/events".to_string(),
    }
}

fn connect() {
    if live().is_none() {
        return;
    }
    if let Some(events) = with(|s| s.events.clone()) {
        // A reconnect: the tab that leads opens a new stream; the others wait for it.
        events.connect();
        return;
    }
    let url = Closure::<dyn FnMut() -> String>::new(events_url);
    let on_message = Closure::<dyn FnMut(String, String, String)>::new(
        |name: String, data: String, id: String| on_message(&name, data, id),
    );
    let on_error = Closure::<dyn FnMut(bool)>::new(on_error);
    let events = SharedEvents::new(&url, &on_message, &on_error);
    let tails = with(|s| {
        s.events = Some(events.clone());
        s.callbacks = vec![Box::new(url), Box::new(on_message), Box::new(on_error)];
        s.tails.clone()
    });
    if let Some((want, on_tail)) = tails {
        events.follow_tails(want, &on_tail);
    }
}

/// The list's live tails, from the one tails stream of the browser, while `want` (the
/// list is shown and the tab visible).
pub fn follow_tails(want: bool, on_tail: std::rc::Rc<Closure<dyn FnMut(String)>>) {
    let events = with(|s| {
        s.tails = Some((want, on_tail.clone()));
        s.events.clone()
    });
    if let Some(events) = events {
        events.follow_tails(want, &on_tail);
    }
}

fn on_message(name: &str, data: String, id: String) {
    let Some(live) = live() else { return };
    if !id.is_empty() {
        with(|s| s.last_id = Some(id));
    }
    match name {
        event::READY => {
            live.connection.set(Connection::Live);
            let resumed = serde_json::from_str::<Ready>(&data).is_ok_and(|r| r.resumed);
            let forced = with(|s| {
                s.backoff_ms = 0.0;
                std::mem::take(&mut s.refetch_on_ready)
            });
            if !resumed || forced {
                spawn_local(refetch());
            }
        }
        event::RESYNC => spawn_local(refetch()),
        event::END => with(|s| s.refetch_on_ready = true),
        _ => {
            with(|s| {
                if s.fetching {
                    s.during_fetch.push((name.to_string(), data.clone()));
                }
            });
            apply(&live, name, &data);
        }
    }
}

/// Applies one task or node event. A malformed one is logged and skipped, and one this app
/// does not know (a newer server's) is ignored: neither breaks anything.
fn apply(live: &Live, name: &str, data: &str) {
    let applied = match name {
        event::TASK_CREATED | event::TASK_STATUS | event::TASK_UPDATED => {
            serde_json::from_str::<Task>(data).map(|task| live.upsert(task))
        }
        event::TASK_DELETED => serde_json::from_str::<Deleted>(data).map(|d| live.remove(&d.id)),
        event::NODE_STATUS => serde_json::from_str(data).map(|json| {
            with(|s| s.node_events += 1);
            if let Some((name, online)) = node_of(&json) {
                live.set_node(&name, online);
            }
        }),
        _ => Ok(()),
    };
    if let Err(e) = applied {
        leptos::logging::warn!("ignoring a malformed {name} event: {e}");
    }
}

/// Any error closes the stream; a new one follows with backoff and jitter, resuming
/// after the last id seen. Meanwhile the ticker polls.
/// The stream closed (`given_up` when the server refused it outright); it is reopened
/// with backoff by the tab that leads.
fn on_error(given_up: bool) {
    let Some(live) = live() else { return };
    with(|s| s.refetch_on_ready = true);
    if given_up {
        // An HTTP error such as 401 or 503: no use waiting to say so.
        live.connection.set(Connection::Polling);
        spawn_local(refetch());
    } else if live.connection.get_untracked() != Connection::Polling {
        live.connection.set(Connection::Reconnecting);
    }
    schedule_reconnect();
}

/// A new EventSource after a delay that doubles up to 30 s, with jitter so that many
/// tabs do not come back at the same moment.
fn schedule_reconnect() {
    if with(|s| std::mem::replace(&mut s.reconnect_pending, true)) {
        return;
    }
    let backoff = with(|s| {
        s.backoff_ms = (s.backoff_ms * 2.0).clamp(1000.0, MAX_BACKOFF_MS);
        s.backoff_ms
    });
    let delay = backoff * (0.5 + js_sys::Math::random());
    set_timeout(
        || {
            with(|s| s.reconnect_pending = false);
            connect();
        },
        Duration::from_millis(delay as u64),
    );
}
