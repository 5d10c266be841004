//! The keyed store of tasks and the patches that change it. An event changes one task by
//! its key: only the fields that differ notify, so its cost does not grow with the number
//! of tasks. Only a task that comes or goes changes `Live::order`.

use leptos::prelude::*;
use reactive_stores::{Patch, Store};

use super::Live;
use crate::model::{Task, TaskStatus};

/// What the header and the list's tabs count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub waiting: usize,
    /// Live tasks, and finished ones not seen yet: the default list.
    pub active: usize,
}

impl Counts {
    fn of(tasks: &[Task]) -> Counts {
        let mut counts = Counts::default();
        for task in tasks {
            counts.add(task, 1);
        }
        counts
    }

    fn add(&mut self, task: &Task, sign: isize) {
        let step = |n: &mut usize, yes: bool| {
            if yes {
                *n = n.saturating_add_signed(sign);
            }
        };
        step(
            &mut self.waiting,
            task.status == TaskStatus::WaitingForInput,
        );
        step(&mut self.active, task.status.is_live() || !task.seen);
    }
}

#[derive(Clone, Debug, Default, Store)]
pub struct Tasks {
    #[store(key: String = |task| task.id.clone())]
    pub tasks: Vec<Task>,
}

impl Live {
    pub fn upsert(&self, task: Task) {
        let id = task.id.clone();
        if self.ids.with_value(|ids| ids.contains(&id)) {
            let field = self.store.tasks().at_key(id);
            let before = field.with_untracked(|old| {
                let mut counts = Counts::default();
                counts.add(old, 1);
                counts
            });
            let mut after = Counts::default();
            after.add(&task, 1);
            if before != after {
                self.counts.update(|c| {
                    c.waiting = c.waiting + after.waiting - before.waiting;
                    c.active = c.active + after.active - before.active;
                });
            }
            field.patch(task);
            return;
        }
        self.counts.update(|c| c.add(&task, 1));
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
        let gone = field.with_untracked(|task| {
            let mut counts = Counts::default();
            counts.add(task, 1);
            counts
        });
        self.counts.update(|c| {
            c.waiting -= gone.waiting;
            c.active -= gone.active;
        });
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
        self.counts.set(Counts::of(&tasks));
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
