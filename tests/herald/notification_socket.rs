//! The seed-compatible notification socket (`/ws/notifications/?token=`) on the open
//! internet: token expiry with in-band refresh and reconnecting, the Origin allow-list before
//! the upgrade, and every client frame (`ping`, `mark_as_read`, `mark_all_as_read`, bad input)
//! end to end.

use std::time::Duration;

use herald::testkit::TestDatabase;
use serde_json::{json, Value};

use crate::helpers::{connect_path, spawn_app, spawn_app_on, Other, TestApp, WsClient, WAIT};

/// The seed socket opened with `token`, past `connection_ack` and the first `unread_count`.
async fn phone_with(app: &TestApp, token: &str) -> (WsClient, i64) {
    let mut c = connect_path(app.port, &format!("/ws/notifications/?token={token}"))
        .await
        .expect("the upgrade completes");
    assert_eq!(c.recv().await, json!({"type": "connection_ack"}));
    let count = c.recv_type("unread_count").await;
    (c, count["data"]["unread_count"].as_i64().unwrap_or(-1))
}

async fn send(c: &mut WsClient, frame: Value) {
    c.send_text(&frame.to_string()).await;
}

/// The next `error` frame, skipping `unread_count` pushes; it must have the seed's shape.
async fn error_of(c: &mut WsClient) -> String {
    let e = c.recv_type("error").await;
    let keys: Vec<&String> = e
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(keys, ["error", "type"], "seed error shape: {e}");
    e["error"].as_str().unwrap_or_default().to_owned()
}

/// The socket is open and answering: `ping` gets exactly `{"type":"pong"}`.
async fn still_open(c: &mut WsClient) {
    send(c, json!({"type": "ping"})).await;
    assert_eq!(c.recv_type("pong").await, json!({"type": "pong"}));
}

async fn count_is(c: &mut WsClient, want: i64) {
    loop {
        let f = c.recv_type("unread_count").await;
        if f["data"]["unread_count"] == want {
            return;
        }
    }
}

async fn notify(app: &TestApp, user: &str, title: &str) -> String {
    let (status, out) = app
        .send_json(
            "POST",
            "/v1/admin/notifications",
            Some(&app.service_token()),
            Some(json!({"users": [user], "notification_type": "alert", "title": title})),
        )
        .await;
    assert_eq!(status, 201, "{out}");
    out["results"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn short_token(app: &TestApp, user: &str) -> String {
    app.engine
        .keys
        .mint(user, None, &[], Duration::from_secs(2))
        .expect("mint")
}

async fn spawn_with_short_grace(db: &TestDatabase) -> TestApp {
    spawn_app_on(&db.url, |s| {
        s.auth.leeway = Duration::ZERO;
        s.auth.refresh_grace = Duration::from_millis(400);
    })
    .await
}

#[actix_web::test]
async fn an_expired_token_on_the_seed_socket_gets_an_error_then_close_4001_and_reconnecting_works()
{
    // Arrange
    let db = TestDatabase::new();
    let app = spawn_with_short_grace(&db).await;
    let (mut phone, _) = phone_with(&app, &short_token(&app, "bob")).await;
    // Act / Assert: the warning names the remedy, then the grace runs out.
    let warning = error_of(&mut phone).await;
    assert!(
        warning.contains("Token expired") && warning.contains("auth"),
        "{warning}"
    );
    assert_eq!(phone.expect_close().await, Some(4001));
    // The seed's client reconnects with a fresh token, and that keeps working.
    let (mut again, n) = phone_with(&app, &app.token("bob")).await;
    assert_eq!(n, 0);
    still_open(&mut again).await;
}

#[actix_web::test]
async fn an_in_band_auth_refreshes_the_seed_socket_for_the_same_user_only() {
    // Arrange
    let db = TestDatabase::new();
    let app = spawn_with_short_grace(&db).await;
    let (mut phone, _) = phone_with(&app, &short_token(&app, "bob")).await;
    // Act: refused refreshes first; each leaves the socket open.
    send(
        &mut phone,
        json!({"type": "auth", "data": {"token": app.token("mallory")}}),
    )
    .await;
    let e = error_of(&mut phone).await;
    assert!(e.contains("another user"), "{e}");
    send(
        &mut phone,
        json!({"type": "auth", "data": {"token": "nonsense"}}),
    )
    .await;
    assert!(error_of(&mut phone)
        .await
        .starts_with("Authentication failed"));
    send(&mut phone, json!({"type": "auth", "data": {}})).await;
    assert_eq!(error_of(&mut phone).await, "auth needs data.token");
    // Then a good one.
    send(
        &mut phone,
        json!({"type": "auth", "data": {"token": app.token("bob")}}),
    )
    .await;
    // Assert
    let ok = phone.recv_type("auth_ok").await;
    let expires_at = ok["data"]["expires_at"].as_str().unwrap_or_default();
    let parsed = chrono::DateTime::parse_from_rfc3339(expires_at).expect("RFC 3339 expires_at");
    assert!(
        parsed.timestamp() > chrono::Utc::now().timestamp() + 3000,
        "the fresh token's expiry: {ok}"
    );
    // Past the old token's expiry and the grace, the socket is still open and quiet.
    phone.assert_no("error", Duration::from_millis(3000)).await;
    still_open(&mut phone).await;
}

#[actix_web::test]
async fn the_seed_socket_checks_the_origin_allow_list_before_the_upgrade() {
    // Arrange
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| {
        s.allowed_origins = vec!["https://app.example".into()];
    })
    .await;
    let upgrade = |origin: &'static str| {
        let url = format!(
            "{}/ws/notifications/?token={}",
            app.address,
            app.token("bob")
        );
        async move {
            let mut resp = awc::Client::builder()
                .timeout(WAIT)
                .finish()
                .get(url)
                .insert_header(("Origin", origin))
                .insert_header(("Connection", "Upgrade"))
                .insert_header(("Upgrade", "websocket"))
                .insert_header(("Sec-WebSocket-Version", "13"))
                .insert_header(("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="))
                .send()
                .await
                .expect("upgrade request");
            let body = resp.body().await.unwrap_or_default();
            (
                resp.status().as_u16(),
                serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
            )
        }
    };
    // Act / Assert: a foreign page gets 403 with a JSON error, no upgrade.
    let (status, body) = upgrade("https://evil.example").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden", "{body}");
    // The allowed origin upgrades and speaks the seed protocol.
    let (_, framed) = awc::Client::builder()
        .timeout(WAIT)
        .finish()
        .ws(format!(
            "ws://127.0.0.1:{}/ws/notifications/?token={}",
            app.port,
            app.token("bob")
        ))
        .origin("https://app.example")
        .connect()
        .await
        .expect("allowed origin connects");
    let mut phone = WsClient::from_framed(framed);
    assert_eq!(phone.recv().await, json!({"type": "connection_ack"}));
    still_open(&mut phone).await;
}

#[actix_web::test]
async fn ping_gets_pong_and_bad_frames_get_seed_error_frames_while_the_socket_stays_open() {
    // Arrange
    let (app, _db) = spawn_app().await;
    let id = notify(&app, "bob", "one").await;
    let (mut phone, n) = phone_with(&app, &app.token("bob")).await;
    assert_eq!(n, 1);
    // Act / Assert
    send(&mut phone, json!({"type": "ping"})).await;
    assert_eq!(phone.recv_type("pong").await, json!({"type": "pong"}));
    let unknown = "0191d2f4-0000-7000-8000-000000000000";
    for (frame, want) in [
        (
            json!({"type": "mark_as_read", "data": {"id": unknown}}),
            "no such notification",
        ),
        (
            json!({"type": "mark_as_read", "data": {"id": "../../etc/passwd"}}),
            "Invalid notification id",
        ),
        (
            json!({"type": "mark_as_read", "data": {"id": 42}}),
            "mark_as_read needs data.id",
        ),
        (
            json!({"type": "mark_as_read"}),
            "mark_as_read needs data.id",
        ),
        (json!({"type": "subscribe"}), "Unknown message type"),
        (json!(["not", "an", "object"]), "Invalid JSON"),
    ] {
        send(&mut phone, frame.clone()).await;
        assert_eq!(error_of(&mut phone).await, want, "for {frame}");
        still_open(&mut phone).await;
    }
    // Someone else's notification is unknown too, and stays unread for its owner.
    let (mut mallory, _) = phone_with(&app, &app.token("mallory")).await;
    send(
        &mut mallory,
        json!({"type": "mark_as_read", "data": {"id": id}}),
    )
    .await;
    assert_eq!(error_of(&mut mallory).await, "no such notification");
    let (_, c) = app
        .get("/v1/notifications/unread_count", Some(&app.token("bob")))
        .await;
    assert_eq!(c, json!({"unread_count": 1}));
    // Over REST the unknown id is a 404 (an already-read one stays an idempotent 200).
    let (status, body) = app
        .send_json(
            "POST",
            &format!("/v1/notifications/{unknown}/read"),
            Some(&app.token("bob")),
            None,
        )
        .await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("not_found")));
}

#[actix_web::test]
async fn mark_as_read_and_mark_all_as_read_on_the_seed_socket_reach_every_device() {
    // Arrange: two phones on the seed socket and a native session.
    let (app, _db) = spawn_app().await;
    for title in ["one", "two", "three"] {
        notify(&app, "bob", title).await;
    }
    let (_, list) = app.get("/v1/notifications", Some(&app.token("bob"))).await;
    let first = list["notifications"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (mut phone, n) = phone_with(&app, &app.token("bob")).await;
    assert_eq!(n, 3);
    let (mut tablet, _) = phone_with(&app, &app.token("bob")).await;
    let mut browser = app.ws("bob").await;
    count_is(&mut browser, 3).await;
    // Act: one read on the phone.
    send(
        &mut phone,
        json!({"type": "mark_as_read", "data": {"id": first}}),
    )
    .await;
    // Assert
    for c in [&mut phone, &mut tablet, &mut browser] {
        count_is(c, 2).await;
    }
    // Marking it again is idempotent: no error, the count stays.
    send(
        &mut tablet,
        json!({"type": "mark_as_read", "data": {"id": first}}),
    )
    .await;
    count_is(&mut tablet, 2).await;
    // Act: all read, from the tablet.
    send(&mut tablet, json!({"type": "mark_all_as_read"})).await;
    // Assert
    for c in [&mut phone, &mut tablet, &mut browser] {
        count_is(c, 0).await;
    }
    let (_, c) = app
        .get("/v1/notifications/unread_count", Some(&app.token("bob")))
        .await;
    assert_eq!(c, json!({"unread_count": 0}));
    match phone.recv_or_other(Duration::from_millis(200)).await {
        Err(Other::Timeout) => {}
        other => panic!("nothing more was expected: {other:?}"),
    }
}
