//! The pages, one file each: the task list, one task, the form for a new task or
//! terminal, and the sign-in form.

mod list;
mod new_task;
mod sign_in;
mod task;

pub use list::TaskListPage;
pub use new_task::NewTaskPage;
pub use sign_in::SignIn;
pub use task::TaskPage;
