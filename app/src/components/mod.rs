//! Pieces used by more than one page or by the page frame.

mod badge;
mod bell;
mod changes;
mod nodes;
mod pill;
mod prompt;
mod terminal;

pub use badge::ConnectionBadge;
pub use bell::Bell;
pub use changes::Changes;
pub use nodes::{node_select, node_strip};
pub use pill::StatusPill;
pub use prompt::PromptButtons;
pub use terminal::Terminal;
