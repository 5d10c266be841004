//! One published event and its SSE frame, and the counters the broker and the fan-out
//! writers share. Both use this module; it uses neither, so they do not import each other.

use std::sync::{
    atomic::{AtomicU64, AtomicUsize},
    OnceLock,
};

use bytes::Bytes;

/// One published event. `data` is its JSON, serialized once.
#[derive(Debug)]
pub struct Event {
    pub seq: u64,
    pub id: String,
    pub name: &'static str,
    pub data: String,
    frame: OnceLock<Bytes>,
}

impl Event {
    pub fn new(seq: u64, id: String, name: &'static str, data: String) -> Event {
        Event {
            seq,
            id,
            name,
            data,
            frame: OnceLock::new(),
        }
    }

    /// The whole SSE frame, encoded once and shared by every subscriber: sending it to one
    /// costs a reference count, not a copy. The fan-out task encodes it, off the
    /// publisher's path.
    pub fn frame(&self) -> &Bytes {
        self.frame
            .get_or_init(|| encode_frame(self.name, &self.id, &self.data))
    }
}

/// One SSE frame: `event:`, `id:` and a `data:` line per line of `data`.
pub fn encode_frame(name: &str, id: &str, data: &str) -> Bytes {
    let mut frame = String::with_capacity(name.len() + id.len() + data.len() + 24);
    frame.push_str("event: ");
    frame.push_str(name);
    frame.push_str("\nid: ");
    frame.push_str(id);
    frame.push('\n');
    for line in data.split('\n') {
        frame.push_str("data: ");
        frame.push_str(line);
        frame.push('\n');
    }
    frame.push('\n');
    Bytes::from(frame)
}

#[derive(Default)]
pub struct BrokerMetrics {
    pub published: AtomicU64,
    pub dropped: AtomicU64,
    pub resyncs: AtomicU64,
    pub open_streams: AtomicUsize,
    /// Open streams whose socket the fan-out writes to itself (`fanout`).
    pub lent_streams: AtomicUsize,
    /// Events from an outside log (a fleet's stream) refused: unreadable, or about a task
    /// of another node than the one that sent it.
    pub refused: AtomicU64,
}

/// The JSON of a wire type, as event data.
pub fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("wire types serialize")
}
