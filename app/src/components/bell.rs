//! The header's bell. Its panel (the permission, asked for only on a click, and which
//! transitions to be told of) is drawn by `js/shared.js`, which also shows the
//! notifications: one per transition per browser, from the tab that holds the connection.

use leptos::prelude::*;

#[component]
pub fn Bell() -> impl IntoView {
    let button = NodeRef::<leptos::html::Button>::new();
    let toggle = move |_| {
        #[cfg(feature = "hydrate")]
        if let Some(button) = button.get() {
            crate::live::shared::toggle_bell(&button);
        }
    };
    view! {
        <div class="bell">
            <button class="button bell-button" type="button" aria-label="Notifications"
                aria-expanded="false" node_ref=button on:click=toggle>
                // A bell drawn here: an emoji needs a font the machine may not have.
                <svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true" fill="none"
                    stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">
                    <path d="M18 8a6 6 0 0 0-12 0c0 7-3 9-3 9h18s-3-2-3-9"/>
                    <path d="M13.7 21a2 2 0 0 1-3.4 0"/>
                </svg>
            </button>
        </div>
    }
}
