//! Crash safety: the real `herald` binary is killed with SIGKILL at random moments while
//! clients send continuously with `client_msg_id`s; after each restart the clients reconnect
//! and retry everything not acked. Afterwards every acked message is stored exactly once with
//! the seq its ack named, no retried message is stored twice, and the room's seqs have no gaps.
//!
//! A third of the messages are direct messages to a user who never connects and a third
//! mention another member: every acked one of those has exactly one notification (the
//! notification outbox, swept at start, settles what a kill interrupted).
//!
//! `HERALD_CRASH_KILLS` sets the number of kills (default 5; CI runs 20).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use herald::auth::JwtKeys;
use herald::config::Secret;
use herald::db::models::NotificationQuery;
use herald::db::{DatabaseUrl, DbConnection};
use herald::domain::{RoomId, UserId};
use herald::testkit::{TestDatabase, TEST_SECRET};
use serde_json::{json, Value};

use crate::helpers::{connect_ws, WsClient};

const ROOM: &str = "public:crash";
const USERS: [&str; 3] = ["c1", "c2", "c3"];
/// Receives direct messages and never connects: each one must notify them.
const OFFLINE: &str = "zed";

/// What a client's message is, by its number.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// To the room, no mention.
    Plain,
    /// To the room, mentioning the next user of `USERS`.
    Mention,
    /// A direct message to `OFFLINE`.
    Direct,
}

fn kind_of(n: u64) -> Kind {
    match n % 3 {
        0 => Kind::Direct,
        1 => Kind::Mention,
        _ => Kind::Plain,
    }
}

/// Whom `user` mentions: the next member.
fn mentioned_by(user: &str) -> &'static str {
    let i = USERS.iter().position(|u| *u == user).unwrap_or(0);
    USERS[(i + 1) % USERS.len()]
}

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Starts the binary on port 0 and reads the port from its start-up log line.
    fn start(db_url: &str) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .env("HERALD_DATABASE_URL", db_url)
            .env("HERALD_JWT_SECRET", TEST_SECRET)
            .env("HERALD_BIND", "127.0.0.1:0")
            .env("HERALD_LOG", "info")
            .env("HERALD_WORKERS", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("herald binary starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // How much the outbox sweep had to redo after a kill, for the record.
                if line.contains("outbox sweep") {
                    log::info!("{line}");
                }
                if let Some(addr) = line.split("herald listening on ").nth(1) {
                    let port = addr
                        .trim()
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse::<u16>().ok());
                    let _ = tx.send(port);
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(30))
            .ok()
            .flatten()
            .expect("herald logs its port");
        Server { child, port }
    }

    fn kill(mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

fn random_ms(lo: u64, hi: u64) -> u64 {
    lo + (uuid::Uuid::new_v4().as_u128() % (hi - lo) as u128) as u64
}

/// One client's bookkeeping across crashes.
#[derive(Default)]
struct ClientState {
    next: u64,
    /// cmid → (seq, message_id) from its ack.
    acked: BTreeMap<String, (i64, String)>,
    /// Sent (perhaps stored) but not acked: retried first after a reconnect.
    pending: Vec<String>,
    /// Every cmid ever sent.
    sent: Vec<String>,
    /// Each cmid's kind.
    kinds: HashMap<String, Kind>,
}

async fn connect(port: u16, token: &str) -> Option<WsClient> {
    for _ in 0..50 {
        if let Ok(mut c) = connect_ws(port, token).await {
            // connection_ack, then sync (and any undelivered messages).
            if c.recv_or_other(Duration::from_secs(5)).await.is_ok() {
                return Some(c);
            }
        }
        actix::clock::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Sends until the connection breaks; returns the state.
async fn run_client(
    port: u16,
    user: &'static str,
    token: String,
    mut st: ClientState,
) -> ClientState {
    let Some(mut c) = connect(port, &token).await else {
        return st;
    };
    if c.try_request("join", json!({ "room": ROOM }))
        .await
        .is_err()
    {
        return st;
    }
    loop {
        let cmid = match st.pending.first() {
            Some(p) => p.clone(),
            None => {
                st.next += 1;
                let id = format!("{user}-{}", st.next);
                st.pending.push(id.clone());
                st.sent.push(id.clone());
                st.kinds.insert(id.clone(), kind_of(st.next));
                id
            }
        };
        let frame = match st.kinds.get(&cmid).copied().unwrap_or(Kind::Plain) {
            Kind::Plain => {
                json!({"room": ROOM, "kind": "text", "body": {"text": cmid}, "client_msg_id": cmid})
            }
            Kind::Mention => {
                let text = format!("{cmid} for @{}", mentioned_by(user));
                json!({"room": ROOM, "kind": "text", "body": {"text": text}, "client_msg_id": cmid})
            }
            Kind::Direct => {
                json!({"to": OFFLINE, "kind": "text", "body": {"text": cmid}, "client_msg_id": cmid})
            }
        };
        match c.try_request("send", frame).await {
            Ok(v) if v["type"] == "ack" => {
                let seq = v["data"]["seq"].as_i64().expect("seq");
                let id = v["data"]["message_id"].as_str().expect("id").to_owned();
                if let Some((s, i)) = st.acked.get(&cmid) {
                    assert_eq!((s, i), (&seq, &id), "a retry must return the original ack");
                }
                st.acked.insert(cmid.clone(), (seq, id));
                st.pending.retain(|p| p != &cmid);
            }
            Ok(v) => {
                assert_eq!(v["code"], "unavailable", "unexpected reply {v}");
                actix::clock::sleep(Duration::from_millis(20)).await;
            }
            Err(_) => return st, // the server died; retry after restart
        }
    }
}

async fn history(port: u16, token: &str, room: &str) -> Vec<Value> {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let url =
            format!("http://127.0.0.1:{port}/v1/rooms/{room}/messages?after_seq={after}&limit=100");
        let mut resp = client
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .expect("history");
        let body: Value = resp.json().limit(16 << 20).await.expect("json");
        let page = body["messages"].as_array().expect("messages").clone();
        if let Some(last) = page.last() {
            after = last["seq"].as_i64().unwrap();
        }
        out.extend(page);
        if body["has_more"] != true {
            return out;
        }
    }
}

#[actix_web::test]
async fn sigkill_at_random_moments_loses_no_acked_message_and_duplicates_none() {
    crate::helpers::init_logs();
    let kills: usize = std::env::var("HERALD_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let db = TestDatabase::new();
    let keys = JwtKeys::hs256(&Secret::new(TEST_SECRET));
    let tokens: HashMap<&str, String> = USERS
        .iter()
        .map(|u| {
            (
                *u,
                keys.mint(u, None, &[], Duration::from_secs(3600)).unwrap(),
            )
        })
        .collect();
    let mut states: HashMap<&'static str, ClientState> =
        USERS.iter().map(|u| (*u, ClientState::default())).collect();
    // Everyone is a member before anyone sends, so every mention names a member.
    let server = Server::start(&db.url);
    for u in USERS {
        let mut c = connect(server.port, &tokens[u]).await.expect("connects");
        c.try_request("join", json!({ "room": ROOM }))
            .await
            .expect("joins");
    }
    server.kill();

    for round in 0..=kills {
        let server = Server::start(&db.url);
        let tasks: Vec<_> = USERS
            .iter()
            .map(|u| {
                let st = states.remove(u).unwrap_or_default();
                let token = tokens[u].clone();
                let port = server.port;
                (*u, actix_web::rt::spawn(run_client(port, u, token, st)))
            })
            .collect();
        if round < kills {
            actix::clock::sleep(Duration::from_millis(random_ms(150, 600))).await;
            server.kill();
            for (u, t) in tasks {
                states.insert(u, t.await.expect("client task"));
            }
        } else {
            // Last round: let clients retry what is pending, then stop them by killing too,
            // and verify on a fresh, unkilled server.
            actix::clock::sleep(Duration::from_millis(500)).await;
            server.kill();
            for (u, t) in tasks {
                states.insert(u, t.await.expect("client task"));
            }
        }
    }

    // Verify against a server that is allowed to finish.
    let server = Server::start(&db.url);
    let stored = history(server.port, &tokens["c1"], ROOM).await;
    let seqs: Vec<i64> = stored.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "seqs are gap-free"
    );
    let mut by_cmid: HashMap<String, Vec<(i64, String)>> = HashMap::new();
    for m in &stored {
        by_cmid
            .entry(m["client_msg_id"].as_str().unwrap().to_owned())
            .or_default()
            .push((
                m["seq"].as_i64().unwrap(),
                m["message_id"].as_str().unwrap().to_owned(),
            ));
    }
    // Direct messages: each sender's room with OFFLINE, checked the same way.
    for u in USERS {
        let room = RoomId::direct(&UserId::parse(u).unwrap(), &UserId::parse(OFFLINE).unwrap());
        for m in history(server.port, &tokens[u], room.as_str()).await {
            by_cmid
                .entry(m["client_msg_id"].as_str().unwrap().to_owned())
                .or_default()
                .push((
                    m["seq"].as_i64().unwrap(),
                    m["message_id"].as_str().unwrap().to_owned(),
                ));
        }
    }
    let mut acked_total = 0;
    for st in states.values() {
        for (cmid, ack) in &st.acked {
            acked_total += 1;
            assert_eq!(
                by_cmid.get(cmid).map(|v| v.as_slice()),
                Some(std::slice::from_ref(ack)),
                "{cmid} stored once, as acked"
            );
        }
        for cmid in &st.sent {
            assert!(
                by_cmid.get(cmid).map_or(0, |v| v.len()) <= 1,
                "{cmid} stored at most once"
            );
        }
    }
    for cmid in by_cmid.keys() {
        assert!(
            states.values().any(|s| s.sent.contains(cmid)),
            "{cmid} was never sent"
        );
    }
    assert!(
        acked_total > kills,
        "the clients made progress ({acked_total} acked)"
    );
    let notified = check_notifications(&db.url, &states).await;
    log::info!(
        "crash test: {kills} kills, {acked_total} acked, {} stored in the room, {notified} notifications checked",
        stored.len()
    );
    server.kill();
}

/// Waits for the outbox to drain (the start-up sweep), then checks that every acked direct
/// message and mention has exactly one notification for its recipient. Answers how many.
async fn check_notifications(url: &str, states: &HashMap<&'static str, ClientState>) -> usize {
    let mut c = DbConnection::establish(&DatabaseUrl::parse(url).unwrap()).expect("connect");
    let mut left = usize::MAX;
    for _ in 0..300 {
        left = c.pending_outbox(i64::MAX, 10_000).expect("outbox").len();
        if left == 0 {
            break;
        }
        actix::clock::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "the sweep settled every outbox row");
    // Idempotency key → how many notifications carry it, per recipient.
    let mut keys: HashMap<(String, String), usize> = HashMap::new();
    for user in USERS.iter().chain([&OFFLINE]) {
        let user = UserId::parse(user).unwrap();
        let rows = c
            .notifications(&NotificationQuery {
                user: &user,
                unread_only: false,
                kind: None,
                before: None,
                limit: 1_000_000,
                now: herald::domain::now_millis(),
            })
            .expect("notifications");
        for r in rows {
            *keys
                .entry((user.to_string(), r.idempotency_key.unwrap_or_default()))
                .or_default() += 1;
        }
    }
    let mut checked = 0;
    for (sender, st) in states {
        for (cmid, (_, id)) in &st.acked {
            let want = match st.kinds.get(cmid).copied().unwrap_or(Kind::Plain) {
                Kind::Plain => continue,
                Kind::Mention => (mentioned_by(sender).to_owned(), format!("mention:{id}")),
                Kind::Direct => (OFFLINE.to_owned(), format!("message:{id}")),
            };
            assert_eq!(
                keys.get(&want).copied().unwrap_or(0),
                1,
                "{cmid} ({want:?}) has exactly one notification"
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "some notifications were due");
    checked
}
