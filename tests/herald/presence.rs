//! Presence: devices, grace, away and auto-away, invisible, custom status expiry, privacy and
//! room presence at scale. Timing rules run on a manual clock: time moves only when a test
//! says so, and `Sweep` applies the deadlines.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use herald::actors::presence_registry::{Sweep, Touch};
use herald::clock::{Clock, ManualClock};
use herald::config::Settings;
use herald::domain::{ChosenStatus, CustomMessage, RoomId, SessionId, UserId};
use herald::engine::Engine;
use herald::protocol::TypingState;
use herald::testkit::{
    connect_probe, start_engine, test_settings, Probe, ProbeEvent, TestDatabase,
};
use serde_json::{json, Value};

use crate::helpers::{init_logs, spawn_app};

const QUIET: Duration = Duration::from_millis(300);

fn uid(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

fn room(s: &str) -> RoomId {
    RoomId::parse(s).unwrap()
}

/// An engine on a manual clock whose sweep only runs when the test sends `Sweep`.
async fn manual_engine(
    db: &TestDatabase,
    tweak: impl FnOnce(&mut Settings),
) -> (Engine, ManualClock) {
    init_logs();
    let clock = ManualClock::new();
    let mut s = test_settings(&db.url);
    s.clock = Arc::new(clock.clone());
    s.presence_grace = Duration::from_secs(5);
    s.presence_sweep = Duration::from_secs(3600);
    s.presence_coalesce = Duration::ZERO;
    tweak(&mut s);
    (start_engine(s).await, clock)
}

async fn sweep(engine: &Engine) {
    engine.presence.send(Sweep).await.unwrap();
}

async fn member(engine: &Engine, user: &str, r: &str) -> Probe {
    let p = connect_probe(engine, user).await;
    engine
        .join(&uid(user), p.id(), room(r), None)
        .await
        .unwrap();
    p
}

/// Room presence frames received within `window`.
async fn diffs(p: &mut Probe, window: Duration) -> Vec<Value> {
    p.drain(window)
        .await
        .into_iter()
        .filter_map(|e| match e {
            ProbeEvent::Frame(v) if v["type"] == "room_presence" => Some(v["data"].clone()),
            _ => None,
        })
        .collect()
}

fn users_in(diffs: &[Value], key: &str) -> Vec<String> {
    diffs
        .iter()
        .flat_map(|d| d[key].as_array().cloned().unwrap_or_default())
        .map(|p| p["user"].as_str().unwrap().to_owned())
        .collect()
}

#[actix_web::test]
async fn a_user_with_two_devices_stays_online_until_both_close_and_the_grace_period_ends() {
    let db = TestDatabase::new();
    let (engine, clock) = manual_engine(&db, |_| {}).await;
    let mut watcher = member(&engine, "watcher", "public:dev").await;
    let phone = member(&engine, "bob", "public:dev").await;
    let laptop = connect_probe(&engine, "bob").await;
    watcher.drain(QUIET).await;

    phone.disconnect();
    sweep(&engine).await; // the close is handled before time moves on
    clock.advance(Duration::from_secs(60));
    sweep(&engine).await;
    assert!(
        diffs(&mut watcher, QUIET).await.is_empty(),
        "one device left: still online"
    );
    let p = engine.presence_of(vec![uid("bob")]).await.unwrap();
    assert_eq!(
        (
            p[0].devices,
            serde_json::to_value(&p[0]).unwrap()["status"].clone()
        ),
        (1, json!("online"))
    );

    laptop.disconnect();
    let closed_at = clock.now();
    sweep(&engine).await;
    clock.advance(Duration::from_secs(4));
    sweep(&engine).await;
    assert!(
        diffs(&mut watcher, QUIET).await.is_empty(),
        "within the grace period"
    );
    clock.advance(Duration::from_secs(2));
    sweep(&engine).await;
    let d = diffs(&mut watcher, QUIET).await;
    assert_eq!(users_in(&d, "leaves"), ["bob"]);
    let last_seen = d[0]["leaves"][0]["last_seen"].as_str().unwrap();
    assert_eq!(
        last_seen,
        herald::domain::rfc3339(closed_at),
        "last_seen is when the last session ended"
    );
}

#[actix_web::test]
async fn a_reconnect_within_the_grace_period_emits_nothing() {
    let db = TestDatabase::new();
    let (engine, clock) = manual_engine(&db, |_| {}).await;
    let mut watcher = member(&engine, "watcher", "public:g").await;
    let bob = member(&engine, "bob", "public:g").await;
    watcher.drain(QUIET).await;
    bob.disconnect();
    sweep(&engine).await;
    clock.advance(Duration::from_secs(3));
    sweep(&engine).await;
    let _again = connect_probe(&engine, "bob").await;
    clock.advance(Duration::from_secs(10));
    sweep(&engine).await;
    assert!(
        diffs(&mut watcher, QUIET).await.is_empty(),
        "no offline/online pair"
    );
}

#[actix_web::test]
async fn idle_users_turn_away_and_come_back_on_activity() {
    let db = TestDatabase::new();
    let (engine, clock) =
        manual_engine(&db, |s| s.auto_away = Some(Duration::from_secs(300))).await;
    let mut watcher = member(&engine, "watcher", "public:idle").await;
    let bob = member(&engine, "bob", "public:idle").await;
    watcher.drain(QUIET).await;

    clock.advance(Duration::from_secs(299));
    engine
        .presence
        .send(Touch {
            session: watcher.id(),
            user: uid("watcher"),
        })
        .await
        .unwrap();
    sweep(&engine).await;
    assert!(diffs(&mut watcher, QUIET).await.is_empty());
    clock.advance(Duration::from_secs(2));
    sweep(&engine).await;
    let d = diffs(&mut watcher, QUIET).await;
    assert_eq!(
        (users_in(&d, "joins"), d[0]["joins"][0]["status"].clone()),
        (vec!["bob".to_owned()], json!("away"))
    );

    engine
        .presence
        .send(Touch {
            session: bob.id(),
            user: uid("bob"),
        })
        .await
        .unwrap();
    let d = diffs(&mut watcher, QUIET).await;
    assert_eq!(d[0]["joins"][0]["status"], "online");
}

#[actix_web::test]
async fn a_custom_status_is_cleared_when_it_expires() {
    let db = TestDatabase::new();
    let (engine, clock) = manual_engine(&db, |_| {}).await;
    let mut watcher = member(&engine, "watcher", "public:cs").await;
    let _bob = member(&engine, "bob", "public:cs").await;
    watcher.drain(QUIET).await;
    let expires = clock.now() + 60_000;
    engine
        .set_status(
            &uid("bob"),
            ChosenStatus::Busy,
            Some(CustomMessage::parse("lunch").unwrap()),
            Some(expires),
            None,
        )
        .await
        .unwrap();
    let d = diffs(&mut watcher, QUIET).await;
    assert_eq!(
        (
            d[0]["joins"][0]["status"].clone(),
            d[0]["joins"][0]["custom_message"].clone()
        ),
        (json!("busy"), json!("lunch"))
    );
    clock.advance(Duration::from_secs(61));
    sweep(&engine).await;
    let d = diffs(&mut watcher, QUIET).await;
    assert_eq!(
        (
            d[0]["joins"][0]["status"].clone(),
            d[0]["joins"][0]["custom_message"].clone()
        ),
        (json!("busy"), Value::Null)
    );
}

#[actix_web::test]
async fn invisible_users_look_offline_and_their_last_seen_does_not_advance() {
    let db = TestDatabase::new();
    let (engine, clock) = manual_engine(&db, |_| {}).await;
    let mut watcher = member(&engine, "watcher", "public:inv").await;
    let bob = member(&engine, "bob", "public:inv").await;
    watcher.drain(QUIET).await;
    let before = engine.presence_of(vec![uid("bob")]).await.unwrap()[0]
        .last_seen
        .clone();

    engine
        .set_status(&uid("bob"), ChosenStatus::Invisible, None, None, None)
        .await
        .unwrap();
    let d = diffs(&mut watcher, QUIET).await;
    assert_eq!(users_in(&d, "leaves"), ["bob"]);
    assert_eq!(d[0]["leaves"][0]["status"], "offline");

    // bob keeps working: his messages flow, yet he stays offline to others.
    clock.advance(Duration::from_secs(120));
    bob.disconnect();
    sweep(&engine).await;
    clock.advance(Duration::from_secs(10));
    sweep(&engine).await;
    assert!(
        diffs(&mut watcher, QUIET).await.is_empty(),
        "no second leave for an invisible user"
    );
    let after = engine.presence_of(vec![uid("bob")]).await.unwrap();
    assert_eq!(
        serde_json::to_value(&after[0]).unwrap()["status"],
        "offline"
    );
    assert_eq!(
        after[0].last_seen, before,
        "last_seen frozen while invisible, also once offline"
    );
}

#[actix_web::test]
async fn an_unrelated_user_can_neither_watch_nor_query_presence() {
    let db = TestDatabase::new();
    let (engine, _clock) = manual_engine(&db, |_| {}).await;
    let _bob = member(&engine, "bob", "public:priv").await;
    let mallory = connect_probe(&engine, "mallory").await;
    let err = engine
        .watch(mallory.handle.clone(), false, vec![uid("bob")])
        .await
        .unwrap_err();
    assert_eq!(err.code().as_str(), "forbidden");
    let err = engine
        .check_may_see(&uid("mallory"), false, &[uid("bob")])
        .await
        .unwrap_err();
    assert_eq!(err.code().as_str(), "forbidden");
    engine
        .check_may_see(&uid("mallory"), true, &[uid("bob")])
        .await
        .expect("admins see everyone");
    let _m = member(&engine, "mallory", "public:priv").await;
    engine
        .watch(mallory.handle.clone(), false, vec![uid("bob")])
        .await
        .expect("co-members may watch");

    // With open watching configured, anyone may watch anyone.
    let db2 = TestDatabase::new();
    let (open, _c) = manual_engine(&db2, |s| s.open_watch = true).await;
    let eve = connect_probe(&open, "eve").await;
    open.watch(eve.handle.clone(), false, vec![uid("bob")])
        .await
        .expect("open watching");
}

#[actix_web::test]
async fn typing_starts_are_rate_limited_per_user_and_room() {
    let db = TestDatabase::new();
    let (engine, _clock) = manual_engine(&db, |s| s.typing_rate = 5).await;
    let mut watcher = member(&engine, "watcher", "public:ty").await;
    let bob = member(&engine, "bob", "public:ty").await;
    watcher.drain(QUIET).await;
    for _ in 0..20 {
        engine
            .typing(&uid("bob"), bob.id(), room("public:ty"), TypingState::Start)
            .await
            .unwrap();
    }
    let starts = watcher
        .drain(Duration::from_millis(150))
        .await
        .into_iter()
        .filter(|e| matches!(e, ProbeEvent::Frame(v) if v["type"] == "typing" && v["data"]["state"] == "start"))
        .count();
    assert_eq!(starts, 1, "20 starts within 150 ms at 5/s: one broadcast");
}

/// Room presence frames until `n` distinct users have arrived under `key`; panics if they
/// stop coming.
async fn collect_diffs(watcher: &mut Probe, key: &str, n: usize) -> (HashSet<String>, usize) {
    let mut users: HashSet<String> = HashSet::new();
    let mut frames = 0;
    while users.len() < n {
        let Some(f) = watcher
            .next_of("room_presence", Duration::from_secs(10))
            .await
        else {
            panic!("only {} of {n} {key} arrived", users.len());
        };
        frames += 1;
        users.extend(users_in(&[f["data"].clone()], key));
    }
    (users, frames)
}

#[actix_web::test]
async fn a_room_of_2000_members_where_500_connect_at_once_gets_coalesced_diffs() {
    // Arrange: 2,000 members, one of them watching, presence coalesced over 500 ms, on a
    // manual clock so that the grace period ends exactly when the test says.
    const WINDOW: Duration = Duration::from_millis(500);
    let db = TestDatabase::new();
    let (engine, clock) = manual_engine(&db, |s| s.presence_coalesce = WINDOW).await;
    let r = room("public:stadium");
    let members: Vec<String> = (0..2000).map(|i| format!("fan{i}")).collect();
    for chunk in members.chunks(250) {
        let joins = chunk.iter().map(|u| {
            let engine = engine.clone();
            let r = r.clone();
            let u = uid(u);
            async move { engine.join(&u, SessionId::next(), r, None).await.unwrap() }
        });
        futures_util::future::join_all(joins).await;
    }
    let mut watcher = member(&engine, "watcher", "public:stadium").await;
    watcher.drain(QUIET).await;

    // Act 1: 500 members connect at once. How many frames that takes depends on how long
    // the connects take, so it is only logged; every join must arrive.
    let started = std::time::Instant::now();
    let connects = members[..500].iter().map(|u| connect_probe(&engine, u));
    let probes = futures_util::future::join_all(connects).await;
    let (joined, frames) = collect_diffs(&mut watcher, "joins", 500).await;
    assert_eq!(joined, members[..500].iter().cloned().collect());
    log::info!("500 joins in {frames} frames over {:?}", started.elapsed());
    // Let the coalescing window close: a quiet room sends its next change at once.
    assert!(diffs(&mut watcher, WINDOW * 2).await.is_empty());

    // Act 2: all 500 close; their grace period ends at the same instant, so one sweep turns
    // all of them offline at once.
    for p in &probes {
        p.disconnect();
    }
    sweep(&engine).await; // the closes are handled before time moves on
    clock.advance(Duration::from_secs(6));
    sweep(&engine).await;

    // Assert: 500 leaves in at most two frames: the first change of a quiet room goes out at
    // once, the rest are coalesced into one diff at the end of the window.
    let (left, frames) = collect_diffs(&mut watcher, "leaves", 500).await;
    assert_eq!(left, members[..500].iter().cloned().collect());
    assert!(frames <= 2, "{frames} room_presence frames for 500 leaves");
    assert!(
        diffs(&mut watcher, WINDOW * 2).await.is_empty(),
        "nothing after the coalesced diff"
    );
}

#[actix_web::test]
async fn several_devices_end_to_end_and_admin_status_override() {
    let (app, _db) = spawn_app().await;
    let mut alice = app.ws("alice").await;
    alice.ok("join", json!({"room": "public:e2e"})).await;
    let mut phone = app.ws("bob").await;
    phone.ok("join", json!({"room": "public:e2e"})).await;
    let laptop = app.ws("bob").await;
    let (_, p) = app.get("/v1/presence/bob", Some(&app.token("alice"))).await;
    assert_eq!(p["devices"], 2);
    phone.close().await;
    // Closing one of two devices produces no leave.
    let deadline = std::time::Instant::now() + Duration::from_millis(600);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match alice.recv_or_other(left).await {
            Ok(v) => assert!(
                !(v["type"] == "room_presence"
                    && v["data"]["leaves"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|l| l["user"] == "bob")),
                "bob still has a device: {v}"
            ),
            Err(_) => break,
        }
    }
    let (_, p) = app.get("/v1/presence/bob", Some(&app.token("alice"))).await;
    assert_eq!(
        (p["status"].as_str(), p["devices"].as_u64()),
        (Some("online"), Some(1))
    );

    // An admin sets bob busy for support reasons; alice sees it.
    let (status, body) = app
        .send_json(
            "PUT",
            "/v1/admin/presence/bob",
            Some(&app.admin_token("root")),
            Some(json!({"status": "busy", "custom_message": "on a call"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    loop {
        let d = alice.recv_type("room_presence").await;
        if d["data"]["joins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["user"] == "bob" && j["status"] == "busy")
        {
            break;
        }
    }
    let (status, _) = app
        .send_json(
            "PUT",
            "/v1/admin/presence/bob",
            Some(&app.token("alice")),
            Some(json!({"status": "busy"})),
        )
        .await;
    assert_eq!(status, 403);

    laptop.close().await;
    loop {
        let d = alice.recv_type("room_presence").await;
        if let Some(l) = d["data"]["leaves"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["user"] == "bob")
        {
            assert!(l["last_seen"].is_string());
            break;
        }
    }
}

#[actix_web::test]
async fn a_custom_status_expiry_survives_going_offline_and_reconnecting() {
    let db = TestDatabase::new();
    let (engine, clock) = manual_engine(&db, |_| {}).await;
    let bob = member(&engine, "bob", "public:exp").await;
    let expires = clock.now() + 60_000;
    engine
        .set_status(
            &uid("bob"),
            ChosenStatus::Busy,
            Some(CustomMessage::parse("lunch").unwrap()),
            Some(expires),
            None,
        )
        .await
        .unwrap();
    bob.disconnect();
    sweep(&engine).await;
    clock.advance(Duration::from_secs(10));
    sweep(&engine).await; // offline: the entry is gone, only the database remembers
                          // Presence writes are queued behind the caller; let them land before reconnecting.
    engine
        .store
        .commits
        .send(herald::actors::commit_queue::Drain)
        .await
        .unwrap();
    let _again = connect_probe(&engine, "bob").await;
    let p = engine.presence_of(vec![uid("bob")]).await.unwrap();
    assert_eq!(p[0].custom_message, CustomMessage::parse("lunch").ok());
    clock.advance(Duration::from_secs(51));
    sweep(&engine).await;
    let p = engine.presence_of(vec![uid("bob")]).await.unwrap();
    assert_eq!(
        p[0].custom_message, None,
        "cleared at its expiry after a reconnect"
    );
}

#[actix_web::test]
async fn a_change_in_a_quiet_room_goes_out_at_once_and_a_burst_after_it_is_coalesced() {
    // Arrange: a long coalescing window, so "at once" and "at the end of the window" differ.
    init_logs();
    let db = TestDatabase::new();
    let mut s = test_settings(&db.url);
    s.presence_coalesce = Duration::from_millis(1500);
    let engine = start_engine(s).await;
    let mut watcher = member(&engine, "watcher", "public:quiet").await;
    for u in ["bob", "carol", "dave"] {
        engine
            .join(&uid(u), SessionId::next(), room("public:quiet"), None)
            .await
            .unwrap();
    }
    // Memberships without a connection change no presence: the room is quiet.
    assert!(diffs(&mut watcher, Duration::from_millis(1800))
        .await
        .is_empty());

    // Act: one member connects into the quiet room, then two more right after.
    let started = std::time::Instant::now();
    let _bob = connect_probe(&engine, "bob").await;
    let first = watcher
        .next_of("room_presence", Duration::from_secs(5))
        .await
        .expect("bob's join");
    let first_after = started.elapsed();
    let _carol = connect_probe(&engine, "carol").await;
    let _dave = connect_probe(&engine, "dave").await;
    let second = watcher
        .next_of("room_presence", Duration::from_secs(5))
        .await
        .expect("the burst's diff");

    // Assert: the first change did not wait for the window; the burst came as one diff.
    assert!(
        first_after < Duration::from_millis(1000),
        "the lone join took {first_after:?} (window 1.5 s)"
    );
    assert_eq!(users_in(&[first["data"].clone()], "joins"), vec!["bob"]);
    assert_eq!(
        users_in(&[second["data"].clone()], "joins"),
        vec!["carol", "dave"]
    );
}
