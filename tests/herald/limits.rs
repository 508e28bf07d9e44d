//! Limits and abuse resistance: rate limits, sizes, depths, room/watch/session/IP caps, token
//! expiry during a session, the browser Origin allow-list, RFC 6455 conformance of the
//! WebSocket layer (through the diagnostic echo endpoint), and hostile clients next to a
//! well-behaved one. Each test fails if its rule is removed.

use std::time::Duration;

use herald::testkit::TestDatabase;
use serde_json::json;

use crate::helpers::{connect_ws, spawn_app, spawn_app_on};
use crate::raw_ws::RawWs;

fn text(room: &str, t: &str) -> serde_json::Value {
    json!({"room": room, "kind": "text", "body": {"text": t}})
}

#[actix_web::test]
async fn sends_are_rate_limited_and_sustained_abuse_closes_with_1008() {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| {
        s.limits.send_rate = 1;
        s.limits.send_burst = 5;
        s.limits.abuse_threshold = 10;
    })
    .await;
    let mut c = app.ws("alice").await;
    c.ok("join", json!({"room": "public:rl"})).await;
    let mut codes = Vec::new();
    for i in 0..7 {
        let r = c.request("send", text("public:rl", &i.to_string())).await;
        codes.push(if r["type"] == "ack" {
            "ack".to_owned()
        } else {
            r["code"].as_str().unwrap().to_owned()
        });
    }
    assert_eq!(codes[..5], ["ack"; 5]);
    assert_eq!(codes[5..], ["rate_limited"; 2]);
    assert_eq!(
        c.request("ping", json!({})).await["type"],
        "pong",
        "the connection stays usable"
    );
    for i in 0..20 {
        c.send_text(
            &json!({"type": "send", "ref": format!("f{i}"), "data": text("public:rl", "flood")})
                .to_string(),
        )
        .await;
    }
    assert_eq!(c.expect_close().await, Some(1008));
}

#[actix_web::test]
async fn presence_changes_are_rate_limited() {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| {
        s.limits.presence_rate = 1;
        s.limits.presence_burst = 2;
    })
    .await;
    let mut c = app.ws("alice").await;
    c.ok("presence", json!({"status": "away"})).await;
    c.ok("presence", json!({"status": "busy"})).await;
    assert_eq!(
        c.request("presence", json!({"status": "online"})).await["code"],
        "rate_limited"
    );
}

#[actix_web::test]
async fn a_bad_status_or_a_custom_message_over_256_bytes_is_refused_with_the_documented_texts() {
    let (app, _db) = spawn_app().await;
    // The presence frame (docs/protocol.md).
    let mut c = app.ws("alice").await;
    for (data, text) in [
        (
            json!({"status": "offline"}),
            r#"status must be online, away, busy or invisible, not "offline""#,
        ),
        (
            json!({"status": "busy", "custom_message": "x".repeat(257)}),
            "custom_message is longer than 256 bytes",
        ),
    ] {
        let e = c.request("presence", data).await;
        assert_eq!(
            (e["code"].as_str(), e["error"].as_str()),
            (Some("invalid_data"), Some(text))
        );
    }
    c.ok(
        "presence",
        json!({"status": "busy", "custom_message": "x".repeat(256)}),
    )
    .await;
    // The admin routes (docs/rest.md).
    let admin = app.admin_token("root");
    for (body, text) in [
        (
            json!({"status": "offline"}),
            "status must be online, away, busy or invisible",
        ),
        (
            json!({"status": "busy", "custom_message": "x".repeat(257)}),
            "custom_message is too long",
        ),
    ] {
        let (status, answer) = app
            .send_json("PUT", "/v1/admin/presence/bob", Some(&admin), Some(body))
            .await;
        assert_eq!(
            (status, &answer["error"]),
            (422, &json!({"code": "invalid_data", "message": text}))
        );
    }
    let (status, answer) = app
        .get("/v1/admin/presence?status=gone", Some(&admin))
        .await;
    assert_eq!(
        (status, answer["error"]["message"].as_str()),
        (422, Some("status must be online, away, busy or invisible"))
    );
    let (status, _) = app
        .send_json(
            "PUT",
            "/v1/admin/presence/bob",
            Some(&admin),
            Some(json!({"status": "busy", "custom_message": "x".repeat(256)})),
        )
        .await;
    assert_eq!(status, 200, "256 bytes is the limit, not past it");
}

#[actix_web::test]
async fn deep_and_oversized_input_gets_too_large() {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| s.max_text_bytes = 100).await;
    let mut c = app.ws("alice").await;
    let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
    c.send_text(&deep).await;
    let e = c.recv_type("error").await;
    assert_eq!(e["code"], "too_large", "{e}");
    c.ok("join", json!({"room": "public:big"})).await;
    let r = c
        .request("send", text("public:big", &"x".repeat(101)))
        .await;
    assert_eq!(r["code"], "too_large");
    c.ok("send", text("public:big", &"x".repeat(100))).await;
}

#[actix_web::test]
async fn rooms_per_user_members_per_room_and_watch_lists_are_capped() {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| {
        s.limits.max_rooms_per_user = 2;
        s.limits.max_room_members = 2;
        s.limits.max_watch = 1;
    })
    .await;
    let mut a = app.ws("alice").await;
    a.ok("join", json!({"room": "public:r1"})).await;
    a.ok("join", json!({"room": "public:r2"})).await;
    assert_eq!(
        a.request("join", json!({"room": "public:r3"})).await["code"],
        "limit_exceeded"
    );
    let mut b = app.ws("bob").await;
    b.ok("join", json!({"room": "public:r1"})).await;
    let mut c = app.ws("carol").await;
    let full = c.request("join", json!({"room": "public:r1"})).await;
    assert_eq!(full["code"], "limit_exceeded", "room full: {full}");
    a.ok("watch", json!({"users": ["bob"]})).await;
    assert_eq!(
        a.request("watch", json!({"users": ["bob"]})).await["type"],
        "ack",
        "already watched"
    );
    let mut d = app.ws("dave").await;
    d.ok("join", json!({"room": "public:r2"})).await; // shares a room with alice
    let r = a.request("watch", json!({"users": ["dave"]})).await;
    assert_eq!(r["code"], "limit_exceeded");
}

#[actix_web::test]
async fn sessions_per_user_and_connections_per_ip_are_capped_before_the_upgrade() {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| {
        s.limits.max_sessions_per_user = 2;
        s.limits.max_connections_per_ip = 3;
    })
    .await;
    let _a1 = app.ws("alice").await;
    let _a2 = app.ws("alice").await;
    let err = connect_ws(app.port, &app.token("alice"))
        .await
        .err()
        .expect("third session refused");
    assert!(err.contains("429"), "{err}");
    let _b = app.ws("bob").await;
    let err = connect_ws(app.port, &app.token("carol"))
        .await
        .err()
        .expect("fourth connection from 127.0.0.1 refused");
    assert!(err.contains("429"), "{err}");
}

#[actix_web::test]
async fn an_expiring_token_gets_token_expired_then_close_4001_unless_refreshed() {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| {
        s.auth.leeway = Duration::ZERO;
        s.auth.refresh_grace = Duration::from_millis(600);
    })
    .await;
    let short = app
        .engine
        .keys
        .mint("alice", None, &[], Duration::from_secs(2))
        .unwrap();
    // Refreshed in time: stays open.
    let mut kept = connect_ws(app.port, &short).await.unwrap();
    kept.recv_type("connection_ack").await;
    let e = kept.recv_type("error").await;
    assert_eq!(e["code"], "token_expired");
    kept.ok("auth", json!({"token": app.token("alice")})).await;
    actix::clock::sleep(Duration::from_millis(900)).await;
    assert_eq!(kept.request("ping", json!({})).await["type"], "pong");
    // Not refreshed: closed with 4001 after the grace period.
    let short = app
        .engine
        .keys
        .mint("bob", None, &[], Duration::from_secs(1))
        .unwrap();
    let mut lapsed = connect_ws(app.port, &short).await.unwrap();
    assert_eq!(lapsed.recv_type("error").await["code"], "token_expired");
    assert_eq!(lapsed.expect_close().await, Some(4001));
}

#[actix_web::test]
async fn browser_upgrades_need_an_allowed_origin() {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| {
        s.allowed_origins = vec!["https://app.example".into()]
    })
    .await;
    let path = format!("/v1/ws?token={}", app.token("alice"));
    let (status, _) = RawWs::connect(app.port, &path, "Origin: https://evil.example\r\n").await;
    assert_eq!(status, 403);
    let (status, _) = RawWs::connect(app.port, &path, "Origin: https://app.example\r\n").await;
    assert_eq!(status, 101);
    let (status, _) = RawWs::connect(app.port, &path, "").await;
    assert_eq!(status, 101, "non-browser clients send no Origin");
}

#[actix_web::test]
async fn the_websocket_layer_follows_rfc_6455() {
    let db = TestDatabase::new();
    let off = spawn_app_on(&db.url, |_| {}).await;
    assert_eq!(
        RawWs::connect(off.port, "/v1/ws/echo", "").await.0,
        404,
        "echo only with diagnostics"
    );
    let db2 = TestDatabase::new();
    let app = spawn_app_on(&db2.url, |s| {
        s.diagnostics = true;
        s.max_frame_bytes = 2048;
    })
    .await;
    let echo = |app_port| async move {
        RawWs::connect(app_port, "/v1/ws/echo", "")
            .await
            .1
            .expect("upgrade")
    };

    // Fragmented text is reassembled; pings are answered with the same payload.
    let mut c = echo(app.port).await;
    c.send_raw(0x01, b"hel", true).await;
    c.send_raw(0x89, b"pp", true).await; // a control frame between fragments is allowed
    c.send_raw(0x00, b"lo ", true).await;
    c.send_raw(0x80, b"world", true).await;
    let pong = c.recv().await.unwrap();
    assert_eq!((pong.opcode, pong.payload.as_slice()), (0xA, &b"pp"[..]));
    let f = c.recv().await.unwrap();
    assert_eq!((f.opcode, f.payload.as_slice()), (1, &b"hello world"[..]));
    // The close handshake is answered.
    c.send_raw(0x88, &1000u16.to_be_bytes(), true).await;
    assert_eq!(c.close_code().await, Some(1000));

    // Invalid UTF-8 → 1007, whole or fragmented.
    let mut c = echo(app.port).await;
    c.send_raw(0x81, &[0xce, 0xba, 0xe1, 0xbd], true).await;
    assert_eq!(c.close_code().await, Some(1007));
    let mut c = echo(app.port).await;
    c.send_raw(0x01, &[0xce], true).await;
    c.send_raw(0x80, &[0xff], true).await;
    assert_eq!(c.close_code().await, Some(1007));

    // ... and as soon as a fragment makes the text invalid, before the message ends.
    let mut c = echo(app.port).await;
    c.send_raw(0x01, b"ok so far", true).await;
    c.send_raw(0x00, &[0xff, 0xfe], true).await;
    assert_eq!(c.close_code().await, Some(1007));

    // Reserved bits, reserved opcodes, unmasked client frames, stray continuations → 1002.
    for (first, masked) in [(0xC1u8, true), (0x83, true), (0x81, false), (0x80, true)] {
        let mut c = echo(app.port).await;
        c.send_raw(first, b"x", masked).await;
        assert_eq!(
            c.close_code().await,
            Some(1002),
            "first byte {first:#x}, masked {masked}"
        );
    }

    // Too big, in one frame or across fragments → 1009.
    let mut c = echo(app.port).await;
    c.send_raw(0x81, &vec![b'a'; 4096], true).await;
    assert_eq!(c.close_code().await, Some(1009));
    let mut c = echo(app.port).await;
    c.send_raw(0x01, &vec![b'a'; 1500], true).await;
    c.send_raw(0x80, &vec![b'a'; 1500], true).await;
    assert_eq!(c.close_code().await, Some(1009));
}

#[actix_web::test]
async fn hostile_clients_do_not_hurt_a_well_behaved_pair() {
    let (app, _db) = spawn_app().await;
    let mut alice = app.ws("alice").await;
    let mut bob = app.ws("bob").await;
    alice.ok("join", json!({"room": "public:calm"})).await;
    bob.ok("join", json!({"room": "public:calm"})).await;

    // The hostile crowd, all at once: garbage bytes, half-open and slow handshakes, invalid
    // UTF-8, huge and deep JSON, floods, and a member that never reads.
    let port = app.port;
    let mut garbage = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut garbage, &[0u8, 159, 146, 150, 255, 13, 10, 13, 10])
        .await
        .unwrap();
    let mut half_open = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut half_open, b"GET /v1/ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let token = app.token("mallory");
    let (_, utf8) = RawWs::connect(port, &format!("/v1/ws?token={token}"), "").await;
    let mut utf8 = utf8.unwrap();
    utf8.send_raw(0x81, &[0xff, 0xfe], true).await;
    let (_, huge) = RawWs::connect(port, &format!("/v1/ws?token={token}"), "").await;
    let mut huge = huge.unwrap();
    huge.send_raw(
        0x81,
        format!("{{\"type\":\"ping\",\"data\":\"{}\"}}", "x".repeat(2 << 20)).as_bytes(),
        true,
    )
    .await;
    let mut flood = app.ws("mallory").await;
    flood.ok("join", json!({"room": "public:calm"})).await;
    for _ in 0..50 {
        flood
            .send_text(&format!("{}{}", "{\"a\":".repeat(100), "1"))
            .await;
        flood.send_text("not json at all").await;
    }
    let mut deaf = connect_ws(port, &app.token("deaf")).await.unwrap();
    deaf.request("join", json!({"room": "public:calm"})).await;

    // The well-behaved pair keeps getting every message.
    for i in 0..200 {
        alice
            .ok("send", text("public:calm", &format!("m{i}")))
            .await;
    }
    let mut got = 0;
    while got < 200 {
        let m = bob.recv_type("message").await;
        if m["data"]["from"] == "alice" {
            assert_eq!(m["data"]["body"]["text"], format!("m{got}"));
            got += 1;
        }
    }
    assert_eq!(utf8.close_code().await, Some(1007));
    assert_eq!(huge.close_code().await, Some(1009));
    let e = flood.recv_type("error").await;
    assert!(["too_large", "invalid_json"].contains(&e["code"].as_str().unwrap()));
    // The server is healthy and accepts new clients.
    assert_eq!(app.get("/healthz", None).await.0, 200);
    let mut fresh = app.ws("carol").await;
    assert_eq!(fresh.request("ping", json!({})).await["type"], "pong");
    drop((garbage, half_open, deaf));
}

/// At most `max_inflight` requests of a session wait for their answer; pipelined requests
/// beyond it are refused with `rate_limited` at once, and the session stays usable.
#[actix_rt::test]
async fn requests_in_flight_per_session_are_capped() {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| {
        s.limits.max_inflight = 2;
        s.limits.history_rate = 10_000;
        s.limits.history_burst = 10_000;
    })
    .await;
    let mut c = app.ws("piper").await;
    c.ok("join", json!({"room": "public:pipe"})).await;
    for i in 0..50 {
        let f = json!({"type": "history", "ref": format!("h{i}"), "data": {"room": "public:pipe"}});
        c.send_text(&f.to_string()).await;
    }
    let (mut acked, mut refused) = (0, 0);
    while acked + refused < 50 {
        let v = c.recv().await;
        match (v["type"].as_str(), v["code"].as_str()) {
            (Some("ack"), _) => acked += 1,
            (Some("error"), Some("rate_limited")) => {
                assert!(
                    v["error"].as_str().unwrap_or("").contains("in flight"),
                    "{v}"
                );
                refused += 1;
            }
            _ => {}
        }
    }
    assert!(
        refused > 0,
        "50 pipelined requests with a cap of 2 were all admitted"
    );
    assert!(acked >= 2, "the cap admits its share");
    // Once the replies are in, requests are admitted again.
    c.ok("history", json!({"room": "public:pipe"})).await;
    app.stop().await;
}

/// `history` is also counted per user across sessions: a client that reconnects gets no
/// fresh burst (the soak's flooder did, once per session).
#[actix_rt::test]
async fn history_budget_is_shared_by_a_users_sessions() {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| {
        s.limits.history_rate = 1;
        s.limits.history_burst = 5;
    })
    .await;
    let mut first = app.ws("reader").await;
    first.ok("join", json!({"room": "public:shared"})).await;
    for _ in 0..5 {
        first.ok("history", json!({"room": "public:shared"})).await;
    }
    first.close().await;
    // A new session has a full bucket of its own, but the user's is empty.
    let mut second = app.ws("reader").await;
    let v = second
        .request("history", json!({"room": "public:shared"}))
        .await;
    assert_eq!(v["code"], "rate_limited", "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("this user's sessions"),
        "{v}"
    );
    // Another user is not affected.
    let mut other = app.ws("someone").await;
    other.ok("join", json!({"room": "public:shared"})).await;
    other.ok("history", json!({"room": "public:shared"})).await;
    app.stop().await;
}
