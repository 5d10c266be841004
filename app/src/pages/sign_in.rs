//! The sign-in form.

use leptos::prelude::*;

/// Shown when the server says 401. A plain GET form, so it works before hydration too.
#[component]
pub fn SignIn() -> impl IntoView {
    view! {
        <section class="card sign-in">
            <h1>"Sign in"</h1>
            <p>"Paste the token that taskwire printed when it started (it is also in the data directory, in " <code>"token"</code> ")."</p>
            <form method="post" action="/login">
                <label for="token">"Token"</label>
                <input id="token" name="token" type="password" autocomplete="current-password" required/>
                <button class="button primary" type="submit">"Sign in"</button>
            </form>
        </section>
    }
}
