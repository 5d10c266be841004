//! The live tails of the task list, computed once a second for every open tails stream at
//! once: the cost follows the output that changed, not the number of open lists. The pass
//! runs only while some stream listens.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use app::model::TaskTail;
use tokio::sync::broadcast;

use super::Tasks;
use crate::sync::lock;

/// How often the tails are looked at.
const EVERY: Duration = Duration::from_secs(1);
/// Lines in a tail.
const LINES: usize = 3;

pub struct TailsHub {
    tasks: Arc<Tasks>,
    state: Mutex<HubState>,
}

#[derive(Default)]
struct HubState {
    /// The newest tail of every live task: what a new stream starts with.
    latest: HashMap<String, String>,
    /// The tails that changed in each pass; `None` while no pass runs.
    changes: Option<broadcast::Sender<Arc<Vec<TaskTail>>>>,
}

impl TailsHub {
    pub fn new(tasks: Arc<Tasks>) -> Arc<TailsHub> {
        Arc::new(TailsHub {
            tasks,
            state: Mutex::default(),
        })
    }

    /// The current tails, then the changes from here on (starting the passes if need be).
    pub fn subscribe(self: &Arc<Self>) -> (Vec<TaskTail>, broadcast::Receiver<Arc<Vec<TaskTail>>>) {
        let mut state = self.lock();
        let changes = match &state.changes {
            Some(sender) => sender.subscribe(),
            None => {
                let (sender, receiver) = broadcast::channel(16);
                state.changes = Some(sender.clone());
                tokio::spawn(self.clone().run(sender));
                receiver
            }
        };
        let now = state
            .latest
            .iter()
            .map(|(id, text)| TaskTail {
                id: id.clone(),
                text: text.clone(),
            })
            .collect();
        (now, changes)
    }

    /// One pass a second until the last stream has gone.
    async fn run(self: Arc<Self>, changes: broadcast::Sender<Arc<Vec<TaskTail>>>) {
        let mut sizes = HashMap::new();
        let mut ticker = tokio::time::interval(EVERY);
        loop {
            ticker.tick().await;
            {
                let mut state = self.lock();
                if changes.receiver_count() == 0 {
                    state.changes = None;
                    state.latest.clear();
                    return;
                }
            }
            let tasks = self.tasks.clone();
            // A pass that failed starts the next from nothing: every tail is sent again.
            let mut looked_at = std::mem::take(&mut sizes);
            let pass = tokio::task::spawn_blocking(move || {
                let tails = tasks.tails_since(&mut looked_at, LINES);
                (looked_at, tails)
            })
            .await;
            let Ok((seen, tails)) = pass else { continue };
            let Ok(tails) = tails else { continue };
            // `latest` first, then `changes`: a stream that subscribes in between gets this
            // pass twice, never not at all.
            let mut state = self.lock();
            state.latest.retain(|id, _| seen.contains_key(id));
            for tail in &tails {
                state.latest.insert(tail.id.clone(), tail.text.clone());
            }
            drop(state);
            sizes = seen;
            if !tails.is_empty() {
                let _ = changes.send(Arc::new(tails));
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        lock(&self.state)
    }
}
