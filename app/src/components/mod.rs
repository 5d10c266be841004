//! Pieces used by more than one page or by the page frame.

mod badge;
mod pill;
mod terminal;

pub use badge::ConnectionBadge;
pub use pill::StatusPill;
pub use terminal::Terminal;
