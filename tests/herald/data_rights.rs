//! Backend integration owned by admins: API keys (created, shown once, used, revoked), a
//! user's data export and erasure, and the audit log that records them.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, text};

#[actix_web::test]
async fn api_keys_are_shown_once_work_as_a_service_and_stop_when_revoked() {
    let (app, _db) = spawn_app().await;
    let admin = app.admin_token("root");
    // Only admins manage keys.
    let (status, _) = app
        .send_json(
            "POST",
            "/v1/admin/api-keys",
            Some(&app.token("alice")),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(status, 403);
    let (status, created) = app
        .send_json(
            "POST",
            "/v1/admin/api-keys",
            Some(&admin),
            Some(json!({"name": "push bridge"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with(&format!("hk_{id}_")), "{key}");
    assert_eq!(created["roles"], json!(["service"]));
    // Bad requests.
    for body in [json!({"name": ""}), json!({"name": "x", "roles": ["root"]})] {
        let (status, _) = app
            .send_json("POST", "/v1/admin/api-keys", Some(&admin), Some(body))
            .await;
        assert_eq!(status, 422);
    }

    // The list never shows the key (nor its digest).
    let (_, list) = app.get("/v1/admin/api-keys", Some(&admin)).await;
    assert_eq!(list["api_keys"][0]["id"], id.as_str());
    assert!(!list.to_string().contains(&key[3 + 12 + 1..]), "{list}");

    // The key authenticates as a service, by bearer or X-Api-Key.
    let notify = json!({"users": ["alice"], "notification_type": "alert", "title": "hi"});
    let (status, body) = app
        .send_json(
            "POST",
            "/v1/admin/notifications",
            Some(&key),
            Some(notify.clone()),
        )
        .await;
    assert!(status == 200 || status == 201, "{status} {body}");
    let resp = awc::Client::new()
        .get(format!("{}/v1/rooms", app.address))
        .insert_header(("X-Api-Key", key.as_str()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // A service key is no admin.
    let (status, _) = app.get("/v1/admin/stats", Some(&key)).await;
    assert_eq!(status, 403);
    // A wrong secret for a real id, and garbage, are refused.
    let forged = format!("hk_{id}_{}", "0".repeat(64));
    let (status, body) = app.get("/v1/rooms", Some(&forged)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_token"))
    );

    // Revoked: refused at once.
    let (status, body) = app
        .send_json(
            "DELETE",
            &format!("/v1/admin/api-keys/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!((status, body["revoked"].as_bool()), (200, Some(true)));
    let (status, _) = app
        .send_json("POST", "/v1/admin/notifications", Some(&key), Some(notify))
        .await;
    assert_eq!(status, 401);
    let (_, again) = app
        .send_json(
            "DELETE",
            &format!("/v1/admin/api-keys/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(again["revoked"], false);
    let (_, list) = app.get("/v1/admin/api-keys", Some(&admin)).await;
    assert!(list["api_keys"][0]["revoked_at"].is_string());

    // Audited, without the key.
    let (_, log) = app.get("/v1/admin/audit", Some(&admin)).await;
    let actions: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["api_key.revoke", "api_key.revoke", "api_key.create"]
    );
    assert!(!log.to_string().contains(&key), "{log}");
    let (status, _) = app.get("/v1/admin/audit", Some(&app.token("alice"))).await;
    assert_eq!(status, 403);
}

#[actix_web::test]
async fn a_users_data_is_exported_then_erased_and_both_are_audited() {
    let (app, _db) = spawn_app().await;
    let admin = app.admin_token("root");
    let room = "public:rights";
    let mut alice = app.ws_query("alice", "device_id=phone").await;
    let mut bob = app.ws("bob").await;
    alice.ok("join", json!({"room": room})).await;
    bob.ok("join", json!({"room": room})).await;
    for t in ["one", "two"] {
        alice.ok("send", text(room, t)).await;
    }
    bob.ok("send", text(room, "bob's")).await;
    alice
        .ok(
            "send",
            json!({"to": "bob", "kind": "text", "body": {"text": "dm"}}),
        )
        .await;
    alice
        .ok("react", json!({"room": room, "seq": 3, "emoji": "👍"}))
        .await;
    alice
        .ok("receipt", json!({"room": room, "seq": 3, "status": "read"}))
        .await;
    alice
        .ok(
            "presence",
            json!({"status": "busy", "custom_message": "exams"}),
        )
        .await;
    let (status, _) = app
        .send_json(
            "POST",
            "/v1/admin/notifications",
            Some(&admin),
            Some(json!({"users": ["alice"], "notification_type": "alert", "title": "t"})),
        )
        .await;
    assert!(status == 200 || status == 201);

    // Export: all of it, messages in pages.
    let (status, ex) = app.get("/v1/admin/users/alice/export", Some(&admin)).await;
    assert_eq!(status, 200, "{ex}");
    assert_eq!(ex["user"], "alice");
    let texts: Vec<&str> = ex["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["one", "two", "dm"]);
    assert_eq!(ex["messages_next_cursor"], Value::Null);
    let rooms: Vec<&str> = ex["memberships"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["room"].as_str().unwrap())
        .collect();
    assert_eq!(rooms, ["direct:alice:bob", room]);
    assert_eq!(ex["reactions"][0]["emoji"], "👍");
    assert_eq!(ex["notifications"][0]["title"], "t");
    assert_eq!(ex["presence"]["status"], "busy");
    assert_eq!(ex["presence"]["custom_message"], "exams");
    assert_eq!(ex["device_positions"][0]["device_id"], "phone");
    let (_, page) = app
        .get("/v1/admin/users/alice/export?limit=2", Some(&admin))
        .await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 2);
    let cursor = page["messages_next_cursor"].as_str().unwrap().to_owned();
    let (_, rest) = app
        .get(
            &format!("/v1/admin/users/alice/export?limit=2&messages_after={cursor}"),
            Some(&admin),
        )
        .await;
    assert_eq!(rest["messages"][0]["body"]["text"], "dm");
    let (status, _) = app
        .get("/v1/admin/users/alice/export", Some(&app.token("bob")))
        .await;
    assert_eq!(status, 403);

    // Erase, while alice is connected.
    let (status, erased) = app
        .send_json("DELETE", "/v1/admin/users/alice", Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{erased}");
    assert_eq!(
        erased["erased"],
        json!({"messages": 3, "memberships": 0, "reactions": 1, "notifications": 1})
    );
    assert_eq!(alice.expect_close().await, Some(4000));
    // Her messages are tombstones that keep their seqs; bob's stays; the room goes on.
    let h = bob.ok("history", json!({"room": room})).await;
    let bodies: Vec<(i64, Value)> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["seq"].as_i64().unwrap(), m["body"].clone()))
        .collect();
    assert_eq!(
        bodies,
        [
            (1, Value::Null),
            (2, Value::Null),
            (3, json!({"text": "bob's"}))
        ]
    );
    assert_eq!(
        h["messages"][2].get("reactions"),
        None,
        "her reaction is gone"
    );
    // Devices catch up through the change log.
    let changes = bob
        .ok("changes", json!({"room": room, "after_change_seq": 1}))
        .await;
    let deleted: Vec<i64> = changes["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "message_deleted")
        .map(|c| c["data"]["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(deleted, [1, 2]);
    assert_eq!(bob.ok("send", text(room, "after")).await["seq"], 4);
    // Nothing of hers is left to export; she is no member anywhere.
    let (_, ex) = app.get("/v1/admin/users/alice/export", Some(&admin)).await;
    for k in [
        "memberships",
        "notifications",
        "reactions",
        "device_positions",
        "blocks",
    ] {
        assert_eq!(ex[k], json!([]), "{k}: {ex}");
    }
    assert_eq!(ex["presence"], Value::Null);
    assert_eq!(ex["preferences"], Value::Null);
    assert_eq!(
        ex["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| !m["body"].is_null())
            .count(),
        0
    );
    let (_, rp) = app
        .get(&format!("/v1/admin/rooms/{room}/presence"), Some(&admin))
        .await;
    assert!(!rp.to_string().contains("\"alice\""), "{rp}");
    // Audited.
    let (_, log) = app.get("/v1/admin/audit", Some(&admin)).await;
    let actions: Vec<(&str, &str)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["subject"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        &actions[..2],
        [("user.export", "alice"), ("user.erase", "alice")]
    );
}

#[actix_web::test]
async fn retention_tombstones_old_bodies_in_batches_keeps_seqs_and_says_where_history_starts() {
    use herald::clock::ManualClock;
    use std::sync::Arc;
    use std::time::Duration;
    let db = herald::testkit::TestDatabase::new();
    let clock = ManualClock::new();
    let app = crate::helpers::spawn_app_on(&db.url, |s| {
        s.clock = Arc::new(clock.clone());
        s.retention.public = Some(Duration::from_secs(86_400));
        s.retention.read_notifications = Some(Duration::from_secs(86_400));
        s.retention.sweep = Duration::from_millis(100);
        s.retention.batch = 2;
    })
    .await;
    let admin = app.admin_token("root");
    let room = "public:old";
    let mut alice = app.ws("alice").await;
    let mut bob = app.ws("bob").await;
    alice.ok("join", json!({"room": room})).await;
    bob.ok("join", json!({"room": room})).await;
    for t in ["a", "b", "c"] {
        alice.ok("send", text(room, t)).await;
    }
    alice
        .ok("react", json!({"room": room, "seq": 1, "emoji": "👍"}))
        .await;
    alice
        .ok(
            "send",
            json!({"to": "bob", "kind": "text", "body": {"text": "dm"}}),
        )
        .await;
    for title in ["read", "unread"] {
        app.send_json(
            "POST",
            "/v1/admin/notifications",
            Some(&admin),
            Some(json!({"users": ["bob"], "notification_type": "alert", "title": title})),
        )
        .await;
    }
    let (_, list) = app.get("/v1/notifications", Some(&app.token("bob"))).await;
    let read_id = list["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["title"] == "read")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.send_json(
        "POST",
        &format!("/v1/notifications/{read_id}/read"),
        Some(&app.token("bob")),
        None,
    )
    .await;
    // Nothing is old yet.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let h = bob.ok("history", json!({"room": room})).await;
    assert_eq!(h["retained_from"], 1);
    assert_eq!(h["messages"][0]["body"]["text"], "a");

    // Two days later (batches of 2: two transactions for the three messages).
    clock.advance(Duration::from_secs(2 * 86_400));
    let mut h = json!(null);
    for _ in 0..50 {
        h = bob.ok("history", json!({"room": room})).await;
        if h["retained_from"] == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(h["retained_from"], 4, "{h}");
    for (i, m) in h["messages"].as_array().unwrap().iter().enumerate() {
        assert_eq!(m["seq"], i as i64 + 1, "seqs stay");
        assert_eq!(m["body"], Value::Null, "{m}");
        assert!(m["deleted_at"].is_string());
        assert_eq!(m.get("reactions"), None);
    }
    // Direct rooms keep theirs (no retention configured for them); the room goes on at 4.
    let dm = bob.ok("history", json!({"room": "direct:alice:bob"})).await;
    assert_eq!(dm["messages"][0]["body"]["text"], "dm");
    assert_eq!(dm["retained_from"], 1);
    // (The manual clock is two days ahead: from here on, every new message is old too.)
    assert_eq!(alice.ok("send", text(room, "d")).await["seq"], 4);
    // A new session's sync says where the room's history starts; so does REST.
    let carol_view = app.ws("alice").await;
    let entry = carol_view.sync["data"]["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["room"] == room)
        .unwrap()
        .clone();
    assert!(entry["retained_from"].as_i64().unwrap() >= 4, "{entry}");
    let (_, rest) = app
        .get(
            &format!("/v1/rooms/{room}/messages"),
            Some(&app.token("bob")),
        )
        .await;
    let from = rest["retained_from"].as_i64().unwrap();
    assert!(from >= 4, "{rest}");
    let seqs: Vec<i64> = rest["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    for m in rest["messages"].as_array().unwrap() {
        // Below retained_from, tombstones only.
        if m["seq"].as_i64().unwrap() < from {
            assert_eq!(m["body"], Value::Null, "{m}");
        }
    }
    // The read notification went; the unread one stays.
    let mut titles = Vec::new();
    for _ in 0..50 {
        let (_, list) = app.get("/v1/notifications", Some(&app.token("bob"))).await;
        titles = list["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["title"].as_str().unwrap().to_owned())
            .collect();
        if titles == ["unread"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(titles, ["unread"]);
}

#[actix_web::test]
async fn api_keys_are_capped_per_deployment() {
    let db = herald::testkit::TestDatabase::new();
    let app = crate::helpers::spawn_app_on(&db.url, |s| s.limits.max_api_keys = 2).await;
    let admin = app.admin_token("root");
    let mut got = Vec::new();
    for i in 0..3 {
        let (status, body) = app
            .send_json(
                "POST",
                "/v1/admin/api-keys",
                Some(&admin),
                Some(json!({"name": format!("k{i}")})),
            )
            .await;
        got.push((status, body["error"]["code"].as_str().map(str::to_owned)));
    }
    assert_eq!(
        got,
        [
            (201, None),
            (201, None),
            (429, Some("limit_exceeded".to_owned()))
        ]
    );
}
