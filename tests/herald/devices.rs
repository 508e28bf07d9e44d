//! Resume per device: a device that names itself (`device_id`) is replayed from its own
//! position in each room (moved by its `delivered`/`read` receipts), not from the user's shared
//! watermark; positions are bounded by an idle expiry.

use std::time::Duration;

use herald::db::models::{WriteOp, WriteOutcome};
use herald::domain::{DeviceId, RoomId, UserId};
use herald::testkit::TestDatabase;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_on, WsClient};

const ROOM: &str = "public:devices";

/// The seqs of the `message` frames of `ROOM` that arrive within a short window.
async fn messages_of_room(c: &mut WsClient) -> Vec<i64> {
    let mut seqs = Vec::new();
    while let Ok(v) = c.recv_or_other(Duration::from_millis(600)).await {
        if v["type"] == "message" && v["data"]["room"] == ROOM {
            seqs.push(v["data"]["seq"].as_i64().unwrap());
        }
    }
    seqs
}

fn sync_entry(c: &WsClient) -> Value {
    c.sync["data"]["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["room"] == ROOM)
        .cloned()
        .unwrap_or(Value::Null)
}

async fn post(bob: &mut WsClient, n: usize) {
    for i in 0..n {
        bob.ok(
            "send",
            json!({"room": ROOM, "kind": "text", "body": {"text": format!("m{i}")}}),
        )
        .await;
    }
}

#[actix_web::test]
async fn each_device_resumes_from_its_own_position_not_the_users_watermark() {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |_| {}).await;
    let mut bob = app.ws("bob").await;
    bob.ok("join", json!({"room": ROOM})).await;
    let mut phone = app.ws_query("alice", "device_id=phone").await;
    phone.ok("join", json!({"room": ROOM})).await;
    let mut laptop = app.ws_query("alice", "device_id=laptop").await;
    post(&mut bob, 5).await;
    assert_eq!(messages_of_room(&mut phone).await, [1, 2, 3, 4, 5]);
    assert_eq!(messages_of_room(&mut laptop).await, [1, 2, 3, 4, 5]);
    // The phone has read everything; the laptop only acknowledged the first two.
    phone
        .ok(
            "receipt",
            json!({"room": ROOM, "seq": 5, "status": "delivered"}),
        )
        .await;
    laptop
        .ok(
            "receipt",
            json!({"room": ROOM, "seq": 2, "status": "delivered"}),
        )
        .await;
    phone.close().await;
    laptop.close().await;
    post(&mut bob, 3).await;

    // The laptop is replayed from its own position (2), although the user's watermark is 5.
    let mut laptop = app.ws_query("alice", "device_id=laptop").await;
    let entry = sync_entry(&laptop);
    assert_eq!(entry["delivered_seq"], 5, "the user watermark is unchanged");
    assert_eq!(
        (entry["position"].as_i64(), entry["recovered"].as_bool()),
        (Some(2), Some(true))
    );
    assert_eq!(messages_of_room(&mut laptop).await, [3, 4, 5, 6, 7, 8]);
    // The phone from its own (5); a device never seen before from the user's watermark.
    let mut phone = app.ws_query("alice", "device_id=phone").await;
    assert_eq!(messages_of_room(&mut phone).await, [6, 7, 8]);
    let mut tablet = app.ws_query("alice", "device_id=tablet").await;
    assert_eq!(
        sync_entry(&tablet)["recovered"],
        Value::Null,
        "no position: nothing to recover"
    );
    assert_eq!(messages_of_room(&mut tablet).await, [6, 7, 8]);
    // An explicit resume point wins over the stored one.
    let mut again = app
        .ws_query("alice", &format!("device_id=laptop&since={ROOM}:6"))
        .await;
    assert_eq!(messages_of_room(&mut again).await, [7, 8]);
    // Admins see which device each session is.
    let (_, p) = app
        .get("/v1/admin/presence/alice", Some(&app.admin_token("root")))
        .await;
    let devices: Vec<&str> = p["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["device_id"].as_str())
        .collect();
    assert!(
        devices.contains(&"laptop") && devices.contains(&"tablet"),
        "{p}"
    );
    // A bad device id is refused before the upgrade, on both sockets.
    let bad = crate::helpers::connect_path(
        app.port,
        &format!(
            "/ws/notifications/?token={}&device_id=a%2Fb",
            app.token("alice")
        ),
    )
    .await;
    assert!(bad.is_err(), "an invalid device_id is refused");
    let bad = crate::helpers::connect_path(
        app.port,
        &format!("/v1/ws?token={}&device_id=no%20spaces", app.token("alice")),
    )
    .await;
    assert!(bad.is_err(), "an invalid device_id is refused");
}

#[actix_web::test]
async fn device_positions_only_move_forward_and_expire_when_idle() {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |_| {}).await;
    let commit = |ops: Vec<WriteOp>| {
        let commits = app.engine.store.commits.clone();
        async move {
            commits
                .send(herald::actors::commit_queue::Commit { ops })
                .await
                .unwrap()
                .unwrap()
        }
    };
    let (user, device, room) = (
        UserId::parse("alice").unwrap(),
        DeviceId::parse("phone").unwrap(),
        RoomId::parse(ROOM).unwrap(),
    );
    let advance = |seq: i64, at: i64| WriteOp::AdvanceDevicePosition {
        user: user.clone(),
        device: device.clone(),
        room: room.clone(),
        seq,
        at,
        max_devices: 50,
    };
    let moved = |o: &[WriteOutcome]| matches!(o.first(), Some(WriteOutcome::Changed(true)));
    assert!(moved(&commit(vec![advance(5, 1_000)]).await), "created");
    assert!(!moved(&commit(vec![advance(3, 2_000)]).await), "never back");
    assert!(moved(&commit(vec![advance(9, 3_000)]).await), "forward");
    let expired = commit(vec![WriteOp::ExpireDevicePositions { before: 2_500 }]).await;
    assert!(
        matches!(expired.first(), Some(WriteOutcome::Count(0))),
        "moved at 3000: kept"
    );
    let expired = commit(vec![WriteOp::ExpireDevicePositions { before: 3_001 }]).await;
    assert!(matches!(expired.first(), Some(WriteOutcome::Count(1))));
    assert!(
        moved(&commit(vec![advance(1, 4_000)]).await),
        "gone, so created anew"
    );
}
