//! Auth: a bearer token, or the session cookie that `/login?token=` sets. EventSource cannot
//! send headers, so the browser relies on the cookie; a change made with the cookie alone
//! must carry `X-Taskwire: 1`, which a cross-site page cannot send without CORS.

use std::{io::Write, path::Path};

use axum::{
    extract::{Query, Request, State},
    http::{header, HeaderMap, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use rand::Rng;
use serde::Deserialize;

use crate::AppState;

use super::error::error_response;

pub const COOKIE: &str = "taskwire_session";
pub const CSRF_HEADER: &str = "x-taskwire";

/// The configured token, else the one stored in the data dir, else a new one stored 0600.
pub fn load_or_create_token(configured: Option<&str>, data_dir: &Path) -> std::io::Result<String> {
    if let Some(token) = configured.filter(|t| !t.is_empty()) {
        return Ok(token.to_string());
    }
    let path = data_dir.join("token");
    if let Ok(stored) = std::fs::read_to_string(&path) {
        if !stored.trim().is_empty() {
            return Ok(stored.trim().to_string());
        }
    }
    let mut rng = rand::rng();
    let token: String = (0..32)
        .map(|_| format!("{:x}", rng.random_range(0..16u8)))
        .collect();
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
    file.open(&path)?.write_all(token.as_bytes())?;
    Ok(token)
}

enum Credential {
    Bearer,
    Cookie,
}

fn credential(headers: &HeaderMap, token: &str) -> Option<Credential> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer.is_some_and(|b| constant_time_eq(b.trim(), token)) {
        return Some(Credential::Bearer);
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value);
    if cookie.is_some_and(|c| constant_time_eq(c, token)) {
        return Some(Credential::Cookie);
    }
    None
}

/// Middleware for `/api/*` and `/metrics`.
pub async fn require_auth(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match credential(request.headers(), &state.token) {
        None => error_response(StatusCode::UNAUTHORIZED, "missing or wrong credentials"),
        Some(Credential::Cookie)
            if !matches!(*request.method(), Method::GET | Method::HEAD)
                && request
                    .headers()
                    .get(CSRF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    != Some("1") =>
        {
            error_response(
                StatusCode::FORBIDDEN,
                "a change authenticated by cookie must carry the header X-Taskwire: 1",
            )
        }
        Some(_) => next.run(request).await,
    }
}

#[derive(Deserialize)]
pub struct LoginQuery {
    token: Option<String>,
}

/// `GET /login?token=…`: sets the session cookie and goes to the dashboard.
pub async fn login(State(state): State<AppState>, Query(query): Query<LoginQuery>) -> Response {
    match query.token {
        Some(token) if constant_time_eq(token.trim(), &state.token) => {
            let cookie = format!(
                "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age=31536000",
                state.token
            );
            ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
        }
        _ => error_response(StatusCode::UNAUTHORIZED, "wrong or missing token"),
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
