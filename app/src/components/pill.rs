//! A task's status as a coloured pill.

use leptos::prelude::*;

use crate::model::TaskStatus;

#[component]
pub fn StatusPill(
    #[prop(into)] status: Signal<TaskStatus>,
    #[prop(into)] label: Signal<String>,
) -> impl IntoView {
    view! {
        <span class=move || format!("pill pill-{}", status.get().as_str()) data-testid="status">
            {label}
        </span>
    }
}
