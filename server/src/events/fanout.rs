//! Writing each event straight into the sockets of event streams that are caught up.
//!
//! Fanning an event out through one task per stream means waking and polling 10,000
//! tasks, a third of what the fan-out cost. So a stream on a lean connection
//! (`connection`) that has sent everything it owes lends its socket to a `Sink`
//! here, and a few writer threads, one per core, write each event's frame into every sink
//! with non-blocking writes. The stream's own task sleeps meanwhile; it wakes only for its
//! heartbeat, its lifetime, or when a socket is full. Then the sink is handed back, with
//! the part of the frame that did not fit, and the task catches up from the broker's ring
//! like any stream that fell behind (or sends `resync`).
//!
//! A writer never waits for a client: a full socket costs it one failed write.

use std::{
    os::fd::{AsRawFd, RawFd},
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc, Arc, Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::{net::TcpStream, sync::Notify};

use super::event::{BrokerMetrics, Event};
use crate::sync::lock;

/// The socket of a lean event-stream connection, passed to the `/api/events` handler as a
/// request extension so that its stream can lend it to the fan-out.
#[derive(Clone)]
pub struct StreamSocket(pub Arc<TcpStream>);

/// How long the lead writer waits for an event before it lets go of the sinks of streams
/// that ended meanwhile; without events, nothing else would.
const TIDY_EVERY: Duration = Duration::from_secs(10);

/// How many sinks a writer takes at a time from an event's list: enough that the writers
/// seldom meet at the shared counter, few enough (about half a millisecond of writes)
/// that they finish within moments of each other, however the machine shares its cores.
const CHUNK: usize = 64;

/// The sinks, and the writer threads that write each event into them.
pub struct SocketFanout {
    shared: Arc<Shared>,
    metrics: Arc<BrokerMetrics>,
}

struct Shared {
    joining: Mutex<Joining>,
    /// Events handed to the writers that they have not started on.
    backlog: AtomicUsize,
    /// Writers further behind than this hand back every sink that still needs the event
    /// they take: those streams catch up from the broker's ring (which holds as many), or
    /// get `resync`, as any stream that falls behind does.
    max_backlog: usize,
}

/// Sinks waiting for the writers to take them in, and how far the writers have got.
struct Joining {
    sinks: Vec<Arc<Sink>>,
    /// The newest event the writers have started on.
    taken_seq: u64,
    /// The writers have ended (they would only if one panicked, or at shutdown).
    closed: bool,
}

/// Hands each event to the writers; held by the broker's fan-out task. Dropping it ends
/// the threads.
pub struct Writers {
    events: mpsc::Sender<Arc<Event>>,
    shared: Arc<Shared>,
}

impl Writers {
    pub fn deliver(&self, event: &Arc<Event>) {
        self.shared.backlog.fetch_add(1, Ordering::Relaxed);
        // Fails only if the writers ended; the streams then have their sockets back.
        let _ = self.events.send(event.clone());
    }
}

impl SocketFanout {
    /// The fan-out and its writer threads, one per core (at most four). `max_backlog` is
    /// how many events the broker's ring holds.
    pub fn start(metrics: Arc<BrokerMetrics>, max_backlog: usize) -> (SocketFanout, Writers) {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        let shared = Arc::new(Shared {
            joining: Mutex::new(Joining {
                sinks: Vec::new(),
                taken_seq: 0,
                closed: false,
            }),
            backlog: AtomicUsize::new(0),
            max_backlog,
        });
        let helpers: Vec<_> = (1..threads)
            .map(|n| {
                let (round, rounds) = mpsc::channel();
                let (finished, helper_finished) = mpsc::channel();
                spawn_writer(n, move || help(&rounds, &finished));
                Helper {
                    round,
                    finished: helper_finished,
                }
            })
            .collect();
        let (events, received) = mpsc::channel();
        let lead_shared = shared.clone();
        spawn_writer(0, move || {
            lead(&received, &lead_shared, &helpers);
        });
        let writers = Writers {
            events,
            shared: shared.clone(),
        };
        (SocketFanout { shared, metrics }, writers)
    }

    /// Lends `socket` to the writers from event `next_seq` on. `None` when the writers have
    /// already started on that event (it was published a moment ago): the stream then
    /// receives it the usual way and tries again.
    ///
    /// Why no event falls between the stream and the writers: the broker's fan-out task
    /// sends each event to the stream's receiver before it hands it to the writers, and the
    /// stream attaches only once that receiver is empty. So an event the stream has not
    /// received either reaches the writers after this sink has joined, or the writers have
    /// already started on it and `taken_seq` refuses the loan.
    pub fn attach(&self, socket: Arc<TcpStream>, next_seq: u64) -> Option<Attached> {
        let mut joining = lock(&self.shared.joining);
        if joining.closed || joining.taken_seq >= next_seq {
            return None;
        }
        let sink = Arc::new(Sink {
            state: Mutex::new(SinkState {
                fd: socket.as_raw_fd(),
                socket: Some(socket),
                next_seq,
                last_write: None,
                unwritten: Bytes::new(),
            }),
            handed_back: Notify::new(),
        });
        joining.sinks.push(sink.clone());
        self.metrics.lent_streams.fetch_add(1, Ordering::Relaxed);
        Some(Attached {
            sink,
            metrics: self.metrics.clone(),
        })
    }
}

fn spawn_writer(n: usize, writer: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .name(format!("taskwire-fanout-{n}"))
        .spawn(writer)
        .expect("a thread for the fan-out");
}

/// One event on its way into every sink. The writers take chunks of `sinks` in turn
/// until none are left, so one that the machine holds up for a moment delays no fixed
/// share of the streams: the others write them.
struct Round {
    seq: u64,
    frame: Bytes,
    now: Instant,
    sinks: Arc<Vec<Arc<Sink>>>,
    next_chunk: AtomicUsize,
    /// Where in `sinks` are those no longer lent, for the lead writer to drop.
    ended: Mutex<Vec<usize>>,
}

impl Round {
    fn write_chunks(&self) {
        loop {
            let start = self.next_chunk.fetch_add(CHUNK, Ordering::Relaxed);
            if start >= self.sinks.len() {
                return;
            }
            let chunk = &self.sinks[start..(start + CHUNK).min(self.sinks.len())];
            for (i, sink) in chunk.iter().enumerate() {
                if !sink.deliver(self.seq, &self.frame, self.now) {
                    lock(&self.ended).push(start + i);
                }
            }
        }
    }
}

/// The lead writer thread: takes each event, lets new sinks join, and writes the event
/// with the helpers. It starts an event only once every helper it woke has finished the
/// one before, so each socket gets its frames in order.
fn lead(events: &mpsc::Receiver<Arc<Event>>, shared: &Shared, helpers: &[Helper]) {
    let mut writer = Lead {
        shared,
        sinks: Arc::new(Vec::new()),
    };
    loop {
        let event = match events.recv_timeout(TIDY_EVERY) {
            Ok(event) => event,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                writer.take_joining();
                writer.sinks_mut().retain(|sink| sink.is_lent());
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let in_order = writer.take_joining_for(event.seq);
        debug_assert!(in_order, "the writers receive events in order");
        if shared.backlog.fetch_sub(1, Ordering::Relaxed) > shared.max_backlog {
            // Too far behind to be worth waiting for: the streams that still need this
            // event catch up on their own.
            writer
                .sinks_mut()
                .retain(|sink| sink.hand_back_if_needs(event.seq));
            continue;
        }
        let round = Arc::new(Round {
            seq: event.seq,
            frame: event.frame().clone(),
            now: Instant::now(),
            sinks: writer.sinks.clone(),
            next_chunk: AtomicUsize::new(0),
            ended: Mutex::new(Vec::new()),
        });
        // Waking a helper costs more than it saves on a single chunk.
        let helping = if round.sinks.len() > CHUNK {
            helpers.len()
        } else {
            0
        };
        // A helper that panicked has dropped its ends of both channels: the lead ends too,
        // and `Lead`'s drop hands every socket back.
        for helper in &helpers[..helping] {
            if helper.round.send(round.clone()).is_err() {
                return;
            }
        }
        round.write_chunks();
        for helper in &helpers[..helping] {
            if helper.finished.recv().is_err() {
                return;
            }
        }
        let ended = std::mem::take(&mut *lock(&round.ended));
        drop(round);
        writer.drop_ended(ended);
    }
}

/// The lead's ends of a helper's two channels: rounds to it, and word that it finished one.
struct Helper {
    round: mpsc::Sender<Arc<Round>>,
    finished: mpsc::Receiver<()>,
}

/// A helper writer thread: writes chunks of each event the lead hands it.
fn help(rounds: &mpsc::Receiver<Arc<Round>>, finished: &mpsc::Sender<()>) {
    for round in rounds {
        round.write_chunks();
        // Let go of the round first, so the lead can change its list without a copy.
        drop(round);
        if finished.send(()).is_err() {
            return;
        }
    }
}

/// The lead writer's list of sinks. When the thread ends, however it ends, the fan-out
/// takes no more sinks and every stream it wrote for gets its socket back.
struct Lead<'a> {
    shared: &'a Shared,
    sinks: Arc<Vec<Arc<Sink>>>,
}

impl Lead<'_> {
    /// The list, to change. The helpers let go of it before they report a round finished,
    /// so this copies nothing.
    fn sinks_mut(&mut self) -> &mut Vec<Arc<Sink>> {
        Arc::make_mut(&mut self.sinks)
    }

    fn take_joining(&mut self) {
        let joined = std::mem::take(&mut lock(&self.shared.joining).sinks);
        self.sinks_mut().extend(joined);
    }

    /// Takes in the sinks that joined, and marks event `seq` as started on: a stream that
    /// needs it can no longer join (see `SocketFanout::attach`). False if `seq` is old.
    fn take_joining_for(&mut self, seq: u64) -> bool {
        let mut joining = lock(&self.shared.joining);
        let joined = std::mem::take(&mut joining.sinks);
        let in_order = seq > joining.taken_seq;
        joining.taken_seq = seq;
        drop(joining);
        self.sinks_mut().extend(joined);
        in_order
    }

    /// Drops the sinks at these places in the list.
    fn drop_ended(&mut self, mut ended: Vec<usize>) {
        if ended.is_empty() {
            return;
        }
        // From the back: each removal moves the last sink into the gap, one that stays.
        ended.sort_unstable_by(|a, b| b.cmp(a));
        let sinks = self.sinks_mut();
        for at in ended {
            sinks.swap_remove(at);
        }
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        let mut joining = lock(&self.shared.joining);
        joining.closed = true;
        let joined = std::mem::take(&mut joining.sinks);
        drop(joining);
        for sink in self.sinks.iter().chain(&joined) {
            sink.hand_back_if_needs(u64::MAX);
        }
    }
}

/// A socket lent to the writers, and where its stream stands.
pub struct Sink {
    state: Mutex<SinkState>,
    /// Tells the stream's task that the writers gave the socket back.
    handed_back: Notify,
}

struct SinkState {
    /// `None` once detached: the writers drop the sink at their next event.
    socket: Option<Arc<TcpStream>>,
    /// The socket's descriptor: open for as long as `socket` is held.
    fd: RawFd,
    /// The event this stream needs next.
    next_seq: u64,
    last_write: Option<Instant>,
    /// The end of a frame the socket had no room for; the stream's task sends it first.
    unwritten: Bytes,
}

/// Where a stream stands when it takes its socket back.
pub struct Detached {
    /// The event it needs next: all before it were written, but for `unwritten`.
    pub next_seq: u64,
    /// The end of the last frame, which the socket had no room for: to be sent first.
    pub unwritten: Bytes,
}

impl Sink {
    /// Writes one event's frame unless the stream already has it; false once the sink is
    /// no longer the writers' to write to.
    fn deliver(&self, seq: u64, frame: &Bytes, now: Instant) -> bool {
        let mut state = lock(&self.state);
        if state.socket.is_none() {
            return false;
        }
        if seq < state.next_seq {
            return true;
        }
        // A gap (it missed an event) cannot happen (see `SocketFanout::attach`); were it
        // to, the stream's task would catch up from the ring.
        if seq == state.next_seq {
            // A failed write counts as a full socket: the task waits for room, or sees
            // the client leave.
            let written = send_now(state.fd, frame);
            state.last_write = Some(now);
            state.next_seq = seq + 1;
            if written == frame.len() {
                return true;
            }
            state.unwritten = frame.slice(written..);
        }
        hand_back(state, &self.handed_back);
        false
    }

    fn is_lent(&self) -> bool {
        lock(&self.state).socket.is_some()
    }

    /// Gives the socket back if the stream needs event `seq` or an earlier one; false once
    /// it is not lent.
    fn hand_back_if_needs(&self, seq: u64) -> bool {
        let state = lock(&self.state);
        if state.socket.is_none() {
            return false;
        }
        if state.next_seq > seq {
            return true;
        }
        hand_back(state, &self.handed_back);
        false
    }
}

/// Writes as much of `bytes` as the socket takes now, without waiting; a failure counts as
/// nothing written. The writers use the descriptor itself rather than tokio's `try_write`,
/// which first reads the socket's readiness from the reactor's memory: two more cache
/// misses for each of 10,000 sockets, a tenth of the writers' time. tokio learns that a
/// socket is full when the stream's task tries it next.
fn send_now(fd: RawFd, bytes: &[u8]) -> usize {
    // SAFETY: the caller holds the sink's lock and its `socket`, which owns `fd`, so `fd`
    // is open; `bytes` is valid for its length. MSG_NOSIGNAL: a client that left is an
    // error, not a SIGPIPE.
    let sent = unsafe {
        libc::send(
            fd,
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    usize::try_from(sent).unwrap_or(0)
}

/// Ends a loan, in the same critical section that recorded what the stream must send
/// first: nobody may write to the socket in between.
fn hand_back(mut state: MutexGuard<'_, SinkState>, handed_back: &Notify) {
    state.socket = None;
    drop(state);
    handed_back.notify_one();
}

/// A stream's hold on its sink: detaches it when dropped.
pub struct Attached {
    sink: Arc<Sink>,
    metrics: Arc<BrokerMetrics>,
}

impl Attached {
    /// Resolves once the writers have given the socket back.
    pub async fn handed_back(&self) {
        self.sink.handed_back.notified().await;
    }

    /// When the writers last wrote to the socket.
    pub fn last_write(&self) -> Option<Instant> {
        lock(&self.sink.state).last_write
    }

    /// Writes bytes of the stream's own (a heartbeat) between the writers' frames; false
    /// if the socket had no room for all of them, and the socket is handed back with the
    /// rest.
    pub fn write_own(&self, bytes: &Bytes) -> bool {
        let mut state = lock(&self.sink.state);
        let Some(socket) = &state.socket else {
            return false;
        };
        let written = socket.try_write(bytes).unwrap_or(0);
        if written == bytes.len() {
            return true;
        }
        state.unwritten = bytes.slice(written..);
        hand_back(state, &self.sink.handed_back);
        false
    }

    /// Takes the socket back: the writers write nothing more to it.
    pub fn detach(&self) -> Detached {
        let mut state = lock(&self.sink.state);
        state.socket = None;
        Detached {
            next_seq: state.next_seq,
            unwritten: std::mem::take(&mut state.unwritten),
        }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.detach();
        self.metrics.lent_streams.fetch_sub(1, Ordering::Relaxed);
    }
}
