//! The keyed store of tasks and the patches that change it. An event changes one task by
//! its key: only the fields that differ notify, so its cost does not grow with the number
//! of tasks. Only a task that comes or goes changes `Live::order`.

use leptos::prelude::*;
use reactive_stores::{Patch, Store};

use super::Live;
use crate::model::Task;

#[derive(Clone, Debug, Default, Store)]
pub struct Tasks {
    #[store(key: String = |task| task.id.clone())]
    pub tasks: Vec<Task>,
}

impl Live {
    pub fn upsert(&self, task: Task) {
        let id = task.id.clone();
        if self.ids.with_value(|ids| ids.contains(&id)) {
            self.store.tasks().at_key(id).patch(task);
            return;
        }
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
        self.store.tasks().write().retain(|t| t.id != id);
        self.ids.update_value(|ids| {
            ids.remove(id);
        });
        self.order.update(|order| order.retain(|known| known != id));
    }

    /// A full list from the server, patched in by key: only what changed re-renders.
    pub fn replace_all(&self, tasks: Vec<Task>) {
        let order: Vec<String> = tasks.iter().map(|t| t.id.clone()).collect();
        self.ids.set_value(order.iter().cloned().collect());
        self.store.tasks().patch(tasks);
        if self.order.with_untracked(|known| *known != order) {
            self.order.set(order);
        }
        self.loaded.set(true);
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
