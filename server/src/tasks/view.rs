//! The view of the tasks: what the API reads (the list, one task, who owns an id, the
//! nodes). A single node's view is its own records (`Tasks`); a fleet's is every node's
//! (`fleet::Fleet`). The handlers above know only this trait, so `GET /api/tasks` and
//! `GET /api/nodes` have one handler and one order whichever runs.

use app::model::{NodeInfo, NodeList, Task, TaskList};

use super::{now_text, TaskResult, Tasks};

pub trait TaskView: Send + Sync {
    /// Every task, newest first (see `newest_first`), with the newest event the list
    /// reflects. Reads SQLite or clones the view: call it on a blocking thread.
    fn list(&self) -> TaskResult<TaskList>;
    /// One task, as this node knows it now.
    fn get(&self, id: &str) -> TaskResult<Task>;
    /// The node that runs the task, when that is another node than this one.
    fn owner_elsewhere(&self, id: &str) -> Option<String>;
    /// Every node, with whether it is online.
    fn nodes(&self) -> TaskResult<NodeList>;
}

impl TaskView for Tasks {
    fn list(&self) -> TaskResult<TaskList> {
        Tasks::list(self)
    }

    fn get(&self, id: &str) -> TaskResult<Task> {
        Tasks::get(self, id)
    }

    fn owner_elsewhere(&self, _id: &str) -> Option<String> {
        None
    }

    /// A single node: itself, online.
    fn nodes(&self) -> TaskResult<NodeList> {
        let node = NodeInfo {
            name: self.node.clone(),
            online: true,
            last_seen: now_text(),
            tasks: Tasks::list(self)?.tasks.len(),
        };
        Ok(NodeList { nodes: vec![node] })
    }
}

/// The list's one order: newest first, and on a tie (two tasks created in the same
/// millisecond) the greater id first. The store's query sorts the same way.
pub fn newest_first(tasks: &mut [Task]) {
    tasks.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
}
