//! Notifications end to end: backend sends, both sockets, REST fallback, preferences with
//! quiet hours on a manual clock, mentions and offline direct messages, expiry, idempotency.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use herald::actors::notification_center::NotificationSweep;
use herald::clock::{Clock, ManualClock};
use herald::testkit::TestDatabase;
use serde_json::{json, Value};

use crate::helpers::{connect_path, spawn_app, spawn_app_on, TestApp, WsClient};

/// The seed-compatible socket, past its `connection_ack` and initial `unread_count`.
async fn phone(app: &TestApp, user: &str) -> (WsClient, i64) {
    let mut c = connect_path(
        app.port,
        &format!("/ws/notifications/?token={}", app.token(user)),
    )
    .await
    .unwrap();
    assert_eq!(c.recv().await, json!({"type": "connection_ack"}));
    // Notifications waiting for the user may be pushed before the first count.
    let count = c.recv_type("unread_count").await;
    (c, count["data"]["unread_count"].as_i64().unwrap())
}

async fn post(app: &TestApp, body: Value) -> Value {
    let (status, out) = app
        .send_json(
            "POST",
            "/v1/admin/notifications",
            Some(&app.service_token()),
            Some(body),
        )
        .await;
    assert_eq!(status, 201, "{out}");
    out
}

async fn count_is(c: &mut WsClient, want: i64) {
    loop {
        let f = c.recv_type("unread_count").await;
        if f["data"]["unread_count"] == want {
            return;
        }
    }
}

#[actix_web::test]
async fn a_backend_notification_reaches_phone_and_browser_and_reading_syncs_them() {
    let (app, _db) = spawn_app().await;
    let (mut phone, n) = phone(&app, "bob").await;
    assert_eq!(n, 0);
    let mut browser = app.ws("bob").await;
    // Native sessions get the badge right after sync.
    assert_eq!(
        browser.recv_type("unread_count").await["data"]["unread_count"],
        0
    );

    let out = post(&app, json!({"users": ["bob"], "notification_type": "assignment", "title": "New task", "message": "Review PR 42",
        "actions": [{"id": "open", "label": "Open", "url": "https://example.test/42"}], "data": {"pr": 42}, "priority": "high"})).await;
    assert_eq!(out["created"], 1);
    let id = out["results"][0]["id"].as_str().unwrap().to_owned();

    // Exactly the seed shapes on both sockets.
    for c in [&mut phone, &mut browser] {
        let n = c.recv_type("notification").await;
        let keys: Vec<&str> = n["data"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "created_at",
                "id",
                "is_read",
                "message",
                "notification_type",
                "title"
            ]
        );
        assert_eq!(
            (n["data"]["id"].as_str(), n["data"]["is_read"].as_bool()),
            (Some(id.as_str()), Some(false))
        );
        count_is(c, 1).await;
    }
    // Read on the phone; the browser's count follows; REST agrees.
    phone
        .send_text(&json!({"type": "mark_as_read", "data": {"id": id}}).to_string())
        .await;
    count_is(&mut phone, 0).await;
    count_is(&mut browser, 0).await;
    let (_, c) = app
        .get("/v1/notifications/unread_count", Some(&app.token("bob")))
        .await;
    assert_eq!(c, json!({"unread_count": 0}));
    let (_, list) = app.get("/v1/notifications", Some(&app.token("bob"))).await;
    let n = &list["notifications"][0];
    assert_eq!(
        (
            n["is_read"].as_bool(),
            n["priority"].as_str(),
            n["data"]["pr"].as_i64()
        ),
        (Some(true), Some("high"), Some(42))
    );
    assert_eq!(n["actions"][0]["label"], "Open");
    let (_, unread) = app
        .get("/v1/notifications?unread=true", Some(&app.token("bob")))
        .await;
    assert_eq!(unread["notifications"].as_array().unwrap().len(), 0);

    // An admin disconnect closes the notification socket too.
    let (status, _) = app
        .send_json(
            "POST",
            "/v1/admin/users/bob/disconnect",
            Some(&app.admin_token("root")),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(phone.expect_close().await, Some(4000));
    assert_eq!(browser.expect_close().await, Some(4000));
}

#[actix_web::test]
async fn a_bad_token_on_the_seed_socket_gets_an_error_frame_and_close_4001() {
    let (app, _db) = spawn_app().await;
    let mut c = connect_path(app.port, "/ws/notifications/?token=nonsense")
        .await
        .expect("the upgrade completes");
    assert_eq!(
        c.recv().await,
        json!({"type": "error", "error": "Authentication failed"})
    );
    assert_eq!(c.expect_close().await, Some(4001));
}

#[actix_web::test]
async fn quiet_hours_hold_normal_notifications_and_let_urgent_ones_through() {
    let db = TestDatabase::new();
    let clock = ManualClock::new();
    let app = spawn_app_on(&db.url, |s| s.clock = Arc::new(clock.clone())).await;
    // A window around "now" in Tokyo, whatever the real time: now-1h .. now+1h local.
    let tz: chrono_tz::Tz = "Asia/Tokyo".parse().unwrap();
    let local = Utc
        .timestamp_millis_opt(clock.now())
        .unwrap()
        .with_timezone(&tz);
    let fmt = |d: chrono::DateTime<chrono_tz::Tz>| d.format("%H:%M").to_string();
    let prefs = json!({"quiet_hours": {"start": fmt(local - chrono::Duration::hours(1)), "end": fmt(local + chrono::Duration::hours(1)), "time_zone": "Asia/Tokyo"}});
    let (status, saved) = app
        .send_json(
            "PUT",
            "/v1/notifications/preferences",
            Some(&app.token("bob")),
            Some(prefs),
        )
        .await;
    assert_eq!(status, 200, "{saved}");
    let (mut phone, _) = phone(&app, "bob").await;

    let held = post(
        &app,
        json!({"users": ["bob"], "notification_type": "deadline", "title": "Due tomorrow"}),
    )
    .await;
    assert_eq!(held["results"][0]["held"], true);
    count_is(&mut phone, 1).await; // stored and counted, not pushed
    post(&app, json!({"users": ["bob"], "notification_type": "alert", "title": "Server down", "priority": "urgent"})).await;
    assert_eq!(
        phone.recv_type("notification").await["data"]["title"],
        "Server down"
    );
    count_is(&mut phone, 2).await;
    let (_, list) = app.get("/v1/notifications", Some(&app.token("bob"))).await;
    assert_eq!(
        list["notifications"].as_array().unwrap().len(),
        2,
        "REST lists the held one too"
    );

    // The window ends: the held notification is pushed.
    clock.advance(Duration::from_secs(2 * 3600));
    app.engine
        .notifications
        .send(NotificationSweep)
        .await
        .unwrap();
    assert_eq!(
        phone.recv_type("notification").await["data"]["title"],
        "Due tomorrow"
    );
}

#[actix_web::test]
async fn preferences_mute_sources_and_are_validated() {
    let (app, _db) = spawn_app().await;
    let bob = app.token("bob");
    let (status, e) = app
        .send_json("PUT", "/v1/notifications/preferences", Some(&bob), Some(json!({"quiet_hours": {"start": "22:00", "end": "07:00", "time_zone": "Nowhere/Land"}})))
        .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (422, Some("invalid_data"))
    );
    app.send_json(
        "PUT",
        "/v1/notifications/preferences",
        Some(&bob),
        Some(json!({"muted_types": ["achievement"], "muted_rooms": ["public:noisy"]})),
    )
    .await;
    let (_, p) = app.get("/v1/notifications/preferences", Some(&bob)).await;
    assert_eq!(p["muted_types"], json!(["achievement"]));
    let out = post(
        &app,
        json!({"users": ["bob"], "notification_type": "achievement", "title": "Badge"}),
    )
    .await;
    assert_eq!(
        (out["created"].as_i64(), out["results"][0]["id"].clone()),
        (Some(0), Value::Null)
    );

    // A mention in a muted room creates nothing either; in another room it does.
    let mut alice = app.ws("alice").await;
    let mut b = app.ws("bob").await;
    for r in ["public:noisy", "public:calm"] {
        alice.ok("join", json!({"room": r})).await;
        b.ok("join", json!({"room": r})).await;
    }
    alice
        .ok(
            "send",
            json!({"room": "public:noisy", "kind": "text", "body": {"text": "hey @bob"}}),
        )
        .await;
    alice
        .ok(
            "send",
            json!({"room": "public:calm", "kind": "text", "body": {"text": "hey @bob, look"}}),
        )
        .await;
    let n = b.recv_type("notification").await;
    assert_eq!(n["data"]["notification_type"], "mention");
    let (_, list) = app.get("/v1/notifications", Some(&bob)).await;
    assert_eq!(list["notifications"].as_array().unwrap().len(), 1);
    assert_eq!(list["notifications"][0]["data"]["room"], "public:calm");
}

#[actix_web::test]
async fn a_direct_message_to_an_offline_user_notifies_them_on_connect() {
    let (app, _db) = spawn_app().await;
    let mut alice = app.ws("alice").await;
    alice
        .ok(
            "send",
            json!({"to": "carol", "kind": "text", "body": {"text": "call me"}}),
        )
        .await;
    let mut carol = app.ws("carol").await;
    let n = carol.recv_type("notification").await;
    assert_eq!(
        (
            n["data"]["notification_type"].as_str(),
            n["data"]["message"].as_str()
        ),
        (Some("message"), Some("call me"))
    );
    // Online recipients get the message itself, not a notification.
    alice
        .ok(
            "send",
            json!({"to": "carol", "kind": "text", "body": {"text": "still there?"}}),
        )
        .await;
    carol.recv_type("message").await;
    let (_, c) = app
        .get("/v1/notifications/unread_count", Some(&app.token("carol")))
        .await;
    assert_eq!(c["unread_count"], 1);
}

#[actix_web::test]
async fn idempotency_expiry_deletion_and_roles() {
    let db = TestDatabase::new();
    let clock = ManualClock::new();
    let app = spawn_app_on(&db.url, |s| s.clock = Arc::new(clock.clone())).await;
    let body = json!({"users": ["bob", "dan"], "notification_type": "request_accepted", "title": "Accepted", "idempotency_key": "req-7"});
    assert_eq!(post(&app, body.clone()).await["created"], 2);
    let again = post(&app, body).await;
    assert_eq!(
        again["created"], 0,
        "a repeated idempotency_key creates nothing"
    );
    let (_, list) = app.get("/v1/notifications", Some(&app.token("bob"))).await;
    assert_eq!(list["notifications"].as_array().unwrap().len(), 1);

    let soon = Utc
        .timestamp_millis_opt(clock.now() + 60_000)
        .unwrap()
        .to_rfc3339();
    post(&app, json!({"users": ["bob"], "notification_type": "deadline", "title": "Flash", "expires_at": soon})).await;
    let (mut phone, n) = phone(&app, "bob").await;
    assert_eq!(n, 2);
    clock.advance(Duration::from_secs(61));
    app.engine
        .notifications
        .send(NotificationSweep)
        .await
        .unwrap();
    count_is(&mut phone, 1).await;
    let (_, list) = app.get("/v1/notifications", Some(&app.token("bob"))).await;
    let id = list["notifications"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        list["notifications"].as_array().unwrap().len(),
        1,
        "expired ones leave lists"
    );

    let path = format!("/v1/notifications/{id}");
    assert_eq!(
        app.send_json("DELETE", &path, Some(&app.token("dan")), None)
            .await
            .0,
        404,
        "not dan's"
    );
    assert_eq!(
        app.send_json("DELETE", &path, Some(&app.token("bob")), None)
            .await
            .0,
        204
    );
    count_is(&mut phone, 0).await;
    assert_eq!(
        app.send_json("DELETE", &path, Some(&app.token("bob")), None)
            .await
            .0,
        404
    );

    let (status, _) = app
        .send_json(
            "POST",
            "/v1/admin/notifications",
            Some(&app.token("mallory")),
            Some(json!({"users": ["bob"], "notification_type": "alert", "title": "x"})),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = app
        .send_json(
            "POST",
            "/v1/admin/notifications",
            Some(&app.admin_token("root")),
            Some(json!({"users": ["bob"], "notification_type": "Bad Type", "title": "x"})),
        )
        .await;
    assert_eq!(status, 422);
    let (_, all) = app
        .send_json(
            "POST",
            "/v1/notifications/read_all",
            Some(&app.token("dan")),
            None,
        )
        .await;
    assert_eq!(all, json!({"unread_count": 0}));
}
