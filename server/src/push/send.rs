//! One push to one device: the payload fitted to what push services take, encrypted to
//! the device's keys, signed with the server's VAPID key for the push service's origin, and
//! sent with retries. A subscription its push service says is gone is forgotten.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use app::model::{event, Task, TaskStatus};
use axum::http::{header, Uri};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use web_push_native::jwt_simple::{self, algorithms::ECDSAP256KeyPairLike, claims::Claims};

use super::{subscriptions::Subscription, Push};
use crate::notify::{with_backoff, Transition, Tried};

/// Tries per push, and the first pause between them (doubling: 1, 2, 4 s).
const TRIES: u32 = 4;
const FIRST_PAUSE: Duration = Duration::from_secs(1);
const TRY_TIMEOUT: Duration = Duration::from_secs(10);
/// Pushes on the wire at once, and waiting to be (beyond that, new ones are dropped, and
/// said so: a push service that hangs must not hold the server's memory).
const SENDING: usize = 32;
const PENDING: usize = 1024;
/// How long a VAPID token is good for (RFC 8292: at most 24 hours).
const TOKEN_HOURS: u64 = 12;
/// The most a push service must take (RFC 8030 §7.2) less what `aes128gcm` adds: its
/// header (86 bytes with the key id), the tag (16) and the padding delimiter (1).
const MAX_PLAINTEXT: usize = 4096 - 103;

/// The decrypted payload a device gets.
#[derive(Serialize)]
struct Payload<'a> {
    event: &'static str,
    task: &'a Task,
    url: String,
    /// The same transition shown by the page's own notification has this id too.
    event_id: &'a str,
}

pub struct Sender {
    push: Arc<Push>,
    client: reqwest::Client,
    base_url: String,
    sending: Arc<Semaphore>,
    pending: Arc<AtomicUsize>,
    shutdown: CancellationToken,
}

impl Sender {
    pub fn new(push: Arc<Push>, base_url: String, shutdown: CancellationToken) -> Arc<Sender> {
        let client = reqwest::Client::builder()
            .timeout(TRY_TIMEOUT)
            // A push service answers; it does not send the push elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client");
        Arc::new(Sender {
            push,
            client,
            base_url,
            sending: Arc::new(Semaphore::new(SENDING)),
            pending: Arc::new(AtomicUsize::new(0)),
            shutdown,
        })
    }

    /// Starts one push of `transition` to each of `to`, each on its own.
    pub fn send(self: &Arc<Self>, transition: Arc<Transition>, to: Vec<Subscription>) {
        for subscription in to {
            if self.pending.fetch_add(1, Ordering::Relaxed) >= PENDING {
                self.pending.fetch_sub(1, Ordering::Relaxed);
                tracing::warn!(
                    "too many pushes waiting; one for task {} was dropped",
                    transition.task.id
                );
                continue;
            }
            let sender = self.clone();
            let transition = transition.clone();
            tokio::spawn(async move {
                sender.deliver(&transition, &subscription).await;
                sender.pending.fetch_sub(1, Ordering::Relaxed);
            });
        }
    }

    async fn deliver(&self, transition: &Transition, subscription: &Subscription) {
        let Ok(_permit) = self.sending.acquire().await else {
            return;
        };
        let request = match self.request(transition, subscription) {
            Ok(request) => request,
            Err(e) => {
                tracing::error!("push for task {}: {e}", transition.task.id);
                return;
            }
        };
        // Never the endpoint in a log: it is the capability to push to that device.
        let what = format!("push: task {}", transition.task.id);
        with_backoff(&what, TRIES, FIRST_PAUSE, &self.shutdown, || async {
            let Some(request) = request.try_clone() else {
                return Tried::Refused("the request cannot be sent again".into());
            };
            match self.client.execute(request).await {
                Ok(answer) => self.judge(answer.status(), subscription).await,
                Err(e) => Tried::Again(e.without_url().to_string()),
            }
        })
        .await;
    }

    /// What a push service's answer means for this push and this subscription.
    async fn judge(&self, status: reqwest::StatusCode, subscription: &Subscription) -> Tried {
        match status.as_u16() {
            200..=299 => Tried::Delivered,
            // The device unsubscribed, or the subscription expired: forget it for good.
            404 | 410 => {
                let push = self.push.clone();
                let endpoint = subscription.endpoint.clone();
                let forgotten =
                    tokio::task::spawn_blocking(move || push.subscriptions.forget(&endpoint)).await;
                if !matches!(forgotten, Ok(Ok(()))) {
                    tracing::error!("push: could not forget a subscription that is gone");
                }
                Tried::Refused(format!(
                    "the push service answered {status}: subscription forgotten"
                ))
            }
            429 | 500..=599 => Tried::Again(format!("the push service answered {status}")),
            _ => Tried::Refused(format!("the push service answered {status}")),
        }
    }

    /// The push request: encrypted body, VAPID authorization, and how the push service
    /// should treat it.
    fn request(
        &self,
        transition: &Transition,
        subscription: &Subscription,
    ) -> Result<reqwest::Request, String> {
        let task = &transition.task;
        let origin = subscription.origin.as_deref().unwrap_or(&self.base_url);
        let body = fit(task, |task| {
            serde_json::to_vec(&Payload {
                event: event::TASK_STATUS,
                task,
                url: format!("{origin}/tasks/{}", task.id),
                event_id: &transition.event_id,
            })
            .expect("a payload serializes")
        });
        let encrypted = web_push_native::encrypt(body, &subscription.p256dh, &subscription.auth)
            .map_err(|e| e.to_string())?;
        let (ttl, urgency) = match task.status {
            // A question is worth an hour: after that, the page tells better than a buzz.
            TaskStatus::WaitingForInput => (3600, "high"),
            TaskStatus::Failed => (24 * 3600, "high"),
            _ => (24 * 3600, "normal"),
        };
        self.client
            .post(&subscription.endpoint)
            .header(header::AUTHORIZATION, self.vapid(&subscription.endpoint)?)
            .header("TTL", ttl)
            .header("Urgency", urgency)
            // A device that was away gets the task's latest transition, not each one.
            .header("Topic", &task.id)
            .header(header::CONTENT_ENCODING, "aes128gcm")
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(encrypted)
            .build()
            .map_err(|e| e.without_url().to_string())
    }

    /// `vapid t=<JWT for the endpoint's origin>, k=<public key>` (RFC 8292).
    fn vapid(&self, endpoint: &str) -> Result<String, String> {
        let uri: Uri = endpoint.parse().map_err(|_| "the endpoint is not a URL")?;
        let audience = origin_of(&uri).ok_or("the endpoint has no origin")?;
        let claims = Claims::create(jwt_simple::prelude::Duration::from_hours(TOKEN_HOURS))
            .with_audience(audience)
            .with_subject(&self.push.contact);
        let token = self
            .push
            .keys
            .pair
            .sign(claims)
            .map_err(|e| e.to_string())?;
        Ok(format!("vapid t={token}, k={}", self.push.keys.public))
    }
}

/// `scheme://host[:port]`, the port only when it is not the scheme's own.
fn origin_of(uri: &Uri) -> Option<String> {
    let scheme = uri.scheme_str()?;
    let host = uri.host()?;
    Some(match uri.port_u16() {
        Some(port) if !matches!((scheme, port), ("https", 443) | ("http", 80)) => {
            format!("{scheme}://{host}:{port}")
        }
        _ => format!("{scheme}://{host}"),
    })
}

/// The payload of `task`, shortened until push services take it: the long texts first,
/// then the prompt's choices beyond the two a notification shows.
fn fit(task: &Task, payload: impl Fn(&Task) -> Vec<u8>) -> Vec<u8> {
    let body = payload(task);
    if body.len() <= MAX_PLAINTEXT {
        return body;
    }
    let mut task = task.clone();
    let optional = [&mut task.message, &mut task.error];
    for text in [&mut task.command, &mut task.workdir]
        .into_iter()
        .chain(optional.into_iter().flatten())
    {
        shorten(text, 200);
    }
    if let Some(prompt) = &mut task.prompt {
        shorten(&mut prompt.question, 300);
        for choice in &mut prompt.choices {
            shorten(&mut choice.label, 80);
        }
    }
    let body = payload(&task);
    if body.len() <= MAX_PLAINTEXT {
        return body;
    }
    if let Some(prompt) = &mut task.prompt {
        prompt.choices.truncate(2);
    }
    task.command.clear();
    task.message = None;
    task.error = None;
    payload(&task)
}

fn shorten(text: &mut String, chars: usize) {
    if let Some((at, _)) = text.char_indices().nth(chars) {
        text.truncate(at);
        text.push('…');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_keeps_a_port_that_is_not_the_schemes_own() {
        let origin = |u: &str| origin_of(&u.parse().unwrap()).unwrap();
        assert_eq!(
            origin("https://fcm.googleapis.com/fcm/send/x"),
            "https://fcm.googleapis.com"
        );
        assert_eq!(origin("https://push.example:443/a"), "https://push.example");
        assert_eq!(origin("http://127.0.0.1:4123/ok"), "http://127.0.0.1:4123");
    }
}
