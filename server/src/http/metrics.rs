//! `GET /metrics` in the Prometheus text format.

use std::{
    fmt::Write,
    sync::{atomic::Ordering, Arc},
};

use app::model::TaskStatus;
use axum::{extract::State, http::header, response::IntoResponse};

use crate::{
    events::{broker::Broker, slots::StreamSlots},
    tasks::Tasks,
};

/// What `/metrics` reads: this node's tasks, the broker its browsers follow, the stream
/// slots.
#[derive(Clone)]
pub struct Gauges {
    pub tasks: Arc<Tasks>,
    pub broker: Arc<Broker>,
    pub stream_slots: Arc<StreamSlots>,
}

pub async fn metrics(State(state): State<Gauges>) -> impl IntoResponse {
    let tasks = state.tasks.clone();
    let by_status = tokio::task::spawn_blocking(move || tasks.list())
        .await
        .ok()
        .and_then(Result::ok)
        .map(|list| list.tasks)
        .unwrap_or_default();
    let broker = &state.broker.metrics;
    let mut out = String::new();
    let mut counter = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    counter(
        "taskwire_event_streams_open",
        "gauge",
        "Open /api/events streams.",
        broker.open_streams.load(Ordering::Relaxed) as u64,
    );
    counter(
        "taskwire_event_streams_direct",
        "gauge",
        "Open /api/events streams that are caught up, written to by the fan-out itself.",
        broker.lent_streams.load(Ordering::Relaxed) as u64,
    );
    counter(
        "taskwire_events_published_total",
        "counter",
        "Events published on the broker.",
        broker.published.load(Ordering::Relaxed),
    );
    counter(
        "taskwire_events_dropped_total",
        "counter",
        "Events lost by subscribers that fell behind.",
        broker.dropped.load(Ordering::Relaxed),
    );
    counter(
        "taskwire_events_refused_total",
        "counter",
        "Events of the fleet's log refused: unreadable, or sent by a node about another's task.",
        broker.refused.load(Ordering::Relaxed),
    );
    counter(
        "taskwire_resyncs_sent_total",
        "counter",
        "resync frames sent to subscribers that fell behind.",
        broker.resyncs.load(Ordering::Relaxed),
    );
    counter(
        "taskwire_task_streams_open",
        "gauge",
        "Open output, tails and terminal streams.",
        state.stream_slots.open() as u64,
    );
    let terminals = &crate::terminal::METRICS;
    counter(
        "taskwire_terminal_viewers",
        "gauge",
        "Open terminal WebSockets.",
        terminals.viewers.load(Ordering::Relaxed) as u64,
    );
    counter(
        "taskwire_terminal_bad_messages_total",
        "counter",
        "Terminal control messages that could not be read (ignored).",
        terminals.bad_messages.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        out,
        "# HELP taskwire_tasks Tasks by status.\n# TYPE taskwire_tasks gauge"
    );
    for status in TaskStatus::ALL {
        let count = by_status.iter().filter(|t| t.status == status).count();
        let _ = writeln!(
            out,
            "taskwire_tasks{{status=\"{}\"}} {count}",
            status.as_str()
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
