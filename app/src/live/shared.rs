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

    /// Whether the person wants notices of this kind (`waiting`, `failed`, `completed`).
    #[wasm_bindgen(js_name = notificationPref)]
    pub fn notification_pref(kind: &str) -> bool;

    /// The favicon with the waiting count.
    #[wasm_bindgen(js_name = setFavicon)]
    pub fn set_favicon(waiting: usize);

    #[wasm_bindgen(js_name = setNotificationPref)]
    pub fn set_notification_pref(kind: &str, on: bool);

    /// `granted`, `denied`, `default` or `unsupported`.
    #[wasm_bindgen(js_name = notificationPermission)]
    pub fn notification_permission() -> String;

    /// Asks the person (call it from a click only); resolves with the answer.
    #[wasm_bindgen(js_name = askNotificationPermission)]
    pub fn ask_notification_permission() -> js_sys::Promise;
}
