//! The in-process event broker: numbers every event, keeps the newest ones for resume, and
//! fans them out to every subscriber without ever waiting for one.
//!
//! Publishing takes a short lock, appends to the replay ring and hands the event to a
//! fan-out task over an unbounded channel. Waking thousands of parked subscribers is the
//! fan-out task's work, not the publisher's, so publishing costs the same with 0 or 10,000
//! subscribers. A subscriber that falls more than the buffer behind loses its oldest events
//! (`tokio::sync::broadcast` tells it how many) and the stream turns that into `resync`.
//! Streams on a lean connection that are caught up are not woken at all: the fan-out
//! writes into their sockets itself (`fanout`).

use std::{
    collections::VecDeque,
    sync::{atomic::Ordering, Arc, Mutex, OnceLock},
};

use tokio::{
    net::TcpStream,
    sync::{broadcast, mpsc},
};

use crate::sync::lock;

use super::{
    event::{BrokerMetrics, Event},
    fanout::{Attached, SocketFanout},
};

pub struct Broker {
    epoch: String,
    ring: Mutex<Ring>,
    fanout: mpsc::UnboundedSender<Arc<Event>>,
    live: broadcast::Sender<Arc<Event>>,
    sockets: SocketFanout,
    max_subscribers: usize,
    pub metrics: Arc<BrokerMetrics>,
    /// Sees every event as it is published, in order (a fleet node's outbox).
    tap: OnceLock<Tap>,
    /// Where events older than the ring can be read again (a fleet's stream).
    archive: OnceLock<Arc<dyn Archive>>,
    /// Resumes reading the archive at once: each holds what it read in memory.
    archive_reads: tokio::sync::Semaphore,
}

/// See `Broker::set_tap`.
pub type Tap = Box<dyn Fn(&Event) + Send + Sync>;

/// An event as an archive gives it back: its number, name and data.
pub type Archived = (u64, &'static str, String);

/// The whole log a broker's events come from, for cursors older than the ring.
pub trait Archive: Send + Sync {
    /// Events `from..=to`, in order; fewer (or none) when it cannot read them all.
    fn read(
        &self,
        from: u64,
        to: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<Archived>> + Send + '_>>;
}

/// The most events read back from an archive for one resume; further behind, `resync`.
pub const ARCHIVE_READ_MAX: u64 = 100_000;
/// How many resumes read the archive at the same time.
const ARCHIVE_READS_AT_ONCE: usize = 2;

struct Ring {
    next_seq: u64,
    held: VecDeque<Arc<Event>>,
    capacity: usize,
}

/// What a new subscriber gets: whether its cursor could be honoured, the events it missed,
/// and the live feed from the moment of subscribing.
pub struct Subscription {
    pub newest_id: String,
    /// The id of the last event the subscriber has: its cursor when resumed, else the newest.
    pub cursor_id: String,
    pub resumed: bool,
    pub replay: Vec<Arc<Event>>,
    pub live: broadcast::Receiver<Arc<Event>>,
    /// Live events up to this sequence number were already in `replay` (or before the
    /// subscription) and must be skipped.
    pub last_seq: u64,
    pub guard: SubscriberGuard,
}

/// Counts an open stream for as long as it lives.
pub struct SubscriberGuard {
    metrics: Arc<BrokerMetrics>,
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.metrics.open_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
pub struct TooManySubscribers;

/// See `Broker::follow_after`.
pub enum Following {
    /// Every event after the cursor, then the live feed.
    Resumed {
        replay: Vec<Arc<Event>>,
        live: broadcast::Receiver<Arc<Event>>,
    },
    /// Events after the cursor were let go of (`missed` of them; `held` are those kept),
    /// or there was no cursor.
    Missed {
        missed: u64,
        held: Vec<Arc<Event>>,
        live: broadcast::Receiver<Arc<Event>>,
    },
}

impl Following {
    /// Only the live feed (for a stream that needs no past events).
    pub fn into_live(self) -> broadcast::Receiver<Arc<Event>> {
        match self {
            Following::Resumed { live, .. } | Following::Missed { live, .. } => live,
        }
    }
}

impl Broker {
    /// A broker keeping `replay` events; must be created inside a tokio runtime.
    pub fn new(replay: usize, max_subscribers: usize) -> Arc<Broker> {
        Self::continuing(new_epoch(), 1, replay, max_subscribers)
    }

    /// A broker whose events carry the numbers of an outside log (a fleet's JetStream
    /// stream, whose `epoch` is fixed for its life), from `next_seq` on.
    pub fn continuing(
        epoch: String,
        next_seq: u64,
        replay: usize,
        max_subscribers: usize,
    ) -> Arc<Broker> {
        let replay = replay.max(1);
        let (fanout, mut fanout_rx) = mpsc::unbounded_channel::<Arc<Event>>();
        let (live, _) = broadcast::channel(replay);
        let metrics = Arc::new(BrokerMetrics::default());
        let (sockets, writers) = SocketFanout::start(metrics.clone(), replay);
        let broker = Arc::new(Broker {
            epoch,
            ring: Mutex::new(Ring {
                next_seq: next_seq.max(1),
                held: VecDeque::with_capacity(replay),
                capacity: replay,
            }),
            fanout,
            live: live.clone(),
            sockets,
            max_subscribers,
            metrics,
            tap: OnceLock::new(),
            archive: OnceLock::new(),
            archive_reads: tokio::sync::Semaphore::new(ARCHIVE_READS_AT_ONCE),
        });
        tokio::spawn(async move {
            while let Some(event) = fanout_rx.recv().await {
                event.frame();
                // An error only means nobody is subscribed right now.
                let _ = live.send(event.clone());
                // After the receivers: see `SocketFanout::attach`.
                writers.deliver(&event);
            }
        });
        broker
    }

    /// Hands every event published from now on to `tap` too, in order (once per broker).
    pub fn set_tap(&self, tap: Tap) {
        let _ = self.tap.set(tap);
    }

    /// Lets streams resume from before the ring, reading `archive` (once per broker).
    pub fn set_archive(&self, archive: Arc<dyn Archive>) {
        let _ = self.archive.set(archive);
    }

    /// The events after `cursor` the ring no longer holds, read back from the archive
    /// (none without one, or when they are too many).
    pub async fn read_missed(&self, cursor: Option<&str>) -> Vec<Arc<Event>> {
        let (Some(archive), Some(after)) = (
            self.archive.get(),
            cursor.and_then(|c| self.parse_cursor(c)),
        ) else {
            return Vec::new();
        };
        let (oldest_held, newest) = {
            let ring = lock(&self.ring);
            (
                ring.held.front().map_or(ring.next_seq, |e| e.seq),
                ring.next_seq - 1,
            )
        };
        // Nothing to read for a cursor the ring covers, or one from the future (garbage);
        // too far behind, `resync` is cheaper than reading it all back.
        if after >= newest || after + 1 >= oldest_held || oldest_held - after > ARCHIVE_READ_MAX {
            return Vec::new();
        }
        // A stream that would be refused anyway reads nothing; the others read one after
        // another, so memory held by resumes stays bounded whatever the clients do.
        if self.metrics.open_streams.load(Ordering::Relaxed) >= self.max_subscribers {
            return Vec::new();
        }
        let Ok(_reading) = self.archive_reads.acquire().await else {
            return Vec::new();
        };
        archive
            .read(after + 1, oldest_held - 1)
            .await
            .into_iter()
            .map(|(seq, name, data)| Arc::new(Event::new(seq, self.id_of(seq), name, data)))
            .collect()
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The id of the event numbered `seq`.
    pub fn id_of(&self, seq: u64) -> String {
        format!("{}-{}", self.epoch, seq)
    }

    /// Publishes one event. Never blocks on subscribers and never fails.
    pub fn publish(&self, name: &'static str, data: String) {
        let mut ring = lock(&self.ring);
        let seq = ring.next_seq;
        self.publish_locked(&mut ring, seq, name, data);
    }

    /// Publishes the outside log's event numbered `seq` (events come in order). Should the
    /// log have let go of events before it, no cursor from before that gap resumes.
    pub fn publish_numbered(&self, seq: u64, name: &'static str, data: String) {
        let mut ring = lock(&self.ring);
        if seq < ring.next_seq {
            return; // already published
        }
        if seq > ring.next_seq {
            tracing::warn!("the event log skipped from {} to {seq}", ring.next_seq);
            ring.held.clear();
        }
        self.publish_locked(&mut ring, seq, name, data);
    }

    fn publish_locked(&self, ring: &mut Ring, seq: u64, name: &'static str, data: String) {
        ring.next_seq = seq + 1;
        let event = Arc::new(Event::new(seq, self.id_of(seq), name, data));
        if let Some(tap) = self.tap.get() {
            tap(&event);
        }
        if ring.held.len() == ring.capacity {
            ring.held.pop_front();
        }
        ring.held.push_back(event.clone());
        // Sent under the lock so the fan-out sees events in sequence order. The receiver
        // lives as long as the runtime; after that there is nobody left to tell.
        let _ = self.fanout.send(event);
        self.metrics.published.fetch_add(1, Ordering::Relaxed);
    }

    /// The id of the newest event, or `<epoch>-0` before the first.
    pub fn newest_id(&self) -> String {
        let ring = lock(&self.ring);
        self.id_of(ring.next_seq - 1)
    }

    /// Subscribes, resuming after `cursor` when every event since it is still held.
    pub fn subscribe(&self, cursor: Option<&str>) -> Result<Subscription, TooManySubscribers> {
        self.subscribe_with(cursor, Vec::new())
    }

    /// `subscribe`, with `older` events read back from the archive (`read_missed`) to
    /// bridge the gap between the cursor and the ring.
    pub fn subscribe_with(
        &self,
        cursor: Option<&str>,
        older: Vec<Arc<Event>>,
    ) -> Result<Subscription, TooManySubscribers> {
        let open = self.metrics.open_streams.fetch_add(1, Ordering::Relaxed);
        let guard = SubscriberGuard {
            metrics: self.metrics.clone(),
        };
        if open >= self.max_subscribers {
            return Err(TooManySubscribers);
        }
        let cursor = cursor.and_then(|c| self.parse_cursor(c));
        // A new stream that missed events starts over with `resync`: it needs no held ones.
        let (newest, follow) = self.follow(cursor, false, older);
        let (resumed, replay, live) = match follow {
            Following::Resumed { replay, live } => (true, replay, live),
            Following::Missed { live, .. } => (false, Vec::new(), live),
        };
        Ok(Subscription {
            newest_id: self.id_of(newest),
            cursor_id: self.id_of(if resumed {
                cursor.unwrap_or(newest)
            } else {
                newest
            }),
            resumed,
            replay,
            live,
            last_seq: newest,
            guard,
        })
    }

    /// The live feed from now on, and the events after `after_seq` when they are all still
    /// held; also the newest event's number. For a stream that resumes, or that takes its
    /// socket back from the fan-out and must catch up.
    pub fn follow_after(&self, after_seq: Option<u64>) -> (u64, Following) {
        self.follow(after_seq, true, Vec::new())
    }

    /// `follow_after`, leaving `held` empty unless `keep_held`, with `older` events (from
    /// the archive) in front of the ring.
    fn follow(
        &self,
        after_seq: Option<u64>,
        keep_held: bool,
        older: Vec<Arc<Event>>,
    ) -> (u64, Following) {
        // Subscribe before reading the ring: an event published in between is then both
        // replayed and received live, and the stream drops the second copy by its number.
        // Nothing falls between the two.
        let live = self.live.subscribe();
        let ring = lock(&self.ring);
        let newest = ring.next_seq - 1;
        let oldest_held = ring.held.front().map_or(ring.next_seq, |e| e.seq);
        // Older events count when they run without a gap up to the ring.
        let older: Vec<Arc<Event>> = older.into_iter().filter(|e| e.seq < oldest_held).collect();
        let bridges = older.last().is_some_and(|e| e.seq + 1 == oldest_held)
            && older.windows(2).all(|w| w[1].seq == w[0].seq + 1);
        let oldest_known = match older.first() {
            Some(first) if bridges => first.seq,
            _ => oldest_held,
        };
        let following = match after_seq {
            // Resumable when nothing after the cursor has been let go of.
            Some(after) if after <= newest && after + 1 >= oldest_known => Following::Resumed {
                // Held events are numbered without gaps: the missed ones start at an index.
                replay: older
                    .iter()
                    .filter(|e| e.seq > after)
                    .cloned()
                    .chain(
                        ring.held
                            .range((after + 1).saturating_sub(oldest_held) as usize..)
                            .cloned(),
                    )
                    .collect(),
                live,
            },
            // Fell behind what is held: what is held is still worth sending after `resync`.
            Some(after) if after <= newest => Following::Missed {
                missed: oldest_held - after - 1,
                held: if keep_held {
                    ring.held.iter().cloned().collect()
                } else {
                    Vec::new()
                },
                live,
            },
            _ => Following::Missed {
                missed: 0,
                held: Vec::new(),
                live,
            },
        };
        (newest, following)
    }

    /// Lends a lean connection's socket to the fan-out, from event `next_seq` on; `None`
    /// if that event is already on its way (try again once it has arrived).
    pub fn attach(&self, socket: Arc<TcpStream>, next_seq: u64) -> Option<Attached> {
        self.sockets.attach(socket, next_seq)
    }

    /// The sequence number of a cursor of this epoch; `None` for another epoch or garbage.
    fn parse_cursor(&self, cursor: &str) -> Option<u64> {
        let (epoch, seq) = cursor.trim().rsplit_once('-')?;
        (epoch == self.epoch).then_some(())?;
        seq.parse().ok()
    }
}

/// A value that differs at every start of the server (microseconds since 1970).
fn new_epoch() -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or_default();
    micros.to_string()
}
