//! The keyed store of tasks and the patches that change it.

use leptos::prelude::*;
use reactive_stores::Store;

use super::Live;
use crate::model::Task;

#[derive(Clone, Debug, Default, Store)]
pub struct Tasks {
    #[store(key: String = |task| task.id.clone())]
    pub tasks: Vec<Task>,
}

impl Live {
    /// Applies one change to the task list through a keyed patch: only the fields that
    /// differ notify, so only what changed re-renders.
    pub fn change(&self, edit: impl FnOnce(&mut Vec<Task>)) {
        let mut tasks = self.store.tasks().get_untracked();
        edit(&mut tasks);
        self.store.tasks().patch(tasks);
    }

    pub fn upsert(&self, task: Task) {
        self.change(|tasks| match tasks.iter_mut().find(|t| t.id == task.id) {
            Some(slot) => *slot = task,
            // Newest first, as the server lists them.
            None => tasks.insert(0, task),
        });
    }

    pub fn remove(&self, id: &str) {
        self.change(|tasks| tasks.retain(|t| t.id != id));
    }

    pub fn replace_all(&self, tasks: Vec<Task>) {
        self.store.tasks().patch(tasks);
        self.loaded.set(true);
    }
}
