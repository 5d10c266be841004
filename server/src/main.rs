use clap::Parser;
use leptos::prelude::get_configuration;
use server::{app, AppState, Config};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), server::StartError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,tower_http=warn".into()),
        )
        .init();
    let config = Config::parse();
    let open_files = server::http::serve::raise_open_files_limit();
    tracing::debug!("open files limit: {open_files}");
    // cargo-leptos bakes the site's file names into the build; the address is ours.
    let mut leptos = get_configuration(None)?.leptos_options;
    leptos.site_addr = config.addr;

    let state = AppState::open(config.clone(), leptos)?.join_fleet().await?;
    let reconciler = state.spawn_reconciler();
    let listener = server::http::serve::listen(config.addr)?;
    let addr = listener.local_addr()?;
    state.listening_at(addr);
    println!("taskwire is listening on http://{addr}");
    println!("sign in with http://{addr}/login?token={}", state.token);

    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down; tasks keep running in tmux");
        shutdown.cancel();
    });
    let stopping = state.shutdown.clone();
    let limits = server::Limits::new(config.heartbeat());
    server::serve_with(listener, app(state), stopping, limits).await;
    let _ = reconciler.await;
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
