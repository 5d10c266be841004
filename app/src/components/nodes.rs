//! The fleet's nodes: a choice of one, and a strip of which are online. Both are hidden
//! unless more than one node is known (hidden rather than left out, which costs less wasm).
//!
//! Their items are written as HTML: a list of elements drawn by the view macro costs
//! kilobytes of wasm, and these are a few plain lines drawn anew when a node comes or goes.

use leptos::prelude::*;

use crate::live::Live;

/// Node names are `[A-Za-z0-9_-]`, but the page does not count on it.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('"', "&quot;")
}

/// A `<select>` of the known nodes after a first choice worth `""` (`first`: "All nodes",
/// "This node"). An offline node says so, and with `to_start` cannot be chosen (it could
/// not start anything).
pub fn node_select(value: RwSignal<String>, first: &'static str, to_start: bool) -> impl IntoView {
    let live = expect_context::<Live>();
    let options = move || {
        let chosen = value.get_untracked();
        let mut html = format!(r#"<option value="">{first}</option>"#);
        for (name, online) in live.nodes.get() {
            // The options are written anew: `selected` keeps the choice.
            let selected = if name == chosen { " selected" } else { "" };
            let name = escape(&name);
            let (disabled, offline) = match online {
                Some(false) if to_start => (" disabled", " (offline)"),
                Some(false) => ("", " (offline)"),
                _ => ("", ""),
            };
            html +=
                &format!(r#"<option value="{name}"{selected}{disabled}>{name}{offline}</option>"#);
        }
        html
    };
    view! {
        <select id="node" class="node-select" aria-label="Node" bind:value=value
            hidden=move || !live.is_fleet() inner_html=options></select>
    }
}

/// Which nodes are online: "● node-a ○ node-b offline". The dot and the word come from the
/// stylesheet, by `data-online`.
pub fn node_strip() -> impl IntoView {
    let live = expect_context::<Live>();
    let nodes = move || {
        let mut html = String::new();
        for (name, online) in live.nodes.get() {
            let online = online.map_or("", |o| if o { "true" } else { "false" });
            html += &format!(r#"<li data-online="{online}">{}</li>"#, escape(&name));
        }
        html
    };
    view! { <ul class="nodes" aria-label="Nodes" hidden=move || !live.is_fleet() inner_html=nodes></ul> }
}
