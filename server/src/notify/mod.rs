//! `TASKWIRE_NOTIFY_URL`: a webhook told of every transition to `waiting-for-input`,
//! `failed` or `completed`, so a person can hear of a task off the machine (ntfy, Slack, a
//! phone). It is one more subscriber of the broker: publishing never waits for it, and a
//! slow or dead webhook delays nothing but its own deliveries. Uses `events` and `tasks`.

use std::{sync::Arc, time::Duration};

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

/// Starts the webhook's subscriber and its sender; both stop with `shutdown`.
pub fn spawn(url: String, tasks: Arc<Tasks>, shutdown: CancellationToken) {
    let (queue, notices) = mpsc::channel(QUEUE);
    let feed = tasks.broker.clone();
    tokio::spawn(watch(feed, tasks, queue, shutdown.clone()));
    tokio::spawn(deliver(url, notices, shutdown));
}

/// Picks the transitions worth a notice out of the event feed.
async fn watch(
    broker: Arc<Broker>,
    tasks: Arc<Tasks>,
    queue: mpsc::Sender<Notice>,
    shutdown: CancellationToken,
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
                tracing::warn!("the webhook missed {missed} events (too many at once)");
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
        if !matches!(
            task.status,
            TaskStatus::WaitingForInput | TaskStatus::Failed | TaskStatus::Completed
        ) {
            continue;
        }
        let notice = Notice {
            event: event::TASK_STATUS.into(),
            url: format!("{}/tasks/{}", tasks.base_url(), task.id),
            task,
        };
        if queue.try_send(notice).is_err() {
            tracing::warn!("the webhook is too far behind; a notice was dropped");
        }
    }
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
        let mut pause = FIRST_PAUSE;
        for attempt in 1..=TRIES {
            match client.post(&url).json(&notice).send().await {
                Ok(answer) if answer.status().is_success() => break,
                Ok(answer) => {
                    tracing::warn!("webhook answered {} (try {attempt})", answer.status())
                }
                // Never the URL: an ntfy topic or a Slack hook URL is the secret itself.
                Err(e) => tracing::warn!("webhook: {} (try {attempt})", e.without_url()),
            }
            if attempt == TRIES {
                tracing::error!("webhook: gave up on the notice for task {}", notice.task.id);
                break;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
            pause *= 2;
        }
    }
}
