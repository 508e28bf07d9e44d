//! End-to-end tests of the demo page (`/`, `/web/...`: content types, CSP, ETags), the admin
//! dashboard (`/admin` and its vendored chart library), the
//! development login (`POST /v1/dev/login`, `HERALD_DEV_LOGIN`) and the token offered as a
//! WebSocket subprotocol, as browsers send it.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_on, TestApp, WsClient};
use herald::testkit::TestDatabase;

/// Every asset the page loads, with the content type it must be served as.
const ASSETS: &[(&str, &str)] = &[
    ("/web/app.js", "text/javascript; charset=utf-8"),
    ("/web/chat.js", "text/javascript; charset=utf-8"),
    ("/web/view.js", "text/javascript; charset=utf-8"),
    ("/web/style.css", "text/css; charset=utf-8"),
    ("/web/icon.svg", "image/svg+xml"),
    ("/web/herald-client.js", "text/javascript; charset=utf-8"),
    ("/web/lib/backoff.js", "text/javascript; charset=utf-8"),
    ("/web/lib/delivered.js", "text/javascript; charset=utf-8"),
    ("/web/lib/emitter.js", "text/javascript; charset=utf-8"),
    ("/web/lib/errors.js", "text/javascript; charset=utf-8"),
    ("/web/lib/heartbeat.js", "text/javascript; charset=utf-8"),
    ("/web/lib/outbox.js", "text/javascript; charset=utf-8"),
    ("/web/lib/positions.js", "text/javascript; charset=utf-8"),
    ("/web/lib/token.js", "text/javascript; charset=utf-8"),
    ("/web/admin.js", "text/javascript; charset=utf-8"),
    ("/web/admin-charts.js", "text/javascript; charset=utf-8"),
    ("/web/admin-lists.js", "text/javascript; charset=utf-8"),
    ("/web/admin.css", "text/css; charset=utf-8"),
    (
        "/web/vendor/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
    ),
    ("/web/vendor/uPlot.min.css", "text/css; charset=utf-8"),
    ("/web/vendor/uPlot.LICENSE", "text/plain; charset=utf-8"),
];

/// GET `path` with extra headers: status, headers, body.
async fn get_raw(
    app: &TestApp,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, awc::http::header::HeaderMap, String) {
    let mut req = awc::Client::default().get(format!("{}{}", app.address, path));
    for h in headers {
        req = req.insert_header(*h);
    }
    let mut resp = req.send().await.expect("http request");
    let body = resp.body().limit(1024 * 1024).await.expect("body");
    (
        resp.status().as_u16(),
        resp.headers().clone(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn header<'a>(headers: &'a awc::http::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
}

/// POST /v1/dev/login for `user`, with an optional `Origin`.
async fn dev_login(app: &TestApp, user: &str, origin: Option<&str>) -> (u16, Value) {
    let mut req = awc::Client::default().post(format!("{}/v1/dev/login", app.address));
    if let Some(o) = origin {
        req = req.insert_header(("Origin", o));
    }
    let mut resp = req.send_json(&json!({ "user": user })).await.expect("post");
    let body = resp.body().await.expect("body");
    (
        resp.status().as_u16(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

#[actix_web::test]
async fn the_page_and_every_asset_are_served_with_their_type_and_a_strict_csp() {
    // Arrange
    let (app, _db) = spawn_app().await;
    // Act
    let (status, headers, body) = get_raw(&app, "/", &[]).await;
    // Assert
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
    let csp = header(&headers, "content-security-policy");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    assert!(
        body.contains("data-dev-login=\"false\""),
        "dev login is off"
    );
    assert!(!body.contains("<script>"), "no inline script");
    for linked in ["/web/app.js", "/web/style.css", "/web/icon.svg"] {
        assert!(body.contains(linked), "the page links {linked}");
    }
    for (path, content_type) in ASSETS {
        let (status, headers, body) = get_raw(&app, path, &[]).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(header(&headers, "content-type"), *content_type, "{path}");
        assert!(header(&headers, "content-security-policy").contains("script-src 'self'"));
        assert_eq!(header(&headers, "cache-control"), "no-cache", "{path}");
        assert!(!body.is_empty(), "{path}");
        // A cache that holds the asset revalidates it for free.
        let etag = header(&headers, "etag").to_owned();
        let (status, _, body) = get_raw(&app, path, &[("If-None-Match", &etag)]).await;
        assert_eq!((status, body.as_str()), (304, ""), "{path}");
    }
    assert_eq!(get_raw(&app, "/web/nothing.js", &[]).await.0, 404);
    assert_eq!(get_raw(&app, "/web/../Cargo.toml", &[]).await.0, 404);
}

#[actix_web::test]
async fn the_admin_dashboard_is_served_with_a_strict_csp_an_etag_and_its_vendored_charts() {
    // Arrange
    let (app, _db) = spawn_app().await;
    // Act
    let (status, headers, body) = get_raw(&app, "/admin", &[]).await;
    // Assert: the page, under the same headers as `/`, and needing no token to load (its
    // data comes from the admin routes, with the token the page is given).
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
    let csp = header(&headers, "content-security-policy");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(header(&headers, "x-frame-options"), "DENY");
    assert_eq!(header(&headers, "referrer-policy"), "no-referrer");
    assert_eq!(header(&headers, "cache-control"), "no-cache");
    assert!(!body.contains("<script>"), "no inline script");
    assert!(!body.contains("style="), "no inline style");
    for linked in [
        "/web/admin.js",
        "/web/admin.css",
        "/web/vendor/uPlot.iife.min.js",
        "/web/vendor/uPlot.min.css",
    ] {
        assert!(body.contains(linked), "the dashboard links {linked}");
    }
    assert!(
        !body.contains("http://") && !body.contains("https://"),
        "nothing loaded from elsewhere"
    );
    let etag = header(&headers, "etag").to_owned();
    let (status, _, body) = get_raw(&app, "/admin", &[("If-None-Match", &etag)]).await;
    assert_eq!((status, body.as_str()), (304, ""));
    // The vendored chart library is the minified uPlot with its MIT license beside it.
    let (status, _, js) = get_raw(&app, "/web/vendor/uPlot.iife.min.js", &[]).await;
    assert_eq!(status, 200);
    assert!(
        js.starts_with("/*! https://github.com/leeoniya/uPlot"),
        "uPlot"
    );
    let (_, _, license) = get_raw(&app, "/web/vendor/uPlot.LICENSE", &[]).await;
    assert!(license.contains("MIT License"), "{license}");
    assert_eq!(get_raw(&app, "/web/vendor/nothing.js", &[]).await.0, 404);
    assert_eq!(get_raw(&app, "/web/vendor/../app.js", &[]).await.0, 404);
}

#[actix_web::test]
async fn dev_login_is_404_when_the_setting_is_off() {
    let (app, _db) = spawn_app().await;
    let (status, body) = dev_login(&app, "alice", None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
}

#[actix_web::test]
async fn dev_login_mints_a_token_that_opens_a_socket_when_on() {
    // Arrange
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| s.dev_login = true).await;
    // Act
    let (status, body) = dev_login(&app, "alice", Some(&app.address)).await;
    // Assert
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"], "alice");
    assert_eq!(body["expires_in"], 900);
    let token = body["token"].as_str().expect("token");
    let mut ws = app
        .ws_with_token(token)
        .await
        .expect("the token opens a socket");
    let ack = ws.recv().await;
    assert_eq!(ack["data"]["user_id"], "alice", "{ack}");
    // The page offers the name form.
    assert!(get_raw(&app, "/", &[])
        .await
        .2
        .contains("data-dev-login=\"true\""));
}

#[actix_web::test]
async fn dev_login_validates_the_user_and_refuses_other_origins() {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| s.dev_login = true).await;
    for bad in ["", "al ice", "<script>", &"x".repeat(65)] {
        let (status, body) = dev_login(&app, bad, None).await;
        assert_eq!(status, 422, "{bad:?}: {body}");
        assert_eq!(body["error"]["code"], "invalid_data");
    }
    let (status, body) = dev_login(&app, "alice", Some("https://evil.example")).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
}

#[actix_web::test]
async fn dev_login_is_turned_off_on_a_non_loopback_bind() {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| {
        s.dev_login = true;
        s.bind = "0.0.0.0:0".into();
    })
    .await;
    assert!(!app.engine.settings.dev_login);
    let (status, _, _) = get_raw(&app, "/", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(dev_login(&app, "alice", None).await.0, 404);
}

#[actix_web::test]
async fn a_token_offered_as_a_subprotocol_opens_a_socket_without_a_url_token() {
    // Arrange
    let (app, _db) = spawn_app().await;
    let token = app.token("bob");
    // Act
    let (resp, framed) = awc::Client::default()
        .ws(format!("ws://127.0.0.1:{}/v1/ws", app.port))
        .protocols(["herald.v1", &format!("herald.bearer.{token}")])
        .connect()
        .await
        .expect("upgrade");
    // Assert: the server answers herald.v1 (browsers need one offered protocol back).
    assert_eq!(
        header(resp.headers(), "sec-websocket-protocol"),
        "herald.v1"
    );
    let mut ws = WsClient::from_framed(framed);
    let ack = ws.recv().await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    assert_eq!(ack["data"]["user_id"], "bob");
    // A bad token there is refused like any other (401 before the upgrade).
    let refused = awc::Client::default()
        .ws(format!("ws://127.0.0.1:{}/v1/ws", app.port))
        .protocols(["herald.v1", "herald.bearer.not-a-token"])
        .connect()
        .await;
    assert!(refused.is_err());
}
