//! Edits, deletes and reactions: who may, idempotence, tombstones that keep their seq, the
//! room's change log (live events, `changes` pages, `sync`'s `change_seq`), reaction
//! counts in history, the limits, REST for backends, and Socket.IO.

use std::time::Duration;

use herald::testkit::TestDatabase;
use serde_json::{json, Value};

use crate::helpers::{code, spawn_app, spawn_app_on, text, TestApp, WsClient};
use crate::socketio::start_with_auth;

async fn history(c: &mut WsClient, room: &str) -> Vec<Value> {
    c.ok("history", json!({"room": room})).await["messages"]
        .as_array()
        .unwrap()
        .clone()
}

/// A private room of `owner` with `members`, everyone connected and subscribed.
async fn private_room(app: &TestApp, owner: &str, members: &[&str]) -> String {
    let room = crate::helpers::private_room(app, owner).await;
    for m in members {
        let (status, body) = app
            .send_json(
                "POST",
                &format!("/v1/rooms/{room}/members/{m}"),
                Some(&app.admin_token("root")),
                None,
            )
            .await;
        assert!(status == 200 || status == 201, "{status} {body}");
    }
    room
}

#[actix_web::test]
async fn the_sender_edits_and_everyone_sees_it_live_and_in_history() {
    let (app, _db) = spawn_app().await;
    let room = "public:edits";
    let mut alice = app.ws("alice").await;
    let mut alice_phone = app.ws("alice").await;
    let mut bob = app.ws("bob").await;
    alice.ok("join", json!({"room": room})).await;
    bob.ok("join", json!({"room": room})).await;
    alice.ok("send", text(room, "helo")).await;
    bob.recv_type("message").await;

    let ack = alice
        .ok(
            "edit",
            json!({"room": room, "seq": 1, "body": {"text": "hello"}}),
        )
        .await;
    assert_eq!(
        (
            ack["seq"].as_i64(),
            ack["change_seq"].as_i64(),
            ack["by"].as_str()
        ),
        (Some(1), Some(1), Some("alice"))
    );
    assert_eq!(ack["body"], json!({"text": "hello"}));
    // Every session of the room, the editor's other devices too, gets the same event.
    for c in [&mut bob, &mut alice_phone] {
        let e = c.recv_type("message_edited").await;
        assert_eq!(e["data"], ack);
    }
    let h = history(&mut bob, room).await;
    assert_eq!(h.len(), 1);
    assert_eq!(h[0]["body"], json!({"text": "hello"}));
    assert!(h[0]["edited_at"].is_string(), "{}", h[0]);

    // Idempotent: the same body again changes nothing and announces nothing.
    let again = alice
        .ok(
            "edit",
            json!({"room": room, "seq": 1, "body": {"text": "hello"}}),
        )
        .await;
    assert_eq!(again, json!({"room": room, "seq": 1, "unchanged": true}));
    bob.assert_no("message_edited", Duration::from_millis(300))
        .await;
    // Only the sender edits; the body must fit the kind; the message must exist.
    assert_eq!(
        code(
            &mut bob,
            "edit",
            json!({"room": room, "seq": 1, "body": {"text": "mine now"}})
        )
        .await,
        "forbidden"
    );
    assert_eq!(
        code(
            &mut alice,
            "edit",
            json!({"room": room, "seq": 1, "body": {"lat": 1}})
        )
        .await,
        "invalid_data"
    );
    assert_eq!(
        code(
            &mut alice,
            "edit",
            json!({"room": room, "seq": 9, "body": {"text": "x"}})
        )
        .await,
        "not_found"
    );
    // Edits are writes: no seq is taken, the next message is 2.
    assert_eq!(alice.ok("send", text(room, "next")).await["seq"], 2);
}

#[actix_web::test]
async fn a_delete_leaves_a_tombstone_that_keeps_its_seq_and_owners_and_admins_moderate() {
    let (app, _db) = spawn_app().await;
    let room = private_room(&app, "owner", &["alice", "bob"]).await;
    let mut owner = app.ws("owner").await;
    let mut alice = app.ws("alice").await;
    let mut bob = app.ws("bob").await;
    for seq in 1..=3 {
        alice.ok("send", text(&room, &format!("m{seq}"))).await;
    }
    // Not bob's: refused. The sender may.
    assert_eq!(
        code(&mut bob, "delete", json!({"room": room, "seq": 1})).await,
        "forbidden"
    );
    let ack = alice.ok("delete", json!({"room": room, "seq": 1})).await;
    assert_eq!(
        (ack["seq"].as_i64(), ack["by"].as_str()),
        (Some(1), Some("alice"))
    );
    assert!(ack["deleted_at"].is_string());
    let e = bob.recv_type("message_deleted").await;
    assert_eq!(e["data"], ack);
    // Twice: nothing more.
    let again = alice.ok("delete", json!({"room": room, "seq": 1})).await;
    assert_eq!(again["unchanged"], true);
    // The room's owner deletes anyone's message.
    owner.ok("delete", json!({"room": room, "seq": 2})).await;
    // An admin and a service over REST too.
    let (status, body) = app
        .send_json(
            "DELETE",
            &format!("/v1/rooms/{room}/messages/3"),
            Some(&app.admin_token("root")),
            None,
        )
        .await;
    assert_eq!((status, body["by"].as_str()), (200, Some("root")), "{body}");
    // A plain user over REST follows the socket's rules.
    let (status, body) = app
        .send_json(
            "DELETE",
            &format!("/v1/rooms/{room}/messages/3"),
            Some(&app.token("bob")),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    // Tombstones keep their seqs; history and a join's replay show them.
    let h = history(&mut bob, &room).await;
    let seqs: Vec<i64> = h.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3]);
    for m in &h {
        assert_eq!(m["body"], Value::Null, "{m}");
        assert!(m["deleted_at"].is_string(), "{m}");
        assert_eq!(m["from"], "alice");
    }
    let joined = bob.ok("join", json!({"room": room, "since_seq": 0})).await;
    assert_eq!(joined["missed"][0]["body"], Value::Null);
    // A tombstone cannot be edited or reacted to.
    assert_eq!(
        code(
            &mut alice,
            "edit",
            json!({"room": room, "seq": 1, "body": {"text": "x"}})
        )
        .await,
        "conflict"
    );
    assert_eq!(
        code(
            &mut bob,
            "react",
            json!({"room": room, "seq": 1, "emoji": "👍"})
        )
        .await,
        "conflict"
    );
    // Seqs stay gap-free.
    assert_eq!(alice.ok("send", text(&room, "after")).await["seq"], 4);
}

#[actix_web::test]
async fn the_edit_window_is_configurable_and_binds_senders_not_moderators() {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| {
        s.limits.edit_window = Duration::ZERO;
    })
    .await;
    let room = private_room(&app, "owner", &["alice"]).await;
    let mut owner = app.ws("owner").await;
    let mut alice = app.ws("alice").await;
    alice.ok("send", text(&room, "x")).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        code(
            &mut alice,
            "edit",
            json!({"room": room, "seq": 1, "body": {"text": "y"}})
        )
        .await,
        "forbidden"
    );
    assert_eq!(
        code(&mut alice, "delete", json!({"room": room, "seq": 1})).await,
        "forbidden"
    );
    assert_eq!(
        code(&mut owner, "delete", json!({"room": room, "seq": 1})).await,
        "ok"
    );
}

#[actix_web::test]
async fn reactions_are_counted_per_emoji_with_me_and_limited() {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| {
        s.limits.max_reactions_per_message = 2;
        s.limits.max_emoji_bytes = 8;
    })
    .await;
    let room = "public:reactions";
    let mut alice = app.ws("alice").await;
    let mut bob = app.ws("bob").await;
    let mut carol = app.ws("carol").await;
    for c in [&mut alice, &mut bob, &mut carol] {
        c.ok("join", json!({"room": room})).await;
    }
    alice.ok("send", text(room, "vote")).await;

    let ack = bob
        .ok("react", json!({"room": room, "seq": 1, "emoji": "👍"}))
        .await;
    assert_eq!(
        (
            ack["user"].as_str(),
            ack["on"].as_bool(),
            ack["emoji"].as_str()
        ),
        (Some("bob"), Some(true), Some("👍"))
    );
    let e = alice.recv_type("reaction").await;
    assert_eq!(e["data"], ack);
    carol
        .ok("react", json!({"room": room, "seq": 1, "emoji": "👍"}))
        .await;
    carol
        .ok(
            "react",
            json!({"room": room, "seq": 1, "emoji": "❤️", "on": true}),
        )
        .await;
    // Twice the same: unchanged.
    let again = bob
        .ok("react", json!({"room": room, "seq": 1, "emoji": "👍"}))
        .await;
    assert_eq!(again["unchanged"], true);
    // A third distinct emoji is over the limit; a known one is not.
    assert_eq!(
        code(
            &mut alice,
            "react",
            json!({"room": room, "seq": 1, "emoji": "🎉"})
        )
        .await,
        "limit_exceeded"
    );
    alice
        .ok("react", json!({"room": room, "seq": 1, "emoji": "❤️"}))
        .await;
    // The emoji string is bounded and checked.
    for bad in ["", "a b", "toolongemoji"] {
        assert_eq!(
            code(
                &mut alice,
                "react",
                json!({"room": room, "seq": 1, "emoji": bad})
            )
            .await,
            "invalid_data",
            "{bad:?}"
        );
    }
    // History: counts in first-reaction order, `me` for the reader.
    let h = history(&mut bob, room).await;
    assert_eq!(
        h[0]["reactions"],
        json!([{"emoji": "👍", "count": 2, "me": true}, {"emoji": "❤️", "count": 2, "me": false}])
    );
    let h = history(&mut carol, room).await;
    assert_eq!(
        h[0]["reactions"],
        json!([{"emoji": "👍", "count": 2, "me": true}, {"emoji": "❤️", "count": 2, "me": true}])
    );
    // Take one back.
    let off = bob
        .ok(
            "react",
            json!({"room": room, "seq": 1, "emoji": "👍", "on": false}),
        )
        .await;
    assert_eq!(off["on"], false);
    let h = history(&mut bob, room).await;
    assert_eq!(
        h[0]["reactions"][0],
        json!({"emoji": "👍", "count": 1, "me": false})
    );
    // Strangers may not react.
    let mut dave = app.ws("dave").await;
    assert_eq!(
        code(
            &mut dave,
            "react",
            json!({"room": "public:elsewhere", "seq": 1, "emoji": "👍"})
        )
        .await,
        "forbidden"
    );
}

#[actix_web::test]
async fn a_device_that_was_away_fetches_every_change_in_order_from_the_change_log() {
    let (app, _db) = spawn_app().await;
    let room = "public:changelog";
    let mut alice = app.ws("alice").await;
    alice.ok("join", json!({"room": room})).await;
    let mut bob = app.ws("bob").await;
    bob.ok("join", json!({"room": room})).await;
    for t in ["one", "two", "three"] {
        alice.ok("send", text(room, t)).await;
    }
    bob.close().await;
    // While bob is away: an edit, a reaction, a delete.
    alice
        .ok(
            "edit",
            json!({"room": room, "seq": 1, "body": {"text": "uno"}}),
        )
        .await;
    alice
        .ok("react", json!({"room": room, "seq": 2, "emoji": "👍"}))
        .await;
    alice.ok("delete", json!({"room": room, "seq": 3})).await;

    // Bob's sync says how far the room's change log goes.
    let mut bob = app.ws("bob").await;
    let entry = bob.sync["data"]["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["room"] == room)
        .unwrap()
        .clone();
    assert_eq!(entry["change_seq"], 3, "{entry}");
    // He asks for what follows the last change he holds (none: 0), in pages.
    let page = bob
        .ok(
            "changes",
            json!({"room": room, "after_change_seq": 0, "limit": 2}),
        )
        .await;
    assert_eq!(page["has_more"], true);
    let kinds: Vec<(&str, i64)> = page["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap(),
                c["data"]["change_seq"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(kinds, [("message_edited", 1), ("reaction", 2)]);
    assert_eq!(page["changes"][0]["data"]["body"], json!({"text": "uno"}));
    let rest = bob
        .ok("changes", json!({"room": room, "after_change_seq": 2}))
        .await;
    assert_eq!(rest["has_more"], false);
    assert_eq!(rest["changes"][0]["type"], "message_deleted");
    assert_eq!(rest["changes"][0]["data"]["seq"], 3);
    // The same log over REST, for backends; members only.
    let (status, body) = app
        .get(
            &format!("/v1/rooms/{room}/changes?after_change_seq=1"),
            Some(&app.token("bob")),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["changes"].as_array().unwrap().len(), 2);
    let (status, _) = app
        .get(
            &format!("/v1/rooms/{room}/changes"),
            Some(&app.token("eve")),
        )
        .await;
    assert_eq!(status, 403);
    // The room list shows it too.
    let (_, rooms) = app.get("/v1/rooms", Some(&app.token("bob"))).await;
    assert_eq!(rooms["rooms"][0]["change_seq"], 3);
}

#[actix_web::test]
async fn backends_edit_over_rest_and_only_senders_may() {
    let (app, _db) = spawn_app().await;
    let room = "public:rest-edit";
    let mut alice = app.ws("alice").await;
    let mut bob = app.ws("bob").await;
    alice.ok("join", json!({"room": room})).await;
    bob.ok("join", json!({"room": room})).await;
    alice.ok("send", text(room, "typo")).await;
    let path = format!("/v1/rooms/{room}/messages/1");
    let (status, body) = app
        .send_json(
            "PATCH",
            &path,
            Some(&app.token("alice")),
            Some(json!({"body": {"text": "fixed"}})),
        )
        .await;
    assert_eq!(
        (status, body["change_seq"].as_i64()),
        (200, Some(1)),
        "{body}"
    );
    let e = bob.recv_type("message_edited").await;
    assert_eq!(e["data"]["body"]["text"], "fixed");
    // Not even an admin rewrites someone's words.
    let (status, body) = app
        .send_json(
            "PATCH",
            &path,
            Some(&app.admin_token("root")),
            Some(json!({"body": {"text": "censored"}})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, _) = app
        .send_json(
            "PATCH",
            &format!("/v1/rooms/{room}/messages/0"),
            Some(&app.token("alice")),
            Some(json!({"body": {"text": "x"}})),
        )
        .await;
    assert_eq!(status, 422);
}

#[actix_web::test]
#[ignore = "needs the official Socket.IO clients (tests/socketio; .ci/run installs them)"]
async fn edits_deletes_and_reactions_work_the_same_on_socketio() {
    let (app, _db) = spawn_app().await;
    let room = "public:sio-changes";
    let mut native = app.ws("alice").await;
    native.ok("join", json!({"room": room})).await;
    native.ok("send", text(room, "hi")).await;
    let mut sio = start_with_auth("node", &app, &app.token("bob"), "websocket", None);
    sio.expect("connect", |v| v["event"] == "connect").await;
    assert_eq!(sio.call("join", json!({"room": room})).await["ok"], true);
    let r = sio
        .call("react", json!({"room": room, "seq": 1, "emoji": "👍"}))
        .await;
    assert_eq!(
        (r["ok"].as_bool(), r["change_seq"].as_i64()),
        (Some(true), Some(1)),
        "{r}"
    );
    let e = native.recv_type("reaction").await;
    assert_eq!(e["data"]["user"], "bob");
    native
        .ok(
            "edit",
            json!({"room": room, "seq": 1, "body": {"text": "hey"}}),
        )
        .await;
    let got = sio.server_event("message_edited", |_| true).await;
    assert_eq!(got["body"]["text"], "hey");
    let r = sio.call("delete", json!({"room": room, "seq": 1})).await;
    assert_eq!(r["code"], "forbidden", "{r}");
    let page = sio.call("changes", json!({"room": room})).await;
    assert_eq!(page["changes"].as_array().unwrap().len(), 2, "{page}");
    sio.command(json!({"do": "exit"}));
}
