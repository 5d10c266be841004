//! `/new`: the form for a new task or terminal.

use leptos::{prelude::*, task::spawn_local};
use leptos_router::hooks::use_navigate;

use crate::{client, components::node_select, live::use_live, model::Task};

#[component]
pub fn NewTaskPage() -> impl IntoView {
    let live = use_live();
    let name = RwSignal::new(String::new());
    let command = RwSignal::new(String::new());
    let workdir = RwSignal::new(String::new());
    let prompt = RwSignal::new(String::new());
    // In a new git worktree of a repository: its path, and what to copy in.
    let isolated = RwSignal::new(false);
    let repo = RwSignal::new(String::new());
    let branch = RwSignal::new(String::new());
    let copy = RwSignal::new(String::new());
    // `""`: the node serving this page.
    let node = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let navigate = use_navigate();
    let open_task = move |result: Result<Task, client::ApiError>| match result {
        Ok(task) => navigate(&format!("/tasks/{}", task.id), Default::default()),
        Err(e) => {
            error.set(Some(e.message));
            busy.set(false);
        }
    };
    let start = {
        let open_task = open_task.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            busy.set(true);
            let open_task = open_task.clone();
            spawn_local(async move {
                let workspace = isolated
                    .get_untracked()
                    .then(|| crate::model::NewWorkspace {
                        repo: repo.get_untracked(),
                        base: None,
                        branch: Some(branch.get_untracked()).filter(|b| !b.trim().is_empty()),
                        copy: copy
                            .get_untracked()
                            .split([',', ' '])
                            .filter(|p| !p.is_empty())
                            .map(str::to_string)
                            .collect(),
                    });
                let workdir = if workspace.is_some() {
                    String::new()
                } else {
                    workdir.get_untracked()
                };
                let result = client::create_task(
                    &name.get_untracked(),
                    &command.get_untracked(),
                    &workdir,
                    &prompt.get_untracked(),
                    &node.get_untracked(),
                    workspace,
                )
                .await;
                open_task(result);
            });
        }
    };
    let terminal = move |_| {
        busy.set(true);
        let open_task = open_task.clone();
        spawn_local(async move {
            open_task(
                client::create_terminal(&workdir.get_untracked(), &node.get_untracked()).await,
            );
        });
    };
    view! {
        <section class="card">
            <h1>"New task"</h1>
            <form class="new-task" on:submit=start>
                <label for="command">"Command"</label>
                <input id="command" name="command" required placeholder="cargo test" autocomplete="off" bind:value=command/>
                <label for="name">"Name " <span class="hint">"(optional)"</span></label>
                <input id="name" name="name" maxlength="100" placeholder="tests" bind:value=name/>
                <label class="pref">
                    <input type="checkbox" bind:checked=isolated/>
                    "In a new git worktree " <span class="hint">"(its own branch: agents never overwrite each other)"</span>
                </label>
                <Show when=move || !isolated.get()>
                    <label for="workdir">"Working directory " <span class="hint">"(optional; the server's by default)"</span></label>
                    <input id="workdir" name="workdir" placeholder="/home/me/project" bind:value=workdir/>
                </Show>
                <Show when=move || isolated.get()>
                    <label for="repo">"Repository"</label>
                    <input id="repo" name="repo" required placeholder="/home/me/project" bind:value=repo/>
                    <label for="branch">"Branch " <span class="hint">"(optional; taskwire/<id>-<name> by default)"</span></label>
                    <input id="branch" name="branch" autocomplete="off" bind:value=branch/>
                    <label for="copy">"Copy in " <span class="hint">"(optional; untracked files such as .env, comma-separated)"</span></label>
                    <input id="copy" name="copy" autocomplete="off" placeholder=".env" bind:value=copy/>
                </Show>
                <label for="prompt">"Prompt " <span class="hint">"(optional; typed in once the program is ready)"</span></label>
                <textarea id="prompt" name="prompt" rows="3" bind:value=prompt></textarea>
                <label for="node" hidden=move || !live.is_fleet()>"Node"</label>
                {node_select(node, "This node", true)}
                {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
                <div class="actions">
                    <button class="button primary" type="submit" disabled=move || busy.get()>"Start"</button>
                    <button class="button" type="button" on:click=terminal disabled=move || busy.get()>"Open a terminal"</button>
                </div>
            </form>
        </section>
    }
    .into_any()
}
