//! The authorization matrix: every room-scoped WebSocket frame and REST route, tried as a
//! stranger, a member, the room owner and an admin. Nobody reads or writes a room, its history,
//! receipts, presence or notifications they have no right to — no IDOR through ids in paths
//! or frames.

use serde_json::json;

use crate::helpers::{code, spawn_app, TestApp};

/// `root` is the admin; everyone else a plain user.
fn token_of(app: &TestApp, user: &str) -> String {
    if user == "root" {
        app.admin_token(user)
    } else {
        app.token(user)
    }
}

async fn status(app: &TestApp, method: &str, path: &str, user: &str) -> u16 {
    app.send_json(method, path, Some(&token_of(app, user)), None)
        .await
        .0
}

#[actix_web::test]
async fn nobody_reaches_what_they_have_no_right_to() {
    // Arrange: a private room of owner + member, a message in it, and a direct room.
    let (app, _db) = spawn_app().await;
    let (_, created) = app
        .send_json(
            "POST",
            "/v1/rooms",
            Some(&app.token("owner")),
            Some(json!({"name": "Staff"})),
        )
        .await;
    let room = created["room"].as_str().unwrap().to_owned();
    assert_eq!(
        status(
            &app,
            "POST",
            &format!("/v1/rooms/{room}/members/member"),
            "owner"
        )
        .await,
        200
    );
    // The owner's add is an invitation (issue 18): the member accepts it.
    assert_eq!(
        status(
            &app,
            "POST",
            &format!("/v1/invitations/{room}/accept"),
            "member"
        )
        .await,
        200
    );
    let mut owner = app.ws("owner").await;
    let mut member = app.ws("member").await;
    let mut stranger = app.ws("stranger").await;
    let mut root = app.ws("root").await;
    let ack = owner
        .ok(
            "send",
            json!({"room": room, "kind": "text", "body": {"text": "secret"}}),
        )
        .await;
    let msg_id = ack["message_id"].as_str().unwrap().to_owned();
    owner
        .ok(
            "send",
            json!({"to": "member", "kind": "text", "body": {"text": "dm"}}),
        )
        .await;
    let direct = "direct:member:owner";

    // WebSocket frames on the private room.
    let frames = |r: &str| {
        vec![
            (
                "send",
                json!({"room": r, "kind": "text", "body": {"text": "x"}}),
            ),
            ("typing", json!({"room": r, "state": "start"})),
            ("event", json!({"room": r, "name": "poke", "data": {}})),
            ("react", json!({"room": r, "seq": 1, "emoji": "👍"})),
            ("changes", json!({"room": r})),
            ("receipt", json!({"room": r, "seq": 1, "status": "read"})),
            ("history", json!({"room": r})),
            ("join", json!({"room": r})),
        ]
    };
    for (kind, data) in frames(&room) {
        assert_eq!(
            code(&mut stranger, kind, data.clone()).await,
            "forbidden",
            "stranger {kind}"
        );
        assert_eq!(
            code(&mut root, kind, data.clone()).await,
            "forbidden",
            "admins are users on sockets: {kind}"
        );
        assert_eq!(
            code(&mut member, kind, data.clone()).await,
            "ok",
            "member {kind}"
        );
        assert_eq!(code(&mut owner, kind, data).await, "ok", "owner {kind}");
    }
    assert_eq!(
        code(&mut stranger, "leave", json!({"room": room})).await,
        "forbidden"
    );
    // The direct room of two others: no send, no history, nothing created.
    for (kind, data) in frames(direct) {
        assert_eq!(
            code(&mut stranger, kind, data).await,
            "forbidden",
            "stranger {kind} on a direct room"
        );
    }
    // Presence of people one shares no room with.
    assert_eq!(
        code(&mut stranger, "watch", json!({"users": ["member"]})).await,
        "forbidden"
    );
    assert_eq!(
        code(&mut member, "watch", json!({"users": ["owner"]})).await,
        "ok"
    );

    // REST, by role.
    let messages = format!("/v1/rooms/{room}/messages");
    let msg_status = format!("/v1/rooms/{room}/messages/{msg_id}/status");
    let add = format!("/v1/rooms/{room}/members/newcomer");
    for (path, method, expected) in [
        (messages.as_str(), "GET", [403, 200, 200, 200]),
        (msg_status.as_str(), "GET", [403, 200, 200, 200]),
        (
            "/v1/rooms/direct:member:owner/messages",
            "GET",
            [403, 200, 200, 200],
        ),
        ("/v1/presence/member", "GET", [403, 200, 200, 200]),
        (add.as_str(), "POST", [403, 403, 200, 200]),
    ] {
        let mut got = Vec::new();
        for user in ["stranger", "member", "owner", "root"] {
            got.push(status(&app, method, path, user).await);
        }
        assert_eq!(
            got, expected,
            "{method} {path} as stranger, member, owner, admin"
        );
    }
    // System messages: the service and admin roles only, members or not.
    let mut got = Vec::new();
    for user in ["stranger", "member", "owner"] {
        let (code, _) = app
            .send_json(
                "POST",
                &messages,
                Some(&app.token(user)),
                Some(json!({"body": {"x": 1}})),
            )
            .await;
        got.push(code);
    }
    for token in [app.admin_token("root"), app.service_token()] {
        let (code, _) = app
            .send_json(
                "POST",
                &messages,
                Some(&token),
                Some(json!({"body": {"x": 1}})),
            )
            .await;
        got.push(code);
    }
    assert_eq!(
        got,
        [403, 403, 403, 201, 201],
        "POST {messages} as stranger, member, owner, admin, service"
    );
    let kick = format!("/v1/rooms/{room}/members/member");
    assert_eq!(status(&app, "DELETE", &kick, "stranger").await, 403);
    assert_eq!(
        status(&app, "DELETE", &kick, "newcomer").await,
        403,
        "members cannot remove others"
    );
    assert_eq!(
        status(
            &app,
            "DELETE",
            &format!("/v1/rooms/{room}/members/newcomer"),
            "newcomer"
        )
        .await,
        200,
        "one may leave"
    );
    // Lists show only one's own rooms.
    let (_, list) = app.get("/v1/rooms", Some(&app.token("stranger"))).await;
    assert_eq!(list["rooms"], json!([]));

    // Notifications are private to their user: ids of others are simply not found.
    let (_, sent) = app
        .send_json(
            "POST",
            "/v1/admin/notifications",
            Some(&app.service_token()),
            Some(json!({"users": ["owner"], "notification_type": "alert", "title": "mine"})),
        )
        .await;
    let nid = sent["results"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        status(
            &app,
            "DELETE",
            &format!("/v1/notifications/{nid}"),
            "stranger"
        )
        .await,
        404
    );
    app.send_json(
        "POST",
        &format!("/v1/notifications/{nid}/read"),
        Some(&app.token("stranger")),
        None,
    )
    .await;
    let (_, count) = app
        .get("/v1/notifications/unread_count", Some(&app.token("owner")))
        .await;
    assert_eq!(
        count["unread_count"], 1,
        "a stranger cannot mark someone else's notification read"
    );
    let (_, list) = app
        .get("/v1/notifications", Some(&app.token("stranger")))
        .await;
    assert_eq!(list["notifications"], json!([]));
    // Admin-only and service-only routes.
    assert_eq!(status(&app, "GET", "/v1/admin/stats", "owner").await, 403);
    let (s, _) = app
        .send_json(
            "POST",
            "/v1/admin/notifications",
            Some(&app.token("owner")),
            Some(json!({"users": ["member"], "notification_type": "alert", "title": "x"})),
        )
        .await;
    assert_eq!(s, 403);

    // Edits, deletes and the change log of the owner's message 1.
    let changes = format!("/v1/rooms/{room}/changes");
    let one = format!("/v1/rooms/{room}/messages/1");
    let mut got = Vec::new();
    for user in ["stranger", "member", "owner", "root"] {
        got.push(status(&app, "GET", &changes, user).await);
    }
    assert_eq!(got, [403, 200, 200, 200], "GET {changes}");
    let mut got = Vec::new();
    for user in ["stranger", "member", "root", "owner"] {
        let (code, _) = app
            .send_json(
                "PATCH",
                &one,
                Some(&token_of(&app, user)),
                Some(json!({"body": {"text": format!("by {user}")}})),
            )
            .await;
        got.push(code);
    }
    assert_eq!(got, [403, 403, 403, 200], "PATCH {one}: only the sender");
    let mut got = Vec::new();
    for user in ["stranger", "member", "root"] {
        got.push(status(&app, "DELETE", &one, user).await);
    }
    assert_eq!(got, [403, 403, 200], "DELETE {one}: sender, owner, admin");
    assert_eq!(
        app.send_json("DELETE", &one, Some(&app.service_token()), None)
            .await
            .0,
        200,
        "a service moderates too (already deleted: unchanged)"
    );
}

/// The consent routes and frames (issue 18) by role: stranger, member, owner, admin (and the
/// service role where it differs). Invitations, blocks and reports never reach another
/// user's data: accept/decline and revoke act only on one's own invitations.
#[actix_web::test]
async fn consent_routes_and_frames_reach_only_what_the_role_allows() {
    // Arrange: a private room of owner + member with one message.
    let (app, _db) = spawn_app().await;
    let (_, created) = app
        .send_json(
            "POST",
            "/v1/rooms",
            Some(&app.token("owner")),
            Some(json!({"name": "Staff"})),
        )
        .await;
    let room = created["room"].as_str().unwrap().to_owned();
    let mut owner = app.ws("owner").await;
    owner
        .ok("invite", json!({"room": room, "user": "member"}))
        .await;
    let mut member = app.ws("member").await;
    member.ok("accept", json!({"room": room})).await;
    owner
        .ok(
            "send",
            json!({"room": room, "kind": "text", "body": {"text": "x"}}),
        )
        .await;
    let mut stranger = app.ws("stranger").await;
    let mut root = app
        .ws_with_token(&app.admin_token("root"))
        .await
        .expect("admin connects");
    root.recv_type("sync").await;

    // Frames: invite (owner invites; admin adds; others refused), accept/decline of an
    // invitation one does not have, report (members only).
    let invite = |u: &str| json!({"room": room, "user": u});
    assert_eq!(
        code(&mut stranger, "invite", invite("x1")).await,
        "forbidden"
    );
    assert_eq!(code(&mut member, "invite", invite("x2")).await, "forbidden");
    assert_eq!(code(&mut owner, "invite", invite("x3")).await, "ok");
    let added = root.ok("invite", invite("x4")).await;
    assert_eq!(added["added"], true, "an admin's invite is a direct add");
    for kind in ["accept", "decline"] {
        assert_eq!(
            code(&mut stranger, kind, json!({"room": room})).await,
            "not_found",
            "stranger {kind}"
        );
    }
    let report = json!({"room": room, "seq": 1, "reason": "r"});
    assert_eq!(
        code(&mut stranger, "report", report.clone()).await,
        "forbidden"
    );
    assert_eq!(code(&mut root, "report", report.clone()).await, "forbidden");
    assert_eq!(code(&mut member, "report", report.clone()).await, "ok");
    assert_eq!(code(&mut owner, "report", report).await, "ok");
    // block/unblock concern only one's own list: anyone may.
    assert_eq!(
        code(&mut stranger, "block", json!({"user": "owner"})).await,
        "ok"
    );
    assert_eq!(
        code(&mut stranger, "unblock", json!({"user": "owner"})).await,
        "ok"
    );

    // REST by role: stranger, member, owner, admin.
    let report_path = format!("/v1/rooms/{room}/messages/1/report");
    let revoke = format!("/v1/rooms/{room}/invitations/x3");
    let mut got = Vec::new();
    for user in ["stranger", "member", "owner", "root"] {
        let token = if user == "root" {
            app.admin_token(user)
        } else {
            app.token(user)
        };
        let (s, _) = app
            .send_json(
                "POST",
                &report_path,
                Some(&token),
                Some(json!({"reason": "r"})),
            )
            .await;
        got.push(s);
    }
    assert_eq!(got, [403, 200, 200, 403], "POST {report_path}");
    for (path, method, expected) in [
        ("/v1/admin/reports", "GET", [403, 403, 403, 200]),
        (
            "/v1/admin/reports/nope/resolve",
            "POST",
            [403, 403, 403, 404],
        ),
        ("/v1/invitations", "GET", [200, 200, 200, 200]),
        ("/v1/me/blocks", "GET", [200, 200, 200, 200]),
        ("/v1/me/blocks/zed", "PUT", [200, 200, 200, 200]),
        ("/v1/me/blocks/zed", "DELETE", [200, 200, 200, 200]),
    ] {
        let mut got = Vec::new();
        for user in ["stranger", "member", "owner", "root"] {
            got.push(status(&app, method, path, user).await);
        }
        assert_eq!(
            got, expected,
            "{method} {path} as stranger, member, owner, admin"
        );
    }
    // Revoking: only the inviter's own invitation goes (others answer revoked: false).
    for user in ["stranger", "member"] {
        let (s, body) = app
            .send_json("DELETE", &revoke, Some(&app.token(user)), None)
            .await;
        assert_eq!((s, body["revoked"].as_bool()), (200, Some(false)), "{user}");
    }
    let (_, body) = app
        .send_json("DELETE", &revoke, Some(&app.token("owner")), None)
        .await;
    assert_eq!(body["revoked"], true);
    // Accepting someone else's invitation is impossible: it is looked up by the caller.
    owner.ok("invite", invite("x5")).await;
    let accept = format!("/v1/invitations/{room}/accept");
    assert_eq!(status(&app, "POST", &accept, "stranger").await, 404);
    assert_eq!(status(&app, "POST", &accept, "x5").await, 200);
    // Backend direct rooms: service and admin only.
    let mut got = Vec::new();
    for token in [
        app.token("stranger"),
        app.token("owner"),
        app.admin_token("root"),
        app.service_token(),
    ] {
        let (s, _) = app
            .send_json(
                "POST",
                "/v1/rooms/direct",
                Some(&token),
                Some(json!({"users": ["a1", "b1"]})),
            )
            .await;
        got.push(s);
    }
    assert_eq!(got, [403, 403, 201, 200], "POST /v1/rooms/direct");
}
