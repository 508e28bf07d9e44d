//! Delivery guarantees end to end: sync on connect, receipts and message status, unread
//! counts, slow consumers.

use std::time::Duration;

use herald::domain::{MessageBody, MessageKind, Priority, RoomId, UserId};
use herald::protocol::{SendRequest, SendTarget};
use herald::testkit::TestDatabase;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_on, text, WsClient};

async fn messages_until(c: &mut WsClient, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        let v = c.recv().await;
        if v["type"] == "message" {
            out.push(v["data"].clone());
        }
    }
    out
}

#[actix_web::test]
async fn an_offline_user_gets_missed_messages_of_all_rooms_urgent_rooms_first() {
    // Arrange: bob is a member of two rooms and goes offline.
    let (app, _db) = spawn_app().await;
    let mut bob = app.ws("bob").await;
    bob.ok("join", json!({"room": "public:a"})).await;
    bob.ok("join", json!({"room": "public:b"})).await;
    bob.close().await;
    let mut alice = app.ws("alice").await;
    alice.ok("join", json!({"room": "public:a"})).await;
    alice.ok("join", json!({"room": "public:b"})).await;

    // Act
    for t in ["a1", "a2"] {
        alice
            .ok(
                "send",
                json!({"room": "public:a", "kind": "text", "body": {"text": t}}),
            )
            .await;
    }
    alice.ok("send", json!({"room": "public:b", "kind": "text", "body": {"text": "b1"}, "priority": "urgent"})).await;
    let mut bob = app.ws("bob").await;

    // Assert: sync with watermarks and unread counts, then b (urgent) before a, seq order within a room.
    let rooms = bob.sync["data"]["rooms"].as_array().unwrap().clone();
    let find = |r: &str| rooms.iter().find(|x| x["room"] == r).unwrap().clone();
    assert_eq!(
        (
            find("public:a")["unread"].as_i64(),
            find("public:a")["seq"].as_i64()
        ),
        (Some(2), Some(2))
    );
    assert_eq!(find("public:b")["unread"], 1);
    assert_eq!(find("public:b")["read_seq"], 0);
    assert_eq!(bob.sync["data"]["unread_total"], 3);
    let got: Vec<String> = messages_until(&mut bob, 3)
        .await
        .iter()
        .map(|m| m["body"]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, ["b1", "a1", "a2"]);

    // Delivered watermark: after a receipt, a reconnect does not replay them.
    bob.ok(
        "receipt",
        json!({"room": "public:a", "seq": 2, "status": "delivered"}),
    )
    .await;
    bob.ok(
        "receipt",
        json!({"room": "public:b", "seq": 1, "status": "delivered"}),
    )
    .await;
    bob.close().await;
    let mut bob = app.ws("bob").await;
    // Nothing is replayed after the delivered watermark.
    bob.assert_no("message", Duration::from_millis(400)).await;
}

#[actix_web::test]
async fn the_sender_sees_delivered_then_read_and_the_status_route_agrees() {
    let (app, _db) = spawn_app().await;
    let mut alice = app.ws("alice").await;
    let mut bob = app.ws("bob").await;
    alice.ok("join", json!({"room": "public:s"})).await;
    bob.ok("join", json!({"room": "public:s"})).await;
    let ack = alice
        .ok(
            "send",
            json!({"room": "public:s", "kind": "text", "body": {"text": "hi"}}),
        )
        .await;
    let id = ack["message_id"].as_str().unwrap().to_owned();
    let status_path = format!("/v1/rooms/public:s/messages/{id}/status");
    let state = |v: &Value| v["recipients"][0]["status"].as_str().map(str::to_owned);

    let (code, s) = app.get(&status_path, Some(&app.token("alice"))).await;
    assert_eq!((code, state(&s).as_deref()), (200, Some("sent")), "{s}");
    assert_eq!(s["recipients"][0]["user"], "bob");

    bob.recv_type("message").await;
    bob.ok(
        "receipt",
        json!({"room": "public:s", "seq": 1, "status": "delivered"}),
    )
    .await;
    let r = alice.recv_type("receipt").await;
    assert_eq!(
        (r["data"]["status"].as_str(), r["data"]["user"].as_str()),
        (Some("delivered"), Some("bob"))
    );
    assert_eq!(
        state(&app.get(&status_path, Some(&app.token("alice"))).await.1).as_deref(),
        Some("delivered")
    );

    bob.ok(
        "receipt",
        json!({"room": "public:s", "seq": 1, "status": "read"}),
    )
    .await;
    assert_eq!(alice.recv_type("receipt").await["data"]["status"], "read");
    assert_eq!(
        state(&app.get(&status_path, Some(&app.token("alice"))).await.1).as_deref(),
        Some("read")
    );

    // Watermarks never move back: a later "delivered" for the same seq changes nothing.
    bob.ok(
        "receipt",
        json!({"room": "public:s", "seq": 1, "status": "delivered"}),
    )
    .await;
    assert_eq!(
        state(&app.get(&status_path, Some(&app.token("alice"))).await.1).as_deref(),
        Some("read")
    );
    // Outsiders cannot look.
    assert_eq!(app.get(&status_path, Some(&app.token("eve"))).await.0, 403);
    assert_eq!(
        app.get(
            "/v1/rooms/public:s/messages/nope/status",
            Some(&app.token("alice"))
        )
        .await
        .0,
        404
    );
}

#[actix_web::test]
async fn unread_counts_are_pushed_to_every_device_and_reading_clears_them() {
    let (app, _db) = spawn_app().await;
    let mut alice = app.ws("alice").await;
    let mut phone = app.ws("bob").await;
    alice.ok("join", json!({"room": "public:u"})).await;
    phone.ok("join", json!({"room": "public:u"})).await;
    let mut laptop = app.ws("bob").await;
    for i in 0..3 {
        alice
            .ok(
                "send",
                json!({"room": "public:u", "kind": "text", "body": {"text": i.to_string()}}),
            )
            .await;
    }
    // Coalesced: read frames until the count reaches 3.
    for c in [&mut phone, &mut laptop] {
        loop {
            let f = c.recv_type("room_unread").await;
            assert_eq!(f["data"]["room"], "public:u");
            if f["data"]["unread"] == 3 {
                assert_eq!(f["data"]["unread_total"], 3);
                break;
            }
        }
    }
    phone
        .ok(
            "receipt",
            json!({"room": "public:u", "seq": 3, "status": "read"}),
        )
        .await;
    for c in [&mut phone, &mut laptop] {
        let f = c.recv_type("room_unread").await;
        assert_eq!(
            (
                f["data"]["unread"].as_i64(),
                f["data"]["unread_total"].as_i64()
            ),
            (Some(0), Some(0))
        );
    }
    // The sender's own messages never count as unread for the sender.
    let (_, list) = app.get("/v1/rooms", Some(&app.token("alice"))).await;
    assert_eq!(list["rooms"][0]["unread"], 0);
}

#[actix_web::test]
async fn a_client_that_stops_reading_is_caught_up_in_order_without_being_closed() {
    // Arrange: a small outbox (still larger than one burst of 100 messages).
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| s.outbox_frames = 256).await;
    let mut slow = app.ws("slow").await;
    slow.ok("join", json!({"room": "public:firehose"})).await;
    let mut good = app.ws("good").await;
    good.ok("join", json!({"room": "public:firehose"})).await;
    let engine = app.engine.clone();
    let sender = UserId::parse("sender").unwrap();
    let room = RoomId::parse("public:firehose").unwrap();
    engine
        .join(
            &sender,
            herald::domain::SessionId::next(),
            room.clone(),
            None,
        )
        .await
        .unwrap();

    // Act: enough data to fill the socket buffers of the client that does not read.
    const N: usize = 3000;
    let reader = actix_web::rt::spawn(async move {
        let got = messages_until(&mut good, N).await;
        got.iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect::<Vec<_>>()
    });
    let body = json!({ "text": "x".repeat(6000) });
    for chunk in 0..(N / 100) {
        let mut batch = Vec::new();
        for i in 0..100 {
            let engine = engine.clone();
            let sender = sender.clone();
            let req = SendRequest {
                target: SendTarget::Room(room.clone()),
                kind: MessageKind::Text,
                body: MessageBody::parse(MessageKind::Text, &body, 64 * 1024).unwrap(),
                priority: Priority::Normal,
                client_msg_id: Some(format!("f-{chunk}-{i}")),
            };
            batch.push(actix_web::rt::spawn(async move {
                engine.send_message(&sender, None, req).await.unwrap()
            }));
        }
        for b in batch {
            b.await.unwrap();
        }
    }

    // Assert: the well-behaved client got everything, in order.
    let seqs = reader.await.unwrap();
    assert_eq!(seqs, (1..=N as i64).collect::<Vec<_>>());
    // The slow client fell far behind (more than the outbox and the socket buffers hold):
    // once it reads again it gets every message exactly once, in order, and stays connected.
    let mut seen: Vec<i64> = Vec::new();
    while seen.len() < N {
        match slow.recv_or_other(Duration::from_secs(10)).await {
            Ok(v) if v["type"] == "message" => seen.push(v["data"]["seq"].as_i64().unwrap()),
            Ok(v) if v["type"] == "replay_truncated" => panic!("nothing may be cut here: {v}"),
            Ok(_) => {}
            Err(o) => panic!("after {} messages: {o:?}", seen.len()),
        }
    }
    assert_eq!(seen, (1..=N as i64).collect::<Vec<_>>());
    assert_eq!(
        slow.request("ping", json!({})).await["type"],
        "pong",
        "still connected"
    );
    let (_, stats) = app
        .get("/v1/admin/stats", Some(&app.admin_token("root")))
        .await;
    assert!(stats["slow_consumers_total"].as_u64().unwrap() >= 1);
}

/// `herald_ws_write_flushes_total` from `/metrics` (process-wide: it only grows).
async fn write_flushes(app: &crate::helpers::TestApp) -> u64 {
    app.metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("herald_ws_write_flushes_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the flush counter")
}

#[actix_web::test]
async fn with_write_gathering_a_busy_connection_gets_every_frame_in_order_and_replies_at_once() {
    crate::helpers::init_logs();
    // Arrange: a long gathering window, so that held frames and prompt replies tell apart.
    let db = TestDatabase::new();
    let window = Duration::from_millis(1000);
    // Commits unpaced, so the burst comes as fast as the database stores it: a session
    // counts as busy only once its running average of gaps, which starts at the window,
    // falls below 10 ms.
    let app = spawn_app_on(&db.url, |s| {
        s.ws_write_gather = window;
        s.commit_interval = Duration::ZERO;
    })
    .await;
    let mut bob = app.ws("bob").await;
    bob.ok("join", json!({"room": "public:busy"})).await;
    let mut alice = app.ws("alice").await;
    alice.ok("join", json!({"room": "public:busy"})).await;
    let flushes_before = write_flushes(&app).await;

    // Act: alice sends a burst; bob's connection is busy from its first frame on.
    let started = std::time::Instant::now();
    for i in 0..30 {
        alice
            .ok("send", text("public:busy", &format!("m{i}")))
            .await;
    }
    let replies_took = started.elapsed();
    let got = messages_until(&mut bob, 30).await;

    // Assert: every frame, in order; bob's writes were gathered (a flush released them);
    // alice's 30 acks were never held for the window (replies are written at once).
    let texts: Vec<_> = got.iter().map(|m| m["body"]["text"].clone()).collect();
    let want: Vec<_> = (0..30).map(|i| json!(format!("m{i}"))).collect();
    assert_eq!(texts, want);
    assert!(write_flushes(&app).await > flushes_before, "no flush ran");
    assert!(
        replies_took < window * 2,
        "30 request/ack round trips took {replies_took:?}: replies were held"
    );
}

#[actix_web::test]
async fn a_rooms_fan_out_follows_joins_leaves_and_disconnects() {
    // Arrange: alice and bob in a room; a first message, so the room has grouped them.
    let (app, _db) = spawn_app().await;
    let room = "public:fanout-set";
    let mut alice = app.ws("alice").await;
    let mut bob = app.ws("bob").await;
    alice.ok("join", json!({ "room": room })).await;
    bob.ok("join", json!({ "room": room })).await;
    alice.ok("send", text(room, "one")).await;
    assert_eq!(messages_until(&mut bob, 1).await[0]["body"]["text"], "one");
    let quiet = Duration::from_millis(300);
    alice.assert_no("message", quiet).await;

    // Act + assert: a joiner gets the next message.
    let mut carol = app.ws("carol").await;
    carol.ok("join", json!({ "room": room })).await;
    alice.ok("send", text(room, "two")).await;
    for c in [&mut bob, &mut carol] {
        assert_eq!(messages_until(c, 1).await[0]["body"]["text"], "two");
    }

    // One who left and one who disconnected get nothing more; alice's second connection
    // gets her message, the sending one only its ack.
    bob.ok("leave", json!({ "room": room })).await;
    carol.close().await;
    let mut alice2 = app.ws("alice").await;
    alice.ok("send", text(room, "three")).await;
    assert_eq!(
        messages_until(&mut alice2, 1).await[0]["body"]["text"],
        "three"
    );
    bob.assert_no("message", quiet).await;
    alice.assert_no("message", quiet).await;
}
