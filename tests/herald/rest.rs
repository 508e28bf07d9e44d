//! End-to-end tests of the REST surface.

use serde_json::json;

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
    assert_eq!((status, body["added"].as_bool()), (200, Some(true)));

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
async fn presence_of_a_user_over_rest() {
    let (app, _db) = spawn_app().await;
    let (status, p) = app
        .get("/v1/presence/ghost", Some(&app.token("alice")))
        .await;
    assert_eq!((status, p["status"].as_str()), (200, Some("offline")));
    let _bob = app.ws("bob").await;
    let (_, p) = app.get("/v1/presence/bob", Some(&app.token("alice"))).await;
    assert_eq!(
        (p["status"].as_str(), p["devices"].as_u64()),
        (Some("online"), Some(1))
    );
    let (status, _) = app
        .get("/v1/presence/bad%20id", Some(&app.token("alice")))
        .await;
    assert_eq!(status, 422);
}
