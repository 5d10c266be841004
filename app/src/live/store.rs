//! The keyed store of tasks and the patches that change it. An event changes one task by
//! its key: only the fields that differ notify, so its cost does not grow with the number
//! of tasks. `Live::order` changes only when a task comes or goes, `Live::active` only when
//! a task enters or leaves the default view, and the waiting count only when a task starts
//! or stops waiting.

use std::collections::HashSet;

use leptos::prelude::*;
use reactive_stores::{Patch, Store};

use super::Live;
use crate::model::{Task, TaskStatus};

#[derive(Clone, Debug, Default, Store)]
pub struct Tasks {
    #[store(key: String = |task| task.id.clone())]
    pub tasks: Vec<Task>,
}

/// Whether a task belongs in the default view: it is live, or it finished unseen.
pub fn is_active(task: &Task) -> bool {
    task.status.is_live() || !task.seen
}

/// Adds the node to the list (kept sorted by name) or sets its state; `None` ("not known")
/// never replaces a known state. Whether anything changed.
fn put_node(nodes: &mut Vec<(String, Option<bool>)>, name: &str, state: Option<bool>) -> bool {
    match nodes.binary_search_by(|(known, _)| known.as_str().cmp(name)) {
        Ok(at) => state.is_some() && std::mem::replace(&mut nodes[at].1, state) != state,
        Err(at) => {
            nodes.insert(at, (name.to_string(), state));
            true
        }
    }
}

fn is_waiting(task: &Task) -> bool {
    task.status == TaskStatus::WaitingForInput
}

impl Live {
    pub fn upsert(&self, task: Task) {
        let id = task.id.clone();
        if self.ids.with_value(|ids| ids.contains(&id)) {
            let field = self.store.tasks().at_key(id.clone());
            let (was_active, was_waiting) =
                field.with_untracked(|old| (is_active(old), is_waiting(old)));
            self.note(
                &id,
                (was_active, is_active(&task)),
                (was_waiting, is_waiting(&task)),
            );
            field.patch(task);
            return;
        }
        self.note(&id, (false, is_active(&task)), (false, is_waiting(&task)));
        // A task never moves, so only a new one can name a new node.
        self.note_node(&task.node);
        // Newest first, as the server lists them.
        self.store.tasks().write().insert(0, task);
        self.ids.update_value(|ids| {
            ids.insert(id.clone());
        });
        self.order.update(|order| order.insert(0, id));
    }

    pub fn remove(&self, id: &str) {
        if !self.ids.with_value(|ids| ids.contains(id)) {
            return;
        }
        let field = self.store.tasks().at_key(id.to_string());
        let (was_active, was_waiting) =
            field.with_untracked(|old| (is_active(old), is_waiting(old)));
        self.note(id, (was_active, false), (was_waiting, false));
        self.store.tasks().write().retain(|t| t.id != id);
        self.ids.update_value(|ids| {
            ids.remove(id);
        });
        self.order.update(|order| order.retain(|known| known != id));
    }

    /// Keeps the default view's ids and the waiting count, touching them only when a task
    /// enters or leaves either: (before, after) of each.
    fn note(&self, id: &str, active: (bool, bool), waiting: (bool, bool)) {
        match active {
            (false, true) => self.active.update(|set| {
                set.insert(id.to_string());
            }),
            (true, false) => self.active.update(|set| {
                set.remove(id);
            }),
            _ => {}
        }
        match waiting {
            (false, true) => self.waiting.update(|n| *n += 1),
            (true, false) => self.waiting.update(|n| *n = n.saturating_sub(1)),
            _ => {}
        }
    }

    /// A full list from the server, patched in by key: only what changed re-renders.
    pub fn replace_all(&self, tasks: Vec<Task>) {
        let order: Vec<String> = tasks.iter().map(|t| t.id.clone()).collect();
        self.ids.set_value(order.iter().cloned().collect());
        let active: HashSet<String> = tasks
            .iter()
            .filter(|t| is_active(t))
            .map(|t| t.id.clone())
            .collect();
        let waiting = tasks.iter().filter(|t| is_waiting(t)).count();
        for task in &tasks {
            self.note_node(&task.node);
        }
        self.store.tasks().patch(tasks);
        if self.active.with_untracked(|known| *known != active) {
            self.active.set(active);
        }
        if self.waiting.get_untracked() != waiting {
            self.waiting.set(waiting);
        }
        if self.order.with_untracked(|known| *known != order) {
            self.order.set(order);
        }
        self.loaded.set(true);
    }

    /// A node named by a task, known from then on (most are known already: no change).
    fn note_node(&self, name: &str) {
        if !name.is_empty() {
            self.nodes.maybe_update(|nodes| put_node(nodes, name, None));
        }
    }

    /// `node.status`.
    pub fn set_node(&self, name: &str, online: bool) {
        self.nodes
            .maybe_update(|nodes| put_node(nodes, name, Some(online)));
    }

    /// `GET /api/nodes`. A node it leaves out stays known (a task may name it), its state
    /// unknown. It comes with every full refresh, so it notifies only when something changed.
    pub fn set_nodes(&self, answer: Vec<(String, bool)>) {
        self.nodes.maybe_update(|nodes| {
            let mut changed = false;
            for (name, state) in nodes.iter_mut() {
                if state.is_some() && !answer.iter().any(|(listed, _)| listed == name) {
                    *state = None;
                    changed = true;
                }
            }
            for (name, online) in answer {
                changed |= put_node(nodes, &name, Some(online));
            }
            changed
        });
    }

    /// The task with this id, read without walking the list (tracked: it changes with the
    /// task, and when tasks come or go).
    pub fn task(&self, id: &str) -> Option<Task> {
        self.order.track();
        self.ids
            .with_value(|ids| ids.contains(id))
            .then(|| self.store.tasks().at_key(id.to_string()).get())
    }
}
