//! Notifications end to end: backend sends, both sockets, REST fallback, preferences with
//! quiet hours on a manual clock, mentions and offline direct messages, expiry, idempotency,
//! the outbox sweep, and "offline" meaning no answering session.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use herald::actors::commit_queue::Commit;
use herald::actors::database::{FetchHistory, ListNotifications, LoadPendingOutbox};
use herald::actors::notification_center::NotificationSweep;
use herald::actors::room::RedoNotifications;
use herald::actors::room_supervisor::{GetRoom, GetRoomPresence, SweepOutbox};
use herald::clock::{Clock, ManualClock};
use herald::db::models::{MemberRole, NewMessage, OutboxPolicy, WriteOp};
use herald::domain::{MessageBody, MessageKind, Priority, RoomId, UserId};
use herald::testkit::{start_engine, test_settings, TestDatabase};
use serde_json::{json, Value};

use crate::helpers::{connect_path, spawn_app, spawn_app_on, TestApp, WsClient};
use crate::raw_ws::RawWs;

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
    // Two users in quiet hours, so the sweep reads held notifications for several users.
    for user in ["bob", "carol"] {
        let (status, saved) = app
            .send_json(
                "PUT",
                "/v1/notifications/preferences",
                Some(&app.token(user)),
                Some(prefs.clone()),
            )
            .await;
        assert_eq!(status, 200, "{saved}");
    }
    let (mut carols, _) = phone(&app, "carol").await;
    let (mut phone, _) = phone(&app, "bob").await;

    let held = post(
        &app,
        json!({"users": ["bob", "carol"], "notification_type": "deadline", "title": "Due tomorrow"}),
    )
    .await;
    assert_eq!(held["results"][0]["held"], true);
    assert_eq!(held["results"][1]["held"], true);
    count_is(&mut phone, 1).await; // stored and counted, not pushed
    count_is(&mut carols, 1).await;
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
    assert_eq!(
        carols.recv_type("notification").await["data"]["title"],
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

/// Every notification of `user`, through the reader as the REST route reads them.
async fn stored_notifications(
    engine: &herald::engine::Engine,
    user: &str,
) -> Vec<(String, String)> {
    let rows = engine
        .store
        .reader
        .send(ListNotifications {
            user: UserId::parse(user).unwrap(),
            unread_only: false,
            kind: None,
            before: None,
            limit: 1000,
            now: herald::domain::now_millis(),
        })
        .await
        .unwrap()
        .unwrap();
    rows.into_iter()
        .map(|r| (r.notification_type, r.idempotency_key.unwrap_or_default()))
        .collect()
}

async fn pending_outbox(engine: &herald::engine::Engine) -> Vec<String> {
    engine
        .store
        .reader
        .send(LoadPendingOutbox {
            created_before: i64::MAX,
            limit: 1000,
        })
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect()
}

fn text_message(sender: &str, text: &str) -> NewMessage {
    NewMessage::new(
        UserId::parse(sender).unwrap(),
        MessageKind::Text,
        MessageBody::parse(MessageKind::Text, &json!({ "text": text }), 1000).unwrap(),
        Priority::Normal,
        None,
    )
}

#[actix_web::test]
async fn an_outbox_row_left_pending_is_processed_by_the_sweep_exactly_once() {
    // Arrange: messages stored through the writer with their outbox rows, as if the process
    // died right after the message commit (no room ran the notifier).
    crate::helpers::init_logs();
    let db = TestDatabase::new();
    let mut settings = test_settings(&db.url);
    settings.outbox_sweep = Duration::from_secs(3600); // only the sweeps this test sends
    let engine = start_engine(settings).await;
    let u = |s: &str| UserId::parse(s).unwrap();
    let team = RoomId::parse("public:team").unwrap();
    let dm = RoomId::direct(&u("alice"), &u("carol"));
    let policy = OutboxPolicy {
        mentions: true,
        offline_direct: true,
        ..Default::default()
    };
    let mention = text_message("alice", "ship it @bob");
    let no_one = text_message("alice", "mail me at x@example.test");
    let plain = text_message("alice", "no notification here");
    let direct = text_message("alice", "call me");
    let mut ops = Vec::new();
    for (room, users) in [(&team, ["alice", "bob"]), (&dm, ["alice", "carol"])] {
        ops.push(WriteOp::EnsureRoom {
            room: room.clone(),
            name: None,
            created_by: None,
            at: 1,
        });
        for user in users {
            ops.push(WriteOp::AddMember {
                room: room.clone(),
                user: u(user),
                role: MemberRole::Member,
                at: 1,
            });
        }
    }
    ops.push(WriteOp::AppendMessages {
        room: team.clone(),
        messages: vec![mention.clone(), no_one.clone(), plain.clone()],
        outbox: policy,
    });
    ops.push(WriteOp::AppendMessages {
        room: dm.clone(),
        messages: vec![direct.clone()],
        outbox: policy,
    });
    engine
        .store
        .commits
        .send(Commit { ops })
        .await
        .unwrap()
        .unwrap();
    let mut pending = pending_outbox(&engine).await;
    pending.sort();
    let mut want = vec![mention.id.clone(), no_one.id.clone(), direct.id.clone()];
    want.sort();
    assert_eq!(
        pending, want,
        "a group message without '@' pays no outbox row"
    );

    // Act: the sweep.
    let swept = engine
        .rooms
        .send(SweepOutbox {
            min_age: Duration::ZERO,
        })
        .await
        .unwrap()
        .unwrap();

    // Assert: each due notification once, every row settled, nothing left for a second sweep.
    assert_eq!(swept, 3);
    assert_eq!(
        stored_notifications(&engine, "bob").await,
        vec![("mention".to_owned(), format!("mention:{}", mention.id))]
    );
    assert_eq!(
        stored_notifications(&engine, "carol").await,
        vec![("message".to_owned(), format!("message:{}", direct.id))]
    );
    assert!(pending_outbox(&engine).await.is_empty(), "rows settled");
    let again = engine
        .rooms
        .send(SweepOutbox {
            min_age: Duration::ZERO,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, 0, "nothing left to re-process");

    // Re-processing a message whose notifications exist (a sweep racing the live notifier,
    // twice at once) creates nothing new.
    let room = engine
        .rooms
        .send(GetRoom { room: team.clone() })
        .await
        .unwrap();
    let stored = engine
        .store
        .reader
        .send(FetchHistory {
            room: team,
            before_seq: None,
            after_seq: Some(0),
            limit: 10,
            max_bytes: 1 << 20,
            reactions_for: None,
        })
        .await
        .unwrap()
        .unwrap()
        .0;
    let redo = || {
        room.send(RedoNotifications {
            messages: stored.clone(),
        })
    };
    let (a, b) = futures_util::future::join(redo(), redo()).await;
    a.unwrap();
    b.unwrap();
    assert_eq!(stored_notifications(&engine, "bob").await.len(), 1);
    assert!(pending_outbox(&engine).await.is_empty());
}

#[actix_web::test]
async fn a_zombie_session_does_not_suppress_the_offline_direct_message_notification() {
    // Arrange: a short heartbeat, so "answering" means heard from within 1.5 s × 2 = 3 s;
    // the heartbeat itself drops a silent session only after two intervals (4-6 s).
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| {
        s.heartbeat_interval = Duration::from_secs(2);
        s.sio_ping_interval = Duration::from_secs(2);
    })
    .await;
    assert_eq!(
        app.engine.settings.answering_window(),
        Duration::from_secs(3)
    );
    let mut alice = app.ws("alice").await;
    // Bob's only session: a raw socket that completes the handshake and then never reads
    // nor answers a ping.
    let (status, zombie) =
        RawWs::connect(app.port, &format!("/v1/ws?token={}", app.token("bob")), "").await;
    assert_eq!(status, 101);
    let dm = RoomId::direct(
        &UserId::parse("alice").unwrap(),
        &UserId::parse("bob").unwrap(),
    );
    let send = |text: &'static str| json!({"to": "bob", "kind": "text", "body": {"text": text}});
    actix::clock::sleep(Duration::from_millis(300)).await;
    // Freshly connected, the session counts as answering: no notification.
    alice.ok("send", send("are you there?")).await;

    // Act: once it has been silent past the window, but before the heartbeat drops it.
    actix::clock::sleep(Duration::from_millis(3300)).await;
    let online = app
        .engine
        .rooms
        .send(GetRoomPresence { room: dm })
        .await
        .unwrap()
        .unwrap()
        .online;
    assert!(
        online.iter().any(|(u, n)| u.as_str() == "bob" && *n == 1),
        "the zombie is still subscribed: {online:?}"
    );
    let ack = alice.ok("send", send("call me back")).await;

    // Assert: exactly the second message was notified.
    let id = ack["message_id"].as_str().unwrap().to_owned();
    let mut found = Vec::new();
    for _ in 0..50 {
        found = stored_notifications(&app.engine, "bob").await;
        if !found.is_empty() {
            break;
        }
        actix::clock::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(found, vec![("message".to_owned(), format!("message:{id}"))]);
    drop(zombie);
}
