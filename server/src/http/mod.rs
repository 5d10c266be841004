//! The web surface: accepting connections (limits, timeouts, shutdown), auth, the REST
//! routes, the `{"error": …}` answer, metrics. It may use `tasks` and `events`; nothing
//! below it uses it.

pub mod api;
pub mod auth;
pub mod body;
pub mod elsewhere;
pub mod error;
pub mod guard;
pub mod metrics;
pub mod push;
pub mod serve;
pub mod sessions;
pub mod site;
pub mod streams;
