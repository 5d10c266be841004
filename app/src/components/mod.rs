//! Pieces used by more than one page or by the page frame.

mod badge;
mod pill;

pub use badge::ConnectionBadge;
pub use pill::StatusPill;
