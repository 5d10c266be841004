//! This node's events on their way to the fleet: handed over in order as they are
//! published (under the broker's lock, so only a channel send happens there), written to
//! SQLite by a thread of their own, in the same order, and removed once JetStream has them.
//! A node without NATS keeps recording; the fleet gets the changes, in order, when NATS is
//! back. (A change still in the channel when the process dies reaches the fleet all the
//! same: `Fleet::share_own_records` sends at start every own record the fleet has
//! otherwise. A deletion is the exception: its record is gone from both sides here.)

use std::{
    path::Path,
    sync::{mpsc, Arc, Mutex},
};

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::Notify;

use crate::sync::lock;

pub struct Outbox {
    conn: Arc<Mutex<Connection>>,
    /// To the writer thread.
    queue: mpsc::Sender<Queued>,
    /// This database's own id, in every message id: two nodes given the same name (or a
    /// data dir made anew) never have their events taken for each other's duplicates.
    pub instance: String,
    /// Told of every new entry once it is written.
    pub filled: Arc<Notify>,
}

/// What the writer thread is handed, in order.
enum Queued {
    Event(&'static str, String),
    /// Answered once everything handed over before it is written.
    Barrier(mpsc::Sender<()>),
}

/// One event waiting for JetStream; `n` never repeats (it names the message, so a resend
/// after a lost acknowledgement is dropped by JetStream as a duplicate).
pub struct Entry {
    pub n: i64,
    pub name: String,
    pub data: String,
}

impl Outbox {
    pub fn open(path: &Path) -> Result<Outbox, super::FleetError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // As the store's connection (a per-connection setting): what is in the outbox
        // survives a power loss, once per burst of events.
        conn.pragma_update(None, "synchronous", "FULL")?;
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
        let conn = Arc::new(Mutex::new(conn));
        let filled = Arc::new(Notify::new());
        let (queue, queued) = mpsc::channel();
        let (writer_conn, writer_filled) = (conn.clone(), filled.clone());
        std::thread::Builder::new()
            .name("taskwire-outbox".into())
            .spawn(move || write_queued(&writer_conn, &writer_filled, &queued))?;
        Ok(Outbox {
            conn,
            queue,
            instance,
            filled,
        })
    }

    /// Hands an event to the writer: never waits (it is called under the broker's lock).
    pub fn push(&self, name: &'static str, data: String) {
        let _ = self.queue.send(Queued::Event(name, data));
    }

    /// Waits until every event pushed before is written (blocks: call it off the async
    /// threads).
    pub fn wait_written(&self) {
        let (done, written) = mpsc::channel();
        if self.queue.send(Queued::Barrier(done)).is_ok() {
            let _ = written.recv();
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

/// The writer thread: writes what is queued, in order, each burst in one transaction, until
/// the outbox is gone.
fn write_queued(conn: &Mutex<Connection>, filled: &Notify, queued: &mpsc::Receiver<Queued>) {
    while let Ok(first) = queued.recv() {
        let mut burst = Vec::new();
        let mut barriers = Vec::new();
        for item in std::iter::once(first).chain(queued.try_iter()) {
            match item {
                Queued::Event(name, data) => burst.push((name, data)),
                Queued::Barrier(done) => barriers.push(done),
            }
        }
        if !burst.is_empty() {
            write_burst(conn, filled, &burst);
        }
        for done in barriers {
            let _ = done.send(());
        }
    }
}

fn write_burst(conn: &Mutex<Connection>, filled: &Notify, burst: &[(&'static str, String)]) {
    let mut conn = lock(conn);
    let written = conn.transaction().and_then(|tx| {
        for (name, data) in burst {
            tx.execute(
                "INSERT INTO outbox (name, data) VALUES (?1, ?2)",
                params![name, data],
            )?;
        }
        tx.commit()
    });
    drop(conn);
    match written {
        Ok(()) => filled.notify_one(),
        Err(e) => tracing::error!("the fleet will miss {} events: {e}", burst.len()),
    }
}
