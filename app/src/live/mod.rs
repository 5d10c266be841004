//! The live layer: one `EventSource` per tab feeding a keyed store of tasks.
//!
//! - Events patch one task each; they never cause a refetch.
//! - One full `GET /api/tasks`, patched into the store, whenever something may have been
//!   missed: the first load, `ready` with `resumed: false`, `resync`, and the first `ready`
//!   after an `end` or an error.
//! - While the stream is up, a safety refresh every 60 s; while it is down, a poll every 5 s
//!   and reconnects with backoff and jitter.
//! - The stream is opened by the first component that calls [`use_live`] and closed when the
//!   last one goes away.

use leptos::prelude::*;
use reactive_stores::Store;

#[cfg(feature = "hydrate")]
pub mod connection;
#[cfg(feature = "hydrate")]
pub mod shared;
mod store;

pub use store::{is_active, Tasks, TasksStoreFields};

/// What the header badge shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connection {
    Connecting,
    Live,
    Reconnecting,
    Polling,
}

impl Connection {
    pub fn label(self) -> &'static str {
        match self {
            Connection::Connecting => "Connecting…",
            Connection::Live => "Live",
            Connection::Reconnecting => "Reconnecting…",
            Connection::Polling => "Polling",
        }
    }
}

/// Shared by every component through context. All parts are `Copy` handles.
#[derive(Clone, Copy)]
pub struct Live {
    pub store: Store<Tasks>,
    /// The tasks' ids, newest first: what the list iterates. It changes only when a task
    /// comes or goes, so an event about one task does not walk the list.
    pub order: RwSignal<Vec<String>>,
    /// The ids of the tasks the default list shows, and how many tasks wait: kept by the
    /// patches, since recounting every task for every event would cost more with each.
    pub active: RwSignal<std::collections::HashSet<String>>,
    pub waiting: RwSignal<usize>,
    /// The fleet's nodes, sorted by name, and whether each is online as `GET /api/nodes`
    /// and `node.status` say: `None` for one only named by a task so far.
    pub nodes: RwSignal<Vec<(String, Option<bool>)>>,
    /// The same ids as a set, to tell a new task from a known one at once.
    ids: StoredValue<std::collections::HashSet<String>>,
    pub connection: RwSignal<Connection>,
    /// The first full fetch has arrived.
    pub loaded: RwSignal<bool>,
    /// The server answered 401: show the sign-in form.
    pub signed_out: RwSignal<bool>,
    /// Milliseconds since 1970, ticking every few seconds for "idle 4m" labels.
    pub now: RwSignal<f64>,
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    users: RwSignal<usize>,
}

pub fn provide_live() -> Live {
    let live = Live {
        store: Store::new(Tasks::default()),
        order: RwSignal::new(Vec::new()),
        active: RwSignal::new(Default::default()),
        waiting: RwSignal::new(0),
        nodes: RwSignal::new(Default::default()),
        ids: StoredValue::new(Default::default()),
        connection: RwSignal::new(Connection::Connecting),
        loaded: RwSignal::new(false),
        signed_out: RwSignal::new(false),
        now: RwSignal::new(0.0),
        users: RwSignal::new(0),
    };
    provide_context(live);
    live
}

/// The live layer, opened for as long as the calling component lives.
pub fn use_live() -> Live {
    let live = expect_context::<Live>();
    #[cfg(feature = "hydrate")]
    {
        let first = live.users.try_update_untracked(|n| {
            *n += 1;
            *n == 1
        });
        if first == Some(true) {
            connection::open(live);
        }
        on_cleanup(move || {
            let last = live.users.try_update_untracked(|n| {
                *n -= 1;
                *n == 0
            });
            if last == Some(true) {
                connection::close();
            }
        });
    }
    live
}

impl Live {
    /// Tasks waiting for the person (kept by the store's patches, not counted per read).
    pub fn waiting_count(&self) -> usize {
        self.waiting.get()
    }

    /// More than one node is known: only then do pages speak of nodes.
    pub fn is_fleet(&self) -> bool {
        self.nodes.with(|nodes| nodes.len() > 1)
    }

    /// Whether the node is online, if known.
    pub fn node_online(&self, name: &str) -> Option<bool> {
        self.nodes.with(|nodes| {
            nodes
                .iter()
                .find(|(known, _)| known == name)
                .and_then(|n| n.1)
        })
    }
}
