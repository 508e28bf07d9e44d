//! Actor-level tests: the engine without sockets, driven through the testkit.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use herald::actors::room_supervisor::{AttachPresence, GetSessionRooms, UserRoomsChanged};
use herald::domain::{ChosenStatus, MessageBody, MessageKind, Priority, RoomId, UserId};
use herald::engine::Engine;
use herald::protocol::{SendRequest, SendTarget, TypingState};
use herald::testkit::{
    connect_probe, start_engine, test_settings, Probe, ProbeEvent, TestDatabase,
};
use serde_json::{json, Value};

use crate::helpers::init_logs;

const WAIT: Duration = Duration::from_secs(5);

fn uid(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

fn room(s: &str) -> RoomId {
    RoomId::parse(s).unwrap()
}

fn text(room_id: &str, t: &str, cmid: Option<&str>) -> SendRequest {
    SendRequest {
        target: SendTarget::Room(room(room_id)),
        kind: MessageKind::Text,
        body: MessageBody::parse(MessageKind::Text, &json!({ "text": t }), 1000).unwrap(),
        priority: Priority::Normal,
        client_msg_id: cmid.map(str::to_owned),
    }
}

async fn engine(db: &TestDatabase) -> Engine {
    init_logs();
    start_engine(test_settings(&db.url)).await
}

async fn joined(engine: &Engine, user: &str, r: &str) -> Probe {
    let mut p = connect_probe(engine, user).await;
    let sync = p.next_of("sync", WAIT).await.expect("sync frame first");
    assert!(sync["data"]["rooms"].is_array());
    engine
        .join(&uid(user), p.id(), room(r), None)
        .await
        .expect("join");
    p
}

async fn messages(p: &mut Probe, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        match p.next_of("message", WAIT).await {
            Some(m) => out.push(m["data"].clone()),
            None => panic!("only {} of {n} messages arrived", out.len()),
        }
    }
    out
}

#[actix_web::test]
async fn messages_reach_every_other_session_in_seq_order_without_gaps() {
    // Arrange
    let db = TestDatabase::new();
    let engine = engine(&db).await;
    let alice_phone = joined(&engine, "alice", "public:lobby").await;
    let mut alice_laptop = connect_probe(&engine, "alice").await;
    let mut bob = joined(&engine, "bob", "public:lobby").await;

    // Act
    for i in 0..20 {
        let ack = engine
            .send_message(
                &uid("alice"),
                Some(alice_phone.id()),
                text("public:lobby", &format!("m{i}"), None),
            )
            .await
            .unwrap();
        assert_eq!(ack.seq, i + 1);
    }

    // Assert: bob and alice's other device get all 20, seq 1..=20 in order; the sender's session gets none.
    for p in [&mut bob, &mut alice_laptop] {
        let got = messages(p, 20).await;
        let seqs: Vec<i64> = got.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
        assert_eq!(got[3]["body"]["text"], "m3");
        assert_eq!(got[0]["from"], "alice");
    }
    let mut alice_phone = alice_phone;
    assert!(alice_phone
        .next_of("message", Duration::from_millis(300))
        .await
        .is_none());
}

#[actix_web::test]
async fn concurrent_senders_get_gap_free_unique_seqs() {
    let db = TestDatabase::new();
    let engine = engine(&db).await;
    let mut probes = Vec::new();
    for u in ["u1", "u2", "u3", "u4"] {
        probes.push(joined(&engine, u, "public:busy").await);
    }
    let mut tasks = Vec::new();
    for (i, p) in probes.iter().enumerate() {
        let engine = engine.clone();
        let user = uid(&format!("u{}", i + 1));
        let sid = p.id();
        tasks.push(actix_web::rt::spawn(async move {
            let mut seqs = Vec::new();
            for j in 0..25 {
                let ack = engine
                    .send_message(&user, Some(sid), text("public:busy", &format!("{j}"), None))
                    .await
                    .unwrap();
                seqs.push(ack.seq);
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    assert_eq!(all, (1..=100).collect::<Vec<_>>());
}

#[actix_web::test]
async fn a_broadcast_reaches_fifty_sessions() {
    let db = TestDatabase::new();
    let engine = engine(&db).await;
    let sender = joined(&engine, "sender", "public:big").await;
    let mut listeners = Vec::new();
    for i in 0..50 {
        listeners.push(joined(&engine, &format!("l{i}"), "public:big").await);
    }
    engine
        .send_message(
            &uid("sender"),
            Some(sender.id()),
            text("public:big", "hello all", None),
        )
        .await
        .unwrap();
    for l in &mut listeners {
        let m = l
            .next_of("message", WAIT)
            .await
            .expect("every listener gets it");
        assert_eq!(m["data"]["body"]["text"], "hello all");
    }
}

#[actix_web::test]
async fn a_retry_with_the_same_client_msg_id_stores_once() {
    let db = TestDatabase::new();
    let engine = engine(&db).await;
    let a = joined(&engine, "alice", "public:r").await;
    let mut b = joined(&engine, "bob", "public:r").await;
    let first = engine
        .send_message(
            &uid("alice"),
            Some(a.id()),
            text("public:r", "once", Some("c-1")),
        )
        .await
        .unwrap();
    let again = engine
        .send_message(
            &uid("alice"),
            Some(a.id()),
            text("public:r", "once", Some("c-1")),
        )
        .await
        .unwrap();
    assert_eq!(first.message_id, again.message_id);
    assert_eq!(first.seq, again.seq);
    assert!(again.duplicate);
    let next = engine
        .send_message(
            &uid("alice"),
            Some(a.id()),
            text("public:r", "twice", Some("c-2")),
        )
        .await
        .unwrap();
    assert_eq!(next.seq, first.seq + 1);
    let got = messages(&mut b, 2).await;
    assert_eq!(got[1]["client_msg_id"], "c-2");
    assert!(
        b.next_of("message", Duration::from_millis(300))
            .await
            .is_none(),
        "the retry is not fanned out again"
    );
}

#[actix_web::test]
async fn presence_goes_online_then_offline_after_the_grace_period() {
    let db = TestDatabase::new();
    let engine = engine(&db).await;
    let mut watcher = joined(&engine, "watcher", "public:p").await;
    let bob = joined(&engine, "bob", "public:p").await;

    let joins = watcher
        .next_of("room_presence", WAIT)
        .await
        .expect("join diff");
    assert_eq!(joins["data"]["joins"][0]["user"], "bob");
    assert_eq!(joins["data"]["joins"][0]["status"], "online");

    bob.disconnect();
    let leaves = watcher
        .next_of("room_presence", WAIT)
        .await
        .expect("leave diff after grace");
    assert_eq!(leaves["data"]["leaves"][0]["user"], "bob");
    assert_eq!(leaves["data"]["leaves"][0]["status"], "offline");
    assert!(leaves["data"]["leaves"][0]["last_seen"].is_string());
}

#[actix_web::test]
async fn a_quick_reconnect_within_grace_emits_no_offline() {
    let db = TestDatabase::new();
    let engine = engine(&db).await;
    let mut watcher = joined(&engine, "watcher", "public:q").await;
    let bob = joined(&engine, "bob", "public:q").await;
    watcher
        .next_of("room_presence", WAIT)
        .await
        .expect("join diff");
    bob.disconnect();
    let _bob2 = connect_probe(&engine, "bob").await;
    let events = watcher.drain(Duration::from_millis(700)).await;
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ProbeEvent::Frame(v) if v["type"] == "room_presence")),
        "no presence flapping: {events:?}"
    );
}

#[actix_web::test]
async fn invisible_users_look_offline_to_others() {
    let db = TestDatabase::new();
    let engine = engine(&db).await;
    let mut watcher = joined(&engine, "watcher", "public:i").await;
    let _bob = joined(&engine, "bob", "public:i").await;
    watcher
        .next_of("room_presence", WAIT)
        .await
        .expect("join diff");
    engine
        .set_status(&uid("bob"), ChosenStatus::Invisible, None, None, None)
        .await
        .unwrap();
    let diff = watcher
        .next_of("room_presence", WAIT)
        .await
        .expect("leave diff");
    assert_eq!(diff["data"]["leaves"][0]["status"], "offline");
    let seen = engine.presence_of(vec![uid("bob")]).await.unwrap();
    assert_eq!(serde_json::to_value(&seen[0]).unwrap()["status"], "offline");
}

#[actix_web::test]
async fn typing_without_stop_expires() {
    let db = TestDatabase::new();
    let engine = engine(&db).await;
    let a = joined(&engine, "alice", "public:t").await;
    let mut b = joined(&engine, "bob", "public:t").await;
    engine
        .typing(&uid("alice"), a.id(), room("public:t"), TypingState::Start)
        .await
        .unwrap();
    let start = b.next_of("typing", WAIT).await.unwrap();
    assert_eq!(
        start["data"],
        json!({"room": "public:t", "user": "alice", "state": "start"})
    );
    let started = std::time::Instant::now();
    let stop = b
        .next_of("typing", WAIT)
        .await
        .expect("typing expires by itself");
    assert_eq!(stop["data"]["state"], "stop");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "expiry follows the configured timeout"
    );
}

#[actix_web::test]
async fn private_rooms_need_an_invitation() {
    let db = TestDatabase::new();
    let engine = engine(&db).await;
    let owner = uid("owner");
    let room_id = engine.create_room(&owner, "team".into()).await.unwrap();
    let mallory = connect_probe(&engine, "mallory").await;
    let err = engine
        .join(&uid("mallory"), mallory.id(), room_id.clone(), None)
        .await
        .unwrap_err();
    assert_eq!(err.code().as_str(), "forbidden");
    let err = engine
        .send_message(&uid("mallory"), None, text(room_id.as_str(), "hi", None))
        .await
        .unwrap_err();
    assert_eq!(err.code().as_str(), "forbidden");
    let by = herald::actors::room::Caller {
        user: owner.clone(),
        admin: false,
    };
    assert!(engine
        .change_member(room_id.clone(), uid("mallory"), by, true)
        .await
        .unwrap());
    engine
        .join(&uid("mallory"), mallory.id(), room_id, None)
        .await
        .expect("invited members may join");
}

#[actix_web::test]
async fn a_direct_message_creates_the_room_and_reaches_the_recipient() {
    let db = TestDatabase::new();
    let engine = engine(&db).await;
    let a = connect_probe(&engine, "alice").await;
    let mut b = connect_probe(&engine, "bob").await;
    let req = SendRequest {
        target: SendTarget::User(uid("bob")),
        ..text("public:x", "psst", None)
    };
    let ack = engine
        .send_message(&uid("alice"), Some(a.id()), req)
        .await
        .unwrap();
    assert_eq!(ack.room, "direct:alice:bob");
    let m = b
        .next_of("message", WAIT)
        .await
        .expect("recipient subscribed before fan-out");
    assert_eq!(m["data"]["body"]["text"], "psst");
}

#[actix_web::test]
async fn receipts_move_watermarks_forward_only_and_reach_the_sender() {
    let db = TestDatabase::new();
    let engine = engine(&db).await;
    let mut a = joined(&engine, "alice", "public:rc").await;
    let b = joined(&engine, "bob", "public:rc").await;
    for i in 0..3 {
        engine
            .send_message(
                &uid("alice"),
                Some(a.id()),
                text("public:rc", &i.to_string(), None),
            )
            .await
            .unwrap();
    }
    engine
        .receipt(
            &uid("bob"),
            Some(b.id()),
            room("public:rc"),
            3,
            herald::domain::ReceiptStatus::Read,
        )
        .await
        .unwrap();
    let r = a.next_of("receipt", WAIT).await.unwrap();
    assert_eq!(
        (
            r["data"]["user"].as_str(),
            r["data"]["seq"].as_i64(),
            r["data"]["status"].as_str()
        ),
        (Some("bob"), Some(3), Some("read"))
    );
    // A lower watermark is accepted but changes nothing, so nobody is told.
    engine
        .receipt(
            &uid("bob"),
            Some(b.id()),
            room("public:rc"),
            2,
            herald::domain::ReceiptStatus::Read,
        )
        .await
        .unwrap();
    assert!(a
        .next_of("receipt", Duration::from_millis(300))
        .await
        .is_none());
    let err = engine
        .receipt(
            &uid("bob"),
            Some(b.id()),
            room("public:rc"),
            99,
            herald::domain::ReceiptStatus::Read,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code().as_str(), "invalid_data");
}

/// Records every [`UserRoomsChanged`] the supervisor reports, then passes it on to the
/// presence registry, which therefore works as without the tap.
struct RoomsReportTap {
    forward: Recipient<UserRoomsChanged>,
    seen: Arc<Mutex<Vec<UserRoomsChanged>>>,
}

impl Actor for RoomsReportTap {
    type Context = Context<Self>;
}

impl Handler<UserRoomsChanged> for RoomsReportTap {
    type Result = ();
    fn handle(&mut self, msg: UserRoomsChanged, _: &mut Context<Self>) {
        self.seen.lock().unwrap().push(msg.clone());
        self.forward.do_send(msg);
    }
}

/// An engine with presence diffs sent at once (no coalescing, so every announcement is a
/// frame of its own) and a tap on the supervisor's reports to the presence registry.
async fn tapped_engine(db: &TestDatabase) -> (Engine, Arc<Mutex<Vec<UserRoomsChanged>>>) {
    init_logs();
    let mut s = test_settings(&db.url);
    s.presence_coalesce = Duration::ZERO;
    let engine = start_engine(s).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let tap = RoomsReportTap {
        forward: engine.presence.clone().recipient(),
        seen: seen.clone(),
    }
    .start();
    engine
        .rooms
        .send(AttachPresence {
            presence: tap.recipient(),
        })
        .await
        .unwrap();
    (engine, seen)
}

/// The room presence diffs about `user` in what `p` receives within `window`.
async fn diffs_about(p: &mut Probe, user: &str, window: Duration) -> Vec<Value> {
    p.drain(window)
        .await
        .into_iter()
        .filter_map(|e| match e {
            ProbeEvent::Frame(v) if v["type"] == "room_presence" => Some(v["data"].clone()),
            _ => None,
        })
        .filter(|d| {
            ["joins", "leaves"].iter().any(|k| {
                d[k].as_array()
                    .is_some_and(|a| a.iter().any(|p| p["user"] == user))
            })
        })
        .collect()
}

/// The supervisor's reports about `user`, as (added, removed) room names.
fn reports_about(
    seen: &Mutex<Vec<UserRoomsChanged>>,
    user: &str,
) -> Vec<(Vec<String>, Vec<String>)> {
    let names = |rooms: &[RoomId]| rooms.iter().map(|r| r.to_string()).collect::<Vec<_>>();
    seen.lock()
        .unwrap()
        .iter()
        .filter(|m| m.user.as_str() == user)
        .map(|m| (names(&m.added), names(&m.removed)))
        .collect()
}

#[actix_web::test]
async fn a_user_with_three_sessions_joining_a_room_is_announced_once() {
    // Arrange
    let db = TestDatabase::new();
    let (engine, seen) = tapped_engine(&db).await;
    let mut watcher = joined(&engine, "watcher", "public:trio").await;
    let mut devices = Vec::new();
    for _ in 0..3 {
        let mut d = connect_probe(&engine, "alice").await;
        d.next_of("sync", WAIT).await.expect("sync frame first");
        devices.push(d);
    }
    watcher.drain(Duration::from_millis(300)).await;

    // Act
    engine
        .join(&uid("alice"), devices[0].id(), room("public:trio"), None)
        .await
        .expect("join");

    // Assert
    let d = diffs_about(&mut watcher, "alice", Duration::from_millis(700)).await;
    assert_eq!(d.len(), 1, "one room_presence about alice: {d:?}");
    assert_eq!(d[0]["joins"].as_array().unwrap().len(), 1);
    assert_eq!(d[0]["joins"][0]["user"], "alice");
    assert_eq!(d[0]["joins"][0]["devices"], 3);
    assert_eq!(
        reports_about(&seen, "alice"),
        [(vec!["public:trio".to_owned()], vec![])],
        "the registry hears once per user, not once per session"
    );
    let rooms = engine.presence_of(vec![uid("alice")]).await.unwrap();
    assert_eq!(rooms[0].devices, 3);
}

#[actix_web::test]
async fn a_user_with_three_sessions_leaving_a_room_is_announced_once() {
    // Arrange
    let db = TestDatabase::new();
    let (engine, seen) = tapped_engine(&db).await;
    let mut watcher = joined(&engine, "watcher", "public:trio").await;
    let _first = joined(&engine, "alice", "public:trio").await;
    let mut others = Vec::new();
    for _ in 0..2 {
        let mut d = connect_probe(&engine, "alice").await;
        d.next_of("sync", WAIT).await.expect("sync frame first");
        others.push(d);
    }
    watcher.drain(Duration::from_millis(300)).await;
    assert_eq!(
        reports_about(&seen, "alice"),
        [(vec!["public:trio".to_owned()], vec![])],
        "more devices in the same rooms change nothing for the registry"
    );

    // Act
    engine
        .leave(&uid("alice"), room("public:trio"))
        .await
        .expect("leave");

    // Assert
    let d = diffs_about(&mut watcher, "alice", Duration::from_millis(700)).await;
    assert_eq!(d.len(), 1, "one room_presence about alice: {d:?}");
    assert_eq!(d[0]["leaves"][0]["user"], "alice");
    assert_eq!(d[0]["leaves"][0]["status"], "offline");
    assert_eq!(
        reports_about(&seen, "alice")[1..],
        [(vec![], vec!["public:trio".to_owned()])]
    );
    // The admin view no longer lists the room for any of alice's sessions.
    let rooms = engine
        .rooms
        .send(GetSessionRooms {
            sessions: others.iter().map(|p| p.id()).collect(),
        })
        .await
        .unwrap();
    assert!(rooms.values().all(|r| r.is_empty()), "{rooms:?}");
}

#[actix_web::test]
async fn shutdown_returns_once_every_closed_session_has_unregistered() {
    // Arrange
    let db = TestDatabase::new();
    let engine = engine(&db).await;
    let mut probes = Vec::new();
    for user in ["alice", "alice", "bob"] {
        probes.push(connect_probe(&engine, user).await);
    }

    // Act
    engine.shutdown().await;

    // Assert: every session was told 1001, and none is registered any more (each one's
    // unregistration, and the last-seen write it queues, came before the drain).
    for p in &mut probes {
        let closed = p
            .drain(Duration::from_millis(50))
            .await
            .into_iter()
            .find_map(|e| match e {
                ProbeEvent::Closed { code, .. } => Some(code),
                ProbeEvent::Frame(_) => None,
            });
        assert_eq!(closed, Some(1001));
    }
    let views = engine
        .presence_of(vec![uid("alice"), uid("bob")])
        .await
        .expect("presence");
    for v in views {
        assert_eq!(v.devices, 0, "{} still has sessions", v.user);
        assert!(v.last_seen.is_some(), "{} has no last-seen", v.user);
    }
}
