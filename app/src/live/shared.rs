//! The binding of `js/shared.js`: one event connection per browser, shared by its tabs
//! (one tab leads and relays), and the desktop notifications it shows.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/js/shared.js")]
extern "C" {
    #[derive(Clone)]
    pub type SharedEvents;

    #[wasm_bindgen(constructor)]
    pub fn new(
        url: &Closure<dyn FnMut() -> String>,
        on_message: &Closure<dyn FnMut(String, String, String)>,
        on_error: &Closure<dyn FnMut(bool)>,
    ) -> SharedEvents;

    #[wasm_bindgen(method)]
    pub fn connect(this: &SharedEvents);

    #[wasm_bindgen(method, js_name = followTails)]
    pub fn follow_tails(this: &SharedEvents, want: bool, on_tail: &Closure<dyn FnMut(String)>);

    #[wasm_bindgen(method)]
    pub fn close(this: &SharedEvents);

    /// Opens or closes the bell's panel under `button`.
    #[wasm_bindgen(js_name = toggleBell)]
    pub fn toggle_bell(button: &web_sys::HtmlElement);

    /// The favicon with the waiting count.
    #[wasm_bindgen(js_name = setFavicon)]
    pub fn set_favicon(waiting: usize);
}
