//! A task's terminal: xterm.js bound through `js/terminal.js`, and a row of the keys phone
//! keyboards lack. The terminal itself is drawn in the browser only; the server renders
//! the empty frame.

use leptos::prelude::*;

/// The key row: label, the name `terminal.js` knows it by, and what a screen reader says.
const KEYS: [(&str, &str, &str); 9] = [
    ("Esc", "esc", "Escape"),
    ("Tab", "tab", "Tab"),
    ("⇤", "shift-tab", "Shift-Tab"),
    ("↑", "up", "Up"),
    ("↓", "down", "Down"),
    ("←", "left", "Left"),
    ("→", "right", "Right"),
    ("⏎", "enter", "Enter"),
    ("^C", "ctrl-c", "Ctrl-C"),
];

#[cfg(feature = "hydrate")]
mod binding {
    use wasm_bindgen::prelude::*;

    #[wasm_bindgen(module = "/js/terminal.js")]
    extern "C" {
        pub type TerminalHandle;

        #[wasm_bindgen(js_name = openTerminal)]
        pub fn open_terminal(element: &web_sys::HtmlElement, path: &str) -> TerminalHandle;

        #[wasm_bindgen(method, js_name = sendKey)]
        pub fn send_key(this: &TerminalHandle, name: &str);

        #[wasm_bindgen(method)]
        pub fn dispose(this: &TerminalHandle);
    }
}

#[component]
pub fn Terminal(id: String) -> impl IntoView {
    let node = NodeRef::<leptos::html::Div>::new();
    #[cfg(feature = "hydrate")]
    let send_key = {
        let handle = StoredValue::new_local(None::<binding::TerminalHandle>);
        let path = format!("/api/tasks/{id}/terminal");
        Effect::new(move |_| {
            if let Some(element) = node.get() {
                handle.set_value(Some(binding::open_terminal(&element, &path)));
            }
        });
        on_cleanup(move || {
            if let Some(terminal) = handle.try_update_value(Option::take).flatten() {
                terminal.dispose();
            }
        });
        move |name: &str| handle.with_value(|h| h.as_ref().map(|h| h.send_key(name)))
    };
    #[cfg(not(feature = "hydrate"))]
    let send_key = {
        let _ = id;
        |_: &str| {}
    };
    let keys = KEYS.map(|(label, name, spoken)| {
        view! {
            // Pressing a key must not take the focus (and a phone's keyboard) away.
            <button type="button" class="key" aria-label=spoken
                on:pointerdown=|e| e.prevent_default()
                on:click=move |_| { send_key(name); }>
                {label}
            </button>
        }
    });
    view! {
        <div class="key-row" role="toolbar" aria-label="Terminal keys">{keys}</div>
        <div class="terminal" node_ref=node data-testid="terminal"></div>
    }
}
