//! Passes over every live task, run on a blocking thread at a steady pace (the waiting
//! passes, the screen watcher): they read `/proc` and files, which block.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use super::{TaskResult, Tasks};

/// Runs `pass` every `every` until `shutdown`, with the state it keeps from one pass to
/// the next (started afresh after a pass that panicked). Passes never overlap, and a late
/// one delays the next rather than letting them bunch up.
pub async fn every<S: Default + Send + 'static>(
    every: Duration,
    name: &'static str,
    tasks: Arc<Tasks>,
    shutdown: CancellationToken,
    pass: fn(&Tasks, &mut S) -> TaskResult<usize>,
) {
    let mut state = S::default();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let pass_tasks = tasks.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let result = pass(&pass_tasks, &mut state);
            (state, result)
        })
        .await;
        match outcome {
            Ok((kept, result)) => {
                state = kept;
                if let Err(e) = result {
                    tracing::warn!("{name} pass failed: {e:?}");
                }
            }
            Err(e) => {
                tracing::error!("{name} pass panicked: {e}");
                state = S::default();
            }
        }
    }
}
