//! The event log: this node's outbox sent to the stream, and the stream read back into the
//! view and the broker this node's browsers listen to.

use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use app::model::{event, Deleted, NodeStatus, Task};
use async_nats::jetstream::{
    consumer::{pull, DeliverPolicy},
    message::PublishMessage,
    stream::Stream,
};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{event_subject, outbox::Entry, Fleet};
use crate::events::{
    broker::{Archive, Archived},
    event::to_json,
};
use crate::sync::lock;

/// How long to wait before sending again after NATS failed to take an event.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// Sends the outbox to the stream, oldest first, until `shutdown`. An entry leaves the
/// outbox only once JetStream has acknowledged it; a batch that fails is sent again (each
/// event's message id makes JetStream drop a second copy).
pub async fn send_outbox(fleet: Arc<Fleet>, shutdown: CancellationToken) {
    loop {
        let entries = match fleet.with_outbox(|o| o.oldest(256)).await {
            Some(Ok(entries)) => entries,
            Some(Err(e)) => {
                tracing::error!("reading the outbox: {e}");
                Vec::new()
            }
            None => Vec::new(),
        };
        let Some(last) = entries.last().map(|e| e.n) else {
            // A push since the read left a permit: this returns at once then.
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = fleet.outbox.filled.notified() => continue,
            }
        };
        match send_batch(&fleet, &entries).await {
            Ok(()) => {
                if let Some(Err(e)) = fleet.with_outbox(move |o| o.remove_through(last)).await {
                    tracing::error!("removing sent events from the outbox: {e}");
                }
            }
            Err(e) => {
                tracing::warn!("sending events to the fleet (will retry): {e}");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(RETRY_AFTER) => {}
                }
            }
        }
    }
}

impl Fleet {
    /// Sends what the outbox still holds, for at most `within`: a node that stops sends
    /// the fleet its last changes before it goes (a task created a moment before would
    /// otherwise be unknown to the others until the node is back).
    pub async fn flush_outbox(self: &Arc<Self>, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        let flushed = tokio::time::timeout_at(deadline, async {
            self.with_outbox(|o| o.wait_written()).await;
            loop {
                let entries = match self.with_outbox(|o| o.oldest(256)).await {
                    Some(Ok(entries)) if !entries.is_empty() => entries,
                    _ => return Ok::<(), async_nats::Error>(()),
                };
                send_batch(self, &entries).await?;
                let last = entries.last().map_or(0, |e| e.n);
                self.with_outbox(move |o| o.remove_through(last)).await;
            }
        })
        .await;
        match flushed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("the last changes wait for the next start: {e}"),
            Err(_) => tracing::warn!("the last changes wait for the next start (NATS too slow)"),
        }
    }
}

/// A batch of events to the stream, their records to the bucket first (see
/// `Fleet::join`). Two round trips for the batch, not two per event: the publishes are
/// sent back to back on the one connection (which keeps their order), then acknowledged.
async fn send_batch(fleet: &Fleet, entries: &[Entry]) -> Result<(), async_nats::Error> {
    let mut acks = Vec::with_capacity(entries.len());
    for entry in entries {
        match entry.name.as_str() {
            event::TASK_DELETED => {
                let Ok(deleted) = serde_json::from_str::<Deleted>(&entry.data) else {
                    tracing::error!("an unreadable task.deleted in the outbox: not a record");
                    continue;
                };
                fleet
                    .records
                    .delete(super::record_key(&fleet.node, &deleted.id))
                    .await?;
            }
            event::TASK_CREATED | event::TASK_STATUS | event::TASK_UPDATED => {
                // What this node wrote itself; should it not read, the event still goes.
                let Ok(task) = serde_json::from_str::<Task>(&entry.data) else {
                    tracing::error!("an unreadable {} in the outbox: not a record", entry.name);
                    continue;
                };
                let record = PublishMessage::build().payload(entry.data.clone().into());
                let subject = format!(
                    "$KV.{}.{}",
                    super::RECORDS,
                    super::record_key(&fleet.node, &task.id)
                );
                acks.push(fleet.jetstream.send_publish(subject, record).await?);
            }
            _ => {}
        }
    }
    for ack in acks.drain(..) {
        ack.await?;
    }
    for entry in entries {
        let message = PublishMessage::build()
            .payload(format!("{}\n{}", entry.name, entry.data).into())
            .message_id(format!(
                "{}-{}-{}",
                fleet.node, fleet.outbox.instance, entry.n
            ));
        acks.push(
            fleet
                .jetstream
                .send_publish(event_subject(&fleet.node), message)
                .await?,
        );
    }
    for ack in acks {
        ack.await?;
    }
    Ok(())
}

/// Reads the stream from `from` on, for as long as the node runs: each event updates the
/// view and is published to this node's browsers with the stream's number. The ordered
/// consumer recreates itself where it stopped if NATS goes away and comes back.
pub async fn read_log(fleet: Arc<Fleet>, stream: Stream, from: u64, shutdown: CancellationToken) {
    let mut next = from;
    loop {
        if let Err(e) = read_from(&fleet, &stream, &mut next, &shutdown).await {
            tracing::warn!("reading the fleet's event log (will retry): {e}");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RETRY_AFTER) => {}
        }
    }
}

async fn read_from(
    fleet: &Fleet,
    stream: &Stream,
    next: &mut u64,
    shutdown: &CancellationToken,
) -> Result<(), async_nats::Error> {
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: *next,
            },
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut reconnects = fleet.reconnects.subscribe();
    reconnects.mark_unchanged();
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            // A new consumer, from where this one stopped.
            _ = reconnects.changed() => return Ok(()),
            message = messages.next() => message,
        };
        let Some(message) = message else {
            return Ok(());
        };
        let message = message?;
        let seq = message.info()?.stream_sequence;
        fleet.apply(seq, &message.subject, &message.payload);
        *next = seq + 1;
    }
}

impl Fleet {
    /// One event of the log: the view changes and the browsers hear of it, together. An
    /// event that does not read, or that a node sent about another node's task, is
    /// refused (counted, never relayed).
    fn apply(&self, seq: u64, subject: &str, payload: &[u8]) {
        let mut view = lock(&self.view);
        let Some(event) = LogEvent::read(subject, payload) else {
            return self.refuse(seq, subject, "an unreadable event");
        };
        let sender = event.sender();
        match &event.body {
            Body::Task(task) => {
                // A node speaks for its own tasks only, and a task does not change nodes.
                let owner = view.get(&task.id).map_or(&task.node, |known| &known.node);
                if task.node != sender || *owner != sender {
                    return self.refuse(seq, subject, "a task of another node");
                }
                lock(&self.placed).remove(&task.id);
                view.insert(task.id.clone(), (**task).clone());
            }
            Body::Deleted(deleted) => {
                if view.get(&deleted.id).is_some_and(|t| t.node != sender) {
                    return self.refuse(seq, subject, "a task of another node");
                }
                lock(&self.placed).remove(&deleted.id);
                view.remove(&deleted.id);
            }
            Body::NodeStatus(_) => {}
        }
        let (name, data) = event.relayed();
        self.broker.publish_numbered(seq, name, data);
    }

    fn refuse(&self, seq: u64, subject: &str, what: &str) {
        self.broker.metrics.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("refused {what} (stream sequence {seq}, subject {subject})");
    }
}

/// An event of the log as it was read: who sent it (the node of its subject) and what it
/// says, checked against the wire types.
struct LogEvent {
    /// The subject it came on, `taskwire.events.<node>`.
    subject: String,
    name: &'static str,
    body: Body,
}

enum Body {
    Task(Box<Task>),
    Deleted(Deleted),
    NodeStatus(NodeStatus),
}

impl LogEvent {
    fn read(subject: &str, payload: &[u8]) -> Option<LogEvent> {
        subject.strip_prefix("taskwire.events.")?;
        let (name, data) = std::str::from_utf8(payload).ok()?.split_once('\n')?;
        let name = known_event(name)?;
        let body = match name {
            event::TASK_DELETED => Body::Deleted(serde_json::from_str(data).ok()?),
            event::NODE_STATUS => Body::NodeStatus(serde_json::from_str(data).ok()?),
            _ => Body::Task(Box::new(serde_json::from_str(data).ok()?)),
        };
        Some(LogEvent {
            subject: subject.to_string(),
            name,
            body,
        })
    }

    fn sender(&self) -> &str {
        self.subject.trim_start_matches("taskwire.events.")
    }

    /// What browsers are sent: the event written anew from what was read, so nothing but
    /// the wire type's own JSON (no stray `\r` or field) reaches them.
    fn relayed(&self) -> (&'static str, String) {
        let data = match &self.body {
            Body::Task(task) => to_json(&**task),
            Body::Deleted(deleted) => to_json(deleted),
            Body::NodeStatus(status) => to_json(status),
        };
        (self.name, data)
    }

    /// As `read`, for an event read back for a resume: a task event counts only from its
    /// own node's subject.
    fn archived(seq: u64, subject: &str, payload: &[u8]) -> Option<Archived> {
        let event = LogEvent::read(subject, payload)?;
        if let Body::Task(task) = &event.body {
            if task.node != event.sender() {
                return None;
            }
        }
        let (name, data) = event.relayed();
        Some((seq, name, data))
    }
}

/// The event's name as the broker takes it (`&'static str`); `None` for a name this
/// version does not know.
fn known_event(name: &str) -> Option<&'static str> {
    [
        event::TASK_CREATED,
        event::TASK_STATUS,
        event::TASK_UPDATED,
        event::TASK_DELETED,
        event::NODE_STATUS,
    ]
    .into_iter()
    .find(|known| *known == name)
}

/// The stream as the broker's archive: a browser whose cursor is older than the ring
/// resumes from events read back from JetStream.
pub struct StreamArchive {
    pub stream: Stream,
}

/// The longest a resume waits for the stream to give back what it missed.
const ARCHIVE_READ_WITHIN: Duration = Duration::from_secs(10);

impl Archive for StreamArchive {
    fn read(
        &self,
        from: u64,
        to: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<Archived>> + Send + '_>> {
        Box::pin(async move {
            match tokio::time::timeout(ARCHIVE_READ_WITHIN, read_range(&self.stream, from, to))
                .await
            {
                Ok(Ok(events)) => events,
                Ok(Err(e)) => {
                    tracing::warn!("reading events {from}..={to} back from the stream: {e}");
                    Vec::new()
                }
                Err(_) => Vec::new(),
            }
        })
    }
}

async fn read_range(
    stream: &Stream,
    from: u64,
    to: u64,
) -> Result<Vec<Archived>, async_nats::Error> {
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: from,
            },
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut events = Vec::with_capacity((to + 1 - from) as usize);
    while let Some(message) = messages.next().await {
        let message = message?;
        let seq = message.info()?.stream_sequence;
        if seq > to {
            break;
        }
        events.extend(LogEvent::archived(seq, &message.subject, &message.payload));
        if seq == to {
            break;
        }
    }
    Ok(events)
}
