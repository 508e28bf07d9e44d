//! End-to-end tests of the native WebSocket protocol against the real server.

use awc::ws::Message;
use herald::testkit::TestDatabase;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_on, user_names as users};

#[actix_web::test]
async fn two_users_chat_with_presence_typing_and_read_receipts() {
    // Arrange
    let (app, _db) = spawn_app().await;
    let mut alice = app.ws("alice").await;
    assert_eq!(alice.sync["data"], json!({"rooms": [], "unread_total": 0}));
    let mut bob = app.ws("bob").await;

    // Act + Assert: join, presence
    let joined = alice.ok("join", json!({"room": "public:lobby"})).await;
    assert_eq!(joined["room"], "public:lobby");
    assert_eq!(joined["seq"], 0);
    assert_eq!(joined["members"][0]["user"], "alice");
    let joined = bob.ok("join", json!({"room": "public:lobby"})).await;
    let members: Vec<&str> = joined["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user"].as_str().unwrap())
        .collect();
    assert!(
        members.contains(&"alice") && members.contains(&"bob"),
        "{joined}"
    );
    // Presence changes are coalesced per room; bob's join is in one of the diffs.
    loop {
        let diff = alice.recv_type("room_presence").await;
        assert_eq!(diff["data"]["room"], "public:lobby");
        if diff["data"]["joins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["user"] == "bob")
        {
            break;
        }
    }

    // messages with durable acks
    let ack = alice.ok("send", json!({"room": "public:lobby", "kind": "text", "body": {"text": "hi bob"}, "client_msg_id": "a1"})).await;
    assert_eq!(
        (ack["seq"].as_i64(), ack["status"].as_str()),
        (Some(1), Some("sent"))
    );
    let msg = bob.recv_type("message").await;
    assert_eq!(msg["data"]["body"]["text"], "hi bob");
    assert_eq!(msg["data"]["from"], "alice");
    assert_eq!(msg["data"]["seq"], 1);
    assert_eq!(msg["data"]["message_id"], ack["message_id"]);

    // read receipt
    bob.ok(
        "receipt",
        json!({"room": "public:lobby", "seq": 1, "status": "read"}),
    )
    .await;
    let r = alice.recv_type("receipt").await;
    assert_eq!(
        (
            r["data"]["user"].as_str(),
            r["data"]["seq"].as_i64(),
            r["data"]["status"].as_str()
        ),
        (Some("bob"), Some(1), Some("read"))
    );

    // Sending implies having read: bob's watermark moves past his own message silently.
    let ack2 = bob
        .ok(
            "send",
            json!({"room": "public:lobby", "kind": "text", "body": {"text": "hi alice"}}),
        )
        .await;
    assert_eq!(ack2["seq"], 2);
    assert_eq!(
        alice.recv_type("message").await["data"]["body"]["text"],
        "hi alice"
    );

    // typing
    bob.ok("typing", json!({"room": "public:lobby", "state": "start"}))
        .await;
    let t = alice.recv_type("typing").await;
    assert_eq!(
        t["data"],
        json!({"room": "public:lobby", "user": "bob", "state": "start"})
    );
    // Neither the sender's own message nor its own typing echo back to it.
    bob.assert_no("typing", std::time::Duration::from_millis(200))
        .await;

    // ping
    let pong = alice.request("ping", json!({})).await;
    assert_eq!(pong["type"], "pong");
}

#[actix_web::test]
async fn bad_tokens_get_401_with_a_json_body_before_the_upgrade() {
    let (app, _db) = spawn_app().await;
    let client = awc::Client::default();
    for url in [
        format!("http://127.0.0.1:{}/v1/ws", app.port),
        format!("http://127.0.0.1:{}/v1/ws?token=garbage", app.port),
    ] {
        let mut resp = client
            .get(url)
            .insert_header(("Upgrade", "websocket"))
            .insert_header(("Connection", "Upgrade"))
            .insert_header(("Sec-WebSocket-Version", "13"))
            .insert_header(("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_token");
    }
    // Expired (beyond the leeway), and signed with another secret.
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "alice", "exp": 1_000_000}),
        &jsonwebtoken::EncodingKey::from_secret(herald::testkit::TEST_SECRET.as_bytes()),
    )
    .unwrap();
    let err = app.ws_with_token(&expired).await.err().expect("refused");
    assert!(err.contains("401"), "{err}");
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "alice", "exp": 9_999_999_999u64}),
        &jsonwebtoken::EncodingKey::from_secret(b"another-secret-another-secret-another"),
    )
    .unwrap();
    assert!(app.ws_with_token(&forged).await.is_err());
}

#[actix_web::test]
async fn garbage_frames_get_error_frames_and_the_connection_stays_usable() {
    let (app, _db) = spawn_app().await;
    let mut c = app.ws("alice").await;

    c.send_text("this is not json").await;
    let e = c.recv_type("error").await;
    assert_eq!(e["code"], "invalid_json");
    assert!(e["error"].as_str().unwrap().len() > 3);

    c.send_text(r#"{"type":"teleport","ref":"x1"}"#).await;
    let e = c.recv_type("error").await;
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_str()),
        (Some("unknown_type"), Some("x1"))
    );

    let e = c
        .request(
            "send",
            json!({"room": "public:a", "kind": "location", "body": {"lat": 200, "lng": 0}}),
        )
        .await;
    assert_eq!(e["code"], "invalid_data");
    let e = c.request("join", json!({"room": 42})).await;
    assert_eq!(e["code"], "invalid_data");
    let e = c
        .request(
            "send",
            json!({"room": "public:never-joined", "kind": "text", "body": {"text": "x"}}),
        )
        .await;
    assert_eq!(e["code"], "forbidden");

    c.send_raw(Message::Binary(vec![1u8, 2, 3].into())).await;
    assert_eq!(c.recv_type("error").await["code"], "binary_unsupported");

    // Still usable.
    c.ok("join", json!({"room": "public:after"})).await;
    let ack = c
        .ok(
            "send",
            json!({"room": "public:after", "kind": "text", "body": {"text": "still here"}}),
        )
        .await;
    assert_eq!(ack["seq"], 1);
}

#[actix_web::test]
async fn a_message_larger_than_the_limit_closes_with_1009() {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| s.max_frame_bytes = 4096).await;
    let mut c = app.ws("alice").await;
    c.send_text(&"x".repeat(10_000)).await;
    assert_eq!(c.expect_close().await, Some(1009));
}

#[actix_web::test]
async fn history_survives_a_restart_over_websocket_and_rest() {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |_| {}).await;
    let mut alice = app.ws("alice").await;
    alice.ok("join", json!({"room": "public:lobby"})).await;
    for i in 1..=5 {
        alice
            .ok(
                "send",
                json!({"room": "public:lobby", "kind": "text", "body": {"text": format!("m{i}")}}),
            )
            .await;
    }
    alice.close().await;
    app.stop().await;

    let app = spawn_app_on(&db.url, |_| {}).await;
    let mut alice = app.ws("alice").await;
    let sync = alice.sync.clone();
    assert_eq!(
        sync["data"]["rooms"][0]["room"], "public:lobby",
        "membership survives the restart"
    );
    let h = alice.ok("history", json!({"room": "public:lobby"})).await;
    let texts: Vec<&str> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["m1", "m2", "m3", "m4", "m5"]);
    assert_eq!(h["has_more"], false);
    let page = alice
        .ok(
            "history",
            json!({"room": "public:lobby", "before_seq": 4, "limit": 2}),
        )
        .await;
    let seqs: Vec<i64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!((seqs, page["has_more"].as_bool()), (vec![2, 3], Some(true)));

    let (status, body) = app
        .get("/v1/rooms/public:lobby/messages", Some(&app.token("alice")))
        .await;
    assert_eq!(status, 200);
    let rest_texts: Vec<&str> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(rest_texts, texts);
    // The next message continues the sequence.
    let ack = alice
        .ok(
            "send",
            json!({"room": "public:lobby", "kind": "text", "body": {"text": "m6"}}),
        )
        .await;
    assert_eq!(ack["seq"], 6);
}

#[actix_web::test]
async fn a_reconnecting_client_catches_up_with_since_seq() {
    let (app, _db) = spawn_app().await;
    let mut alice = app.ws("alice").await;
    let mut bob = app.ws("bob").await;
    alice.ok("join", json!({"room": "public:c"})).await;
    bob.ok("join", json!({"room": "public:c"})).await;
    alice
        .ok(
            "send",
            json!({"room": "public:c", "kind": "text", "body": {"text": "one"}}),
        )
        .await;
    assert_eq!(bob.recv_type("message").await["data"]["seq"], 1);
    bob.close().await;
    for t in ["two", "three"] {
        alice
            .ok(
                "send",
                json!({"room": "public:c", "kind": "text", "body": {"text": t}}),
            )
            .await;
    }
    let mut bob = app.ws("bob").await;
    // bob never reported delivery, so everything after his delivered watermark comes first.
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(
            bob.recv_type("message").await["data"]["seq"]
                .as_i64()
                .unwrap(),
        );
    }
    assert_eq!(got, [1, 2, 3]);
    let j = bob
        .ok("join", json!({"room": "public:c", "since_seq": 1}))
        .await;
    let missed: Vec<&str> = j["missed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(missed, ["two", "three"]);
    assert_eq!(j["seq"], 3);
    // Subscribed again without a join: a new message arrives live.
    alice
        .ok(
            "send",
            json!({"room": "public:c", "kind": "text", "body": {"text": "four"}}),
        )
        .await;
    assert_eq!(bob.recv_type("message").await["data"]["seq"], 4);
}

#[actix_web::test]
async fn sessions_are_subscribed_to_their_rooms_on_connect() {
    let (app, _db) = spawn_app().await;
    let mut bob = app.ws("bob").await;
    bob.ok("join", json!({"room": "public:s"})).await;
    bob.close().await;
    let mut bob = app.ws("bob").await;
    let mut alice = app.ws("alice").await;
    alice.ok("join", json!({"room": "public:s"})).await;
    alice
        .ok(
            "send",
            json!({"room": "public:s", "kind": "text", "body": {"text": "no rejoin needed"}}),
        )
        .await;
    assert_eq!(
        bob.recv_type("message").await["data"]["body"]["text"],
        "no rejoin needed"
    );
}

#[actix_web::test]
async fn resending_with_the_same_client_msg_id_returns_the_original_ack() {
    let (app, _db) = spawn_app().await;
    let mut a = app.ws("alice").await;
    a.ok("join", json!({"room": "public:idem"})).await;
    let first = a.ok("send", json!({"room": "public:idem", "kind": "text", "body": {"text": "x"}, "client_msg_id": "k1"})).await;
    let mut a2 = app.ws("alice").await;
    let again = a2.ok("send", json!({"room": "public:idem", "kind": "text", "body": {"text": "x"}, "client_msg_id": "k1"})).await;
    assert_eq!(first["message_id"], again["message_id"]);
    assert_eq!(first["seq"], again["seq"]);
    let (_, body) = app
        .get("/v1/rooms/public:idem/messages", Some(&app.token("alice")))
        .await;
    assert_eq!(body["messages"].as_array().unwrap().len(), 1);
}

#[actix_web::test]
async fn watch_reports_presence_changes() {
    let (app, _db) = spawn_app().await;
    let mut alice = app.ws("alice").await;
    // Watching needs a shared room (open watching is off by default).
    let e = alice.request("watch", json!({"users": ["bob"]})).await;
    assert_eq!(e["code"], "forbidden");
    alice.ok("join", json!({"room": "public:w"})).await;
    let mut bob = app.ws("bob").await;
    bob.ok("join", json!({"room": "public:w"})).await;
    let p = alice.ok("watch", json!({"users": ["bob"]})).await;
    assert_eq!(p["presence"][0]["status"], "online");
    bob.ok(
        "presence",
        json!({"status": "busy", "custom_message": "in a meeting"}),
    )
    .await;
    let ev = alice.recv_type("presence").await;
    assert_eq!(
        (
            ev["data"]["user"].as_str(),
            ev["data"]["status"].as_str(),
            ev["data"]["custom_message"].as_str()
        ),
        (Some("bob"), Some("busy"), Some("in a meeting"))
    );
    bob.close().await;
    let ev = alice.recv_type("presence").await;
    assert_eq!(ev["data"]["status"], "offline");
    assert!(ev["data"]["last_seen"].is_string());
    alice.ok("unwatch", json!({"users": ["bob"]})).await;
}

#[actix_web::test]
async fn auth_refresh_accepts_a_fresh_token_for_the_same_user_only() {
    let (app, _db) = spawn_app().await;
    let mut a = app.ws("alice").await;
    let d = a.ok("auth", json!({"token": app.token("alice")})).await;
    assert!(d["expires_at"].is_string());
    let e = a
        .request("auth", json!({"token": app.token("mallory")}))
        .await;
    assert_eq!(e["code"], "forbidden");
    let e = a.request("auth", json!({"token": "nope"})).await;
    assert_eq!(e["code"], "invalid_token");
}

#[actix_web::test]
async fn graceful_shutdown_closes_sessions_with_1001_and_keeps_acked_messages() {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |_| {}).await;
    let mut a = app.ws("alice").await;
    a.ok("join", json!({"room": "public:g"})).await;
    for i in 0..10 {
        a.ok(
            "send",
            json!({"room": "public:g", "kind": "text", "body": {"text": i.to_string()}}),
        )
        .await;
    }
    let engine = app.engine.clone();
    let stop = actix_web::rt::spawn(app.stop());
    assert_eq!(a.expect_close().await, Some(1001));
    stop.await.unwrap();
    drop(engine);
    let app = spawn_app_on(&db.url, |_| {}).await;
    let (_, body) = app
        .get("/v1/rooms/public:g/messages", Some(&app.token("alice")))
        .await;
    assert_eq!(body["messages"].as_array().unwrap().len(), 10);
    let (_, p) = app
        .get("/v1/presence/alice", Some(&app.admin_token("root")))
        .await;
    assert!(
        p["last_seen"].is_string(),
        "last_seen flushed at shutdown: {p}"
    );
}

#[actix_web::test]
async fn frames_sent_together_with_the_handshake_are_not_lost() {
    // A client may pipeline its first frames right behind the upgrade request; they arrive
    // with the request head and must reach the session.
    let (app, _db) = spawn_app().await;
    let auth = format!("Authorization: Bearer {}\r\n", app.token("alice"));
    let mut early = crate::raw_ws::encode_frame(0x81, br#"{"type":"ping","ref":"p1"}"#, true);
    early.extend(crate::raw_ws::encode_frame(
        0x81,
        br#"{"type":"join","ref":"j1","data":{"room":"public:early"}}"#,
        true,
    ));
    let (status, ws) =
        crate::raw_ws::RawWs::connect_pipelined(app.port, "/v1/ws", &auth, &early).await;
    assert_eq!(status, 101);
    let mut ws = ws.expect("upgraded");
    let mut frames = Vec::new();
    while let Some(f) = ws.recv().await {
        let v: serde_json::Value = serde_json::from_slice(&f.payload).expect("json frame");
        let done = v["ref"] == "j1";
        frames.push(v);
        if done {
            break;
        }
    }
    let seen: Vec<_> = frames
        .iter()
        .map(|v| (v["type"].clone(), v["ref"].clone()))
        .collect();
    assert!(seen.contains(&(json!("pong"), json!("p1"))), "{seen:?}");
    assert!(seen.contains(&(json!("ack"), json!("j1"))), "{seen:?}");
    // The first frame is still connection_ack, naming the protocol and server versions.
    let ack = &frames[0];
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    assert_eq!(
        (&ack["data"]["protocol"], &ack["data"]["server_version"]),
        (&json!(1), &json!(env!("CARGO_PKG_VERSION"))),
        "{ack}"
    );
}

#[actix_web::test]
async fn a_join_ack_lists_one_page_of_members_and_members_pages_the_rest() {
    // Arrange: join acks list 3 users; 7 users online in one room, one of them invisible,
    // one of them (u5) blocking the reader, and u2 online twice.
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| s.join_members_limit = 3).await;
    let room = json!({"room": "public:big"});
    let mut socks = Vec::new();
    for u in ["u1", "u2", "u3", "u4", "u5", "u6", "u7"] {
        let mut s = app.ws(u).await;
        s.ok("join", room.clone()).await;
        socks.push(s);
    }
    let mut u2b = app.ws("u2").await;
    u2b.ok("join", room.clone()).await;
    socks[2]
        .ok("presence", json!({"status": "invisible"}))
        .await;
    socks[4].ok("block", json!({"user": "reader"})).await;
    let mut reader = app.ws("reader").await;

    // Act: the reader joins, then pages from the ack's cursor, 2 at a time.
    let joined = reader.ok("join", room.clone()).await;
    let mut seen = users(&joined["members"]);
    let mut cursor = joined["members_next"].clone();
    let mut pages = 0;
    while !cursor.is_null() {
        let page = reader
            .ok(
                "members",
                json!({"room": "public:big", "after": cursor, "limit": 2}),
            )
            .await;
        assert_eq!(page["room"], "public:big");
        seen.extend(users(&page["members"]));
        cursor = page["next"].clone();
        pages += 1;
        assert!(pages < 10, "paging does not end: {page}");
    }

    // Assert: the ack named its cursor (the third user in id order); the pages together
    // list every visible connected user once, in order, without the invisible u3 and the
    // blocking u5; u2's two sessions count once.
    assert_eq!(users(&joined["members"]), ["reader", "u1", "u2"]);
    assert_eq!(joined["members_next"], "u2");
    assert_eq!(seen, ["reader", "u1", "u2", "u4", "u6", "u7"]);
    // Strangers are refused; a bad page size is refused; a cursor past the end is empty.
    let mut stranger = app.ws("stranger").await;
    let r = stranger.request("members", room.clone()).await;
    assert_eq!(r["code"], "forbidden", "{r}");
    let r = reader
        .request("members", json!({"room": "public:big", "limit": 0}))
        .await;
    assert_eq!(r["code"], "invalid_data", "{r}");
    let last = reader
        .ok("members", json!({"room": "public:big", "after": "zzz"}))
        .await;
    assert_eq!(
        (last["members"].clone(), last["next"].clone()),
        (json!([]), json!(null))
    );
}
