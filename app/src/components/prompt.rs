//! A waiting task's prompt: its question and a button per choice (a box for a question
//! that wants words), big enough for a thumb. A tap answers at once (`POST
//! /api/tasks/{id}/reply`, naming the prompt, so a stale tap answers nothing); the task
//! shows running again when its event arrives.

use leptos::{prelude::*, task::spawn_local};

use crate::{client, model::Prompt};

#[component]
pub fn PromptButtons(id: String, #[prop(into)] prompt: Signal<Option<Prompt>>) -> impl IntoView {
    let id = StoredValue::new(id);
    let sending = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let words = RwSignal::new(String::new());
    let answer = move |prompt_id: String, choice: Option<String>, text: Option<String>| {
        sending.set(true);
        spawn_local(async move {
            let sent = client::reply(&id.get_value(), &prompt_id, choice, text).await;
            sending.set(false);
            match sent {
                Ok(_) => {
                    error.set(None);
                    words.set(String::new());
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let choices = move |prompt: &Prompt| {
        prompt
            .choices
            .iter()
            .map(|choice| {
                let (prompt_id, choice_id) = (prompt.id.clone(), choice.id.clone());
                view! {
                    <button class="button choice" type="button" disabled=sending
                        on:click=move |_| answer(prompt_id.clone(), Some(choice_id.clone()), None)>
                        {choice.label.clone()}
                    </button>
                }
            })
            .collect_view()
    };
    let words_box = move |prompt: &Prompt| {
        let prompt_id = prompt.id.clone();
        view! {
            <form class="inline-form" on:submit=move |ev: leptos::ev::SubmitEvent| {
                ev.prevent_default();
                answer(prompt_id.clone(), None, Some(words.get_untracked()));
            }>
                <input aria-label="Answer" placeholder="Your answer" autocomplete="off" bind:value=words/>
                <button class="button primary choice" type="submit" disabled=sending>"Answer"</button>
            </form>
        }
    };
    move || {
        prompt.get().map(|prompt| {
            view! {
                <div class="prompt" role="group" aria-label="The task asks" data-testid="prompt">
                    <p class="question">{prompt.question.clone()}</p>
                    {if prompt.choices.is_empty() {
                        words_box(&prompt).into_any()
                    } else {
                        view! { <div class="choices">{choices(&prompt)}</div> }.into_any()
                    }}
                    {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
                </div>
            }
        })
    }
}
