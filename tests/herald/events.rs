//! Custom events (`event`, relayed and never stored) on the native socket and Socket.IO,
//! and the seed application's Socket.IO event names (`send_message` in, `new_message` out).

use std::time::Duration;

use herald::testkit::TestDatabase;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_on};
use crate::socketio::start_with_auth;

#[actix_web::test]
async fn a_custom_event_reaches_the_other_members_and_is_never_stored() {
    let (app, _db) = spawn_app().await;
    let mut alice = app.ws("alice").await;
    let mut alice2 = app.ws("alice").await;
    let mut bob = app.ws("bob").await;
    let mut carol = app.ws("carol").await;
    alice.ok("join", json!({"room": "public:ev"})).await;
    bob.ok("join", json!({"room": "public:ev"})).await;

    let ack = alice
        .ok(
            "event",
            json!({"room": "public:ev", "name": "cursor.moved", "data": {"x": 3, "y": [1, 2]}}),
        )
        .await;
    assert_eq!(ack, json!({}));
    let e = bob.recv_type("event").await;
    assert_eq!(
        e["data"],
        json!({"room": "public:ev", "from": "alice", "name": "cursor.moved", "data": {"x": 3, "y": [1, 2]}})
    );
    // Other members only: neither the sender's own sessions nor strangers hear it.
    alice.assert_no("event", Duration::from_millis(300)).await;
    alice2.assert_no("event", Duration::from_millis(10)).await;
    carol.assert_no("event", Duration::from_millis(10)).await;
    // Not stored: no history, and the room's seq did not move.
    let h = bob.ok("history", json!({"room": "public:ev"})).await;
    assert_eq!(h["messages"], json!([]));
    let m = bob
        .ok(
            "send",
            json!({"room": "public:ev", "kind": "text", "body": {"text": "first"}}),
        )
        .await;
    assert_eq!(m["seq"], 1);

    // Only members may send one.
    let e = carol
        .request("event", json!({"room": "public:ev", "name": "x"}))
        .await;
    assert_eq!(e["code"], "forbidden", "{e}");
    let e = carol
        .request("event", json!({"room": "private:nope", "name": "x"}))
        .await;
    assert_eq!(e["code"], "forbidden", "{e}");
    // Names are checked, and Herald's own are reserved.
    for bad in ["message", "new_message", "a b", ""] {
        let e = alice
            .request("event", json!({"room": "public:ev", "name": bad}))
            .await;
        assert_eq!(e["code"], "invalid_data", "{bad:?}: {e}");
    }
    bob.assert_no("event", Duration::from_millis(200)).await;
}

#[actix_web::test]
async fn custom_events_are_size_and_rate_limited() {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| {
        s.limits.max_event_bytes = 64;
        s.limits.event_rate = 1;
        s.limits.event_burst = 3;
    })
    .await;
    let mut alice = app.ws("alice").await;
    let mut bob = app.ws("bob").await;
    alice.ok("join", json!({"room": "public:lim"})).await;
    bob.ok("join", json!({"room": "public:lim"})).await;

    let e = alice
        .request(
            "event",
            json!({"room": "public:lim", "name": "big", "data": "x".repeat(100)}),
        )
        .await;
    assert_eq!(
        (e["code"].as_str(), e["error"].as_str()),
        (
            Some("too_large"),
            Some("event data is larger than 64 bytes")
        )
    );
    // The refused one took no token: three pass (the burst), the fourth is refused.
    let mut codes = Vec::new();
    for i in 0..4 {
        let r = alice
            .request(
                "event",
                json!({"room": "public:lim", "name": "tick", "data": i}),
            )
            .await;
        codes.push(r["code"].as_str().unwrap_or("ack").to_owned());
    }
    assert_eq!(codes, ["ack", "ack", "ack", "rate_limited"]);
    for i in 0..3 {
        let e = bob.recv_type("event").await;
        assert_eq!(e["data"]["data"], i);
    }
    bob.assert_no("event", Duration::from_millis(300)).await;
    // Other frames keep their own budget.
    alice
        .ok(
            "send",
            json!({"room": "public:lim", "kind": "text", "body": {"text": "still here"}}),
        )
        .await;
}

#[actix_web::test]
#[ignore = "needs the official Socket.IO clients (tests/socketio; .ci/run installs them)"]
async fn socketio_emit_of_any_event_name_is_a_custom_event_for_the_room_it_names() {
    let (app, _db) = spawn_app().await;
    let mut native = app.ws("carol").await;
    native.ok("join", json!({"room": "public:sioev"})).await;
    let mut alice = start_with_auth("node", &app, &app.token("alice"), "websocket", None);
    let mut bob = start_with_auth("node", &app, &app.token("bob"), "websocket", None);
    for c in [&mut alice, &mut bob] {
        c.expect("connect", |v| v["event"] == "connect").await;
        let j = c.call("join", json!({"room": "public:sioev"})).await;
        assert_eq!(j["ok"], true, "{j}");
    }

    let ack = alice
        .call("cursor", json!({"room": "public:sioev", "x": 1, "y": 2}))
        .await;
    assert_eq!(ack, json!({"ok": true}));
    // Socket.IO receivers get it under its own name; native ones as an `event` frame.
    let got = bob.server_event("cursor", |_| true).await;
    assert_eq!(
        got,
        json!({"room": "public:sioev", "from": "alice", "name": "cursor", "data": {"x": 1, "y": 2}})
    );
    let e = native.recv_type("event").await;
    assert_eq!(e["data"]["name"], "cursor");
    assert_eq!(e["data"]["data"], json!({"x": 1, "y": 2}));

    // The native `event` frame name works on Socket.IO too, and native → Socket.IO.
    native
        .ok(
            "event",
            json!({"room": "public:sioev", "name": "doc:saved", "data": {"rev": 7}}),
        )
        .await;
    let got = alice.server_event("doc:saved", |_| true).await;
    assert_eq!(got["from"], "carol");
    assert_eq!(got["data"], json!({"rev": 7}));

    // Neither Herald's, nor an alias, nor naming a room: an error ack, never a silent drop.
    let r = alice.call("cursor", json!({"x": 1})).await;
    assert_eq!(
        (r["ok"].as_bool(), r["code"].as_str()),
        (Some(false), Some("invalid_data"))
    );
    let r = alice.call("cursor", json!({"room": "public:other"})).await;
    assert_eq!(r["code"], "forbidden", "{r}");
    // A seed name is not an alias for a client that did not ask for them.
    let r = alice
        .call(
            "send_message",
            json!({"room": "public:sioev", "text": "hi"}),
        )
        .await;
    assert_eq!(r["code"], "invalid_data", "{r}");
    alice.command(json!({"do": "exit"}));
    bob.command(json!({"do": "exit"}));
}

#[actix_web::test]
#[ignore = "needs the official Socket.IO clients (tests/socketio; .ci/run installs them)"]
async fn the_seeds_socketio_calls_work_with_events_seed() {
    let (app, _db) = spawn_app().await;
    let seed_auth = json!({"events": "seed"});
    let mut seed = start_with_auth(
        "node",
        &app,
        &app.token("alice"),
        "default",
        Some(&seed_auth),
    );
    let mut seed_peer =
        start_with_auth("node", &app, &app.token("bob"), "default", Some(&seed_auth));
    let mut plain = start_with_auth("node", &app, &app.token("carol"), "default", None);
    for c in [&mut seed, &mut seed_peer, &mut plain] {
        c.expect("connect", |v| v["event"] == "connect").await;
    }
    let j = seed.call("join_room", json!({"room": "public:seed"})).await;
    assert_eq!(j["ok"], true, "{j}");
    assert_eq!(
        seed_peer
            .call("join_room", json!({"room": "public:seed"}))
            .await["ok"],
        true
    );
    assert_eq!(
        plain.call("join", json!({"room": "public:seed"})).await["ok"],
        true
    );

    let ack = seed
        .call(
            "send_message",
            json!({"room": "public:seed", "text": "hello from the seed", "client_msg_id": "s-1"}),
        )
        .await;
    assert_eq!(
        (ack["ok"].as_bool(), ack["seq"].as_i64()),
        (Some(true), Some(1)),
        "{ack}"
    );
    let m = seed_peer.server_event("new_message", |_| true).await;
    assert_eq!(
        (
            m["seq"].as_i64(),
            m["from"].as_str(),
            m["body"]["text"].as_str()
        ),
        (Some(1), Some("alice"), Some("hello from the seed"))
    );
    // A client that did not ask for the seed's names gets Herald's, and only those.
    let m = plain.server_event("message", |_| true).await;
    assert_eq!(m["seq"], 1);
    // A retry is idempotent through the alias too.
    let again = seed
        .call(
            "send_message",
            json!({"room": "public:seed", "text": "hello from the seed", "client_msg_id": "s-1"}),
        )
        .await;
    assert_eq!(
        (again["seq"].as_i64(), again["duplicate"].as_bool()),
        (Some(1), Some(true))
    );
    // Nothing was emitted twice under both names.
    while let Some(v) = seed_peer.next_within(Duration::from_millis(500)).await {
        assert!(
            !(v["event"] == "server" && (v["name"] == "message" || v["name"] == "new_message")),
            "unexpected {v}"
        );
    }
    // An unknown vocabulary is refused at connect.
    let bad = json!({"events": "klingon"});
    let mut refused = start_with_auth("node", &app, &app.token("dave"), "websocket", Some(&bad));
    let e = refused
        .expect("connect_error", |v| v["event"] == "connect_error")
        .await;
    assert!(
        e["message"].as_str().unwrap().contains("auth.events"),
        "{e}"
    );
    for c in [&mut seed, &mut seed_peer, &mut plain] {
        c.command(json!({"do": "exit"}));
    }
}

#[actix_web::test]
#[ignore = "needs the official Socket.IO clients (tests/socketio; .ci/run installs them)"]
async fn herald_sio_events_seed_gives_every_client_the_seeds_names() {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| {
        s.sio_events = herald::socketio::Vocabulary::Seed;
    })
    .await;
    let mut native = app.ws("alice").await;
    native.ok("join", json!({"room": "public:seedwide"})).await;
    // The Python client, unchanged: no `events` in its auth.
    let mut py =
        crate::socketio::start_with_auth("python", &app, &app.token("bob"), "default", None);
    py.expect("connect", |v| v["event"] == "connect").await;
    assert_eq!(
        py.call("join_room", json!({"room": "public:seedwide"}))
            .await["ok"],
        true
    );
    native
        .ok(
            "send",
            json!({"room": "public:seedwide", "kind": "text", "body": {"text": "to the seed"}}),
        )
        .await;
    let m = py.server_event("new_message", |_| true).await;
    assert_eq!(m["body"]["text"], "to the seed");
    let ack = py
        .call(
            "send_message",
            json!({"room": "public:seedwide", "text": "back"}),
        )
        .await;
    assert_eq!(ack["seq"], 2, "{ack}");
    let m = native.recv_type("message").await;
    assert_eq!(m["data"]["body"]["text"], "back");
    // A client may still choose Herald's names.
    let herald_auth = json!({"events": "herald"});
    let mut node = start_with_auth(
        "node",
        &app,
        &app.token("carol"),
        "websocket",
        Some(&herald_auth),
    );
    node.expect("connect", |v| v["event"] == "connect").await;
    assert_eq!(
        node.call("join", json!({"room": "public:seedwide"})).await["ok"],
        true
    );
    native
        .ok(
            "send",
            json!({"room": "public:seedwide", "kind": "text", "body": {"text": "third"}}),
        )
        .await;
    node.server_event("message", |d| d["seq"] == 3).await;
    py.command(json!({"do": "exit"}));
    node.command(json!({"do": "exit"}));
}
