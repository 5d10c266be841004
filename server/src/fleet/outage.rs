//! A node without NATS still serves its own dashboard, live: while NATS is away, its
//! browsers are moved to a local broker (an epoch of its own) that gets this node's own
//! events as they happen, and its lists show its own tasks from its own records over the
//! fleet as last known. Once NATS is back and the outbox is sent, they are moved back to
//! the stream's broker (its epoch, its numbers). Each move ends the browsers' streams: they
//! reconnect with a cursor of the other epoch, get `"resumed": false`, and fetch the list
//! again, as after any restart.

use std::{sync::Arc, time::Duration};

use async_nats::connection::State;
use tokio_util::sync::CancellationToken;

use super::Fleet;
use crate::events::broker::Broker;
use crate::sync::lock;

/// How often the connection is looked at, and how long it must stay down (or up) to move.
const LOOK_EVERY: Duration = Duration::from_millis(250);
const SETTLE: Duration = Duration::from_secs(1);

/// Which broker this node's browsers follow.
pub struct Serving {
    /// While NATS is away: a broker of this node's own events, and the token that ends
    /// its streams.
    local: Option<(Arc<Broker>, CancellationToken)>,
    /// Ends the streams that follow the stream's broker.
    stream_streams: CancellationToken,
    server_shutdown: CancellationToken,
}

impl Serving {
    pub fn new(server_shutdown: CancellationToken) -> Serving {
        Serving {
            local: None,
            stream_streams: server_shutdown.child_token(),
            server_shutdown,
        }
    }
}

impl Fleet {
    /// The broker this node's browsers follow now, and what ends their streams.
    pub fn serving(&self) -> (Arc<Broker>, CancellationToken) {
        let serving = lock(&self.serving);
        match &serving.local {
            Some((broker, ends)) => (broker.clone(), ends.clone()),
            None => (self.broker.clone(), serving.stream_streams.clone()),
        }
    }

    /// The local broker while NATS is away.
    pub fn local_broker(&self) -> Option<Arc<Broker>> {
        lock(&self.serving).local.as_ref().map(|(b, _)| b.clone())
    }

    fn go_local(&self, replay: usize, max_subscribers: usize) {
        let mut serving = lock(&self.serving);
        if serving.local.is_some() {
            return;
        }
        tracing::warn!("NATS is away: this node's browsers follow its own tasks alone");
        let ends = serving.server_shutdown.child_token();
        serving.local = Some((Broker::new(replay, max_subscribers), ends));
        serving.stream_streams.cancel();
        serving.stream_streams = serving.server_shutdown.child_token();
    }

    fn go_back(&self) {
        let mut serving = lock(&self.serving);
        if let Some((_, ends)) = serving.local.take() {
            tracing::info!("NATS is back: this node's browsers follow the fleet again");
            ends.cancel();
        }
    }
}

/// Watches the connection until `shutdown`, moving browsers as it goes and comes.
pub async fn watch(
    fleet: Arc<Fleet>,
    replay: usize,
    max_subscribers: usize,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(LOOK_EVERY);
    let mut since = tokio::time::Instant::now();
    let mut was_connected = true;
    // The newest outbox entry when NATS came back: once it is sent, the fleet has what
    // happened meanwhile (later entries are ordinary traffic).
    let mut waiting_at_return: Option<i64> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let connected = fleet.client.connection_state() == State::Connected;
        if connected != was_connected {
            was_connected = connected;
            since = tokio::time::Instant::now();
            if connected {
                fleet.reconnects.send_modify(|n| *n += 1);
                waiting_at_return = fleet.with_outbox(|o| o.newest()).await.flatten();
            }
        }
        if since.elapsed() < SETTLE {
            continue;
        }
        if !connected {
            fleet.go_local(replay, max_subscribers);
        } else if fleet
            .with_outbox(|o| o.oldest_n())
            .await
            .flatten()
            .is_none_or(|oldest| waiting_at_return.is_none_or(|mark| oldest > mark))
        {
            // Back once what happened meanwhile is in the stream.
            fleet.go_back();
        }
    }
}
