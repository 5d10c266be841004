//! This node's events on their way to the fleet: written to SQLite as they are published
//! (in order, under the broker's lock), removed once JetStream has them. A node without
//! NATS keeps recording; the fleet gets the changes, in order, when NATS is back.

use std::{path::Path, sync::Mutex};

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::Notify;

use crate::sync::lock;

pub struct Outbox {
    conn: Mutex<Connection>,
    /// This database's own id, in every message id: two nodes given the same name (or a
    /// data dir made anew) never have their events taken for each other's duplicates.
    pub instance: String,
    /// Told of every new entry.
    pub filled: Notify,
}

/// One event waiting for JetStream; `n` never repeats (it names the message, so a resend
/// after a lost acknowledgement is dropped by JetStream as a duplicate).
pub struct Entry {
    pub n: i64,
    pub name: String,
    pub data: String,
}

impl Outbox {
    pub fn open(path: &Path) -> rusqlite::Result<Outbox> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // As the store's connection (a per-connection setting): no fsync per event.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS outbox (
                n INTEGER PRIMARY KEY AUTOINCREMENT,
                name TEXT NOT NULL,
                data TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS outbox_instance (id TEXT NOT NULL);",
        )?;
        let instance: Option<String> = conn
            .query_row("SELECT id FROM outbox_instance", [], |row| row.get(0))
            .optional()?;
        let instance = match instance {
            Some(id) => id,
            None => {
                let id = crate::tasks::new_secret()[..12].to_string();
                conn.execute("INSERT INTO outbox_instance (id) VALUES (?1)", [&id])?;
                id
            }
        };
        Ok(Outbox {
            conn: Mutex::new(conn),
            instance,
            filled: Notify::new(),
        })
    }

    pub fn push(&self, name: &str, data: &str) {
        let conn = lock(&self.conn);
        let pushed = conn.execute(
            "INSERT INTO outbox (name, data) VALUES (?1, ?2)",
            params![name, data],
        );
        drop(conn);
        match pushed {
            Ok(_) => self.filled.notify_one(),
            Err(e) => tracing::error!("the fleet will miss a {name} event: {e}"),
        }
    }

    /// The oldest entries, at most `limit`.
    pub fn oldest(&self, limit: usize) -> rusqlite::Result<Vec<Entry>> {
        let conn = lock(&self.conn);
        let mut stmt =
            conn.prepare_cached("SELECT n, name, data FROM outbox ORDER BY n LIMIT ?1")?;
        let entries = stmt
            .query_map([limit as i64], |row| {
                Ok(Entry {
                    n: row.get(0)?,
                    name: row.get(1)?,
                    data: row.get(2)?,
                })
            })?
            .collect();
        entries
    }

    /// The newest entry's number, if any.
    pub fn newest(&self) -> Option<i64> {
        let conn = lock(&self.conn);
        conn.query_row("SELECT MAX(n) FROM outbox", [], |row| row.get(0))
            .ok()
            .flatten()
    }

    /// The oldest entry's number, if any.
    pub fn oldest_n(&self) -> Option<i64> {
        let conn = lock(&self.conn);
        conn.query_row("SELECT MIN(n) FROM outbox", [], |row| row.get(0))
            .ok()
            .flatten()
    }

    /// Removes every entry up to and including `n` (a batch that was sent).
    pub fn remove_through(&self, n: i64) -> rusqlite::Result<()> {
        let conn = lock(&self.conn);
        conn.execute("DELETE FROM outbox WHERE n <= ?1", [n])?;
        Ok(())
    }
}
