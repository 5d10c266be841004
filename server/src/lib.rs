//! taskwire's server: runs tasks in tmux, records them in SQLite, and streams every change
//! to the browsers. `app(state)` builds the whole router, so tests serve it directly.

pub mod answer;
pub mod config;
pub mod events;
pub mod fleet;
pub mod http;
pub mod notify;
pub mod push;
pub mod sync;
pub mod tasks;
pub mod terminal;
pub mod workspaces;

use std::sync::Arc;

use axum::{
    extract::{DefaultBodyLimit, FromRef},
    middleware,
    routing::{get, post},
    Router,
};
use events::{broker, sse::EventStreams};
use http::{
    api::{self, Api},
    auth::{self, Auth},
    elsewhere::{self, Elsewhere},
    guard::Hosts,
    metrics::{self, Gauges},
    streams::TaskStreams,
};
use leptos::prelude::LeptosOptions;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tasks::{reconciler, runtime, store, view::TaskView, waiting, watch};
use terminal::Terminals;
use tokio_util::sync::CancellationToken;
use tower_http::compression::{
    predicate::{NotForContentType, Predicate},
    CompressionLayer, DefaultPredicate,
};

pub use config::Config;
pub use http::serve::{serve, serve_with, Limits};

/// The composition root: every part of a node, built once. No router takes it whole; each
/// takes the narrow state it uses (`FromRef` below). Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub tasks: Arc<tasks::Tasks>,
    /// Keeps the records true to tmux (its passes run in the background).
    pub reconciler: Arc<reconciler::Reconciler>,
    /// What the API reads: this node's records, or in a fleet every node's.
    pub view: Arc<dyn TaskView>,
    /// The fleet this node is part of (`TASKWIRE_NATS_URL`), if any.
    pub fleet: Option<Arc<fleet::Fleet>>,
    pub auth: Auth,
    /// The live tails, computed once for every open tails stream.
    pub tails: Arc<tasks::tails::TailsHub>,
    /// Open output, tails and terminal streams, capped at `TASKWIRE_MAX_SUBSCRIBERS`.
    pub stream_slots: Arc<events::slots::StreamSlots>,
    pub hosts: Hosts,
    /// Web Push: the VAPID keys and the devices subscribed on this node.
    pub push: Arc<push::Push>,
    pub leptos: LeptosOptions,
    /// Cancelled on SIGINT/SIGTERM: every stream ends at once.
    pub shutdown: CancellationToken,
    /// Held for as long as the server runs: one taskwire per data dir.
    _lock: Arc<std::fs::File>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}

impl FromRef<AppState> for EventStreams {
    fn from_ref(state: &AppState) -> Self {
        let (broker, shutdown) = state.event_broker();
        EventStreams {
            broker,
            heartbeat: state.config.heartbeat(),
            lifetime: state.config.stream_max(),
            shutdown,
        }
    }
}

impl FromRef<AppState> for Api {
    fn from_ref(state: &AppState) -> Self {
        Api {
            tasks: state.tasks.clone(),
            view: state.view.clone(),
            auth: state.auth.clone(),
        }
    }
}

impl FromRef<AppState> for Arc<push::Push> {
    fn from_ref(state: &AppState) -> Self {
        state.push.clone()
    }
}

impl FromRef<AppState> for Auth {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

impl FromRef<AppState> for Gauges {
    fn from_ref(state: &AppState) -> Self {
        Gauges {
            tasks: state.tasks.clone(),
            broker: state.event_broker().0,
            stream_slots: state.stream_slots.clone(),
        }
    }
}

impl FromRef<AppState> for TaskStreams {
    fn from_ref(state: &AppState) -> Self {
        TaskStreams {
            tasks: state.tasks.clone(),
            tails: state.tails.clone(),
            stream_slots: state.stream_slots.clone(),
            heartbeat: state.config.heartbeat(),
            lifetime: state.config.stream_max(),
            shutdown: state.shutdown.clone(),
        }
    }
}

impl FromRef<AppState> for Terminals {
    fn from_ref(state: &AppState) -> Self {
        Terminals {
            tasks: state.tasks.clone(),
            stream_slots: state.stream_slots.clone(),
            shutdown: state.shutdown.clone(),
        }
    }
}

impl FromRef<AppState> for Elsewhere {
    fn from_ref(state: &AppState) -> Self {
        Elsewhere {
            node: state.tasks.node.clone(),
            view: state.view.clone(),
            remote: state.fleet.clone().map(|fleet| {
                Arc::new(fleet::forward::Forwarding(fleet)) as Arc<dyn elsewhere::Remote>
            }),
        }
    }
}

impl AppState {
    /// Checks the settings, then opens the data dir (private to the user, and locked against
    /// a second taskwire), the database and the tmux runtime. Call inside a tokio runtime.
    pub fn open(config: Config, leptos: LeptosOptions) -> Result<AppState, StartError> {
        config.validate()?;
        let data_dir = private_dir(&config.data_dir)?;
        private_dir(&data_dir.join("tasks"))?;
        let lock = lock_data_dir(&data_dir)?;
        let token = auth::load_or_create_token(config.token.as_deref(), &data_dir)?;
        let store = store::Store::open(&data_dir.join("taskwire.db"))?;
        let sessions = http::sessions::Sessions::open(&data_dir.join("taskwire.db"))?;
        let push = push::Push::open(&data_dir, config.push_contact.clone())?;
        let socket = match &config.tmux_socket {
            Some(socket) => socket.clone(),
            None => {
                let live: Vec<String> = store.list_live()?.into_iter().map(|t| t.id).collect();
                runtime::default_socket(&data_dir, &live)
            }
        };
        let runtime = runtime::Tmux::new(&socket, &data_dir)?;
        let broker = broker::Broker::new(config.replay, config.max_subscribers);
        let host_names = config.host_names();
        let stream_slots = events::slots::StreamSlots::new(config.max_subscribers);
        let tasks = tasks::Tasks::new(
            store,
            runtime,
            broker,
            data_dir,
            config.idle_waiting(),
            config.node_name(),
        );
        let tasks = Arc::new(tasks);
        Ok(AppState {
            fleet: None,
            config: Arc::new(config),
            tails: tasks::tails::TailsHub::new(tasks.clone()),
            view: tasks.clone(),
            reconciler: reconciler::Reconciler::new(tasks.clone()),
            tasks,
            auth: Auth {
                token: token.into(),
                sessions: Arc::new(sessions),
            },
            stream_slots,
            hosts: Hosts(host_names.map(Into::into)),
            push: Arc::new(push),
            leptos,
            shutdown: CancellationToken::new(),
            _lock: Arc::new(lock),
        })
    }

    /// What `GET /api/events` follows (this node's events, or in a fleet every node's), and
    /// what ends its streams.
    pub fn event_broker(&self) -> (Arc<broker::Broker>, CancellationToken) {
        match &self.fleet {
            Some(fleet) => fleet.serving(),
            None => (self.tasks.broker.clone(), self.shutdown.clone()),
        }
    }

    /// With `TASKWIRE_NATS_URL`, joins the fleet: the view becomes every node's, and other
    /// nodes' actions on this node's tasks are answered. Without it, the state as it is.
    pub async fn join_fleet(mut self) -> Result<AppState, StartError> {
        if self.config.nats_url.is_none() {
            return Ok(self);
        }
        let data_dir = self.config.data_dir.canonicalize()?;
        let fleet = fleet::Fleet::join(
            &self.config,
            self.tasks.clone(),
            self.stream_slots.clone(),
            self.auth.token.clone(),
            &data_dir,
            self.shutdown.clone(),
        )
        .await?;
        self.fleet = Some(fleet.clone());
        self.view = fleet.clone();
        // Forwarded requests run through this node's own API, as its own: the owner is
        // this node, so they are not sent on.
        let api = Router::new()
            .nest("/api", api::router())
            .merge(api::reports())
            .with_state(self.clone());
        fleet::forward::answer_actions(fleet, api, self.shutdown.clone()).await?;
        Ok(self)
    }

    /// Tells the tasks where they reach this server (`TASKWIRE_URL`), and starts Web Push
    /// and the webhook of `TASKWIRE_NOTIFY_URL` if one is set. Call once the server
    /// listens (and has joined its fleet: pushes follow every node's transitions).
    pub fn listening_at(&self, addr: std::net::SocketAddr) {
        let host = match addr.ip() {
            ip if ip.is_unspecified() => "127.0.0.1".to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        self.tasks
            .set_base_url(format!("http://{host}:{}", addr.port()));
        push::spawn(
            self.push.clone(),
            self.event_broker().0,
            self.tasks.base_url(),
            self.shutdown.clone(),
        );
        if let Some(url) = &self.config.notify_url {
            notify::spawn(url.clone(), self.tasks.clone(), self.shutdown.clone());
        }
    }

    /// Starts the reconciler, the waiting passes and the screen watcher; they stop with
    /// `shutdown`.
    pub fn spawn_reconciler(&self) -> tokio::task::JoinHandle<()> {
        let waiting = tokio::spawn(waiting::run(self.tasks.clone(), self.shutdown.clone()));
        let screens = tokio::spawn(watch::run(self.tasks.clone(), self.shutdown.clone()));
        let changes = tokio::spawn(tasks::workdirs::run(
            self.tasks.clone(),
            self.shutdown.clone(),
        ));
        let reconciler = reconciler::run(
            self.reconciler.clone(),
            self.config.reconcile_every(),
            self.shutdown.clone(),
        );
        tokio::spawn(async move {
            reconciler.await;
            let _ = waiting.await;
            let _ = screens.await;
            let _ = changes.await;
        })
    }
}

/// How long a stopping node may take to send the fleet its last changes.
const OUTBOX_FLUSH_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// A node that runs: its state, where it listens, and its server and background work.
pub struct Node {
    pub state: AppState,
    pub addr: std::net::SocketAddr,
    server: tokio::task::JoinHandle<()>,
    background: tokio::task::JoinHandle<()>,
}

impl Node {
    /// Builds a node (single, or one of a fleet) and serves it at `addr`: the one start-up
    /// sequence, for the binary and the tests alike.
    pub async fn start(
        config: Config,
        leptos: LeptosOptions,
        addr: std::net::SocketAddr,
        limits: Limits,
    ) -> Result<Node, StartError> {
        let state = AppState::open(config, leptos)?.join_fleet().await?;
        let background = state.spawn_reconciler();
        let listener = http::serve::listen(addr)?;
        let addr = listener.local_addr()?;
        state.listening_at(addr);
        let server = tokio::spawn(serve_with(
            listener,
            app(state.clone()),
            state.shutdown.clone(),
            limits,
        ));
        Ok(Node {
            state,
            addr,
            server,
            background,
        })
    }

    /// Waits until the server and its background work have stopped (after `shutdown`),
    /// then, in a fleet, sends the fleet what the outbox still holds; a panic in either
    /// goes on here.
    pub async fn stopped(self) {
        for work in [self.server, self.background] {
            if let Err(e) = work.await {
                if e.is_panic() {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
        if let Some(fleet) = &self.state.fleet {
            fleet.flush_outbox(OUTBOX_FLUSH_WITHIN).await;
        }
    }
}

/// Any error that stops the server from starting.
pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// `dir`, created if need be, readable by its owner only (logs hold commands, prompts and
/// output); its canonical path.
fn private_dir(dir: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    dir.canonicalize()
}

/// How long the data dir's lock is tried before another taskwire is said to hold it.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// An exclusive lock on `data_dir/lock`, or a clear refusal: two taskwires on one data
/// dir would both reconcile, kill and record the same tasks.
fn lock_data_dir(data_dir: &std::path::Path) -> Result<std::fs::File, StartError> {
    use std::os::{fd::AsRawFd, unix::fs::OpenOptionsExt};
    let path = data_dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)?;
    // The lock of a taskwire killed a moment ago can still be held for a moment (the crash
    // test's restart right after SIGKILL found it taken about once in ten, and nothing held
    // it a moment later: most likely a child between its fork and its exec, with a copy of
    // the descriptor). So it is tried for a little while before a running taskwire is
    // concluded.
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    // SAFETY: flock on a descriptor we own; the lock lives as long as the file.
    while unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        if std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            continue;
        }
        return Err(format!(
            "another taskwire is already running on {} (it holds {})",
            data_dir.display(),
            path.display()
        )
        .into());
    }
    Ok(file)
}

/// The whole router: API, events, metrics, login, health, and the Leptos pages and assets.
pub fn app(state: AppState) -> Router {
    let routes = generate_route_list(app::App);
    let auth = middleware::from_fn_with_state(state.auth.clone(), auth::require_auth);
    let elsewhere = Elsewhere::from_ref(&state);
    // Requests about other nodes' tasks go to them, after authentication (the layer added
    // last runs first).
    let protected = Router::new()
        .nest("/api", api::router())
        .route("/metrics", get(metrics::metrics))
        .route_layer(middleware::from_fn_with_state(
            elsewhere.clone(),
            elsewhere::api,
        ))
        .route_layer(auth.clone());
    let reports = api::reports().route_layer(middleware::from_fn_with_state(
        elsewhere.clone(),
        elsewhere::reports,
    ));
    // Event streams must reach the browser frame by frame, so they are never compressed:
    // they are added after the compression layer, which also spares each open stream the
    // room a compressing body keeps for its encoders (5.8 KiB). The predicate keeps any
    // other stream uncompressed too.
    let streams = events::sse::router()
        .merge(http::streams::router())
        .merge(terminal::router())
        .route_layer(middleware::from_fn_with_state(
            elsewhere,
            elsewhere::streams,
        ))
        .route_layer(auth);
    let compression = CompressionLayer::new()
        .compress_when(DefaultPredicate::new().and(NotForContentType::new("text/event-stream")));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/login", get(auth::login_link).post(auth::login_form))
        .route("/sw.js", get(http::site::service_worker))
        .route("/logout", post(auth::logout))
        .merge(protected)
        .merge(reports)
        .leptos_routes(&state, routes, {
            let options = state.leptos.clone();
            move || app::shell(options.clone())
        })
        .fallback(http::site::file_or_page)
        .layer(DefaultBodyLimit::max(http::body::MAX_BODY_BYTES))
        .layer(compression)
        .merge(streams)
        .layer(middleware::from_fn_with_state(
            state.hosts.clone(),
            http::guard::host_and_framing,
        ))
        .with_state(state)
}
