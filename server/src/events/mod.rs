//! The event pipeline: the broker (ids, replay ring, publish, subscribe), the fan-out
//! writers, the lean event-stream connection and `GET /api/events`. It knows nothing of
//! `tasks` or `http`: only `config` and the wire types of `app::model`.

pub mod broker;
pub mod connection;
pub mod event;
pub mod fanout;
pub mod slots;
pub mod sse;
