//! The router serves health checks and the server-rendered dashboard.
mod common;

use common::Fixture;
use reqwest::StatusCode;

#[tokio::test]
async fn healthz_answers_without_credentials() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let res = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn dashboard_is_rendered_on_the_server_with_its_hydration_script() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let res = reqwest::get(server.url("/")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = res.text().await.unwrap();
    assert!(html.contains("<title>taskwire"), "no title in {html}");
    assert!(html.contains(r#"class="brand""#), "no header in {html}");
    assert!(
        html.contains("/pkg/taskwire.js"),
        "no hydration script in {html}"
    );
}

#[tokio::test]
async fn api_and_metrics_refuse_missing_or_wrong_credentials() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    for path in ["/api/tasks", "/metrics", "/api/events"] {
        let res = reqwest::get(server.url(path)).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{path}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert!(body["error"].is_string());
        let res = server
            .client
            .get(server.url(path))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::UNAUTHORIZED,
            "{path} with a wrong token"
        );
    }
}

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_that_authenticates() {
    let fixture = Fixture::new();
    let server = fixture.serve().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let wrong = client
        .get(server.url("/login?token=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get("set-cookie").is_none());

    let res = client
        .get(server.url(&format!("/login?token={}", common::TOKEN)))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection());
    assert_eq!(res.headers()["location"], "/");
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("taskwire_session="));
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{attr} missing from {cookie}");
    }
    // Over plain HTTP (127.0.0.1) a Secure cookie would not be kept; through a TLS proxy
    // it must be Secure, so no plain-HTTP request ever carries it.
    assert!(!cookie.contains("Secure"), "{cookie}");
    let proxied = client
        .get(server.url(&format!("/login?token={}", common::TOKEN)))
        .header("X-Forwarded-Proto", "https")
        .send()
        .await
        .unwrap();
    let secure = proxied.headers()["set-cookie"].to_str().unwrap();
    assert!(secure.ends_with("; Secure"), "{secure}");
    let session = cookie.split(';').next().unwrap().to_string();

    let list = client
        .get(server.url("/api/tasks"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), StatusCode::OK);

    // A change made with the cookie alone needs the CSRF header.
    let body = serde_json::json!({"command": "true"});
    let bare = client
        .post(server.url("/api/tasks"))
        .header("cookie", &session)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), StatusCode::FORBIDDEN);
    let tasks: serde_json::Value = server
        .call(reqwest::Method::GET, "/api/tasks", None)
        .await
        .1;
    assert_eq!(
        tasks["tasks"].as_array().unwrap().len(),
        0,
        "the refused request created nothing"
    );
    let guarded = client
        .post(server.url("/api/tasks"))
        .header("cookie", &session)
        .header("X-Taskwire", "1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(guarded.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn token_is_generated_once_and_stored_private() {
    use std::os::unix::fs::PermissionsExt;
    let fixture = Fixture::new();
    std::fs::create_dir_all(fixture.data_dir()).unwrap();
    let first = server::http::auth::load_or_create_token(None, &fixture.data_dir()).unwrap();
    let again = server::http::auth::load_or_create_token(None, &fixture.data_dir()).unwrap();
    assert_eq!(first, again);
    assert!(first.len() >= 32);
    let mode = std::fs::metadata(fixture.data_dir().join("token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}
