//! Telling a person of a task off the page: the transitions worth it (to
//! `waiting-for-input`, `failed` or `completed`) picked out of the event feed, retrying a
//! delivery with backoff, and the webhook of `TASKWIRE_NOTIFY_URL` (ntfy, Slack, a phone).
//! Web Push (`crate::push`) uses the first two. A listener is one more subscriber of the
//! broker: publishing never waits for it, and a slow or dead receiver delays nothing but
//! its own deliveries. Uses `events` and `tasks`.

use std::{future::Future, sync::Arc, time::Duration};

use app::model::{event, Notice, Task, TaskStatus};
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_util::sync::CancellationToken;

use crate::{events::broker::Broker, tasks::Tasks};

/// Notices waiting for delivery; more than this and the oldest are dropped (and said so).
const QUEUE: usize = 256;
/// Tries per notice, the first pause between them (doubling), and each try's time limit.
const TRIES: u32 = 5;
const FIRST_PAUSE: Duration = Duration::from_millis(500);
const TRY_TIMEOUT: Duration = Duration::from_secs(10);

/// A transition a person may want to hear of.
pub struct Transition {
    pub task: Task,
    /// The event's id: the same transition has the same id on every path (a push, a
    /// page's stream), so a device can tell one it has already shown.
    pub event_id: String,
}

/// Calls `each` with every transition to `waiting-for-input`, `failed` or `completed` in
/// `broker`'s feed until `shutdown`. `who` names the listener in warnings.
pub async fn follow_transitions(
    broker: Arc<Broker>,
    who: &str,
    shutdown: CancellationToken,
    mut each: impl FnMut(Transition),
) {
    let (_, following) = broker.follow_after(None);
    let mut feed = following.into_live();
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return,
            received = feed.recv() => received,
        };
        let event = match received {
            Ok(event) => event,
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!("{who} missed {missed} events (too many at once)");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        if event.name != event::TASK_STATUS {
            continue;
        }
        let Ok(task) = serde_json::from_str::<Task>(&event.data) else {
            continue;
        };
        if matches!(
            task.status,
            TaskStatus::WaitingForInput | TaskStatus::Failed | TaskStatus::Completed
        ) {
            each(Transition {
                task,
                event_id: event.id.clone(),
            });
        }
    }
}

/// What one try of a delivery came to.
pub enum Tried {
    Delivered,
    /// Worth another try (a network error, a busy or failing receiver).
    Again(String),
    /// Not worth another (the receiver refused it for good).
    Refused(String),
}

/// Tries `attempt` up to `tries` times, pausing `first_pause` after the first failure and
/// twice as long after each next; gives up at `shutdown`. Whether it was delivered.
pub async fn with_backoff<F: Future<Output = Tried>>(
    what: &str,
    tries: u32,
    first_pause: Duration,
    shutdown: &CancellationToken,
    mut attempt: impl FnMut() -> F,
) -> bool {
    let mut pause = first_pause;
    for n in 1..=tries {
        match attempt().await {
            Tried::Delivered => return true,
            Tried::Refused(why) => {
                tracing::warn!("{what}: {why}; not tried again");
                return false;
            }
            Tried::Again(why) => tracing::warn!("{what}: {why} (try {n} of {tries})"),
        }
        if n == tries {
            break;
        }
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(pause) => {}
        }
        pause *= 2;
    }
    tracing::error!("{what}: gave up after {tries} tries");
    false
}

/// Starts the webhook's subscriber and its sender; both stop with `shutdown`.
pub fn spawn(url: String, tasks: Arc<Tasks>, shutdown: CancellationToken) {
    let (queue, notices) = mpsc::channel(QUEUE);
    let feed = tasks.broker.clone();
    let base_url = tasks.clone();
    tokio::spawn(follow_transitions(
        feed,
        "the webhook",
        shutdown.clone(),
        move |Transition { task, .. }| {
            let notice = Notice {
                event: event::TASK_STATUS.into(),
                url: format!("{}/tasks/{}", base_url.base_url(), task.id),
                task,
            };
            if queue.try_send(notice).is_err() {
                tracing::warn!("the webhook is too far behind; a notice was dropped");
            }
        },
    ));
    tokio::spawn(deliver(url, notices, shutdown));
}

/// Sends each notice in turn, retrying with backoff.
async fn deliver(url: String, mut notices: mpsc::Receiver<Notice>, shutdown: CancellationToken) {
    let client = reqwest::Client::builder()
        .timeout(TRY_TIMEOUT)
        .build()
        .expect("an HTTP client");
    loop {
        let notice = tokio::select! {
            () = shutdown.cancelled() => return,
            notice = notices.recv() => match notice {
                Some(notice) => notice,
                None => return,
            },
        };
        let what = format!("webhook: task {}", notice.task.id);
        with_backoff(&what, TRIES, FIRST_PAUSE, &shutdown, || async {
            match client.post(&url).json(&notice).send().await {
                Ok(answer) if answer.status().is_success() => Tried::Delivered,
                Ok(answer) => Tried::Again(format!("answered {}", answer.status())),
                // Never the URL: an ntfy topic or a Slack hook URL is the secret itself.
                Err(e) => Tried::Again(e.without_url().to_string()),
            }
        })
        .await;
    }
}
