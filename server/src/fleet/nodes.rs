//! Which nodes are online: each node says so every `BEAT` on `taskwire.nodes.<name>`;
//! one not heard from for `OFFLINE_AFTER` is offline. A change goes into the event log as
//! `node.status`, once however many nodes notice it: its message id names the heartbeat
//! it follows, and JetStream drops the copies.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use app::model::{event, NodeInfo, NodeList, NodeStatus};
use async_nats::jetstream::message::PublishMessage;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{event_subject, Fleet, FleetError};
use crate::events::event::to_json;
use crate::{sync::lock, tasks::time_text};

const BEAT: Duration = Duration::from_secs(1);
pub const OFFLINE_AFTER: Duration = Duration::from_secs(4);

/// What this node has heard of every node.
#[derive(Default)]
pub struct Nodes {
    seen: Mutex<HashMap<String, Seen>>,
}

#[derive(Clone, Copy)]
struct Seen {
    /// The sender's clock at its last heartbeat (ms since 1970): names the heartbeat.
    beat_ms: u64,
    /// When it arrived here.
    at: SystemTime,
    /// As last announced in the log.
    online: bool,
}

impl Seen {
    /// Not heard from for `OFFLINE_AFTER`.
    fn silent(&self) -> bool {
        SystemTime::now()
            .duration_since(self.at)
            .unwrap_or_default()
            > OFFLINE_AFTER
    }
}

/// Starts sending heartbeats and listening to everyone's.
pub async fn spawn(fleet: Arc<Fleet>, shutdown: CancellationToken) -> Result<(), FleetError> {
    let mut beats = fleet.client.subscribe("taskwire.nodes.*").await?;
    let listener = fleet.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        loop {
            let beat = tokio::select! {
                _ = stop.cancelled() => return,
                beat = beats.next() => beat,
            };
            let Some(beat) = beat else { return };
            let name = beat
                .subject
                .trim_start_matches("taskwire.nodes.")
                .to_string();
            let beat_ms = String::from_utf8_lossy(&beat.payload).parse().unwrap_or(0);
            listener.heard(name, beat_ms);
        }
    });
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(BEAT);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let subject = format!("taskwire.nodes.{}", fleet.node);
            let now_ms = ms_since_1970(SystemTime::now());
            if let Err(e) = fleet
                .client
                .publish(subject, now_ms.to_string().into())
                .await
            {
                tracing::debug!("heartbeat: {e}");
            }
            fleet.notice_silent_nodes();
        }
    });
    Ok(())
}

impl Fleet {
    fn heard(self: &Arc<Self>, name: String, beat_ms: u64) {
        let arrived = Seen {
            beat_ms,
            at: SystemTime::now(),
            online: true,
        };
        let was_online = lock(&self.nodes.seen)
            .insert(name.clone(), arrived)
            .is_some_and(|before| before.online);
        if !was_online {
            self.announce_soon(name, true, beat_ms);
        }
    }

    fn notice_silent_nodes(self: &Arc<Self>) {
        let silent: Vec<(String, u64)> = {
            let mut seen = lock(&self.nodes.seen);
            seen.iter_mut()
                .filter(|(_, s)| s.online && s.silent())
                .map(|(name, s)| {
                    s.online = false;
                    (name.clone(), s.beat_ms)
                })
                .collect()
        };
        for (name, beat_ms) in silent {
            self.announce_soon(name, false, beat_ms);
        }
    }

    /// `announce` in the background: waiting for JetStream must not delay heartbeats.
    fn announce_soon(self: &Arc<Self>, name: String, online: bool, beat_ms: u64) {
        let fleet = self.clone();
        tokio::spawn(async move { fleet.announce(&name, online, beat_ms).await });
    }

    /// Puts `node.status` in the log (straight to the stream: it is news only while NATS
    /// runs).
    async fn announce(&self, name: &str, online: bool, beat_ms: u64) {
        let data = to_json(&NodeStatus {
            name: name.to_string(),
            online,
        });
        let state = if online { "online" } else { "offline" };
        let message = PublishMessage::build()
            .payload(format!("{}\n{data}", event::NODE_STATUS).into())
            .message_id(format!("node-{name}-{state}-{beat_ms}"));
        let sent = self
            .jetstream
            .send_publish(event_subject(name), message)
            .await;
        if let Err(e) = match sent {
            Ok(ack) => ack.await.map(|_| ()).map_err(async_nats::Error::from),
            Err(e) => Err(e.into()),
        } {
            tracing::debug!("announcing node {name} {state}: {e}");
        }
    }

    /// Whether `name` is online: this node always is; another, if heard from lately.
    pub fn is_online(&self, name: &str) -> bool {
        name == self.node
            || lock(&self.nodes.seen)
                .get(name)
                .is_some_and(|s| !s.silent())
    }

    /// Whether `name` was heard from and has gone silent since (a node not heard from
    /// yet is not taken for gone).
    pub fn went_silent(&self, name: &str) -> bool {
        lock(&self.nodes.seen).get(name).is_some_and(Seen::silent)
    }

    /// `GET /api/nodes`: every node heard from or holding a task.
    pub fn node_list(&self) -> NodeList {
        let counts = self.task_counts();
        let seen = lock(&self.nodes.seen).clone();
        let mut names: Vec<String> = counts.keys().chain(seen.keys()).cloned().collect();
        names.push(self.node.clone());
        names.sort();
        names.dedup();
        let nodes = names
            .into_iter()
            .map(|name| {
                let last_seen = if name == self.node {
                    Some(SystemTime::now())
                } else {
                    seen.get(&name).map(|s| s.at)
                };
                NodeInfo {
                    online: self.is_online(&name),
                    last_seen: last_seen.map(time_text).unwrap_or_default(),
                    tasks: counts.get(&name).copied().unwrap_or(0),
                    name,
                }
            })
            .collect();
        NodeList { nodes }
    }
}

fn ms_since_1970(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
