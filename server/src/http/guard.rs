//! What every response carries and every request must show, before any route: pages are
//! not to be framed by another site (clickjacking), and a request must name a host this
//! server answers to (DNS rebinding: a foreign page whose name resolves to 127.0.0.1 is
//! still a foreign host).

use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    middleware::Next,
    response::Response,
};

use std::sync::Arc;

use super::error::error_response;

/// The host names requests may name; `None` for any (see `Config::host_names`).
#[derive(Clone)]
pub struct Hosts(pub Option<Arc<[String]>>);

pub async fn host_and_framing(
    State(Hosts(names)): State<Hosts>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(host) = request.headers().get(header::HOST) {
        let host = host.to_str().unwrap_or_default().to_lowercase();
        if !allowed(&host, names.as_deref()) {
            return error_response(
                StatusCode::MISDIRECTED_REQUEST,
                format!("this server does not answer to {host:?} (see TASKWIRE_ALLOWED_HOSTS)"),
            );
        }
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// Whether `host` (as the Host header gives it, with or without a port) is one of `names`.
fn allowed(host: &str, names: Option<&[String]>) -> bool {
    let Some(names) = names else { return true };
    let name = match host.rsplit_once(':') {
        // `[::1]:3000`, `127.0.0.1:3000`, `name:3000`; a bare IPv6 literal keeps its colons.
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.ends_with(':') => {
            name
        }
        _ => host,
    };
    names.iter().any(|n| n == name)
}

/// Whether a request that names an origin names ours (a client that is not a browser names
/// none). Browsers send cookies with a WebSocket handshake and a form's `POST` from any
/// site: those two check it, the rest of the API has its CSRF header.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let (Ok(origin), Some(Ok(host))) = (
        origin.to_str(),
        headers.get(header::HOST).map(|h| h.to_str()),
    ) else {
        return false;
    };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        == Some(host)
}
