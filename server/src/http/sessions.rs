//! Browser sessions: the cookie holds a random session id of its own, kept here (in the
//! SQLite file, so a restart signs nobody out), never the token. A session expires, and
//! signing out revokes it.

use std::{
    path::Path,
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::{sync::lock, tasks::new_secret};
use rusqlite::{params, Connection, OptionalExtension};

/// How long a session lasts.
pub const LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

pub struct Sessions {
    conn: Mutex<Connection>,
}

impl Sessions {
    /// The sessions table of the database at `path` (the tasks' database file).
    pub fn open(path: &Path) -> rusqlite::Result<Sessions> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS sessions (
                id TEXT PRIMARY KEY,
                expires_at INTEGER NOT NULL
            )",
        )?;
        Ok(Sessions {
            conn: Mutex::new(conn),
        })
    }

    /// A new session; its id, for the cookie.
    pub fn create(&self) -> rusqlite::Result<String> {
        let id = new_secret();
        let conn = self.lock();
        // Expired sessions go as new ones come.
        conn.execute(
            "DELETE FROM sessions WHERE expires_at <= ?1",
            params![now()],
        )?;
        conn.execute(
            "INSERT INTO sessions (id, expires_at) VALUES (?1, ?2)",
            params![id, now() + LIFETIME.as_secs() as i64],
        )?;
        Ok(id)
    }

    /// Whether `id` names a session that has not expired or been revoked.
    pub fn is_valid(&self, id: &str) -> bool {
        self.lock()
            .query_row(
                "SELECT 1 FROM sessions WHERE id = ?1 AND expires_at > ?2",
                params![id, now()],
                |_| Ok(()),
            )
            .optional()
            .is_ok_and(|found| found.is_some())
    }

    pub fn revoke(&self, id: &str) -> rusqlite::Result<()> {
        self.lock()
            .execute("DELETE FROM sessions WHERE id = ?1", params![id])
            .map(drop)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        lock(&self.conn)
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
