//! Settings: each an environment variable with a `--flag` twin (DESIGN.md, "Running it").

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;

/// The defaults of DESIGN.md, for the command line and for `Config::for_dirs` alike.
mod defaults {
    pub const HEARTBEAT_SECS: u64 = 15;
    pub const STREAM_MAX_SECS: u64 = 1800;
    pub const IDLE_WAITING_SECS: u64 = 90;
    pub const RECONCILE_SECS: u64 = 5;
    pub const REPLAY: usize = 1024;
    pub const MAX_SUBSCRIBERS: usize = 10_000;
    pub const PUSH_CONTACT: &str = "mailto:taskwire@localhost";
}

#[derive(Clone, Debug, Parser)]
#[command(
    name = "taskwire",
    version,
    about = "A live dashboard for long-running terminal tasks"
)]
pub struct Config {
    /// Address to listen on. Loopback by default: the dashboard runs commands.
    #[arg(long, env = "LEPTOS_SITE_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,

    /// Where the SQLite database, the token and task output live.
    #[arg(long, env = "TASKWIRE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// The API token; generated once and stored in the data dir when not given.
    #[arg(long, env = "TASKWIRE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// The dedicated tmux server socket name (`tmux -L`); by default one of this data
    /// dir's own (`taskwire-<hash>`, or `taskwire` where an earlier version left its tasks).
    #[arg(long, env = "TASKWIRE_TMUX_SOCKET")]
    pub tmux_socket: Option<String>,

    /// Seconds of quiet on an event stream before a `: keep-alive` comment.
    #[arg(long, env = "TASKWIRE_HEARTBEAT_SECS", default_value_t = defaults::HEARTBEAT_SECS)]
    pub heartbeat_secs: u64,

    /// Seconds an event stream lives before it is ended with `end`.
    #[arg(long, env = "TASKWIRE_STREAM_MAX_SECS", default_value_t = defaults::STREAM_MAX_SECS)]
    pub stream_max_secs: u64,

    /// Seconds without output before a running task counts as waiting for input.
    #[arg(long, env = "TASKWIRE_IDLE_WAITING_SECS", default_value_t = defaults::IDLE_WAITING_SECS)]
    pub idle_waiting_secs: u64,

    /// Seconds between the reconciler's safety-net passes.
    #[arg(long, env = "TASKWIRE_RECONCILE_SECS", default_value_t = defaults::RECONCILE_SECS)]
    pub reconcile_secs: u64,

    /// Events kept for resume, and how far a subscriber may fall behind.
    #[arg(long, env = "TASKWIRE_REPLAY", default_value_t = defaults::REPLAY)]
    pub replay: usize,

    /// Open event streams allowed at once; more get `503`.
    #[arg(long, env = "TASKWIRE_MAX_SUBSCRIBERS", default_value_t = defaults::MAX_SUBSCRIBERS)]
    pub max_subscribers: usize,

    /// Where to POST `{"event": "task.status", "task", "url"}` when a task starts waiting for
    /// input, fails or completes (retried with backoff; never delays anything else).
    #[arg(long, env = "TASKWIRE_NOTIFY_URL", hide_env_values = true)]
    pub notify_url: Option<String>,

    /// Who runs this server, for push services (the `sub` of VAPID, RFC 8292): a
    /// `mailto:` address or an `https:` URL. Apple's push service wants a real one.
    #[arg(long, env = "TASKWIRE_PUSH_CONTACT", default_value = defaults::PUSH_CONTACT)]
    pub push_contact: String,

    /// Host names the server answers to, besides localhost and the listen address (a
    /// request naming another host is refused: DNS rebinding). Comma-separated; `*` for any.
    #[arg(long, env = "TASKWIRE_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,

    /// A NATS server with JetStream: this taskwire becomes one node of a fleet (see the
    /// README). Without it, a single node on SQLite and the in-process broker.
    #[arg(long, env = "TASKWIRE_NATS_URL", hide_env_values = true)]
    pub nats_url: Option<String>,

    /// Join a NATS server that lets anyone in (no user, token or credentials asked): whoever
    /// reaches it could act on every node. Off: such a server is refused.
    #[arg(long, env = "TASKWIRE_NATS_INSECURE", value_parser = clap::builder::BoolishValueParser::new())]
    pub nats_insecure: bool,

    /// A NATS credentials file, for a NATS server that asks for one.
    #[arg(long, env = "TASKWIRE_NATS_CREDS", hide_env_values = true)]
    pub nats_creds: Option<PathBuf>,

    /// This node's name (letters, digits, `-` and `_`); the host name by default.
    #[arg(long, env = "TASKWIRE_NODE")]
    pub node: Option<String>,
}

impl Config {
    /// Defaults for a data dir and tmux socket of the caller's choosing (tests, benches).
    /// Ignores the environment, so a test is not changed by the shell it runs in.
    pub fn for_dirs(data_dir: impl Into<PathBuf>, tmux_socket: impl Into<String>) -> Config {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            token: Some("test-token".into()),
            tmux_socket: Some(tmux_socket.into()),
            heartbeat_secs: defaults::HEARTBEAT_SECS,
            stream_max_secs: defaults::STREAM_MAX_SECS,
            idle_waiting_secs: defaults::IDLE_WAITING_SECS,
            reconcile_secs: defaults::RECONCILE_SECS,
            replay: defaults::REPLAY,
            max_subscribers: defaults::MAX_SUBSCRIBERS,
            allowed_hosts: Vec::new(),
            notify_url: None,
            push_contact: defaults::PUSH_CONTACT.into(),
            nats_url: None,
            nats_creds: None,
            nats_insecure: false,
            node: None,
        }
    }

    /// This node's name: `TASKWIRE_NODE`, else the host name made a valid name.
    pub fn node_name(&self) -> String {
        if let Some(node) = &self.node {
            return node.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_default();
        let name: String = host
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .take(64)
            .collect();
        if name.is_empty() {
            "taskwire".into()
        } else {
            name
        }
    }

    /// Refuses settings out of range, naming the setting: a value past these would make a
    /// deadline overflow or a buffer absurd, and fail later in a worse place.
    pub fn validate(&self) -> Result<(), String> {
        let checks: [(&str, u64, u64, u64); 6] = [
            ("TASKWIRE_HEARTBEAT_SECS", self.heartbeat_secs, 1, 3600),
            (
                "TASKWIRE_STREAM_MAX_SECS",
                self.stream_max_secs,
                1,
                7 * 24 * 3600,
            ),
            (
                "TASKWIRE_IDLE_WAITING_SECS",
                self.idle_waiting_secs,
                1,
                7 * 24 * 3600,
            ),
            ("TASKWIRE_RECONCILE_SECS", self.reconcile_secs, 1, 3600),
            ("TASKWIRE_REPLAY", self.replay as u64, 1, 1_000_000),
            (
                "TASKWIRE_MAX_SUBSCRIBERS",
                self.max_subscribers as u64,
                1,
                1_000_000,
            ),
        ];
        for (name, value, min, max) in checks {
            if !(min..=max).contains(&value) {
                return Err(format!(
                    "{name} must be between {min} and {max}, not {value}"
                ));
            }
        }
        // A node's name is part of NATS subjects and of the API's JSON.
        let node = self.node_name();
        if !app::model::is_valid_task_id(&node) {
            return Err(format!(
                "TASKWIRE_NODE must be 1 to 64 letters, digits, `-` or `_`, not {node:?}"
            ));
        }
        let contact = &self.push_contact;
        if !(contact.starts_with("mailto:") || contact.starts_with("https://"))
            || contact.len() > 200
        {
            return Err(format!(
                "TASKWIRE_PUSH_CONTACT must be a mailto: address or an https: URL, not {contact:?}"
            ));
        }
        Ok(())
    }

    /// The host names requests may name (lowercase, without port): localhost, the loopback
    /// addresses, the listen address, and `TASKWIRE_ALLOWED_HOSTS`. `None` allows any.
    pub fn host_names(&self) -> Option<Vec<String>> {
        if self.allowed_hosts.iter().any(|h| h.trim() == "*") {
            return None;
        }
        let listen = match self.addr.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        let names = ["localhost", "127.0.0.1", "[::1]", &listen]
            .into_iter()
            .map(str::to_string)
            .chain(self.allowed_hosts.iter().map(|h| h.trim().to_lowercase()))
            .filter(|h| !h.is_empty())
            .collect();
        Some(names)
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs.max(1))
    }

    pub fn stream_max(&self) -> Duration {
        Duration::from_secs(self.stream_max_secs.max(1))
    }

    pub fn idle_waiting(&self) -> Duration {
        Duration::from_secs(self.idle_waiting_secs)
    }

    pub fn reconcile_every(&self) -> Duration {
        Duration::from_secs(self.reconcile_secs.max(1))
    }
}

/// `url` with any `user:password@` replaced by `…@`, for messages and logs.
pub fn without_credentials(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}…{}", &url[..scheme + 3], &url[at..]),
        _ => url.to_string(),
    }
}
