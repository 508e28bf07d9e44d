//! Invitations and consent, the direct-message policy, blocking and reporting (issue 18,
//! points 3 and 4), end to end: the real server, native WebSocket and HTTP clients, and the
//! official Socket.IO client for the same frames as events.

use std::time::Duration;

use herald::config::DmPolicy;
use herald::testkit::TestDatabase;
use serde_json::{json, Value};

use crate::helpers::{code, private_room, spawn_app, spawn_app_on, text};

fn dm(to: &str, t: &str) -> Value {
    json!({"to": to, "kind": "text", "body": {"text": t}})
}

#[actix_web::test]
async fn an_owners_add_is_an_invitation_the_invitee_accepts_on_any_device() {
    // Arrange: a private room of `owner`; bob online on two devices.
    let (app, _db) = spawn_app().await;
    let room = private_room(&app, "owner").await;
    let mut owner = app.ws("owner").await;
    let mut bob1 = app.ws("bob").await;
    let mut bob2 = app.ws("bob").await;

    // Act: the owner invites bob by frame.
    let ack = owner
        .ok("invite", json!({"room": room, "user": "bob"}))
        .await;

    // Assert: an invitation, not a membership; every device of bob hears of it.
    assert_eq!(
        (ack["invited"].as_bool(), ack["added"].as_bool()),
        (Some(true), Some(false))
    );
    for bob in [&mut bob1, &mut bob2] {
        let f = bob.recv_type("invitation").await;
        assert_eq!(f["data"]["room"], room.as_str());
        assert_eq!(f["data"]["from"], "owner");
        assert_eq!(f["data"]["room_name"], "Team");
    }
    let (_, list) = app.get("/v1/invitations", Some(&app.token("bob"))).await;
    assert_eq!(list["invitations"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["invitations"][0]["from"], "owner");
    let (_, notes) = app.get("/v1/notifications", Some(&app.token("bob"))).await;
    assert_eq!(
        notes["notifications"][0]["notification_type"], "invitation",
        "{notes}"
    );
    // Until accepted bob is no member: no room, no presence either way through it.
    assert_eq!(
        code(&mut bob1, "join", json!({"room": room})).await,
        "forbidden"
    );
    assert_eq!(
        code(&mut bob1, "history", json!({"room": room})).await,
        "forbidden"
    );
    assert_eq!(
        code(&mut bob1, "watch", json!({"users": ["owner"]})).await,
        "forbidden"
    );
    assert_eq!(
        code(&mut owner, "watch", json!({"users": ["bob"]})).await,
        "forbidden"
    );
    assert_eq!(
        app.get("/v1/presence/bob", Some(&app.token("owner")))
            .await
            .0,
        403
    );
    owner.ok("send", text(&room, "before")).await;
    bob1.assert_no("message", Duration::from_millis(300)).await;

    // Accepting makes bob a member on every device, and the invitation is gone.
    let ack = bob2.ok("accept", json!({"room": room})).await;
    assert_eq!(ack["added"], true);
    owner.ok("send", text(&room, "welcome")).await;
    assert_eq!(
        bob1.recv_type("message").await["data"]["body"]["text"],
        "welcome"
    );
    let (_, list) = app.get("/v1/invitations", Some(&app.token("bob"))).await;
    assert_eq!(list["invitations"], json!([]));
    assert_eq!(
        code(&mut bob1, "accept", json!({"room": room})).await,
        "not_found"
    );
    let joined = owner.ok("join", json!({"room": room})).await;
    assert!(joined["members"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["user"] == "bob"));

    // Decline (frame), revoke (REST), and the admin's direct add.
    let (status, body) = app
        .send_json(
            "POST",
            &format!("/v1/rooms/{room}/members/carol"),
            Some(&app.token("owner")),
            None,
        )
        .await;
    assert_eq!(
        (status, body["invited"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    let mut carol = app.ws("carol").await;
    assert_eq!(
        carol.ok("decline", json!({"room": room})).await["declined"],
        true
    );
    assert_eq!(
        code(&mut carol, "accept", json!({"room": room})).await,
        "not_found"
    );
    owner
        .ok("invite", json!({"room": room, "user": "dave"}))
        .await;
    let (status, body) = app
        .send_json(
            "DELETE",
            &format!("/v1/rooms/{room}/invitations/dave"),
            Some(&app.token("owner")),
            None,
        )
        .await;
    assert_eq!((status, body["revoked"].as_bool()), (200, Some(true)));
    let (status, _) = app
        .send_json(
            "POST",
            &format!("/v1/invitations/{room}/accept"),
            Some(&app.token("dave")),
            None,
        )
        .await;
    assert_eq!(status, 404, "a revoked invitation cannot be accepted");
    let (status, body) = app
        .send_json(
            "POST",
            &format!("/v1/rooms/{room}/members/erin"),
            Some(&app.admin_token("root")),
            None,
        )
        .await;
    assert_eq!(
        (status, body["added"].as_bool(), body["invited"].as_bool()),
        (200, Some(true), Some(false))
    );
    // Only private rooms take invitations; only their owner invites.
    assert_eq!(
        code(
            &mut owner,
            "invite",
            json!({"room": "public:x", "user": "bob"})
        )
        .await,
        "not_found"
    );
    assert_eq!(
        code(&mut bob1, "invite", json!({"room": room, "user": "zed"})).await,
        "forbidden"
    );
    assert_eq!(
        code(&mut owner, "invite", json!({"room": room, "user": "owner"})).await,
        "invalid_data"
    );
}

#[actix_web::test]
async fn pending_invitations_are_capped_per_invitee_and_inviter_and_expire() {
    // Arrange: at most 1 pending per invitee, 2 per inviter, 1 s to live.
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| {
        s.consent.max_invitations_per_invitee = 1;
        s.consent.max_invitations_per_inviter = 2;
        s.consent.invitation_ttl = Duration::from_secs(1);
    })
    .await;
    let (r1, r2) = (
        private_room(&app, "owner").await,
        private_room(&app, "owner").await,
    );
    let mut owner = app.ws("owner").await;

    // Act + Assert: the caps.
    owner.ok("invite", json!({"room": r1, "user": "bob"})).await;
    let again = owner.ok("invite", json!({"room": r1, "user": "bob"})).await;
    assert_eq!(
        again["invited"], true,
        "a repeat answers the pending invitation"
    );
    assert_eq!(
        code(&mut owner, "invite", json!({"room": r2, "user": "bob"})).await,
        "limit_exceeded"
    );
    owner
        .ok("invite", json!({"room": r1, "user": "carol"}))
        .await;
    let r = owner
        .request("invite", json!({"room": r1, "user": "dave"}))
        .await;
    assert_eq!(r["code"], "limit_exceeded", "{r}");
    assert!(r["error"]
        .as_str()
        .unwrap()
        .contains("HERALD_MAX_INVITATIONS_PER_INVITER"));

    // Expiry: nothing pending, nothing to accept, and the caps are free again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (_, list) = app.get("/v1/invitations", Some(&app.token("bob"))).await;
    assert_eq!(list["invitations"], json!([]));
    let mut bob = app.ws("bob").await;
    assert_eq!(
        code(&mut bob, "accept", json!({"room": r1})).await,
        "not_found"
    );
    owner.ok("invite", json!({"room": r2, "user": "bob"})).await;
    bob.ok("accept", json!({"room": r2})).await;
}

#[actix_web::test]
async fn the_shared_room_dm_policy_needs_a_room_in_common() {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| s.consent.dm_policy = DmPolicy::SharedRoom).await;
    let mut alice = app.ws("alice").await;
    let mut bob = app.ws("bob").await;
    let r = alice.request("send", dm("bob", "hi")).await;
    assert_eq!(r["code"], "forbidden", "{r}");
    assert!(r["error"].as_str().unwrap().contains("shared_room"));
    alice.ok("join", json!({"room": "public:common"})).await;
    bob.ok("join", json!({"room": "public:common"})).await;
    alice.ok("send", dm("bob", "now we share a room")).await;
    assert_eq!(
        bob.recv_type("message").await["data"]["body"]["text"],
        "now we share a room"
    );
}

#[actix_web::test]
async fn the_nobody_dm_policy_allows_only_backend_created_direct_rooms() {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| s.consent.dm_policy = DmPolicy::Nobody).await;
    let mut alice = app.ws("alice").await;
    let mut bob = app.ws("bob").await;
    assert_eq!(code(&mut alice, "send", dm("bob", "hi")).await, "forbidden");
    let create = json!({"users": ["bob", "alice"]});
    let (status, _) = app
        .send_json(
            "POST",
            "/v1/rooms/direct",
            Some(&app.token("alice")),
            Some(create.clone()),
        )
        .await;
    assert_eq!(status, 403, "users cannot create direct rooms");
    let (status, body) = app
        .send_json(
            "POST",
            "/v1/rooms/direct",
            Some(&app.service_token()),
            Some(create.clone()),
        )
        .await;
    assert_eq!(
        (status, body["room"].as_str()),
        (201, Some("direct:alice:bob")),
        "{body}"
    );
    let (status, body) = app
        .send_json(
            "POST",
            "/v1/rooms/direct",
            Some(&app.admin_token("root")),
            Some(create),
        )
        .await;
    assert_eq!((status, body["created"].as_bool()), (200, Some(false)));
    alice.ok("send", dm("bob", "allowed now")).await;
    assert_eq!(
        bob.recv_type("message").await["data"]["body"]["text"],
        "allowed now"
    );
    bob.ok("send", text("direct:alice:bob", "and back")).await;
    let (status, _) = app
        .send_json(
            "POST",
            "/v1/rooms/direct",
            Some(&app.service_token()),
            Some(json!({"users": ["alice"]})),
        )
        .await;
    assert_eq!(status, 422);
}

#[actix_web::test]
async fn a_blocked_user_cannot_message_invite_watch_or_see_the_blocker() {
    // Arrange: alice and bob share a public room; bob watches alice.
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| s.consent.max_blocks = 2).await;
    let mut alice = app.ws("alice").await;
    let mut bob = app.ws("bob").await;
    alice.ok("join", json!({"room": "public:lobby"})).await;
    bob.ok("join", json!({"room": "public:lobby"})).await;
    bob.ok("send", dm("alice", "hello")).await;
    let w = bob.ok("watch", json!({"users": ["alice"]})).await;
    assert_eq!(w["presence"][0]["status"], "online");

    // Act: alice blocks bob.
    let ack = alice.ok("block", json!({"user": "bob"})).await;
    assert_eq!(ack["added"], true);

    // Assert: bob's watch ends with "no information" about alice.
    loop {
        let p = bob.recv_type("presence").await;
        if p["data"]["user"] == "alice" {
            assert_eq!(p["data"]["status"], "offline");
            assert_eq!(p["data"]["last_seen"], Value::Null);
            break;
        }
    }
    // No DMs, by `to` or by the direct room.
    let r = bob.request("send", dm("alice", "still there?")).await;
    assert_eq!(r["code"], "forbidden");
    assert!(r["error"]
        .as_str()
        .unwrap()
        .contains("does not accept direct messages"));
    assert_eq!(
        code(&mut bob, "send", text("direct:alice:bob", "x")).await,
        "forbidden"
    );
    // No watching, no presence by REST, none in a join snapshot of a shared room.
    let w = bob.ok("watch", json!({"users": ["alice"]})).await;
    assert_eq!(w["presence"][0]["status"], "offline");
    assert_eq!(w["presence"][0]["last_seen"], Value::Null);
    let (status, p) = app.get("/v1/presence/alice", Some(&app.token("bob"))).await;
    assert_eq!((status, p["status"].as_str()), (200, Some("offline")));
    assert_eq!(p["last_seen"], Value::Null);
    bob.ok("leave", json!({"room": "public:lobby"})).await;
    let joined = bob.ok("join", json!({"room": "public:lobby"})).await;
    assert!(
        !joined["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["user"] == "alice"),
        "{joined}"
    );
    // No invitations from bob; alice still may invite bob.
    let bobs = private_room(&app, "bob").await;
    let r = bob
        .request("invite", json!({"room": bobs, "user": "alice"}))
        .await;
    assert_eq!(r["code"], "forbidden", "{r}");
    let alices = private_room(&app, "alice").await;
    alice
        .ok("invite", json!({"room": alices, "user": "bob"}))
        .await;
    // Group messages still flow both ways (the stream stays consecutive).
    bob.ok("send", text("public:lobby", "group")).await;
    while alice.recv_type("message").await["data"]["body"]["text"] != "group" {}

    // The list, its cap, and unblocking.
    let (_, list) = app.get("/v1/me/blocks", Some(&app.token("alice"))).await;
    assert_eq!(list["blocks"][0]["user"], "bob", "{list}");
    let (status, _) = app
        .send_json(
            "PUT",
            "/v1/me/blocks/carol",
            Some(&app.token("alice")),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = app
        .send_json("PUT", "/v1/me/blocks/dave", Some(&app.token("alice")), None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("limit_exceeded"))
    );
    assert_eq!(
        code(&mut alice, "block", json!({"user": "alice"})).await,
        "invalid_data"
    );
    let (status, body) = app
        .send_json(
            "DELETE",
            "/v1/me/blocks/bob",
            Some(&app.token("alice")),
            None,
        )
        .await;
    assert_eq!((status, body["removed"].as_bool()), (200, Some(true)));
    assert_eq!(
        alice.ok("unblock", json!({"user": "bob"})).await["removed"],
        false
    );
    bob.ok("send", dm("alice", "thanks")).await;
}

#[actix_web::test]
async fn a_blocked_user_sees_neither_presence_nor_typing_of_the_blocker_in_shared_rooms() {
    let (app, _db) = spawn_app().await;
    let room = "public:shared";
    let mut alice = app.ws("alice").await;
    let mut bob = app.ws("bob").await;
    let mut mallory = app.ws("mallory").await;
    for c in [&mut alice, &mut bob, &mut mallory] {
        c.ok("join", json!({"room": room})).await;
    }
    alice.ok("block", json!({"user": "mallory"})).await;

    // Typing and presence changes of alice reach bob, not mallory.
    alice
        .ok("typing", json!({"room": room, "state": "start"}))
        .await;
    let t = bob.recv_type("typing").await;
    assert_eq!(t["data"]["user"], "alice");
    alice.ok("presence", json!({"status": "busy"})).await;
    loop {
        let d = bob.recv_type("room_presence").await;
        if d["data"]["joins"][0]["user"] == "alice" {
            break;
        }
    }
    mallory
        .assert_no("typing", Duration::from_millis(400))
        .await;
    mallory
        .assert_no("room_presence", Duration::from_millis(10))
        .await;
    // Bob's own changes still reach mallory: only the blocker is hidden.
    bob.ok("typing", json!({"room": room, "state": "start"}))
        .await;
    assert_eq!(mallory.recv_type("typing").await["data"]["user"], "bob");
    bob.ok("typing", json!({"room": room, "state": "stop"}))
        .await;
    assert_eq!(mallory.recv_type("typing").await["data"]["state"], "stop");

    // A new session of mallory knows from the start.
    mallory.close().await;
    let mut mallory = app.ws("mallory").await;
    alice
        .ok("typing", json!({"room": room, "state": "stop"}))
        .await;
    alice
        .ok("typing", json!({"room": room, "state": "start"}))
        .await;
    bob.recv_type("typing").await;
    mallory
        .assert_no("typing", Duration::from_millis(400))
        .await;

    // Unblocked: seen again.
    alice.ok("unblock", json!({"user": "mallory"})).await;
    alice.ok("presence", json!({"status": "online"})).await;
    loop {
        let d = mallory.recv_type("room_presence").await;
        if d["data"]["joins"][0]["user"] == "alice" {
            break;
        }
    }
}

#[actix_web::test]
async fn members_report_messages_once_and_admins_resolve_them() {
    // Arrange
    let (app, _db) = spawn_app().await;
    let mut alice = app.ws("alice").await;
    let mut bob = app.ws("bob").await;
    let mut eve = app.ws("eve").await;
    alice.ok("join", json!({"room": "public:r"})).await;
    bob.ok("join", json!({"room": "public:r"})).await;
    alice.ok("send", text("public:r", "rude")).await;

    // Act + Assert: a report, its repeat, and the refusals.
    let first = bob
        .ok(
            "report",
            json!({"room": "public:r", "seq": 1, "reason": "spam"}),
        )
        .await;
    assert_eq!(first["created"], true);
    let again = bob
        .ok(
            "report",
            json!({"room": "public:r", "seq": 1, "reason": "spam!"}),
        )
        .await;
    assert_eq!(
        (again["created"].as_bool(), &again["report_id"]),
        (Some(false), &first["report_id"])
    );
    let (status, body) = app
        .send_json(
            "POST",
            "/v1/rooms/public:r/messages/1/report",
            Some(&app.token("bob")),
            Some(json!({"reason": "spam"})),
        )
        .await;
    assert_eq!((status, &body["report_id"]), (200, &first["report_id"]));
    assert_eq!(
        code(
            &mut eve,
            "report",
            json!({"room": "public:r", "seq": 1, "reason": "x"})
        )
        .await,
        "forbidden"
    );
    assert_eq!(
        code(
            &mut bob,
            "report",
            json!({"room": "public:r", "seq": 9, "reason": "x"})
        )
        .await,
        "not_found"
    );
    let long = "x".repeat(1001);
    assert_eq!(
        code(
            &mut bob,
            "report",
            json!({"room": "public:r", "seq": 1, "reason": long})
        )
        .await,
        "too_large"
    );
    assert_eq!(
        code(
            &mut bob,
            "report",
            json!({"room": "public:r", "seq": 1, "reason": " "})
        )
        .await,
        "invalid_data"
    );
    let (status, _) = app
        .send_json(
            "POST",
            "/v1/rooms/public:r/messages/1/report",
            Some(&app.token("alice")),
            Some(json!({"reason": "x".repeat(1001)})),
        )
        .await;
    assert_eq!(status, 413);

    // Admins list and resolve.
    let admin = app.admin_token("root");
    assert_eq!(
        app.get("/v1/admin/reports", Some(&app.token("bob")))
            .await
            .0,
        403
    );
    let (status, list) = app.get("/v1/admin/reports", Some(&admin)).await;
    assert_eq!(status, 200);
    let reports = list["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 1, "{list}");
    assert_eq!(
        (
            reports[0]["reporter"].as_str(),
            reports[0]["sender"].as_str(),
            reports[0]["reason"].as_str()
        ),
        (Some("bob"), Some("alice"), Some("spam"))
    );
    let id = first["report_id"].as_str().unwrap();
    let path = format!("/v1/admin/reports/{id}/resolve");
    let (status, body) = app
        .send_json(
            "POST",
            &path,
            Some(&admin),
            Some(json!({"resolution": "warned"})),
        )
        .await;
    assert_eq!(
        (status, body["changed"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    assert_eq!(body["report"]["resolved_by"], "root");
    let (_, body) = app.send_json("POST", &path, Some(&admin), None).await;
    assert_eq!(
        (
            body["changed"].as_bool(),
            body["report"]["resolution"].as_str()
        ),
        (Some(false), Some("warned"))
    );
    let (_, open) = app.get("/v1/admin/reports?status=open", Some(&admin)).await;
    assert_eq!(open["reports"], json!([]));
    let (_, resolved) = app
        .get("/v1/admin/reports?status=resolved", Some(&admin))
        .await;
    assert_eq!(resolved["reports"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.get("/v1/admin/reports?status=maybe", Some(&admin))
            .await
            .0,
        422
    );
    let (status, _) = app
        .send_json("POST", "/v1/admin/reports/nope/resolve", Some(&admin), None)
        .await;
    assert_eq!(status, 404);
}

/// The same frames as Socket.IO events, with the official Node client (see socketio.rs on
/// why it is ignored in a plain `cargo test`).
#[actix_web::test]
#[ignore = "needs the official Node Socket.IO client (tests/socketio, npm ci)"]
async fn socketio_clients_get_invitations_and_use_the_consent_events() {
    let (app, _db) = spawn_app().await;
    let room = private_room(&app, "owner").await;
    let mut owner = app.ws("owner").await;
    let mut bob =
        crate::socketio::start_with_auth("node", &app, &app.token("bob"), "websocket", None);
    bob.expect("connect", |v| v["event"] == "connect").await;

    owner
        .ok("invite", json!({"room": room, "user": "bob"}))
        .await;
    let inv = bob.server_event("invitation", |_| true).await;
    assert_eq!(
        (inv["room"].as_str(), inv["from"].as_str()),
        (Some(room.as_str()), Some("owner"))
    );
    let accepted = bob.call("accept", json!({"room": room})).await;
    assert_eq!(accepted["ok"], true, "{accepted}");
    owner.ok("send", text(&room, "hi")).await;
    bob.server_event("message", |d| d["body"]["text"] == "hi")
        .await;
    let reported = bob
        .call("report", json!({"room": room, "seq": 1, "reason": "spam"}))
        .await;
    assert_eq!(
        (reported["ok"].as_bool(), reported["created"].as_bool()),
        (Some(true), Some(true)),
        "{reported}"
    );
    let blocked = bob.call("block", json!({"user": "owner"})).await;
    assert_eq!(blocked["ok"], true, "{blocked}");
    let refused = bob.call("decline", json!({"room": room})).await;
    assert_eq!(
        (refused["ok"].as_bool(), refused["code"].as_str()),
        (Some(false), Some("not_found"))
    );
    // bob's block (over Socket.IO) holds for the native side: owner's DM is refused.
    let r = owner.request("send", dm("bob", "hello?")).await;
    assert_eq!(r["code"], "forbidden", "{r}");
}

/// `BlockersOf` (who among a room's online members blocked the joiner) gives the same answer
/// for a user blocked by a few (read whole and matched in memory) and by more than a thousand
/// (matched against the list in the database, in chunks).
#[test]
fn blockers_among_a_list_are_found_for_a_user_blocked_by_few_and_by_many() {
    use herald::db::models::{ConsentAnswer, ConsentRead, ConsentWrite, WriteOp};
    use herald::db::{DatabaseUrl, DbConnection};
    use herald::domain::UserId;
    use std::collections::HashSet;

    let uid = |s: &str| UserId::parse(s).expect("user id");
    let db = TestDatabase::new();
    let mut c = DbConnection::establish(&DatabaseUrl::parse(&db.url).expect("url")).expect("db");
    c.run_migrations().expect("migrations");
    let block = |blocker: String, blocked: &str| {
        WriteOp::Consent(ConsentWrite::Block {
            blocker: uid(&blocker),
            blocked: uid(blocked),
            at: 1,
            max: 10_000,
        })
    };
    let mut ops: Vec<WriteOp> = (0..1_200)
        .map(|i| block(format!("b{i}"), "spammer"))
        .collect();
    ops.push(block("b1".into(), "quiet"));
    for group in c.write_batch(&[ops]).expect("batch") {
        group.expect("blocks stored");
    }
    let blockers = |c: &mut DbConnection, user: &str, among: &[&str]| -> HashSet<String> {
        let q = ConsentRead::BlockersOf {
            user: uid(user),
            among: among.iter().map(|u| uid(u)).collect(),
        };
        match c.consent_read(&q).expect("read") {
            ConsentAnswer::Users(v) => v.into_iter().map(|u| u.as_str().to_owned()).collect(),
            other => panic!("unexpected answer {other:?}"),
        }
    };
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<HashSet<_>>();

    assert_eq!(
        blockers(&mut c, "quiet", &["b1", "b2", "nobody"]),
        set(&["b1"])
    );
    // 600 candidates: two chunks in the database.
    let mut among: Vec<String> = (0..599).map(|i| format!("x{i}")).collect();
    among.extend(["b3".to_owned(), "b1199".to_owned()]);
    let among: Vec<&str> = among.iter().map(String::as_str).collect();
    assert_eq!(blockers(&mut c, "spammer", &among), set(&["b3", "b1199"]));
}
