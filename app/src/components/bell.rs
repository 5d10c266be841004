//! The header's bell: asks for permission to show desktop notifications (only on a click),
//! and which transitions to be told of. The notifications themselves are shown by the tab
//! that holds the browser's event connection (`js/shared.js`), one per transition.

use leptos::prelude::*;

/// The kinds, as `js/shared.js` names them, and their labels.
const KINDS: [(&str, &str); 3] = [
    ("waiting", "Waits for you"),
    ("failed", "Failed"),
    ("completed", "Completed"),
];

#[component]
pub fn Bell() -> impl IntoView {
    let open = RwSignal::new(false);
    // Read in the browser once hydrated; the server renders the closed bell.
    let permission = RwSignal::new(String::from("default"));
    let prefs = RwSignal::new([true; 3]);
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        use crate::live::shared;
        permission.set(shared::notification_permission());
        prefs.set(KINDS.map(|(kind, _)| shared::notification_pref(kind)));
    });
    let ask = move |_| {
        #[cfg(feature = "hydrate")]
        {
            use crate::live::shared;
            let answered = wasm_bindgen::prelude::Closure::once(move |_: wasm_bindgen::JsValue| {
                permission.set(shared::notification_permission());
            });
            let _ = shared::ask_notification_permission().then(&answered);
            answered.forget();
        }
    };
    let toggle = move |index: usize, on: bool| {
        prefs.update(|p| p[index] = on);
        #[cfg(feature = "hydrate")]
        crate::live::shared::set_notification_pref(KINDS[index].0, on);
    };
    let checkboxes = KINDS
        .iter()
        .enumerate()
        .map(|(index, (_, label))| {
            view! {
                <label class="pref">
                    <input type="checkbox"
                        prop:checked=move || prefs.get()[index]
                        on:change=move |e| toggle(index, event_target_checked(&e))/>
                    {*label}
                </label>
            }
        })
        .collect_view();
    view! {
        <div class="bell">
            <button class="button bell-button" type="button" aria-label="Notifications"
                aria-expanded=move || open.get().to_string()
                on:click=move |_| open.update(|o| *o = !*o)>
                {move || if permission.get() == "granted" { "🔔" } else { "🔕" }}
            </button>
            <Show when=move || open.get()>
                <div class="bell-panel" role="dialog" aria-label="Notifications">
                    <p class="hint">{move || match permission.get().as_str() {
                        "granted" => "Shown when no taskwire tab is in view.",
                        "denied" => "Notifications are blocked for this site in the browser's settings.",
                        "unsupported" => "This browser cannot show notifications.",
                        _ => "Notifications are off in this browser.",
                    }}</p>
                    <Show when=move || permission.get() == "default">
                        <button class="button primary" type="button" on:click=ask>"Allow notifications"</button>
                    </Show>
                    {checkboxes.clone()}
                </div>
            </Show>
        </div>
    }
}
