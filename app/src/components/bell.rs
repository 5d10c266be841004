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
                aria-expanded="false" node_ref=button on:click=toggle>"🔔"</button>
        </div>
    }
}
