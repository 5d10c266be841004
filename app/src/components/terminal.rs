//! A task's terminal: xterm.js bound through `js/terminal.js`, which also fills the row of
//! keys phone keyboards lack (Esc, Tab, Shift-Tab, arrows, Enter, Ctrl-C). The terminal is
//! drawn in the browser only; the server renders the empty frame.

use leptos::prelude::*;

#[cfg(feature = "hydrate")]
mod binding {
    use wasm_bindgen::prelude::*;

    #[wasm_bindgen(module = "/js/terminal.js")]
    extern "C" {
        pub type TerminalHandle;

        #[wasm_bindgen(js_name = openTerminal)]
        pub fn open_terminal(
            element: &web_sys::HtmlElement,
            path: &str,
            key_row: &web_sys::HtmlElement,
        ) -> TerminalHandle;

        #[wasm_bindgen(method)]
        pub fn dispose(this: &TerminalHandle);
    }
}

#[component]
pub fn Terminal(id: String) -> impl IntoView {
    let node = NodeRef::<leptos::html::Div>::new();
    let keys = NodeRef::<leptos::html::Div>::new();
    #[cfg(feature = "hydrate")]
    {
        let handle = StoredValue::new_local(None::<binding::TerminalHandle>);
        let path = format!("/api/tasks/{id}/terminal");
        Effect::new(move |_| {
            if let (Some(element), Some(key_row)) = (node.get(), keys.get()) {
                handle.set_value(Some(binding::open_terminal(&element, &path, &key_row)));
            }
        });
        on_cleanup(move || {
            if let Some(terminal) = handle.try_update_value(Option::take).flatten() {
                terminal.dispose();
            }
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = id;
    view! {
        <div class="key-row" role="toolbar" aria-label="Terminal keys" node_ref=keys></div>
        <div class="terminal" node_ref=node data-testid="terminal"></div>
    }
}
