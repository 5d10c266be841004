//! Auth: a bearer token, or the session cookie that signing in sets (a session id of its
//! own, see `sessions`, never the token). EventSource cannot
//! send headers, so the browser relies on the cookie; a change made with the cookie alone
//! must carry `X-Taskwire: 1`, which a cross-site page cannot send without CORS.

use std::{io::Write, path::Path, sync::Arc};

use axum::{
    extract::{Form, Query, Request, State},
    http::{header, HeaderMap, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;

use crate::tasks::new_secret;

use super::{
    error::error_response,
    sessions::{self, Sessions},
};

/// What checking credentials needs: the master token and the browser sessions.
#[derive(Clone)]
pub struct Auth {
    pub token: Arc<str>,
    pub sessions: Arc<Sessions>,
}

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
    let token = new_secret();
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

/// How many `taskwire_session` cookies of one request are looked at: enough for a few
/// planted beside ours, and a request with thousands costs no more than one with a few.
const MAX_SESSION_COOKIES: usize = 4;

/// The values of the first `MAX_SESSION_COOKIES` cookies named `taskwire_session`: a page
/// on the same host may have planted one of its own (with a longer path, so it comes
/// first), and ours must still count.
fn session_cookies(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .take(MAX_SESSION_COOKIES)
}

/// The token of `Authorization: Bearer …`, if one is given.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

impl Auth {
    pub fn is_master_token(&self, token: &str) -> bool {
        constant_time_eq(token, &self.token)
    }
}

fn credential(headers: &HeaderMap, auth: &Auth) -> Option<Credential> {
    if bearer(headers).is_some_and(|b| auth.is_master_token(b)) {
        return Some(Credential::Bearer);
    }
    if session_cookies(headers).any(|id| auth.sessions.is_valid(id)) {
        return Some(Credential::Cookie);
    }
    None
}

/// Middleware for `/api/*` and `/metrics`.
pub async fn require_auth(State(auth): State<Auth>, request: Request, next: Next) -> Response {
    match check(request.headers(), request.method(), &auth) {
        Ok(()) => next.run(request).await,
        Err(refused) => refused,
    }
}

/// The token or a session, and for a change made with the cookie alone the CSRF header.
// The refusal is the response itself: built once, on a path that ends the request.
#[allow(clippy::result_large_err)]
pub fn check(headers: &HeaderMap, method: &Method, auth: &Auth) -> Result<(), Response> {
    match credential(headers, auth) {
        None => Err(error_response(
            StatusCode::UNAUTHORIZED,
            "missing or wrong credentials",
        )),
        Some(Credential::Cookie)
            if !matches!(*method, Method::GET | Method::HEAD)
                && headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) != Some("1") =>
        {
            Err(error_response(
                StatusCode::FORBIDDEN,
                "a change authenticated by cookie must carry the header X-Taskwire: 1",
            ))
        }
        Some(_) => Ok(()),
    }
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: Option<String>,
}

/// `GET /login?token=…`, the link printed at start.
pub async fn login_link(
    State(auth): State<Auth>,
    headers: HeaderMap,
    Query(form): Query<LoginForm>,
) -> Response {
    sign_in(auth, form.token, over_https(&headers)).await
}

/// `POST /login` with `token=…`: the sign-in form (a POST, so the token stays out of the
/// browser's history).
pub async fn login_form(
    State(auth): State<Auth>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    sign_in(auth, form.token, over_https(&headers)).await
}

/// Whether the browser reached the dashboard over HTTPS: through a TLS proxy, which says so
/// (`X-Forwarded-Proto`, as deploy/nginx/taskwire.conf sets it). A client that claims it
/// falsely only gets a cookie its own plain-HTTP requests will not carry.
fn over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// Checks the token, starts a session and goes to the dashboard. A session begun over
/// HTTPS gets a `Secure` cookie, which the browser never sends over plain HTTP.
async fn sign_in(auth: Auth, token: Option<String>, secure: bool) -> Response {
    if !token.is_some_and(|t| auth.is_master_token(t.trim())) {
        return error_response(StatusCode::UNAUTHORIZED, "wrong or missing token");
    }
    // The session is written to SQLite: off the async threads.
    let created = tokio::task::spawn_blocking(move || auth.sessions.create()).await;
    match created
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
    {
        Ok(id) => {
            let cookie = format!(
                "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
                sessions::LIFETIME.as_secs(),
                if secure { "; Secure" } else { "" }
            );
            ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
        }
        Err(e) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("could not start a session: {e}"),
        ),
    }
}

/// `POST /logout`: revokes the sessions the browser holds and drops the cookie. A form of
/// another origin (another port of the same host is the same site, so SameSite=Strict lets
/// its cookie through) is refused.
pub async fn logout(State(auth): State<Auth>, headers: HeaderMap) -> Response {
    if !super::guard::same_origin(&headers) {
        return error_response(
            StatusCode::FORBIDDEN,
            "signing out is only for the dashboard's own pages",
        );
    }
    let ids: Vec<String> = session_cookies(&headers).map(str::to_string).collect();
    let _ = tokio::task::spawn_blocking(move || {
        for id in ids {
            let _ = auth.sessions.revoke(&id);
        }
    })
    .await;
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
