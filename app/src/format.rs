//! Small formatting helpers for times and statuses.

use crate::model::{Task, TaskStatus, WaitingReason};

/// A waiting task is `stale` after this long without output.
pub const STALE_AFTER_MS: f64 = 20.0 * 60.0 * 1000.0;

/// "42s", "5m", "3h", "2d".
pub fn duration_short(ms: f64) -> String {
    let secs = (ms / 1000.0).max(0.0) as u64;
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86_399 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// Milliseconds since 1970 of an RFC 3339 timestamp (the server's format).
pub fn parse_ms(text: &str) -> Option<f64> {
    #[cfg(feature = "hydrate")]
    {
        let ms = js_sys::Date::parse(text);
        (!ms.is_nan()).then_some(ms)
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = text;
        None
    }
}

/// The label of a status pill: `failed 3` carries the exit code.
pub fn status_label(task: &Task) -> String {
    match (task.status, task.exit_code) {
        (TaskStatus::Failed, Some(code)) => format!("failed {code}"),
        (status, _) => status.as_str().to_string(),
    }
}

/// Why a waiting task counts as waiting, in words; `None` for any other task.
pub fn waiting_why(task: &Task, now_ms: f64) -> Option<String> {
    if task.status != TaskStatus::WaitingForInput {
        return None;
    }
    Some(match (task.waiting_reason?, &task.message) {
        (WaitingReason::Terminal, _) => "reading its terminal".into(),
        (WaitingReason::Prompt, _) => "asks on its screen".into(),
        (WaitingReason::Reported, Some(message)) => format!("said so: {message}"),
        (WaitingReason::Reported, None) => "said so".into(),
        (WaitingReason::Quiet, _) => {
            let since = parse_ms(&task.last_activity_at).unwrap_or(now_ms);
            format!("quiet for {}", duration_short(now_ms - since))
        }
    })
}
