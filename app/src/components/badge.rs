//! The header badge: whether the page is live, reconnecting or polling.

use leptos::prelude::*;

use crate::live::use_live;

#[component]
pub fn ConnectionBadge() -> impl IntoView {
    let connection = use_live().connection;
    view! {
        <span
            class=move || format!("badge badge-{}", format!("{:?}", connection.get()).to_lowercase())
            role="status"
            aria-live="polite"
            data-testid="connection"
        >
            {move || connection.get().label()}
        </span>
    }
}
