#![recursion_limit = "256"]
//! The taskwire browser app, compiled for the server (SSR) and the browser (hydrate).

pub mod client;
mod components;
pub mod fnv;
pub mod format;
pub mod live;
pub mod model;
mod pages;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{Route, Router, Routes, A},
    lazy_route, path, Lazy, LazyRoute,
};

use crate::{
    components::{Bell, ConnectionBadge},
    live::provide_live,
};

const REGISTER_SERVICE_WORKER: &str = "if ('serviceWorker' in navigator) \
    navigator.serviceWorker.register('/sw.js').catch((e) => console.warn('no service worker:', e));";

/// The HTML document the server renders around the app.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <link rel="icon" href="data:,"/>
                // Installable (a home-screen app on phones: iOS pushes only to those).
                <link rel="manifest" href="/manifest.webmanifest"/>
                <meta name="theme-color" content="#2f6feb"/>
                <link rel="apple-touch-icon" href="/icons/apple-touch-icon.png"/>
                // Every page registers the service worker (offline page, pushes), before
                // and whether or not the app hydrates.
                <script inner_html=REGISTER_SERVICE_WORKER></script>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    let live = provide_live();
    // Only the browser runs effects: the marker says hydration has taken over.
    Effect::new(move |_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });
    // The favicon shows the waiting count too, for a tab among many.
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| live::shared::set_favicon(live.waiting_count()));
    let title = move || match live.waiting_count() {
        0 => "taskwire".to_string(),
        n => format!("({n}) taskwire"),
    };
    // The server renders the title as plain text: leptos_axum reads it once the page has
    // been rendered, and with lazy routes that can be after the page's reactive owner has
    // gone (it panicked then, in a CI run). Nothing waits in a page rendered by the server,
    // whose store is empty until the browser fetches the tasks.
    #[cfg(not(feature = "hydrate"))]
    let title = {
        let _ = title;
        "taskwire"
    };
    view! {
        <Stylesheet id="leptos" href="/pkg/taskwire.css"/>
        <Title text=title/>
        <Router>
            <Header/>
            <main>
                <Show when=move || !live.signed_out.get() fallback=pages::SignIn>
                    <Routes fallback=|| view! { <p class="empty">"No such page."</p> }>
                        <Route path=path!("/") view=pages::TaskListPage/>
                        <Route path=path!("/new") view={Lazy::<NewTaskRoute>::new()}/>
                        <Route path=path!("/tasks/:id") view={Lazy::<TaskRoute>::new()}/>
                    </Routes>
                </Show>
            </main>
        </Router>
    }
}

// The list is what most visits open, and it loads first; the task page (its terminal,
// its prompt and its forms) and the new-task form are loaded when they are opened
// (`cargo leptos build --split` puts each in a file of its own).
struct TaskRoute;

#[lazy_route]
impl LazyRoute for TaskRoute {
    fn data() -> Self {
        TaskRoute
    }

    fn view(this: Self) -> AnyView {
        let _ = this;
        view! { <pages::TaskPage/> }.into_any()
    }
}

struct NewTaskRoute;

#[lazy_route]
impl LazyRoute for NewTaskRoute {
    fn data() -> Self {
        NewTaskRoute
    }

    fn view(this: Self) -> AnyView {
        let _ = this;
        view! { <pages::NewTaskPage/> }.into_any()
    }
}

#[component]
fn Header() -> impl IntoView {
    view! {
        <header class="top">
            <A href="/" attr:class="brand">
                <span class="logo" aria-hidden="true">"▍"</span>
                "taskwire"
            </A>
            <nav class="top-actions">
                <A href="/new" attr:class="button primary">"New task"</A>
                <Bell/>
                // A form, so signing out works before hydration too.
                <form class="sign-out" method="post" action="/logout">
                    <button class="button" type="submit">"Sign out"</button>
                </form>
            </nav>
            <ConnectionBadge/>
        </header>
    }
}
