//! Group commit at the storage layer, on whichever backend the suite runs against: a batch
//! whose appends are merged into set-wise statements must give the same results as writing
//! each group on its own — gap-free seqs per room in arrival order, the sender's watermarks,
//! retries answered with the original, and a refused group not undoing the others.

use herald::db::models::{MemberRole, NewMessage, OutboxPolicy, WriteOp, WriteOutcome};
use herald::db::{DatabaseUrl, DbConnection};
use herald::domain::{MessageBody, MessageKind, Priority, RoomId, UserId};
use herald::testkit::TestDatabase;
use serde_json::json;

fn user(s: &str) -> UserId {
    UserId::parse(s).expect("valid user id")
}

fn room(s: &str) -> RoomId {
    RoomId::parse(s).expect("valid room id")
}

fn msg(sender: &str, text: &str, cmid: Option<&str>) -> NewMessage {
    NewMessage {
        id: uuid::Uuid::new_v4().to_string(),
        sender: user(sender),
        kind: MessageKind::Text,
        body: MessageBody::parse(MessageKind::Text, &json!({ "text": text }), 1024)
            .expect("valid body"),
        priority: Priority::Normal,
        client_msg_id: cmid.map(str::to_owned),
        created_at: 1,
    }
}

fn append(r: &str, messages: Vec<NewMessage>) -> Vec<WriteOp> {
    vec![WriteOp::AppendMessages {
        room: room(r),
        messages,
        outbox: Default::default(),
    }]
}

fn open(db: &TestDatabase) -> DbConnection {
    let url = DatabaseUrl::parse(&db.url).expect("database url");
    let mut c = DbConnection::establish(&url).expect("connect");
    c.run_migrations().expect("migrations");
    c
}

/// (seq, text, duplicate) of one appended message.
type Appended = (i64, String, bool);

/// The appended messages of each group, or the group's error.
fn appended(
    results: Vec<Result<Vec<WriteOutcome>, herald::error::PersistError>>,
) -> Vec<Result<Vec<Appended>, String>> {
    results
        .into_iter()
        .map(|g| match g {
            Ok(outcomes) => Ok(outcomes
                .into_iter()
                .flat_map(|o| match o {
                    WriteOutcome::Appended(list) => list
                        .into_iter()
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
                .collect()),
            Err(e) => Err(e.to_string()),
        })
        .collect()
}

fn setup(c: &mut DbConnection, rooms: &[&str], users: &[&str]) {
    let mut ops = Vec::new();
    for r in rooms {
        ops.push(WriteOp::EnsureRoom {
            room: room(r),
            name: None,
            created_by: None,
            at: 1,
        });
        for u in users {
            ops.push(WriteOp::AddMember {
                room: room(r),
                user: user(u),
                role: MemberRole::Member,
                at: 1,
            });
        }
    }
    let r = c.write_batch(&[ops]).expect("setup batch");
    assert!(r.iter().all(|g| g.is_ok()), "setup failed: {r:?}");
}

#[test]
fn merged_appends_assign_gap_free_seqs_across_rooms_in_arrival_order() {
    let db = TestDatabase::new();
    let mut c = open(&db);
    setup(&mut c, &["public:a", "public:b"], &["alice", "bob"]);

    let batch = vec![
        append(
            "public:a",
            vec![msg("alice", "a1", Some("c1")), msg("bob", "a2", None)],
        ),
        append("public:b", vec![msg("bob", "b1", Some("c1"))]),
        // A second group for the same room in the same batch continues its seqs.
        append("public:a", vec![msg("alice", "a3", Some("c2"))]),
    ];
    let got = appended(c.write_batch(&batch).expect("batch"));
    assert_eq!(
        got,
        vec![
            Ok(vec![(1, "a1".into(), false), (2, "a2".into(), false)]),
            Ok(vec![(1, "b1".into(), false)]),
            Ok(vec![(3, "a3".into(), false)]),
        ]
    );
    let (history, _) = c
        .history(&room("public:a"), None, None, 10)
        .expect("history");
    let seqs: Vec<i64> = history.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3]);

    // Sending marks the room read up to one's own newest message.
    let rooms = c.user_rooms(&user("alice"), None, 10).expect("rooms");
    let a = rooms
        .iter()
        .find(|r| r.room.as_str() == "public:a")
        .expect("member");
    assert_eq!(
        (a.last_seq, a.read_seq, a.delivered_seq, a.unread),
        (3, 3, 3, 0)
    );
    let rooms = c.user_rooms(&user("bob"), None, 10).expect("rooms");
    let a = rooms
        .iter()
        .find(|r| r.room.as_str() == "public:a")
        .expect("member");
    assert_eq!((a.read_seq, a.unread), (2, 1));
}

#[test]
fn a_retry_in_a_batch_gets_the_original_and_the_rest_is_stored_once() {
    let db = TestDatabase::new();
    let mut c = open(&db);
    setup(&mut c, &["public:a", "public:b"], &["alice", "bob"]);
    let first = appended(
        c.write_batch(&[append("public:a", vec![msg("alice", "hello", Some("x1"))])])
            .expect("batch"),
    );
    assert_eq!(first, vec![Ok(vec![(1, "hello".into(), false)])]);

    // The retry (same sender, same client_msg_id, new text) sits between fresh messages of
    // another room and of the same room; a retry of a message new in this batch too.
    let batch = vec![
        append("public:b", vec![msg("bob", "fresh-b", Some("y1"))]),
        append(
            "public:a",
            vec![
                msg("alice", "hello again", Some("x1")),
                msg("alice", "next", Some("x2")),
                msg("alice", "next again", Some("x2")),
            ],
        ),
    ];
    let got = appended(c.write_batch(&batch).expect("batch"));
    assert_eq!(
        got,
        vec![
            Ok(vec![(1, "fresh-b".into(), false)]),
            Ok(vec![
                (1, "hello".into(), true),
                (2, "next".into(), false),
                (2, "next".into(), true),
            ]),
        ]
    );
    let (history, _) = c
        .history(&room("public:a"), None, None, 10)
        .expect("history");
    assert_eq!(history.len(), 2, "each message stored once: {history:?}");
}

#[test]
fn a_refused_group_does_not_undo_the_others_in_its_batch() {
    let db = TestDatabase::new();
    let mut c = open(&db);
    setup(&mut c, &["public:a"], &["alice"]);
    let batch = vec![
        append("public:a", vec![msg("alice", "kept", None)]),
        // The room was never created: this group alone fails.
        append("public:missing", vec![msg("alice", "lost", None)]),
        append("public:a", vec![msg("alice", "kept too", None)]),
    ];
    let got = appended(c.write_batch(&batch).expect("batch"));
    assert_eq!(got[0], Ok(vec![(1, "kept".into(), false)]));
    assert!(got[1].is_err(), "{got:?}");
    assert_eq!(got[2], Ok(vec![(2, "kept too".into(), false)]));
    let (history, _) = c
        .history(&room("public:a"), None, None, 10)
        .expect("history");
    assert_eq!(history.len(), 2);
}

/// Texts of the messages with a pending outbox row.
fn outboxed(c: &mut DbConnection) -> Vec<String> {
    let mut texts: Vec<String> = c
        .pending_outbox(i64::MAX, 1000)
        .expect("outbox")
        .into_iter()
        .map(|m| {
            let body: serde_json::Value = serde_json::from_str(&m.body).expect("stored body");
            body["text"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    texts.sort();
    texts
}

#[test]
fn outbox_rows_come_only_with_new_messages_that_may_notify_on_both_write_paths() {
    // Arrange
    let db = TestDatabase::new();
    let mut c = open(&db);
    let direct = RoomId::direct(&user("alice"), &user("bob"));
    setup(&mut c, &["public:a", direct.as_str()], &["alice", "bob"]);
    let on = OutboxPolicy {
        mentions: true,
        offline_direct: true,
        ..Default::default()
    };
    let with = |r: &str, messages: Vec<NewMessage>, outbox: OutboxPolicy| {
        vec![WriteOp::AppendMessages {
            room: room(r),
            messages,
            outbox,
        }]
    };

    // Act: the merged path; a retry of a message with a row; notifications switched off.
    c.write_batch(&[
        with(
            "public:a",
            vec![
                msg("alice", "plain", None),
                msg("alice", "hi @bob", Some("m1")),
            ],
            on,
        ),
        with(direct.as_str(), vec![msg("alice", "dm", None)], on),
        with(
            "public:a",
            vec![msg("bob", "off @alice", None)],
            OutboxPolicy::default(),
        ),
    ])
    .expect("merged batch");
    c.write_batch(&[with(
        "public:a",
        vec![msg("alice", "hi @bob", Some("m1"))],
        on,
    )])
    .expect("retry");
    // A group naming a missing room sends the batch down the group-by-group path.
    let r = c
        .write_batch(&[
            with("public:missing", vec![msg("alice", "@x", None)], on),
            with("public:a", vec![msg("bob", "per group @alice", None)], on),
        ])
        .expect("per-group batch");
    assert!(r[0].is_err() && r[1].is_ok(), "{r:?}");

    // Assert
    assert_eq!(outboxed(&mut c), vec!["dm", "hi @bob", "per group @alice"]);
    let ids: Vec<String> = c
        .pending_outbox(i64::MAX, 1000)
        .expect("outbox")
        .into_iter()
        .map(|m| m.id)
        .collect();
    c.write_batch(&[vec![WriteOp::ClearOutbox { message_ids: ids }]])
        .expect("clear");
    assert!(outboxed(&mut c).is_empty());
}
