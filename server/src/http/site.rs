//! The site's files (the app's wasm, JS and CSS, xterm.js, icons), carried by the release
//! binary itself: a node is one file, deployed by copying it and run from any directory.
//! `cargo leptos build --release` builds the site, precompresses it, and only then the
//! server, which embeds it. (A debug build reads the same files from `target/site`.)

use axum::{
    body::Body,
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use leptos::prelude::LeptosOptions;
use rust_embed::Embed;

#[derive(Embed)]
#[folder = "../target/site"]
// Tests and benches build the server without building the site first.
#[allow_missing = true]
struct Site;

/// Every path no route took: a file of the site, else the app's own page (its 404).
pub async fn file_or_page(State(options): State<LeptosOptions>, request: Request) -> Response {
    let path = request.uri().path().trim_start_matches('/');
    match embedded(path, request.headers()) {
        Some(response) => response,
        None => leptos_axum::file_and_error_handler::<LeptosOptions, _>(app::shell)(
            request.uri().clone(),
            State(options),
            request,
        )
        .await
        .into_response(),
    }
}

/// The file at `path`, precompressed as the browser accepts (`.br`, `.gz`) when the build
/// made such a copy.
fn embedded(path: &str, headers: &HeaderMap) -> Option<Response> {
    if path.is_empty() || path.ends_with(".br") || path.ends_with(".gz") {
        return None;
    }
    let file = Site::get(path)?;
    let accepts = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let precompressed = [("br", ".br"), ("gzip", ".gz")]
        .into_iter()
        .filter(|(encoding, _)| accepts.split(',').any(|a| a.trim().starts_with(encoding)))
        .find_map(|(encoding, suffix)| Some((encoding, Site::get(&format!("{path}{suffix}"))?)));
    let mime = file.metadata.mimetype().to_string();
    let mut response = match precompressed {
        Some((encoding, compressed)) => {
            let mut response = Response::new(Body::from(compressed.data.into_owned()));
            response
                .headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
            response
        }
        None => Response::new(Body::from(file.data.into_owned())),
    };
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    if let Ok(mime) = HeaderValue::from_str(&mime) {
        headers.insert(header::CONTENT_TYPE, mime);
    }
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    Some(response)
}

/// `/sw.js`, the service worker, with the version of the site it came with: a browser
/// installs a service worker anew only when its bytes change, so a new build's worker
/// (and the offline page it keeps) replaces the old one on the next visit.
pub async fn service_worker() -> Response {
    let Some(file) = Site::get("sw.js") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let script = format!(
        "const VERSION = '{}';\n{}",
        site_version(),
        String::from_utf8_lossy(&file.data)
    );
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        script,
    )
        .into_response()
}

/// A short digest of every file of the site (rust-embed hashes each as it embeds it).
fn site_version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        // FNV-1a over the files' SHA-256 digests, in name order.
        let mut names: Vec<_> = Site::iter().collect();
        names.sort();
        let mut hash = app::fnv::Fnv::default();
        for file in names.iter().filter_map(|name| Site::get(name)) {
            hash.write(&file.metadata.sha256_hash());
        }
        format!("{:016x}", hash.finish())
    })
}
