//! The browsers that asked to be pushed to, kept in SQLite (a restart forgets none) and
//! read from memory (every transition looks them all up). A subscription belongs to the node
//! the browser signed in to; that node sees every node's transitions.

use std::{collections::HashMap, path::Path, sync::Mutex, time::Duration};

use app::model::TaskStatus;
use base64ct::{Base64UrlUnpadded, Encoding};
use rusqlite::{params, Connection};
use web_push_native::{p256::PublicKey, Auth};

use crate::sync::lock;

/// More than this many devices is a mistake or an attack, not a person's phones.
pub const MAX: usize = 100;
/// Push services' URLs are a few hundred bytes.
const MAX_ENDPOINT_BYTES: usize = 2048;

/// The transitions a device can ask for, as `kinds` names them.
pub const KINDS: [TaskStatus; 3] = [
    TaskStatus::WaitingForInput,
    TaskStatus::Failed,
    TaskStatus::Completed,
];

/// One device: where its push service takes pushes for it, the keys its pushes are
/// encrypted to, what it wants to hear of, and the dashboard's address as it knows it.
#[derive(Clone, Debug)]
pub struct Subscription {
    pub endpoint: String,
    pub p256dh: PublicKey,
    pub auth: Auth,
    pub kinds: Vec<TaskStatus>,
    /// The origin the browser subscribed from (`https://box.tailnet.ts.net`), so a push's
    /// link works on that device; `None` when it sent none.
    pub origin: Option<String>,
}

impl Subscription {
    /// A subscription from a browser's `PushSubscription` JSON, or what is wrong with it.
    pub fn parse(
        endpoint: &str,
        p256dh: &str,
        auth: &str,
        kinds: Option<&[String]>,
        origin: Option<String>,
    ) -> Result<Subscription, String> {
        let uri: axum::http::Uri = endpoint
            .parse()
            .map_err(|_| "endpoint is not a URL".to_string())?;
        if endpoint.len() > MAX_ENDPOINT_BYTES
            || !matches!(uri.scheme_str(), Some("http" | "https"))
            || uri.host().is_none()
        {
            return Err(format!(
                "endpoint must be an http(s) URL of at most {MAX_ENDPOINT_BYTES} bytes"
            ));
        }
        let p256dh = Base64UrlUnpadded::decode_vec(p256dh.trim_end_matches('='))
            .ok()
            .and_then(|raw| PublicKey::from_sec1_bytes(&raw).ok())
            .ok_or("keys.p256dh is not a P-256 public key (base64url)")?;
        let auth = Base64UrlUnpadded::decode_vec(auth.trim_end_matches('='))
            .ok()
            .filter(|raw| raw.len() == 16)
            .map(|raw| Auth::clone_from_slice(&raw))
            .ok_or("keys.auth is not 16 bytes (base64url)")?;
        let kinds = match kinds {
            None => KINDS.to_vec(),
            Some([]) => {
                return Err("kinds is empty: to hear of nothing, DELETE the subscription".into())
            }
            Some(names) => {
                let mut kinds = Vec::new();
                for name in names {
                    match TaskStatus::parse(name).filter(|k| KINDS.contains(k)) {
                        Some(kind) if !kinds.contains(&kind) => kinds.push(kind),
                        Some(_) => {}
                        None => {
                            return Err(format!(
                            "kinds may hold waiting-for-input, failed and completed, not {name:?}"
                        ))
                        }
                    }
                }
                kinds
            }
        };
        Ok(Subscription {
            endpoint: endpoint.to_string(),
            p256dh,
            auth,
            kinds,
            origin,
        })
    }

    pub fn wants(&self, status: TaskStatus) -> bool {
        self.kinds.contains(&status)
    }
}

pub struct Subscriptions {
    /// The durable copy, written on blocking threads only.
    conn: Mutex<Connection>,
    /// Every subscription by endpoint, as the table has them.
    live: Mutex<HashMap<String, Subscription>>,
}

/// Why a subscription was not kept.
#[derive(Debug)]
pub enum Refused {
    TooMany,
    Store(rusqlite::Error),
}

impl Subscriptions {
    /// The subscriptions table of the database at `path`, read into memory.
    pub fn open(path: &Path) -> rusqlite::Result<Subscriptions> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS push_subscriptions (
                endpoint TEXT PRIMARY KEY,
                p256dh TEXT NOT NULL,
                auth TEXT NOT NULL,
                kinds TEXT NOT NULL,
                origin TEXT,
                created_at INTEGER NOT NULL
            )",
        )?;
        let rows = conn
            .prepare("SELECT endpoint, p256dh, auth, kinds, origin FROM push_subscriptions")?
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, Option<String>>(4)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let live = rows
            .into_iter()
            .filter_map(|(endpoint, p256dh, auth, kinds, origin)| {
                let kinds: Vec<String> = kinds.split(',').map(str::to_string).collect();
                Subscription::parse(&endpoint, &p256dh, &auth, Some(&kinds), origin).ok()
            })
            .map(|s| (s.endpoint.clone(), s))
            .collect();
        Ok(Subscriptions {
            conn: Mutex::new(conn),
            live: Mutex::new(live),
        })
    }

    /// Keeps `subscription`, replacing the one of the same endpoint (a device changing the
    /// kinds it wants). Blocks on SQLite.
    pub fn keep(&self, subscription: Subscription) -> Result<(), Refused> {
        let conn = lock(&self.conn);
        {
            let live = lock(&self.live);
            if live.len() >= MAX && !live.contains_key(&subscription.endpoint) {
                return Err(Refused::TooMany);
            }
        }
        let kinds: Vec<&str> = subscription.kinds.iter().map(|k| k.as_str()).collect();
        conn.execute(
            "INSERT INTO push_subscriptions (endpoint, p256dh, auth, kinds, origin, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, CAST(strftime('%s', 'now') AS INTEGER))
             ON CONFLICT (endpoint) DO UPDATE SET p256dh = ?2, auth = ?3, kinds = ?4, origin = ?5",
            params![
                subscription.endpoint,
                Base64UrlUnpadded::encode_string(subscription.p256dh.to_sec1_bytes().as_ref()),
                Base64UrlUnpadded::encode_string(&subscription.auth),
                kinds.join(","),
                subscription.origin,
            ],
        )
        .map_err(Refused::Store)?;
        lock(&self.live).insert(subscription.endpoint.clone(), subscription);
        Ok(())
    }

    /// Forgets the subscription of `endpoint`, if there is one. Blocks on SQLite.
    pub fn forget(&self, endpoint: &str) -> rusqlite::Result<()> {
        let conn = lock(&self.conn);
        conn.execute(
            "DELETE FROM push_subscriptions WHERE endpoint = ?1",
            params![endpoint],
        )?;
        lock(&self.live).remove(endpoint);
        Ok(())
    }

    /// The subscriptions that want to hear of `status`.
    pub fn wanting(&self, status: TaskStatus) -> Vec<Subscription> {
        lock(&self.live)
            .values()
            .filter(|s| s.wants(status))
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        lock(&self.live).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
