#![recursion_limit = "256"]
//! The browser entry point: hydrates the server-rendered page. Everything else lives in `app`.

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    // Lazy routes: the code of the page opened is fetched before it hydrates.
    leptos::mount::hydrate_lazy(app::App);
}
