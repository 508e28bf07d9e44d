//! End-to-end tests of the REST surface.

use serde_json::{json, Value};

use crate::helpers::spawn_app;

#[actix_web::test]
async fn health_and_readiness() {
    let (app, _db) = spawn_app().await;
    assert_eq!(app.get("/healthz", None).await.0, 200);
    let (status, body) = app.get("/readyz", None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
}

#[actix_web::test]
async fn rest_needs_a_valid_token_and_errors_have_code_and_message() {
    let (app, _db) = spawn_app().await;
    let (status, body) = app.get("/v1/rooms", None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "invalid_token");
    assert!(body["error"]["message"].is_string());
    assert_eq!(app.get("/v1/rooms", Some("bad")).await.0, 401);
    assert_eq!(app.get("/v1/nothing-here", None).await.0, 404);
}

#[actix_web::test]
async fn private_rooms_members_and_history_over_rest() {
    let (app, _db) = spawn_app().await;
    let owner = app.token("owner");
    let (status, created) = app
        .send_json(
            "POST",
            "/v1/rooms",
            Some(&owner),
            Some(json!({"name": "Team"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let room = created["room"].as_str().unwrap().to_owned();
    assert!(room.starts_with("private:"));

    // Only the owner (or an admin) adds members.
    let (status, _) = app
        .send_json(
            "POST",
            &format!("/v1/rooms/{room}/members/bob"),
            Some(&app.token("eve")),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, body) = app
        .send_json(
            "POST",
            &format!("/v1/rooms/{room}/members/bob"),
            Some(&owner),
            None,
        )
        .await;
    // The owner's add is an invitation (issue 18); bob becomes a member by accepting.
    assert_eq!(
        (status, body["added"].as_bool(), body["invited"].as_bool()),
        (200, Some(false), Some(true))
    );
    let (status, body) = app
        .send_json(
            "POST",
            &format!("/v1/invitations/{room}/accept"),
            Some(&app.token("bob")),
            None,
        )
        .await;
    assert_eq!(
        (status, body["added"].as_bool()),
        (200, Some(true)),
        "{body}"
    );

    // bob, already connected elsewhere, is subscribed without joining.
    let mut bob = app.ws("bob").await;
    let mut o = app.ws("owner").await;
    o.ok(
        "send",
        json!({"room": room, "kind": "text", "body": {"text": "welcome"}}),
    )
    .await;
    assert_eq!(
        bob.recv_type("message").await["data"]["body"]["text"],
        "welcome"
    );

    // Lists and history.
    let (status, list) = app.get("/v1/rooms", Some(&app.token("bob"))).await;
    assert_eq!(status, 200);
    assert_eq!(list["rooms"][0]["room"], room.as_str());
    assert_eq!(list["rooms"][0]["unread"], 1);
    assert_eq!(list["rooms"][0]["last_seq"], 1);
    let (status, _) = app
        .get(
            &format!("/v1/rooms/{room}/messages"),
            Some(&app.token("eve")),
        )
        .await;
    assert_eq!(status, 403);
    let (status, h) = app
        .get(
            &format!("/v1/rooms/{room}/messages?limit=10"),
            Some(&app.token("bob")),
        )
        .await;
    assert_eq!(
        (status, h["messages"][0]["body"]["text"].as_str()),
        (200, Some("welcome"))
    );
    let (status, _) = app
        .get(
            &format!("/v1/rooms/{room}/messages?limit=0"),
            Some(&app.token("bob")),
        )
        .await;
    assert_eq!(status, 422);

    // Removal ends access.
    let (status, _) = app
        .send_json(
            "DELETE",
            &format!("/v1/rooms/{room}/members/bob"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .get(
            &format!("/v1/rooms/{room}/messages"),
            Some(&app.token("bob")),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = app
        .send_json(
            "POST",
            "/v1/rooms/private:doesnotexist/members/bob",
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn admins_list_everyone_online_and_others_get_403() {
    let (app, _db) = spawn_app().await;
    let _a = app.ws("alice").await;
    let _b1 = app.ws("bob").await;
    let _b2 = app.ws("bob").await;
    let (status, body) = app
        .get("/v1/admin/presence", Some(&app.admin_token("root")))
        .await;
    assert_eq!(status, 200);
    let users: Vec<(&str, u64)> = body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["user"].as_str().unwrap(), u["devices"].as_u64().unwrap()))
        .collect();
    assert_eq!(users, [("alice", 1), ("bob", 2)]);
    let (status, body) = app
        .get("/v1/admin/presence", Some(&app.token("alice")))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
}

#[actix_web::test]
async fn presence_of_a_user_over_rest_follows_the_co_member_rule() {
    let (app, _db) = spawn_app().await;
    // Nobody shares a room with ghost: only admins and services may look.
    let (status, body) = app
        .get("/v1/presence/ghost", Some(&app.token("alice")))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, p) = app
        .get("/v1/presence/ghost", Some(&app.admin_token("root")))
        .await;
    assert_eq!((status, p["status"].as_str()), (200, Some("offline")));
    assert!(p["last_seen"].is_null(), "never seen");
    let mut bob = app.ws("bob").await;
    bob.ok("join", json!({"room": "public:p"})).await;
    let mut alice = app.ws("alice").await;
    alice.ok("join", json!({"room": "public:p"})).await;
    let (_, p) = app.get("/v1/presence/bob", Some(&app.token("alice"))).await;
    assert_eq!(
        (p["status"].as_str(), p["devices"].as_u64()),
        (Some("online"), Some(1))
    );
    assert_eq!(
        app.get("/v1/presence/alice", Some(&app.token("alice")))
            .await
            .0,
        200,
        "oneself"
    );
    let (status, _) = app
        .get("/v1/presence/bad%20id", Some(&app.token("alice")))
        .await;
    assert_eq!(status, 422);
}

#[actix_web::test]
async fn admin_routes_need_the_admin_role() {
    let (app, _db) = spawn_app().await;
    let user = app.token("alice");
    for (method, path) in [
        ("GET", "/v1/admin/presence"),
        ("GET", "/v1/admin/presence/alice"),
        ("GET", "/v1/admin/rooms/public:x/presence"),
        ("GET", "/v1/admin/rooms"),
        ("POST", "/v1/admin/users/alice/disconnect"),
        ("GET", "/v1/admin/stats"),
    ] {
        let (status, body) = app.send_json(method, path, Some(&user), None).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{method} {path}"
        );
        assert_eq!(
            app.send_json(method, path, None, None).await.0,
            401,
            "{method} {path}"
        );
    }
}

#[actix_web::test]
async fn admin_presence_filters_pages_and_shows_sessions() {
    let (app, _db) = spawn_app().await;
    let admin = app.admin_token("root");
    let mut a = app.ws("alice").await;
    a.ok("join", json!({"room": "public:ops"})).await;
    let mut b = app.ws("bob").await;
    b.ok("presence", json!({"status": "busy"})).await;
    let _c = app.ws("carol").await;

    let (_, body) = app
        .get("/v1/admin/presence?status=busy", Some(&admin))
        .await;
    let users: Vec<&str> = body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["bob"]);
    let (_, body) = app
        .get("/v1/admin/presence?room=public:ops", Some(&admin))
        .await;
    assert_eq!(body["users"][0]["user"], "alice");
    assert_eq!(body["count"], 1);

    let (_, page1) = app.get("/v1/admin/presence?limit=2", Some(&admin)).await;
    assert_eq!(page1["users"].as_array().unwrap().len(), 2);
    let cursor = page1["next_cursor"].as_str().unwrap().to_owned();
    let (_, page2) = app
        .get(
            &format!("/v1/admin/presence?limit=2&cursor={cursor}"),
            Some(&admin),
        )
        .await;
    assert_eq!(page2["users"][0]["user"], "carol");
    assert!(page2["next_cursor"].is_null());

    let (status, one) = app.get("/v1/admin/presence/alice", Some(&admin)).await;
    assert_eq!(status, 200);
    let s = &one["sessions"][0];
    assert!(s["session_id"].is_string() && s["connected_at"].is_string());
    assert!(s["remote_addr"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(s["subscribed_rooms"], json!(["public:ops"]));

    let (status, room) = app
        .get("/v1/admin/rooms/public:ops/presence", Some(&admin))
        .await;
    assert_eq!(status, 200, "{room}");
    assert_eq!(room["online"][0]["presence"]["user"], "alice");
    assert_eq!(room["online"][0]["sessions"], 1);
    assert_eq!(
        app.get("/v1/admin/rooms/public:nothing/presence", Some(&admin))
            .await
            .0,
        404
    );
}

#[actix_web::test]
async fn admin_disconnect_closes_every_session_with_4000_and_the_user_is_offline() {
    let (app, _db) = spawn_app().await;
    let admin = app.admin_token("root");
    let mut phone = app.ws("bob").await;
    let mut laptop = app.ws("bob").await;
    let (status, body) = app
        .send_json("POST", "/v1/admin/users/bob/disconnect", Some(&admin), None)
        .await;
    assert_eq!((status, body["sessions_closed"].as_u64()), (200, Some(2)));
    assert_eq!(phone.expect_close().await, Some(4000));
    assert_eq!(laptop.expect_close().await, Some(4000));
    let mut offline = false;
    for _ in 0..20 {
        let (_, p) = app.get("/v1/presence/bob", Some(&admin)).await;
        if p["status"] == "offline" {
            offline = true;
            break;
        }
        actix::clock::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(offline, "bob shows offline right after the disconnect");
}

#[actix_web::test]
async fn stats_and_metrics_report_traffic() {
    // Arrange: two users in one room. The server is this test's own, so its per-engine
    // counts (sessions, users, rooms, commit queue) see only this test's traffic; the
    // process-wide Prometheus values are shared with concurrent tests and only their
    // presence is checked.
    let (app, _db) = spawn_app().await;
    let admin = app.admin_token("root");
    let mut a = app.ws("alice").await;
    let mut b = app.ws("bob").await;
    a.ok("join", json!({"room": "public:m"})).await;
    b.ok("join", json!({"room": "public:m"})).await;
    let (_, before) = app.get("/v1/admin/stats", Some(&admin)).await;

    // Act: one message, one refused frame.
    a.ok(
        "send",
        json!({"room": "public:m", "kind": "text", "body": {"text": "x"}}),
    )
    .await;
    b.recv_type("message").await;
    let e = a.request("teleport", json!({})).await;
    assert_eq!(e["code"], "unknown_type");
    let (status, s) = app.get("/v1/admin/stats", Some(&admin)).await;

    // Assert
    assert_eq!(status, 200);
    assert_eq!(
        (&s["sessions"], &s["users_online"], &s["active_rooms"]),
        (&json!(2), &json!(2), &json!(1)),
        "{s}"
    );
    let delta = |key: &str| {
        s["persistence"][key].as_u64().unwrap() - before["persistence"][key].as_u64().unwrap()
    };
    assert_eq!(
        (delta("groups"), delta("batches"), delta("failed_batches")),
        (1, 1, 0),
        "the message is one write group, committed in one batch: {before} -> {s}"
    );
    assert_eq!(s["persistence"]["queue_depth"], 0);
    // The dashboard's commit latency: total batch time grows with the batches.
    let total_ms = |v: &serde_json::Value| v["persistence"]["total_batch_ms"].as_f64().unwrap();
    assert!(total_ms(&s) > total_ms(&before), "{before} -> {s}");
    assert_eq!(
        s["users_by_status"],
        json!({"online": 2, "away": 0, "busy": 0, "invisible": 0})
    );
    assert!(s["notifications_created_total"].is_u64(), "{s}");
    assert!(s["connections"].is_i64(), "{s}");
    assert_eq!(s["database"]["reachable"], true);
    assert!(s["database"]["latency_ms"].is_f64());
    assert!(s["messages_in_per_s"].is_u64());

    // Metrics are for operators: an admin or service token, not anyone on the internet.
    let status = |token: Option<String>| {
        let mut req = awc::Client::default().get(format!("{}/metrics", app.address));
        if let Some(t) = token {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(None).await, 401);
    assert_eq!(status(Some(app.token("alice"))).await, 403);
    assert_eq!(status(Some(app.service_token())).await, 200);
    let mut resp = awc::Client::default()
        .get(format!("{}/metrics", app.address))
        .insert_header((
            "Authorization",
            format!("Bearer {}", app.admin_token("ops")),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = String::from_utf8(resp.body().await.unwrap().to_vec()).unwrap();
    for name in [
        "herald_connections ",
        "herald_messages_in_total",
        "herald_commit_seconds_bucket",
        "herald_errors_total{code=\"unknown_type\"}",
    ] {
        assert!(text.contains(name), "metrics lack {name}");
    }
}

#[actix_web::test]
async fn service_backends_see_presence_and_bodies_up_to_a_mebibyte_are_read() {
    let (app, _db) = spawn_app().await;
    let _bob = app.ws("bob").await;
    // A service token may watch and query anyone (app backends), unlike a plain user.
    let mut backend = crate::helpers::connect_ws(app.port, &app.service_token())
        .await
        .unwrap();
    backend.recv_type("sync").await;
    let w = backend.ok("watch", json!({"users": ["bob"]})).await;
    assert_eq!(w["presence"][0]["status"], "online");
    let (status, _) = app
        .get("/v1/presence/bob", Some(&app.service_token()))
        .await;
    assert_eq!(status, 200);
    // 10,000 recipients fit in one request; more than 1 MiB does not.
    let users: Vec<String> = (0..10_000).map(|i| format!("user{i}")).collect();
    let (status, body) = app
        .send_json(
            "POST",
            "/v1/admin/notifications",
            Some(&app.service_token()),
            Some(json!({"users": users, "notification_type": "alert", "title": "all hands"})),
        )
        .await;
    assert_eq!((status, body["created"].as_u64()), (201, Some(10_000)));
    let huge = "x".repeat(1_100_000);
    let (status, body) = app
        .send_json(
            "POST",
            "/v1/rooms",
            Some(&app.token("bob")),
            Some(json!({"name": huge})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("too_large"))
    );
}

#[actix_web::test]
async fn an_app_backend_posts_a_system_message_that_members_receive_and_history_keeps() {
    let (app, _db) = spawn_app().await;
    let mut alice = app.ws("alice").await;
    alice.ok("join", json!({"room": "public:support"})).await;
    let path = "/v1/rooms/public:support/messages";
    let post = json!({
        "body": {"event": "ticket_closed", "ticket": 42},
        "priority": "high",
        "client_msg_id": "sys-1"
    });

    // A plain user may not; the service role may, without being a member.
    let (status, body) = app
        .send_json(
            "POST",
            path,
            Some(&app.token("mallory")),
            Some(post.clone()),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, ack) = app
        .send_json("POST", path, Some(&app.service_token()), Some(post.clone()))
        .await;
    assert_eq!(status, 201, "{ack}");
    assert_eq!(ack["seq"], 1);

    // Members get it live, as a `system` message from the backend.
    let m = alice.recv_type("message").await;
    assert_eq!(m["data"]["kind"], "system");
    assert_eq!(m["data"]["from"], "backend");
    assert_eq!(m["data"]["priority"], "high");
    assert_eq!(
        m["data"]["body"],
        json!({"event": "ticket_closed", "ticket": 42})
    );

    // A retry is answered with the original; nothing new is stored.
    let (status, again) = app
        .send_json("POST", path, Some(&app.service_token()), Some(post))
        .await;
    assert_eq!((status, again["duplicate"].as_bool()), (200, Some(true)));
    assert_eq!(again["message_id"], ack["message_id"]);
    let (_, history) = app.get(path, Some(&app.token("alice"))).await;
    assert_eq!(history["messages"].as_array().map(Vec::len), Some(1));
    assert_eq!(history["messages"][0]["kind"], "system");

    // Bad input: not an object, an unknown room.
    let (status, body) = app
        .send_json(
            "POST",
            path,
            Some(&app.service_token()),
            Some(json!({"body": "text"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid_data"))
    );
    let (status, _) = app
        .send_json(
            "POST",
            "/v1/rooms/public:nowhere/messages",
            Some(&app.service_token()),
            Some(json!({"body": {"x": 1}})),
        )
        .await;
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn admin_rooms_lists_rooms_with_online_members_busiest_first_within_limits() {
    // Arrange: #big has three connected members (carol invisible), #small one; dave is
    // connected but in no room, and erin's room has no one left online.
    let (app, _db) = spawn_app().await;
    let admin = app.admin_token("root");
    let mut a = app.ws("alice").await;
    let mut b = app.ws("bob").await;
    let mut c = app.ws("carol").await;
    let _d = app.ws("dave").await;
    for ws in [&mut a, &mut b, &mut c] {
        ws.ok("join", json!({"room": "public:big"})).await;
    }
    b.ok("join", json!({"room": "public:small"})).await;
    c.ok("presence", json!({"status": "invisible"})).await;
    let mut e = app.ws("erin").await;
    e.ok("join", json!({"room": "public:gone"})).await;
    let (status, _) = app
        .send_json(
            "POST",
            "/v1/admin/users/erin/disconnect",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(e.expect_close().await, Some(4000));

    // Act + Assert: the busiest first, every member with their true status.
    let mut body = Value::Null;
    for _ in 0..40 {
        body = app.get("/v1/admin/rooms", Some(&admin)).await.1;
        if body["total"] == 2 {
            break;
        }
        actix::clock::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(body["total"], 2, "{body}");
    assert_eq!(body["count"], 2, "{body}");
    assert_eq!(body["rooms"][0]["room"], "public:big");
    assert_eq!(body["rooms"][0]["online"], 3);
    assert_eq!(
        body["rooms"][0]["members"],
        json!([
            {"user": "alice", "status": "online", "devices": 1},
            {"user": "bob", "status": "online", "devices": 1},
            {"user": "carol", "status": "invisible", "devices": 1},
        ])
    );
    assert_eq!(body["rooms"][1]["room"], "public:small");
    assert_eq!(body["rooms"][1]["online"], 1);

    // Limits: rooms and members per room are cut, the counts are not.
    let (status, cut) = app
        .get("/v1/admin/rooms?limit=1&members=2", Some(&admin))
        .await;
    assert_eq!(status, 200, "{cut}");
    assert_eq!((&cut["count"], &cut["total"]), (&json!(1), &json!(2)));
    assert_eq!(cut["rooms"][0]["online"], 3);
    assert_eq!(cut["rooms"][0]["members"].as_array().unwrap().len(), 2);
    // Out-of-range values are clamped (0 -> 1); ill-typed ones are refused.
    let (status, clamped) = app
        .get("/v1/admin/rooms?limit=0&members=0", Some(&admin))
        .await;
    assert_eq!(status, 200, "{clamped}");
    assert_eq!(clamped["rooms"][0]["members"].as_array().unwrap().len(), 1);
    let (status, refused) = app.get("/v1/admin/rooms?limit=many", Some(&admin)).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (422, Some("invalid_data"))
    );
}
