//! Web Push, against a push service of the test's own on 127.0.0.1: each transition a
//! device wants reaches its endpoint once, encrypted to the device's keys and signed with
//! the server's VAPID key; a subscription whose push service says it is gone is forgotten;
//! one whose push service fails is retried, then given up, while other pushes go on.

mod common;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use app::model::TaskStatus;
use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode as AxumStatus},
    routing::post,
    Router,
};
use base64ct::{Base64UrlUnpadded, Encoding};
use common::{Fixture, Nats, TestServer, TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use web_push_native::{
    jwt_simple::{
        algorithms::{ECDSAP256PublicKeyLike, ES256PublicKey},
        claims::NoCustomClaims,
        common::VerificationOptions,
    },
    p256::{elliptic_curve::rand_core::OsRng, SecretKey},
    Auth,
};

const SOON: Duration = Duration::from_secs(10);

/// One request the push service received.
#[derive(Clone, Debug)]
struct Received {
    /// The last part of the endpoint's path: which device it was for.
    device: String,
    headers: HeaderMap,
    body: Bytes,
    at: Instant,
}

/// A push service: `/ok/*` takes pushes (`201`), `/gone/*` answers `410`, `/broken/*`
/// answers `500`; it keeps every request.
struct PushService {
    origin: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl PushService {
    async fn start() -> PushService {
        let received = Arc::new(Mutex::new(Vec::new()));
        async fn take(
            State(received): State<Arc<Mutex<Vec<Received>>>>,
            Path((kind, device)): Path<(String, String)>,
            headers: HeaderMap,
            body: Bytes,
        ) -> AxumStatus {
            received.lock().unwrap().push(Received {
                device: format!("{kind}/{device}"),
                headers,
                body,
                at: Instant::now(),
            });
            match kind.as_str() {
                "ok" => AxumStatus::CREATED,
                "gone" => AxumStatus::GONE,
                _ => AxumStatus::INTERNAL_SERVER_ERROR,
            }
        }
        let app = Router::new()
            .route("/{kind}/{device}", post(take))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        PushService { origin, received }
    }

    fn to(&self, device: &str) -> Vec<Received> {
        let received = self.received.lock().unwrap();
        received
            .iter()
            .filter(|r| r.device == device)
            .cloned()
            .collect()
    }

    /// Waits until `device` has had `count` requests; they.
    async fn wait_for(&self, device: &str, count: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.to(device);
            if got.len() >= count {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{device} got {} pushes, not {count}, within {within:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A browser's side of a subscription: the keys a push is encrypted to.
struct Device {
    secret: SecretKey,
    auth: Auth,
}

impl Device {
    fn new() -> Device {
        let auth: [u8; 16] = rand::random();
        Device {
            secret: SecretKey::random(&mut OsRng),
            auth: Auth::clone_from_slice(&auth),
        }
    }

    /// A `PushSubscription`'s JSON for `endpoint`, with `kinds`.
    fn subscription(&self, endpoint: &str, kinds: &[&str]) -> Value {
        json!({
            "endpoint": endpoint,
            "expirationTime": null,
            "keys": {
                "p256dh": Base64UrlUnpadded::encode_string(&self.secret.public_key().to_sec1_bytes()),
                "auth": Base64UrlUnpadded::encode_string(&self.auth),
            },
            "kinds": kinds,
        })
    }

    fn decrypt(&self, body: &[u8]) -> Value {
        let plain = web_push_native::decrypt(body.to_vec(), &self.secret, &self.auth)
            .expect("the push decrypts with the device's keys");
        serde_json::from_slice(&plain).expect("the payload is JSON")
    }
}

async fn subscribe(server: &TestServer, body: Value, origin: Option<&str>) -> (StatusCode, Value) {
    let mut request = server
        .request(Method::POST, "/api/push/subscriptions")
        .json(&body);
    if let Some(origin) = origin {
        request = request.header("Origin", origin);
    }
    let answer = request.send().await.unwrap();
    let status = answer.status();
    (status, answer.json().await.unwrap_or(Value::Null))
}

async fn vapid_key(server: &TestServer) -> String {
    let (status, body) = server.call(Method::GET, "/api/push/key", None).await;
    assert_eq!(status, StatusCode::OK);
    body["key"].as_str().expect("a key").to_string()
}

fn asks(args: &str) -> String {
    let program = concat!(env!("CARGO_MANIFEST_DIR"), "/../end2end/fixtures/asks.py");
    format!("python3 {program} {args}")
}

/// Checks the push's VAPID authorization against the server's key: its signature, its
/// audience (the push service's origin) and its expiry (RFC 8292: within 24 hours).
fn check_vapid(push: &Received, key: &str, audience: &str) {
    let authorization = push.headers["authorization"].to_str().unwrap();
    let rest = authorization
        .strip_prefix("vapid ")
        .expect("a vapid authorization");
    let (mut token, mut k) = (None, None);
    for part in rest.split(',').map(str::trim) {
        if let Some(t) = part.strip_prefix("t=") {
            token = Some(t);
        } else if let Some(v) = part.strip_prefix("k=") {
            k = Some(v);
        }
    }
    assert_eq!(k, Some(key), "k= is the key of GET /api/push/key");
    let public = ES256PublicKey::from_bytes(&Base64UrlUnpadded::decode_vec(key).unwrap()).unwrap();
    let options = VerificationOptions {
        allowed_audiences: Some(HashSet::from([audience.to_string()])),
        time_tolerance: Some(web_push_native::jwt_simple::prelude::Duration::from_secs(0)),
        ..Default::default()
    };
    let claims = public
        .verify_token::<NoCustomClaims>(token.expect("t="), Some(options))
        .expect("the token is signed by the server's key, for the push service's origin");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expires = claims.expires_at.expect("exp").as_secs();
    assert!(
        expires > now && expires <= now + 24 * 3600,
        "exp within a day: {expires} vs {now}"
    );
    assert!(
        claims.subject.is_some(),
        "a sub to reach whoever runs the server"
    );
}

#[tokio::test]
async fn a_device_gets_each_transition_it_wants_encrypted_and_signed_with_the_prompt_and_link() {
    let service = PushService::start().await;
    let fixture = Fixture::new();
    let server = fixture.serve_with(|c| c.idle_waiting_secs = 90).await;
    let key = vapid_key(&server).await;
    let phone = Device::new();
    let endpoint = format!("{}/ok/phone", service.origin);
    let (status, body) = subscribe(
        &server,
        phone.subscription(&endpoint, &["waiting-for-input", "failed"]),
        Some("https://box.tailnet.example"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // A menu on the screen: the device hears of it with the question and the choices.
    let asking = server.create(json!({"command": asks("numbered")})).await;
    let pushes = service.wait_for("ok/phone", 1, SOON).await;
    let push = &pushes[0];
    let payload = phone.decrypt(&push.body);
    assert_eq!(payload["event"], "task.status");
    assert_eq!(payload["task"]["id"], asking.id.as_str());
    assert_eq!(payload["task"]["status"], "waiting-for-input");
    let prompt = &payload["task"]["prompt"];
    assert!(
        prompt["question"].as_str().unwrap().contains('?'),
        "{prompt}"
    );
    assert!(prompt["choices"].as_array().unwrap().len() >= 2, "{prompt}");
    assert_eq!(
        payload["url"],
        format!("https://box.tailnet.example/tasks/{}", asking.id),
        "the link is the one the device subscribed from"
    );
    check_vapid(push, &key, &service.origin);
    assert_eq!(push.headers["content-encoding"], "aes128gcm");
    assert_eq!(push.headers["urgency"], "high");
    assert_eq!(push.headers["topic"], asking.id.as_str());
    let ttl: u64 = push.headers["ttl"].to_str().unwrap().parse().unwrap();
    assert!(ttl > 0, "a TTL");

    // A completion it did not ask for reaches it not; the failure after it does.
    let done = server.create(json!({"command": "true"})).await;
    server
        .wait_for_status(&done.id, TaskStatus::Completed, SOON)
        .await;
    let failed = server.create(json!({"command": "exit 3"})).await;
    let pushes = service.wait_for("ok/phone", 2, SOON).await;
    let payload = phone.decrypt(&pushes[1].body);
    assert_eq!(payload["task"]["id"], failed.id.as_str());
    assert_eq!(payload["task"]["status"], "failed");
    assert_eq!(payload["task"]["exit_code"], 3);
    server
        .call(
            Method::POST,
            &format!("/api/tasks/{}/kill", asking.id),
            None,
        )
        .await;

    // The keys and the subscription outlive a restart.
    server.stop().await;
    let mode = std::fs::metadata(fixture.data_dir().join("vapid.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let server = fixture.serve().await;
    assert_eq!(
        vapid_key(&server).await,
        key,
        "the same key after a restart"
    );
    let again = server.create(json!({"command": "exit 4"})).await;
    let pushes = service.wait_for("ok/phone", 3, SOON).await;
    assert_eq!(
        phone.decrypt(&pushes[2].body)["task"]["id"],
        again.id.as_str()
    );
    assert_eq!(pushes.len(), 3, "one push per transition");

    // Forgotten by the device: no more pushes.
    let (status, _) = server
        .call(
            Method::DELETE,
            "/api/push/subscriptions",
            Some(json!({"endpoint": endpoint})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let other = Device::new();
    let witness = format!("{}/ok/witness", service.origin);
    subscribe(&server, other.subscription(&witness, &["failed"]), None).await;
    let last = server.create(json!({"command": "exit 5"})).await;
    let seen = service.wait_for("ok/witness", 1, SOON).await;
    let payload = other.decrypt(&seen[0].body);
    assert_eq!(payload["task"]["id"], last.id.as_str());
    assert!(
        payload["url"].as_str().unwrap().starts_with(&server.base),
        "without an Origin the link is the server's own address: {payload}"
    );
    assert_eq!(
        service.to("ok/phone").len(),
        3,
        "an unsubscribed device hears nothing"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_gone_subscription_is_forgotten_and_a_failing_one_is_retried_then_given_up() {
    let service = PushService::start().await;
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let devices: Vec<(String, Device)> = ["ok/a", "gone/b", "broken/c"]
        .into_iter()
        .map(|d| (d.to_string(), Device::new()))
        .collect();
    for (device, keys) in &devices {
        let endpoint = format!("{}/{device}", service.origin);
        let (status, body) =
            subscribe(&server, keys.subscription(&endpoint, &["failed"]), None).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    let first = server.create(json!({"command": "exit 1"})).await;
    let ok = service.wait_for("ok/a", 1, SOON).await;
    let gone = service.wait_for("gone/b", 1, SOON).await;
    // Four tries, 1 s, 2 s and 4 s apart.
    let broken = service
        .wait_for("broken/c", 4, Duration::from_secs(15))
        .await;
    assert!(
        ok[0].at < broken[1].at,
        "the working device got its push while the failing one was still retried"
    );
    assert!(
        broken[3].at - broken[0].at >= Duration::from_secs(6),
        "backoff between tries"
    );
    for (push, (_, device)) in [
        (&ok[0], &devices[0]),
        (&gone[0], &devices[1]),
        (&broken[0], &devices[2]),
    ] {
        assert_eq!(device.decrypt(&push.body)["task"]["id"], first.id.as_str());
    }

    // The next transition: the gone device is not tried again, the failing one is.
    let second = server.create(json!({"command": "exit 2"})).await;
    let ok = service.wait_for("ok/a", 2, SOON).await;
    assert_eq!(
        devices[0].1.decrypt(&ok[1].body)["task"]["id"],
        second.id.as_str()
    );
    // Its second try comes a second after its first: every push of this transition has
    // been started by then.
    service.wait_for("broken/c", 6, SOON).await;
    assert_eq!(
        service.to("gone/b").len(),
        1,
        "a gone subscription is forgotten"
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_subscriptions_are_refused_and_change_nothing() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let device = Device::new();
    let good = device.subscription("https://push.example/x", &["failed"]);
    let mut bad_key = good.clone();
    bad_key["keys"]["p256dh"] = json!("AAAA");
    let mut bad_auth = good.clone();
    bad_auth["keys"]["auth"] = json!("c2hvcnQ");
    let cases = [
        (device.subscription("ftp://push.example/x", &[]), "endpoint"),
        (device.subscription("not a url", &[]), "endpoint"),
        (
            device.subscription("https://push.example/x", &["running"]),
            "kinds",
        ),
        (device.subscription("https://push.example/x", &[]), "kinds"),
        (bad_key, "p256dh"),
        (bad_auth, "auth"),
        (json!({"endpoint": "https://push.example/x"}), "keys"),
    ];
    for (body, names) in cases {
        let (status, answer) = subscribe(&server, body.clone(), None).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} → {answer}"
        );
        assert!(
            answer["error"].as_str().unwrap().contains(names),
            "{answer}"
        );
    }
    assert!(
        server.state.push.subscriptions.is_empty(),
        "nothing was kept"
    );
    // Without credentials, nothing at all.
    let anonymous = reqwest::Client::new()
        .post(server.url("/api/push/subscriptions"))
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let key = reqwest::Client::new()
        .get(server.url("/api/push/key"))
        .send()
        .await
        .unwrap();
    assert_eq!(key.status(), StatusCode::UNAUTHORIZED);
    let _ = TOKEN;
    server.stop().await;
}

#[tokio::test]
async fn in_a_fleet_the_node_a_device_subscribed_to_pushes_every_nodes_transitions() {
    let service = PushService::start().await;
    let nats = Nats::start().await;
    let (fixture_a, fixture_b) = (Fixture::new(), Fixture::new());
    let a = fixture_a.serve_node(&nats, "node-a").await;
    let b = fixture_b.serve_node(&nats, "node-b").await;
    let phone = Device::new();
    let endpoint = format!("{}/ok/phone", service.origin);
    let (status, _) = subscribe(&a, phone.subscription(&endpoint, &["failed"]), None).await;
    assert_eq!(status, StatusCode::CREATED);
    // A task of node b, started through node b.
    let task = b.create(json!({"command": "exit 7"})).await;
    assert_eq!(task.node, "node-b");
    let pushes = service.wait_for("ok/phone", 1, SOON).await;
    let payload = phone.decrypt(&pushes[0].body);
    assert_eq!(payload["task"]["id"], task.id.as_str());
    assert_eq!(payload["task"]["node"], "node-b");
    assert!(
        payload["url"].as_str().unwrap().starts_with(&a.base),
        "{payload}"
    );
    assert!(
        b.state.push.subscriptions.is_empty(),
        "the subscription lives on node a only"
    );
    a.stop().await;
    b.stop().await;
}
