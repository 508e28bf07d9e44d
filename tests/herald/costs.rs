//! Work a client triggers cheaply stays cheap, and caps hold under concurrency: one typing
//! deadline per user however many `start`s, no room actor for a refused request, member and
//! room caps that parallel joins cannot overshoot, a bounded commit queue, paced commits,
//! and a retried message costing only its own group in a merged batch.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use herald::actors::room::{GetTypingStats, TypingStats};
use herald::actors::room_supervisor::GetRoom;
use herald::db::{DatabaseUrl, DbConnection};
use herald::domain::{ReceiptStatus, RoomId, UserId};
use herald::engine::Engine;
use herald::error::{EngineError, ErrorCode};
use herald::protocol::TypingState;
use herald::testkit::{connect_probe, start_engine, test_settings, Probe, TestDatabase};

use crate::helpers::init_logs;

const WAIT: Duration = Duration::from_secs(5);

fn uid(s: &str) -> UserId {
    UserId::parse(s).expect("valid user id")
}

fn room(s: &str) -> RoomId {
    RoomId::parse(s).expect("valid room id")
}

async fn connected(engine: &Engine, user: &str) -> Probe {
    let mut p = connect_probe(engine, user).await;
    p.next_of("sync", WAIT).await.expect("sync frame first");
    p
}

fn open(db: &TestDatabase) -> DbConnection {
    let url = DatabaseUrl::parse(&db.url).expect("database url");
    DbConnection::establish(&url).expect("connect")
}

async fn active_rooms(engine: &Engine) -> u64 {
    let stats = engine.stats().await.expect("stats");
    stats["active_rooms"].as_u64().expect("active_rooms")
}

#[actix_web::test]
async fn many_typing_starts_from_one_user_keep_one_deadline_and_expire_once() {
    // Arrange
    init_logs();
    let db = TestDatabase::new();
    let engine = start_engine(test_settings(&db.url)).await;
    let a = connected(&engine, "alice").await;
    let mut b = connected(&engine, "bob").await;
    for u in ["alice", "bob"] {
        engine
            .join(&uid(u), a.id(), room("public:t"), None)
            .await
            .expect("join");
    }
    // Act: a burst of starts from one user.
    for _ in 0..2_000 {
        engine
            .typing(&uid("alice"), a.id(), room("public:t"), TypingState::Start)
            .await
            .expect("typing");
    }
    let addr = engine
        .rooms
        .send(GetRoom {
            room: room("public:t"),
        })
        .await
        .expect("room");
    let during = addr.send(GetTypingStats).await.expect("stats");
    // Assert: one deadline and one timer, not one per start.
    assert_eq!(
        during,
        TypingStats {
            deadlines: 1,
            timers: 1
        }
    );
    let start = b.next_of("typing", WAIT).await.expect("start");
    assert_eq!(start["data"]["state"], "start");
    let mut stops = 0;
    while let Some(f) = b.next_of("typing", Duration::from_millis(1_500)).await {
        if f["data"]["state"] == "stop" {
            stops += 1;
        }
    }
    assert_eq!(stops, 1, "the indicator expires exactly once");
    let after = addr.send(GetTypingStats).await.expect("stats");
    assert_eq!(
        after,
        TypingStats {
            deadlines: 0,
            timers: 0
        }
    );
}

#[actix_web::test]
async fn refused_requests_for_a_thousand_rooms_start_no_room_actor() {
    // Arrange: a private room the stranger is not in, and a connected stranger.
    init_logs();
    let db = TestDatabase::new();
    let engine = start_engine(test_settings(&db.url)).await;
    let private = engine
        .create_room(&uid("owner"), "secret".into())
        .await
        .expect("private room");
    let stranger = connected(&engine, "stranger").await;
    let me = uid("stranger");
    let before = active_rooms(&engine).await;
    // Act: typing, history, receipts and joins for 1,000 forbidden or nonexistent rooms.
    let mut codes = Vec::new();
    for i in 0..1_000 {
        let target = match i % 5 {
            0 => private.clone(),
            1 | 2 => room(&format!("public:nowhere-{i}")),
            3 => RoomId::new_private(),
            _ => RoomId::direct(&uid("x1"), &uid(&format!("x{i}"))),
        };
        let res: Result<(), EngineError> = match i % 4 {
            0 => {
                engine
                    .typing(&me, stranger.id(), target, TypingState::Start)
                    .await
            }
            1 => engine
                .history(&me, false, target, None, None, 50)
                .await
                .map(|_| ()),
            2 => {
                engine
                    .receipt(&me, Some(stranger.id()), target, 1, ReceiptStatus::Read)
                    .await
            }
            _ if target.kind() == herald::domain::RoomKind::Public => engine
                .typing(&me, stranger.id(), target, TypingState::Stop)
                .await
                .map(|_| ()),
            _ => engine
                .join(&me, stranger.id(), target, None)
                .await
                .map(|_| ()),
        };
        codes.push(res.expect_err("refused").code());
    }
    // Assert: every one refused, and no room actor was started for any of them.
    assert!(
        codes
            .iter()
            .all(|c| matches!(c, ErrorCode::Forbidden | ErrorCode::NotFound)),
        "{codes:?}"
    );
    let after = active_rooms(&engine).await;
    assert!(
        after <= before,
        "live room actors grew from {before} to {after}"
    );
    let metrics = herald::metrics::METRICS.render();
    assert!(metrics.contains("herald_rooms_active"), "{metrics}");
}

#[actix_web::test]
async fn parallel_joins_never_exceed_max_room_members() {
    // Arrange
    init_logs();
    let db = TestDatabase::new();
    let mut settings = test_settings(&db.url);
    settings.limits.max_room_members = 5;
    let engine = start_engine(settings).await;
    let mut probes = Vec::new();
    for i in 0..20 {
        probes.push(connected(&engine, &format!("u{i}")).await);
    }
    // Act: 20 users join the same room at once.
    let joins = probes.iter().enumerate().map(|(i, p)| {
        let engine = engine.clone();
        let id = p.id();
        async move {
            engine
                .join(&uid(&format!("u{i}")), id, room("public:full"), None)
                .await
        }
    });
    let results = join_all(joins).await;
    // Assert: exactly five got in, the rest were told the room is full.
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 5, "joins admitted");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r.code(), ErrorCode::LimitExceeded, "{r}");
    }
    let stored = open(&db)
        .load_room(&room("public:full"))
        .expect("load")
        .expect("room exists");
    assert_eq!(stored.members.len(), 5, "{:?}", stored.members);
}

#[actix_web::test]
async fn parallel_joins_never_exceed_max_rooms_per_user() {
    // Arrange: one user with two sessions.
    init_logs();
    let db = TestDatabase::new();
    let mut settings = test_settings(&db.url);
    settings.limits.max_rooms_per_user = 3;
    let engine = start_engine(settings).await;
    let s1 = connected(&engine, "hoarder").await;
    let s2 = connected(&engine, "hoarder").await;
    // Act: 20 public rooms joined at once, alternating sessions.
    let joins = (0..20).map(|i| {
        let engine = engine.clone();
        let session = if i % 2 == 0 { s1.id() } else { s2.id() };
        async move {
            engine
                .join(
                    &uid("hoarder"),
                    session,
                    room(&format!("public:r{i}")),
                    None,
                )
                .await
        }
    });
    let results = join_all(joins).await;
    // Assert: exactly three memberships, in the replies and in the database.
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 3, "joins admitted");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r.code(), ErrorCode::LimitExceeded, "{r}");
    }
    let n = open(&db).count_user_rooms(&uid("hoarder")).expect("count");
    assert_eq!(n, 3);
    // A refused join does not leave its freshly started room behind.
    assert_eq!(active_rooms(&engine).await, 3);
}

/// Holds the database's write lock from another connection until dropped, so the writer
/// stalls as it would on a slow disk or a locked table.
struct StalledWriter(DbConnection);

impl StalledWriter {
    fn start(db: &TestDatabase) -> Self {
        use diesel::connection::SimpleConnection;
        let mut c = open(db);
        match &mut c {
            DbConnection::Sqlite(c) => c.batch_execute("BEGIN IMMEDIATE"),
            DbConnection::Postgres(c) => {
                c.batch_execute("BEGIN; LOCK TABLE messages IN EXCLUSIVE MODE")
            }
        }
        .expect("take the write lock");
        StalledWriter(c)
    }

    fn release(mut self) {
        use diesel::connection::SimpleConnection;
        match &mut self.0 {
            DbConnection::Sqlite(c) => c.batch_execute("ROLLBACK"),
            DbConnection::Postgres(c) => c.batch_execute("ROLLBACK"),
        }
        .expect("release the write lock");
    }
}

#[actix_web::test]
async fn a_full_commit_queue_refuses_with_retry_after_and_loses_nothing_accepted() {
    // Arrange: a queue of 3 groups, ten users each in their own room.
    init_logs();
    let db = TestDatabase::new();
    let mut settings = test_settings(&db.url);
    settings.costs.commit_queue_max = 3;
    let engine = start_engine(settings).await;
    let mut probes = Vec::new();
    for i in 0..10 {
        let p = connected(&engine, &format!("w{i}")).await;
        engine
            .join(
                &uid(&format!("w{i}")),
                p.id(),
                room(&format!("public:q{i}")),
                None,
            )
            .await
            .expect("join");
        probes.push(p);
    }
    let send = |i: usize| {
        let engine = engine.clone();
        let origin = probes[i].id();
        async move {
            let req = text_send(&format!("public:q{i}"), &format!("m{i}"));
            engine
                .send_message(&uid(&format!("w{i}")), Some(origin), req)
                .await
        }
    };
    // Act: stall the writer; one send goes in flight, then nine more arrive.
    let stall = StalledWriter::start(&db);
    let first = actix::spawn(send(0));
    actix::clock::sleep(Duration::from_millis(300)).await;
    let rest = join_all((1..10).map(|i| {
        let f = send(i);
        async move { (i, f.await) }
    }));
    let release = async {
        actix::clock::sleep(Duration::from_millis(1_000)).await;
        stall.release();
    };
    let (rest, ()) = futures_util::future::join(rest, release).await;
    let first = first.await.expect("first send task");
    // Assert: three queued behind the one in flight were stored; the other six were refused
    // at once with `unavailable` and a retry hint, and stored nothing.
    assert!(first.is_ok(), "{first:?}");
    let mut acked = vec![0usize];
    let mut refused = Vec::new();
    for (i, r) in rest {
        match r {
            Ok(_) => acked.push(i),
            Err(e) => {
                assert_eq!(e.code(), ErrorCode::Unavailable, "{e}");
                assert!(e.retry_after_ms().is_some_and(|ms| ms > 0), "{e:?}");
                refused.push(i);
            }
        }
    }
    assert_eq!((acked.len(), refused.len()), (4, 6), "acked {acked:?}");
    let mut c = open(&db);
    for i in 0..10 {
        let (history, _) = c
            .history(&room(&format!("public:q{i}")), None, None, 10)
            .expect("history");
        let want = usize::from(acked.contains(&i));
        assert_eq!(history.len(), want, "room q{i}");
    }
    let stats = engine.stats().await.expect("stats");
    assert_eq!(stats["persistence"]["refused_groups"], 6);
}

fn text_send(room_name: &str, text: &str) -> herald::protocol::SendRequest {
    herald::protocol::SendRequest {
        target: herald::protocol::SendTarget::Room(room(room_name)),
        kind: herald::domain::MessageKind::Text,
        body: herald::domain::MessageBody::parse(
            herald::domain::MessageKind::Text,
            &serde_json::json!({ "text": text }),
            1000,
        )
        .expect("body"),
        priority: herald::domain::Priority::Normal,
        client_msg_id: Some(format!("c-{text}")),
    }
}

async fn commit_batches(engine: &Engine) -> u64 {
    let stats = engine.stats().await.expect("stats");
    stats["persistence"]["batches"].as_u64().expect("batches")
}

#[actix_web::test]
async fn a_write_after_a_quiet_interval_commits_at_once_and_steady_ones_share_a_commit() {
    // Arrange: a long interval, so what is paced cannot pass for what is not.
    init_logs();
    let db = TestDatabase::new();
    let mut settings = test_settings(&db.url);
    settings.commit_interval = Duration::from_millis(600);
    let engine = start_engine(settings).await;
    let p = connected(&engine, "pacer").await;
    let user = uid("pacer");
    engine
        .join(&user, p.id(), room("public:paced"), None)
        .await
        .expect("join");
    actix::clock::sleep(Duration::from_millis(700)).await;
    let before = commit_batches(&engine).await;

    // Act: one send after the quiet interval, then five at once right behind it.
    let started = Instant::now();
    let first = engine
        .send_message(&user, Some(p.id()), text_send("public:paced", "m0"))
        .await;
    let first_took = started.elapsed();
    let rest = join_all((1..6).map(|i| {
        engine.send_message(
            &user,
            Some(p.id()),
            text_send("public:paced", &format!("m{i}")),
        )
    }))
    .await;
    let rest_took = started.elapsed();

    // Assert: the first was not held; the five waited for the interval and were committed
    // together, in order.
    assert!(first.is_ok(), "{first:?}");
    assert!(first_took < Duration::from_millis(500), "{first_took:?}");
    assert!(rest.iter().all(Result::is_ok), "{rest:?}");
    assert!(rest_took >= Duration::from_millis(600), "{rest_took:?}");
    assert_eq!(commit_batches(&engine).await - before, 2, "m0, then m1..m5");
    let (history, _) = open(&db)
        .history(&room("public:paced"), None, None, 10)
        .expect("history");
    let texts: Vec<String> = history.iter().map(|m| m.body.clone()).collect();
    assert_eq!(texts.len(), 6, "{texts:?}");
    for (i, t) in texts.iter().enumerate() {
        assert!(t.contains(&format!("m{i}")), "{texts:?}");
    }
}

mod storage {
    //! The storage side: a retried message in a merged batch.

    use std::sync::{Arc, Mutex};

    use diesel::connection::InstrumentationEvent;
    use herald::db::models::{MemberRole, NewMessage, WriteOp, WriteOutcome};
    use herald::domain::{MessageBody, MessageKind, Priority};
    use serde_json::json;

    use super::{open, room, uid};
    use herald::testkit::TestDatabase;

    fn msg(sender: &str, text: &str, cmid: &str) -> NewMessage {
        NewMessage {
            id: uuid::Uuid::new_v4().to_string(),
            sender: uid(sender),
            kind: MessageKind::Text,
            body: MessageBody::parse(MessageKind::Text, &json!({ "text": text }), 1024)
                .expect("valid body"),
            priority: Priority::Normal,
            client_msg_id: Some(cmid.to_owned()),
            created_at: 1,
        }
    }

    fn appended(o: &[WriteOutcome]) -> Vec<(i64, String, bool)> {
        o.iter()
            .flat_map(|o| match o {
                WriteOutcome::Appended(list) => list
                    .iter()
                    .map(|a| {
                        let body: serde_json::Value =
                            serde_json::from_str(&a.message.body).expect("stored body");
                        (
                            a.message.seq,
                            body["text"].as_str().unwrap_or_default().to_owned(),
                            a.duplicate,
                        )
                    })
                    .collect::<Vec<_>>(),
                other => panic!("unexpected outcome {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_retry_in_a_merged_batch_costs_only_its_own_group() {
        // Arrange: 50 users in 10 rooms; alice's "x1" is stored already.
        let db = TestDatabase::new();
        let mut c = open(&db);
        c.run_migrations().expect("migrations");
        let mut ops = Vec::new();
        for r in 0..10 {
            ops.push(WriteOp::EnsureRoom {
                room: room(&format!("public:r{r}")),
                name: None,
                created_by: None,
                at: 1,
            });
            for u in 0..5 {
                ops.push(WriteOp::AddMember {
                    room: room(&format!("public:r{r}")),
                    user: uid(&format!("u{}", r * 5 + u)),
                    role: MemberRole::Member,
                    at: 1,
                });
            }
        }
        ops.push(WriteOp::AddMember {
            room: room("public:r0"),
            user: uid("alice"),
            role: MemberRole::Member,
            at: 1,
        });
        c.write_batch(&[ops]).expect("setup");
        let first = c
            .write_batch_report(&[vec![WriteOp::AppendMessages {
                room: room("public:r0"),
                messages: vec![msg("alice", "original", "x1")],
                outbox: Default::default(),
            }]])
            .expect("first");
        assert_eq!(
            appended(first.results[0].as_ref().expect("stored")),
            vec![(1, "original".to_owned(), false)]
        );
        // Act: 50 fresh groups with the retry in the middle of them.
        let mut batch = Vec::new();
        for i in 0..50 {
            if i == 25 {
                batch.push(vec![WriteOp::AppendMessages {
                    room: room("public:r0"),
                    messages: vec![msg("alice", "retry", "x1")],
                    outbox: Default::default(),
                }]);
            }
            batch.push(vec![WriteOp::AppendMessages {
                room: room(&format!("public:r{}", i / 5)),
                messages: vec![msg(&format!("u{i}"), &format!("m{i}"), "c1")],
                outbox: Default::default(),
            }]);
        }
        let report = c.write_batch_report(&batch).expect("batch");
        // Assert: written set-wise (no per-group rewrite), the retry answered with the original,
        // and every other group stored once with gap-free seqs.
        assert!(
            !report.per_group,
            "one retry made the whole batch of {} groups fall back",
            batch.len()
        );
        let mut next = [1i64; 10];
        next[0] = 2;
        let mut j = 0;
        for (gi, g) in report.results.iter().enumerate() {
            let got = appended(g.as_ref().expect("group stored"));
            if gi == 25 {
                assert_eq!(got, vec![(1, "original".to_owned(), true)]);
                continue;
            }
            let r = j / 5;
            assert_eq!(got, vec![(next[r], format!("m{j}"), false)]);
            next[r] += 1;
            j += 1;
        }
        let (history, _) = c
            .history(&room("public:r0"), None, None, 100)
            .expect("history");
        assert_eq!(history.len(), 6, "the retry is not stored twice");
    }

    #[test]
    fn a_batch_of_a_known_shape_reuses_its_prepared_statements() {
        // Arrange: a room of two, and a record of the statements prepared for the cache.
        let db = TestDatabase::new();
        let mut c = open(&db);
        c.run_migrations().expect("migrations");
        let mut setup = vec![WriteOp::EnsureRoom {
            room: room("public:p"),
            name: None,
            created_by: None,
            at: 1,
        }];
        for u in ["alice", "bob"] {
            setup.push(WriteOp::AddMember {
                room: room("public:p"),
                user: uid(u),
                role: MemberRole::Member,
                at: 1,
            });
        }
        c.write_batch(&[setup]).expect("setup");
        let prepared = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen = prepared.clone();
        c.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::CacheQuery { sql, .. } = event {
                if let Ok(mut v) = seen.lock() {
                    v.push(sql.to_owned());
                }
            }
        });
        let batch = |n: usize| {
            vec![vec![WriteOp::AppendMessages {
                room: room("public:p"),
                messages: (0..2)
                    .map(|i| msg(["alice", "bob"][i], "hi", &format!("c{n}-{i}")))
                    .collect(),
                outbox: Default::default(),
            }]]
        };
        let taken = |p: &Mutex<Vec<String>>| std::mem::take(&mut *p.lock().expect("record"));
        // Act: the same shape twice.
        c.write_batch(&batch(1)).expect("first");
        let first = taken(&prepared);
        c.write_batch(&batch(2)).expect("second");
        let second = taken(&prepared);
        // Assert: the merged append's statements (retry lookup, seqs, rows, watermarks) were
        // prepared once, at the first batch, and the second ran them from the cache.
        for stmt in [
            "FROM messages m JOIN (VALUES",
            "UPDATE rooms SET last_seq",
            "INSERT INTO messages",
            "UPDATE members SET",
        ] {
            assert!(
                first.iter().any(|sql| sql.contains(stmt)),
                "{stmt} not prepared for the cache: {first:?}"
            );
        }
        assert!(second.is_empty(), "prepared again: {second:?}");
        let (history, _) = c
            .history(&room("public:p"), None, None, 10)
            .expect("history");
        assert_eq!(history.len(), 4);
    }
}
