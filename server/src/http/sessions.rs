//! Browser sessions: the cookie holds a random session id of its own, never the token. The
//! sessions are kept in SQLite (so a restart signs nobody out) and looked up in memory:
//! checking a cookie is on every request's path, on an async thread, and must cost no
//! query. A session expires, and signing out revokes it.

use std::{
    collections::HashMap,
    path::Path,
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::{sync::lock, tasks::new_secret};
use rusqlite::{params, Connection};

/// How long a session lasts.
pub const LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

pub struct Sessions {
    /// The durable copy. Written by sign-in and sign-out only (on blocking threads).
    conn: Mutex<Connection>,
    /// Every session and when it expires (seconds since 1970), as the table has them.
    live: Mutex<HashMap<String, i64>>,
}

impl Sessions {
    /// The sessions table of the database at `path` (the tasks' database file), read into
    /// memory.
    pub fn open(path: &Path) -> rusqlite::Result<Sessions> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS sessions (
                id TEXT PRIMARY KEY,
                expires_at INTEGER NOT NULL
            )",
        )?;
        conn.execute(
            "DELETE FROM sessions WHERE expires_at <= ?1",
            params![now()],
        )?;
        let live = conn
            .prepare("SELECT id, expires_at FROM sessions")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<HashMap<String, i64>>>()?;
        Ok(Sessions {
            conn: Mutex::new(conn),
            live: Mutex::new(live),
        })
    }

    /// A new session; its id, for the cookie.
    pub fn create(&self) -> rusqlite::Result<String> {
        let id = new_secret();
        let expires_at = now() + LIFETIME.as_secs() as i64;
        let conn = lock(&self.conn);
        // Expired sessions go as new ones come.
        conn.execute(
            "DELETE FROM sessions WHERE expires_at <= ?1",
            params![now()],
        )?;
        conn.execute(
            "INSERT INTO sessions (id, expires_at) VALUES (?1, ?2)",
            params![id, expires_at],
        )?;
        let mut live = lock(&self.live);
        live.retain(|_, expires| *expires > now());
        live.insert(id.clone(), expires_at);
        Ok(id)
    }

    /// Whether `id` names a session that has not expired or been revoked.
    pub fn is_valid(&self, id: &str) -> bool {
        lock(&self.live)
            .get(id)
            .is_some_and(|expires| *expires > now())
    }

    pub fn revoke(&self, id: &str) -> rusqlite::Result<()> {
        let conn = lock(&self.conn);
        conn.execute("DELETE FROM sessions WHERE id = ?1", params![id])?;
        lock(&self.live).remove(id);
        Ok(())
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
