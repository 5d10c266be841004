use clap::Parser;
use leptos::prelude::get_configuration;
use server::{Config, Node};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), server::StartError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,tower_http=warn".into()),
        )
        .init();
    let config = Config::parse();
    if std::env::args().any(|a| a == "--token" || a.starts_with("--token=")) {
        // A command line is readable by every local user (`/proc/<pid>/cmdline`).
        tracing::warn!(
            "the token was given as --token, which every local user can read: use TASKWIRE_TOKEN"
        );
    }
    let open_files = server::http::serve::raise_open_files_limit();
    tracing::debug!("open files limit: {open_files}");
    // cargo-leptos bakes the site's file names into the build; the address is ours.
    let mut leptos = get_configuration(None)?.leptos_options;
    leptos.site_addr = config.addr;

    let limits = server::Limits::new(config.heartbeat());
    let node = Node::start(config.clone(), leptos, config.addr, limits).await?;
    let addr = node.addr;
    println!("taskwire is listening on http://{addr}");
    println!(
        "tasks run on tmux socket {} (tmux -L {} ls)",
        node.state.tasks.runtime.socket(),
        node.state.tasks.runtime.socket()
    );
    println!(
        "sign in with http://{addr}/login?token={}",
        node.state.auth.token
    );

    let shutdown = node.state.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down; tasks keep running in tmux");
        shutdown.cancel();
    });
    node.stopped().await;
    Ok(())
}

async fn wait_for_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
