//! The fleet: many taskwire nodes, one dashboard, on NATS JetStream
//! (`TASKWIRE_NATS_URL`). Each node runs its own tasks in its own tmux, as a single node
//! does, and serves every task of every node.
//!
//! - **One event log**: the JetStream stream `TASKWIRE_EVENTS`. A node's own changes go
//!   to its outbox (SQLite) as they are published, and from there to the stream, in order;
//!   every node reads the stream back and publishes each event to the broker its browsers
//!   listen to, numbered with the stream's sequence (`Broker::continuing`), so an event
//!   has the same id on every node and a browser resumes on any of them.
//! - **Records**: the key-value bucket `taskwire_tasks` holds every task (its owner writes
//!   it before the event), so a node that starts lists everything at once.
//! - **Actions** on another node's task are HTTP requests sent to that node over NATS
//!   request-reply (`forward`); **liveness** is a heartbeat a second (`nodes`).

pub mod forward;
mod log;
pub mod nodes;
mod outage;
mod outbox;
pub mod terminal;

use std::{
    collections::HashMap,
    future::Future,
    path::Path,
    sync::{Arc, Mutex},
};

use app::model::{NodeList, Task, TaskList};
use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::{
    config::Config,
    events::{broker::Broker, slots::StreamSlots},
    sync::lock,
    tasks::{
        view::{newest_first, TaskView},
        TaskResult, Tasks,
    },
};

/// The stream every node's events go to.
pub const STREAM: &str = "TASKWIRE_EVENTS";
/// The bucket of every task's latest record, keyed by id.
pub const RECORDS: &str = "taskwire_tasks";
/// Events kept in the stream (for resume, and for nodes catching up).
const STREAM_MAX_EVENTS: i64 = 1_000_000;

/// Why joining the fleet, or starting a part of a node's work in it, failed.
pub type FleetError = Box<dyn std::error::Error + Send + Sync>;

fn event_subject(node: &str) -> String {
    format!("taskwire.events.{node}")
}

pub struct Fleet {
    pub node: String,
    client: async_nats::Client,
    jetstream: jetstream::Context,
    records: kv::Store,
    /// Every task of every node as the log has told this node. Changed together with
    /// `broker`'s publishing, under this lock, so a list names the event it reflects.
    view: Mutex<HashMap<String, Task>>,
    /// Tasks created elsewhere through this node that the view does not have yet, and
    /// their nodes (see `forward`).
    placed: Mutex<HashMap<String, String>>,
    /// What this node's browsers listen to: the log's events, numbered as in the stream.
    pub broker: Arc<Broker>,
    nodes: nodes::Nodes,
    outbox: outbox::Outbox,
    /// Which broker this node's browsers follow (a local one while NATS is away).
    serving: Mutex<outage::Serving>,
    /// Counts reconnections to NATS: the log's reader starts afresh at each (a restarted
    /// NATS server has forgotten its consumers).
    reconnects: tokio::sync::watch::Sender<u64>,
    pub tasks: Arc<Tasks>,
    /// The node's cap on open task streams: relayed terminals hold a slot on both nodes.
    stream_slots: Arc<StreamSlots>,
    token: Arc<str>,
}

impl Fleet {
    /// Connects to NATS, creates the stream and the bucket if they are new, reads every
    /// record, and starts the node's work (sending its events, reading the log, heartbeats).
    pub async fn join(
        config: &Config,
        tasks: Arc<Tasks>,
        stream_slots: Arc<StreamSlots>,
        token: Arc<str>,
        data_dir: &Path,
        shutdown: CancellationToken,
    ) -> Result<Arc<Fleet>, FleetError> {
        let url = config.nats_url.as_deref().ok_or("no TASKWIRE_NATS_URL")?;
        let mut options =
            async_nats::ConnectOptions::new().name(format!("taskwire {}", tasks.node));
        if let Some(creds) = &config.nats_creds {
            options = options.credentials_file(creds).await?;
        }
        // The client does not read credentials from the URL itself.
        if let Ok(addr) = url.parse::<async_nats::ServerAddr>() {
            match (addr.username(), addr.password()) {
                (Some(user), Some(password)) => {
                    options = options.user_and_password(user.into(), password.into());
                }
                (Some(token), None) => options = options.token(token.into()),
                _ => {}
            }
        }
        let client = options.connect(url).await.map_err(|e| {
            let url = crate::config::without_credentials(url);
            format!("cannot reach NATS at {url}: {e}")
        })?;
        if !client.server_info().auth_required {
            let url = crate::config::without_credentials(url);
            if !config.nats_insecure {
                return Err(format!(
                    "the NATS server at {url} lets anyone in, and whoever reaches it could act \
                     on every node: give it users (see the README), or set \
                     TASKWIRE_NATS_INSECURE=1 if you mean it"
                )
                .into());
            }
            tracing::warn!(
                "INSECURE: the NATS server at {url} lets anyone in; whoever reaches it can act \
                 on every node (TASKWIRE_NATS_INSECURE is set)"
            );
        }
        let jetstream = jetstream::new(client.clone());
        let mut stream = jetstream
            .get_or_create_stream(jetstream::stream::Config {
                name: STREAM.into(),
                subjects: vec!["taskwire.events.>".into()],
                max_messages: STREAM_MAX_EVENTS,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("the event stream: {e}"))?;
        let info = stream.info().await?;
        // The stream's creation time: the same for every node, new if the stream is new.
        let epoch = (info.created.unix_timestamp_nanos() / 1000).to_string();
        // Read before the records: an event after this was written after its record was,
        // or is read again below; either way nothing is missed.
        let last = info.state.last_sequence;
        let records = records_bucket(&jetstream).await?;
        let view = read_records(&records).await?;
        let fleet = Arc::new(Fleet {
            node: tasks.node.clone(),
            client,
            jetstream,
            records,
            view: Mutex::new(view),
            placed: Mutex::default(),
            broker: Broker::continuing(epoch, last + 1, config.replay, config.max_subscribers),
            nodes: nodes::Nodes::default(),
            outbox: outbox::Outbox::open(&data_dir.join("taskwire.db"))?,
            serving: Mutex::new(outage::Serving::new(shutdown.clone())),
            reconnects: tokio::sync::watch::Sender::new(0),
            tasks,
            stream_slots,
            token,
        });
        fleet.broker.set_archive(Arc::new(log::StreamArchive {
            stream: stream.clone(),
        }));
        fleet.connect_outbox();
        fleet.share_own_records();
        tokio::spawn(log::send_outbox(fleet.clone(), shutdown.clone()));
        tokio::spawn(log::read_log(
            fleet.clone(),
            stream,
            last + 1,
            shutdown.clone(),
        ));
        nodes::spawn(fleet.clone(), shutdown.clone()).await?;
        terminal::answer_terminals(fleet.clone(), shutdown.clone()).await?;
        tokio::spawn(outage::watch(
            fleet.clone(),
            config.replay,
            config.max_subscribers,
            shutdown,
        ));
        Ok(fleet)
    }

    /// Every event this node's tasks publish also goes to the outbox, in order, and,
    /// while NATS is away, straight to this node's browsers.
    fn connect_outbox(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        self.tasks.broker.set_tap(Box::new(move |event| {
            if let Some(fleet) = weak.upgrade() {
                fleet.outbox.push(event.name, event.data.clone());
                if let Some(local) = fleet.local_broker() {
                    local.publish(event.name, event.data.clone());
                }
            }
        }));
    }

    /// Sends this node's records that the fleet does not have as they are (tasks from
    /// before it joined, or changed while it was away).
    fn share_own_records(&self) {
        let own = match self.tasks.list() {
            Ok(list) => list.tasks,
            Err(e) => {
                tracing::warn!("listing this node's tasks for the fleet: {e:?}");
                return;
            }
        };
        let view = lock(&self.view);
        for task in own {
            if view.get(&task.id) != Some(&task) {
                self.outbox.push(
                    app::model::event::TASK_UPDATED,
                    crate::events::event::to_json(&task),
                );
            }
        }
    }

    /// Every task of every node, newest first, with the newest event the list reflects.
    /// While NATS is away: this node's own tasks as its records have them, over the rest
    /// of the fleet as last known.
    pub fn list(&self) -> TaskList {
        if let Some(local) = self.local_broker() {
            return self.list_alone(&local);
        }
        let view = lock(&self.view);
        let mut tasks: Vec<Task> = view.values().cloned().collect();
        let event_id = self.broker.newest_id();
        drop(view);
        newest_first(&mut tasks);
        TaskList { tasks, event_id }
    }

    fn list_alone(&self, local: &Broker) -> TaskList {
        // The own list's event id is the own broker's; the local broker's is the one
        // browsers resume with. Reading it first: an event after it is sent live anyway.
        let event_id = local.newest_id();
        let own = self.tasks.list().map(|l| l.tasks).unwrap_or_default();
        let mut tasks: Vec<Task> = lock(&self.view)
            .values()
            .filter(|t| t.node != self.node)
            .cloned()
            .chain(own)
            .collect();
        newest_first(&mut tasks);
        TaskList { tasks, event_id }
    }

    pub fn get(&self, id: &str) -> Option<Task> {
        lock(&self.view).get(id).cloned()
    }

    /// Answers every request on `subject` with what `handle` makes of its payload, each
    /// in a task of its own, until `shutdown` (a request without a reply subject is no
    /// request).
    async fn answer_requests<F, A>(
        self: &Arc<Self>,
        subject: String,
        shutdown: CancellationToken,
        handle: F,
    ) -> Result<(), FleetError>
    where
        F: Fn(Arc<Fleet>, bytes::Bytes) -> A + Send + 'static,
        A: Future<Output = Vec<u8>> + Send + 'static,
    {
        let mut requests = self.client.subscribe(subject.clone()).await?;
        let fleet = self.clone();
        tokio::spawn(async move {
            loop {
                let request = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    request = requests.next() => request,
                };
                let Some(request) = request else { return };
                let Some(reply) = request.reply else { continue };
                let answer = handle(fleet.clone(), request.payload);
                let client = fleet.client.clone();
                let subject = subject.clone();
                tokio::spawn(async move {
                    if let Err(e) = client.publish(reply, answer.await.into()).await {
                        tracing::warn!("answering a request on {subject}: {e}");
                    }
                });
            }
        });
        Ok(())
    }

    /// Works with the outbox (SQLite) on a blocking thread.
    async fn with_outbox<T: Send + 'static>(
        self: &Arc<Self>,
        read: impl FnOnce(&outbox::Outbox) -> T + Send + 'static,
    ) -> Option<T> {
        let fleet = self.clone();
        tokio::task::spawn_blocking(move || read(&fleet.outbox))
            .await
            .ok()
    }

    /// How many of the view's tasks each node holds.
    fn task_counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for task in lock(&self.view).values() {
            *counts.entry(task.node.clone()).or_default() += 1;
        }
        counts
    }
}

/// The fleet's view: every node's tasks as the log has told this node, its own tasks
/// read from its own records.
impl TaskView for Fleet {
    fn list(&self) -> TaskResult<TaskList> {
        Ok(Fleet::list(self))
    }

    fn get(&self, id: &str) -> TaskResult<Task> {
        match Fleet::get(self, id) {
            Some(task) if task.node != self.node => Ok(task),
            _ => self.tasks.get(id),
        }
    }

    fn owner_elsewhere(&self, id: &str) -> Option<String> {
        // A task just created elsewhere through this node may not be in the view yet.
        Fleet::get(self, id)
            .map(|task| task.node)
            .or_else(|| self.placed_on(id))
            .filter(|node| *node != self.node)
    }

    fn nodes(&self) -> TaskResult<NodeList> {
        Ok(self.node_list())
    }
}

/// The records bucket, its stream made as the key-value API makes it (the client's own
/// `create_key_value` first asks for account details that Debian's nats-server 2.9
/// answers in a form this client does not read).
async fn records_bucket(jetstream: &jetstream::Context) -> Result<kv::Store, FleetError> {
    jetstream
        .get_or_create_stream(jetstream::stream::Config {
            name: format!("KV_{RECORDS}"),
            subjects: vec![format!("$KV.{RECORDS}.>")],
            max_messages_per_subject: 1,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: jetstream::stream::DiscardPolicy::New,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("the records bucket: {e}"))?;
    Ok(jetstream
        .get_key_value(RECORDS)
        .await
        .map_err(|e| format!("the records bucket: {e}"))?)
}

/// A task's key in the records bucket: `<node>.<id>`, under its node's name, so that NATS
/// permissions can let each node write only its own (`recipes/nats-fleet.conf`).
fn record_key(node: &str, id: &str) -> String {
    format!("{node}.{id}")
}

/// Every record in the bucket that is what its key says: a record under one node's name
/// about another's task is refused, and so is a task two nodes claim (until its owner's
/// next event says whose it is). Records of earlier versions, keyed by id alone, are passed
/// over: each node writes its own anew when it starts.
async fn read_records(records: &kv::Store) -> Result<HashMap<String, Task>, FleetError> {
    let mut view: HashMap<String, Task> = HashMap::new();
    let mut claimed_twice = Vec::new();
    let mut keys = records.keys().await?;
    while let Some(key) = keys.next().await {
        let key = key?;
        let Some(value) = records.get(&key).await? else {
            continue;
        };
        match serde_json::from_slice::<Task>(&value) {
            Ok(task) if key == record_key(&task.node, &task.id) => {
                if view
                    .get(&task.id)
                    .is_some_and(|other| other.node != task.node)
                {
                    claimed_twice.push(task.id.clone());
                }
                view.insert(task.id.clone(), task);
            }
            Ok(_) => tracing::warn!("refused the record {key}: it is about another key's task"),
            Err(e) => tracing::warn!("an unreadable record {key}: {e}"),
        }
    }
    for id in claimed_twice {
        tracing::warn!("refused the records of task {id}: two nodes claim it");
        view.remove(&id);
    }
    Ok(view)
}
