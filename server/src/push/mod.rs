//! Web Push: the server's VAPID keys, the devices subscribed, and one encrypted push to
//! each of them per transition worth telling (RFC 8030 push, RFC 8291 `aes128gcm`
//! payloads, RFC 8292 VAPID; the cryptography is `web-push-native`'s and `jwt-simple`'s).
//! Each push is sent on its own, retried with backoff, so a slow or failing push service
//! delays no other push and nothing else. Uses `events` and `notify`.

pub mod keys;
pub mod send;
pub mod subscriptions;

use std::{path::Path, sync::Arc};

use tokio_util::sync::CancellationToken;

use crate::{events::broker::Broker, notify::follow_transitions};
use keys::Keys;
use subscriptions::Subscriptions;

pub struct Push {
    pub keys: Keys,
    pub subscriptions: Subscriptions,
    /// The `sub` of every VAPID token: how a push service reaches whoever runs this
    /// server (`TASKWIRE_PUSH_CONTACT`).
    pub contact: String,
}

impl Push {
    /// The keys (made the first time) and subscriptions kept in `data_dir`.
    pub fn open(
        data_dir: &Path,
        contact: String,
    ) -> Result<Push, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Push {
            keys: Keys::load_or_create(data_dir)?,
            subscriptions: Subscriptions::open(&data_dir.join("taskwire.db"))?,
            contact,
        })
    }
}

/// Sends a push to every subscription that wants it, for each transition in `broker`'s
/// feed, until `shutdown`. `base_url` makes the link of a subscription that named no
/// origin.
pub fn spawn(push: Arc<Push>, broker: Arc<Broker>, base_url: String, shutdown: CancellationToken) {
    let sender = send::Sender::new(push.clone(), base_url, shutdown.clone());
    tokio::spawn(follow_transitions(
        broker,
        "push",
        shutdown,
        move |transition| {
            let to = push.subscriptions.wanting(transition.task.status);
            if !to.is_empty() {
                sender.send(Arc::new(transition), to);
            }
        },
    ));
}
