//! Webhooks from the durable outbox (issue 19, docs/webhooks.md), against a receiver in the
//! test (a raw HTTP/1.1 server on 127.0.0.1:0) that fails and stalls on purpose: nothing is
//! lost, every delivery is signed (checked with ring, not Herald's own code), retries are
//! spaced, old events go dead and are re-driven over REST, the event filter holds, and
//! `message.undelivered` follows quiet hours and mutes except for `urgent`. The SIGKILL test
//! runs the real binary.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald::auth::JwtKeys;
use herald::config::{Secret, Settings, WebhookEndpoint};
use herald::testkit::{TestDatabase, TEST_SECRET};
use herald::webhook::EventType;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as TokioBufReader};

use crate::helpers::{spawn_app_on, TestApp};

const SECRET: &str = "whsec-test-0123456789";

/// What the receiver does with one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Answer {
    Ok,
    Fail,
    /// Never answers (the sender's timeout must end the attempt).
    Stall,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    at: Instant,
    endpoint: String,
    event: Value,
    answer: Answer,
}

pub(crate) type Policy = Arc<dyn Fn(&str, &Value, usize) -> Answer + Send + Sync>;

/// A local webhook receiver. `policy(endpoint path, event, n)` decides the answer to the `n`th
/// (1-based) request for that event id at that path. Every request's signature is verified
/// (a bad one fails the test).
#[derive(Clone)]
pub(crate) struct Receiver {
    port: u16,
    log: Arc<Mutex<Vec<Received>>>,
    policy: Arc<Mutex<Policy>>,
}

impl Receiver {
    pub(crate) async fn start(policy: Policy) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let r = Receiver {
            port,
            log: Arc::default(),
            policy: Arc::new(Mutex::new(policy)),
        };
        let me = r.clone();
        actix_web::rt::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let me = me.clone();
                actix_web::rt::spawn(async move { me.serve(sock).await });
            }
        });
        r
    }

    fn set_policy(&self, p: Policy) {
        *self.policy.lock().unwrap() = p;
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    async fn serve(&self, sock: tokio::net::TcpStream) {
        let (rd, mut wr) = sock.into_split();
        let mut rd = TokioBufReader::new(rd);
        loop {
            let mut request_line = String::new();
            if rd.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                return;
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/')
                .to_owned();
            let mut headers = HashMap::new();
            loop {
                let mut line = String::new();
                if rd.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                }
            }
            let len: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            if rd.read_exact(&mut body).await.is_err() {
                return;
            }
            verify_signature(&headers, &body);
            let event: Value = serde_json::from_slice(&body).expect("JSON body");
            let id = event["id"].as_str().expect("event id").to_owned();
            assert_eq!(headers.get("x-herald-event-id"), Some(&id));
            let answer = {
                let mut log = self.log.lock().unwrap();
                let n = log
                    .iter()
                    .filter(|r| r.endpoint == path && r.event["id"] == id.as_str())
                    .count()
                    + 1;
                let answer = (self.policy.lock().unwrap())(&path, &event, n);
                log.push(Received {
                    at: Instant::now(),
                    endpoint: path.clone(),
                    event,
                    answer,
                });
                answer
            };
            let status = match answer {
                Answer::Ok => "200 OK",
                Answer::Fail => "500 Internal Server Error",
                Answer::Stall => {
                    // Hold the connection without answering until the sender gives up.
                    actix::clock::sleep(Duration::from_secs(3600)).await;
                    return;
                }
            };
            let resp = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
            if wr.write_all(resp.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// Ids of the events acknowledged (answered 200) at `endpoint`.
    fn acked(&self, endpoint: &str) -> HashSet<String> {
        self.received()
            .into_iter()
            .filter(|r| r.endpoint == endpoint && r.answer == Answer::Ok)
            .map(|r| r.event["id"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Acknowledged events at `endpoint` of type `t`, once each (deduplicated by id).
    pub(crate) fn acked_of(&self, endpoint: &str, t: &str) -> Vec<Value> {
        let mut seen = HashSet::new();
        self.received()
            .into_iter()
            .filter(|r| r.endpoint == endpoint && r.answer == Answer::Ok && r.event["type"] == t)
            .filter(|r| seen.insert(r.event["id"].to_string()))
            .map(|r| r.event)
            .collect()
    }

    /// Waits until `done(self)` holds (panics after `within`).
    pub(crate) async fn wait_for(
        &self,
        within: Duration,
        what: &str,
        done: impl Fn(&Receiver) -> bool,
    ) {
        let start = Instant::now();
        while !done(self) {
            assert!(
                start.elapsed() < within,
                "timed out waiting for {what}; received: {:#?}",
                self.received()
                    .iter()
                    .map(|r| (&r.endpoint, &r.event["type"], &r.event["id"], r.answer))
                    .collect::<Vec<_>>()
            );
            actix::clock::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `X-Herald-Signature: sha256=<hex HMAC-SHA256("<timestamp>.<body>")>`, checked with ring
/// (an implementation independent of Herald's), and a fresh timestamp.
fn verify_signature(headers: &HashMap<String, String>, body: &[u8]) {
    let ts = headers.get("x-herald-timestamp").expect("timestamp header");
    let sig = headers.get("x-herald-signature").expect("signature header");
    let hex = sig.strip_prefix("sha256=").expect("sha256= prefix");
    let tag: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let mut signed = format!("{ts}.").into_bytes();
    signed.extend_from_slice(body);
    ring::hmac::verify(&key, &signed, &tag).expect("valid signature");
    let now = chrono::Utc::now().timestamp();
    let ts: i64 = ts.parse().expect("unix seconds");
    assert!((now - ts).abs() < 60, "stale timestamp {ts} (now {now})");
}

pub(crate) fn endpoint(name: &str, rx: &Receiver, events: &[EventType]) -> WebhookEndpoint {
    WebhookEndpoint {
        name: name.into(),
        url: rx.url(name),
        secret: Secret::new(SECRET),
        events: events.to_vec(),
    }
}

/// Short timings: attempts time out after 300 ms, retries start at 200 ms.
pub(crate) fn fast(s: &mut Settings, endpoints: Vec<WebhookEndpoint>) {
    let w = &mut s.webhooks;
    w.endpoints = endpoints;
    w.timeout = Duration::from_millis(300);
    w.backoff_base = Duration::from_millis(200);
    w.backoff_max = Duration::from_secs(2);
    w.poll = Duration::from_millis(20);
}

async fn room_of(app: &TestApp, owner: &str) -> String {
    let (status, created) = app
        .send_json(
            "POST",
            "/v1/rooms",
            Some(&app.token(owner)),
            Some(json!({"name": "Hooks"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    created["room"].as_str().unwrap().to_owned()
}

async fn system_message(app: &TestApp, room: &str, text: &str) -> Value {
    let (status, ack) = app
        .send_json(
            "POST",
            &format!("/v1/rooms/{room}/messages"),
            Some(&app.service_token()),
            Some(json!({"body": {"text": text}})),
        )
        .await;
    assert_eq!(status, 201, "{ack}");
    ack
}

#[actix_web::test]
async fn a_failing_and_stalling_receiver_loses_nothing_and_retries_are_spaced_and_signed() {
    // Arrange: each event is answered 500, then not at all (timeout), then 500, then 200.
    let rx = Receiver::start(Arc::new(|_, _, n| match n {
        1 | 3 => Answer::Fail,
        2 => Answer::Stall,
        _ => Answer::Ok,
    }))
    .await;
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| {
        fast(s, vec![endpoint("a", &rx, &[EventType::MessageStored])])
    })
    .await;
    let room = room_of(&app, "alice").await;

    // Act
    let mut ids = HashSet::new();
    for i in 0..3 {
        let ack = system_message(&app, &room, &format!("hello {i}")).await;
        ids.insert(ack["message_id"].as_str().unwrap_or_default().to_owned());
    }
    rx.wait_for(Duration::from_secs(20), "3 acknowledged events", |r| {
        r.acked("a").len() == 3
    })
    .await;

    // Assert: every message arrived, once acknowledged, after exactly four attempts each.
    let stored = rx.acked_of("a", "message.stored");
    let got: HashSet<String> = stored
        .iter()
        .map(|e| {
            e["data"]["message_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(got.len(), 3, "{stored:#?}");
    for e in &stored {
        assert_eq!(e["data"]["room"], room.as_str());
        assert!(e["data"]["body"]["text"]
            .as_str()
            .unwrap()
            .starts_with("hello"));
        assert!(e["created_at"].is_string());
        let attempts: Vec<Instant> = rx
            .received()
            .iter()
            .filter(|r| r.event["id"] == e["id"])
            .map(|r| r.at)
            .collect();
        assert_eq!(attempts.len(), 4, "attempts of {}", e["id"]);
        // Backoff: 200 ms · 2^k with equal jitter, plus the 300 ms timeout of the stalled
        // attempt 2; the third gap (≥ 400 ms) outgrows the first (≤ 200 ms + a poll).
        let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps[0] >= Duration::from_millis(100), "{gaps:?}");
        assert!(gaps[2] > gaps[0], "retries not spaced: {gaps:?}");
        assert!(
            gaps[1] >= Duration::from_millis(300),
            "stall not timed out: {gaps:?}"
        );
    }
    // The outbox is empty again; the metrics counted the attempts and failures.
    let (_, stats) = app
        .get("/v1/admin/stats", Some(&app.admin_token("root")))
        .await;
    assert_eq!(stats["webhooks"]["queue_depth"], 0, "{stats}");
    assert!(
        stats["webhooks"]["failures_total"].as_u64().unwrap() >= 9,
        "{stats}"
    );
    let text = app.metrics().await;
    for name in [
        "herald_webhook_attempts_total",
        "herald_webhook_failures_total",
        "herald_webhook_queue_depth",
        "herald_webhook_oldest_pending_age_seconds",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
}

#[actix_web::test]
async fn an_event_goes_dead_after_the_give_up_age_and_is_redriven_over_rest() {
    // Arrange: the receiver refuses everything at first.
    let rx = Receiver::start(Arc::new(|_, _, _| Answer::Fail)).await;
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| {
        fast(s, vec![endpoint("a", &rx, &[EventType::MessageStored])]);
        s.webhooks.give_up_after = Duration::from_millis(700);
    })
    .await;
    let admin = app.admin_token("root");
    let room = room_of(&app, "alice").await;
    system_message(&app, &room, "doomed").await;

    // Act: wait for the dead letter.
    let start = Instant::now();
    let dead = loop {
        let (status, page) = app
            .get("/v1/admin/webhooks/events?state=dead", Some(&admin))
            .await;
        assert_eq!(status, 200, "{page}");
        if let Some(e) = page["events"].as_array().and_then(|a| a.first()) {
            break e.clone();
        }
        assert!(start.elapsed() < Duration::from_secs(10), "never dead");
        actix::clock::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dead["type"], "message.stored");
    assert!(dead["attempts"].as_i64().unwrap() >= 2, "{dead}");
    assert!(
        dead["last_error"].as_str().unwrap().contains("500"),
        "{dead}"
    );
    let attempts_when_dead = rx.received().len();
    actix::clock::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rx.received().len(),
        attempts_when_dead,
        "a dead event is not retried"
    );
    let (_, stats) = app.get("/v1/admin/stats", Some(&admin)).await;
    assert_eq!(stats["webhooks"]["dead"], 1, "{stats}");

    // Re-drive: unknown ids are 404, non-admins 403, the dead event is delivered.
    let (s, _) = app
        .send_json(
            "POST",
            "/v1/admin/webhooks/events/evt_nope/redrive",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .send_json(
            "POST",
            "/v1/admin/webhooks/redrive",
            Some(&app.token("alice")),
            None,
        )
        .await;
    assert_eq!(s, 403);
    let (s, bad) = app
        .get("/v1/admin/webhooks/events?state=bogus", Some(&admin))
        .await;
    assert_eq!(s, 422, "{bad}");
    rx.set_policy(Arc::new(|_, _, _| Answer::Ok));
    let id = dead["id"].as_str().unwrap();
    let (s, body) = app
        .send_json(
            "POST",
            &format!("/v1/admin/webhooks/events/{id}/redrive"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!((s, &body["redriven"]), (200, &json!(1)), "{body}");
    rx.wait_for(Duration::from_secs(10), "the re-driven event", |r| {
        r.acked("a").contains(id)
    })
    .await;
    let (_, page) = app
        .get("/v1/admin/webhooks/events?state=all", Some(&admin))
        .await;
    // The row is deleted once acknowledged (shortly after the 200).
    let start = Instant::now();
    let mut page = page;
    while !page["events"].as_array().unwrap().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(5), "{page}");
        actix::clock::sleep(Duration::from_millis(50)).await;
        page = app
            .get("/v1/admin/webhooks/events?state=all", Some(&admin))
            .await
            .1;
    }

    // Re-drive all: two more dead events come back together.
    rx.set_policy(Arc::new(|_, _, _| Answer::Fail));
    system_message(&app, &room, "doomed 2").await;
    system_message(&app, &room, "doomed 3").await;
    let start = Instant::now();
    loop {
        let (_, page) = app
            .get("/v1/admin/webhooks/events?state=dead", Some(&admin))
            .await;
        if page["events"].as_array().unwrap().len() == 2 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{page}");
        actix::clock::sleep(Duration::from_millis(50)).await;
    }
    rx.set_policy(Arc::new(|_, _, _| Answer::Ok));
    let (s, body) = app
        .send_json("POST", "/v1/admin/webhooks/redrive", Some(&admin), None)
        .await;
    assert_eq!((s, &body["redriven"]), (200, &json!(2)), "{body}");
    rx.wait_for(Duration::from_secs(10), "both re-driven events", |r| {
        r.acked("a").len() == 3
    })
    .await;
}

#[actix_web::test]
async fn each_endpoint_gets_only_its_event_types_and_presence_follows_the_grace_period() {
    // Arrange
    let rx = Receiver::start(Arc::new(|_, _, _| Answer::Ok)).await;
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| {
        fast(
            s,
            vec![
                endpoint(
                    "presence",
                    &rx,
                    &[EventType::UserOnline, EventType::UserOffline],
                ),
                endpoint("messages", &rx, &[EventType::MessageStored]),
            ],
        )
    })
    .await;
    let room = room_of(&app, "alice").await;

    // Act: alice comes online, a message is stored, alice leaves (grace: 300 ms).
    let alice = app.ws("alice").await;
    rx.wait_for(Duration::from_secs(5), "user.online", |r| {
        !r.acked_of("presence", "user.online").is_empty()
    })
    .await;
    system_message(&app, &room, "filtered").await;
    rx.wait_for(Duration::from_secs(5), "message.stored", |r| {
        !r.acked_of("messages", "message.stored").is_empty()
    })
    .await;
    let closed = Instant::now();
    alice.close().await;
    rx.wait_for(Duration::from_secs(5), "user.offline", |r| {
        !r.acked_of("presence", "user.offline").is_empty()
    })
    .await;

    // Assert
    let offline_at = rx
        .received()
        .into_iter()
        .find(|r| r.event["type"] == "user.offline")
        .map(|r| r.at)
        .unwrap();
    assert!(
        offline_at - closed >= Duration::from_millis(250),
        "user.offline before the grace period ended"
    );
    assert_eq!(
        rx.acked_of("presence", "user.online")[0]["data"]["user"],
        "alice"
    );
    let types = |ep: &str| -> HashSet<String> {
        rx.received()
            .into_iter()
            .filter(|r| r.endpoint == ep)
            .map(|r| r.event["type"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        types("presence"),
        HashSet::from(["user.online".to_owned(), "user.offline".to_owned()])
    );
    assert_eq!(
        types("messages"),
        HashSet::from(["message.stored".to_owned()])
    );
}

#[actix_web::test]
async fn message_undelivered_follows_quiet_hours_and_mutes_but_urgent_bypasses_them() {
    // Arrange: one event at a time, in order, so a marker sent last proves what came before.
    let rx = Receiver::start(Arc::new(|_, _, _| Answer::Ok)).await;
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| {
        fast(
            s,
            vec![endpoint("push", &rx, &[EventType::MessageUndelivered])],
        );
        s.webhooks.concurrency = 1;
    })
    .await;
    let admin = app.admin_token("root");
    let notify = |user: &'static str,
                  kind: &'static str,
                  title: &'static str,
                  priority: &'static str| {
        let app = &app;
        let admin = admin.clone();
        async move {
            let (s, body) = app
                .send_json(
                    "POST",
                    "/v1/admin/notifications",
                    Some(&admin),
                    Some(json!({"users": [user], "notification_type": kind, "title": title, "message": "m", "priority": priority})),
                )
                .await;
            assert!(s == 200 || s == 201, "{s} {body}");
        }
    };
    let prefs = |user: &'static str, p: Value| {
        let app = &app;
        async move {
            let (s, body) = app
                .send_json(
                    "PUT",
                    "/v1/notifications/preferences",
                    Some(&app.token(user)),
                    Some(p),
                )
                .await;
            assert_eq!(s, 200, "{body}");
        }
    };
    let carol = app.ws("carol").await;
    prefs("bob", json!({"dnd_until": "2999-01-01T00:00:00Z"})).await;
    prefs("dave", json!({"muted_types": ["alert"]})).await;

    // Act
    notify("bob", "alert", "held by dnd", "normal").await;
    notify("bob", "alert", "urgent through dnd", "urgent").await;
    notify("dave", "alert", "muted", "high").await;
    notify("dave", "alert", "urgent through mute", "urgent").await;
    notify("carol", "alert", "carol is online", "normal").await;
    // A direct message to an offline user becomes a notification, hence undelivered.
    let (s, direct) = app
        .send_json(
            "POST",
            "/v1/rooms/direct",
            Some(&admin),
            Some(json!({"users": ["erin", "frank"]})),
        )
        .await;
    assert!(s == 200 || s == 201, "{s} {direct}");
    let dm_room = direct["room"].as_str().unwrap_or_default().to_owned();
    let mut erin = app.ws("erin").await;
    erin.ok(
        "send",
        json!({"room": dm_room, "kind": "text", "body": {"text": "ping frank"}}),
    )
    .await;
    notify("dave", "deadline", "marker", "normal").await;
    // The DM's notification is created after its message commits, so it may come after the
    // marker: wait for both.
    rx.wait_for(Duration::from_secs(10), "the marker and the DM", |r| {
        let events = r.acked_of("push", "message.undelivered");
        events.iter().any(|e| e["data"]["title"] == "marker")
            && events
                .iter()
                .any(|e| e["data"]["notification_type"] == "message")
    })
    .await;

    // Assert
    let events = rx.acked_of("push", "message.undelivered");
    let titles: HashSet<&str> = events
        .iter()
        .map(|e| e["data"]["title"].as_str().unwrap_or_default())
        .collect();
    assert!(titles.contains("urgent through dnd"), "{titles:?}");
    assert!(titles.contains("urgent through mute"), "{titles:?}");
    assert!(!titles.contains("held by dnd"), "{titles:?}");
    assert!(!titles.contains("muted"), "{titles:?}");
    assert!(!titles.contains("carol is online"), "{titles:?}");
    let dm = events
        .iter()
        .find(|e| e["data"]["notification_type"] == "message")
        .unwrap_or_else(|| panic!("no undelivered DM: {events:#?}"));
    assert_eq!(dm["data"]["user"], "frank");
    assert_eq!(dm["data"]["from"], "erin");
    assert_eq!(dm["data"]["room"], dm_room.as_str());
    assert_eq!(dm["data"]["message"], "ping frank");
    assert_eq!(dm["data"]["priority"], "normal");
    drop(carol);
}

/// A server process with a webhook endpoint set by the environment.
struct Process {
    child: Child,
    port: u16,
}

impl Process {
    fn start(db_url: &str, hook: &str) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .env("HERALD_DATABASE_URL", db_url)
            .env("HERALD_JWT_SECRET", TEST_SECRET)
            .env("HERALD_BIND", "127.0.0.1:0")
            .env("HERALD_LOG", "info")
            .env("HERALD_WORKERS", "1")
            .env("HERALD_WEBHOOK_URL", hook)
            .env("HERALD_WEBHOOK_SECRET", SECRET)
            .env("HERALD_WEBHOOK_EVENTS", "message.stored")
            .env("HERALD_WEBHOOK_TIMEOUT_MS", "10000")
            .env("HERALD_WEBHOOK_BACKOFF_BASE_MS", "100")
            .env("HERALD_WEBHOOK_POLL_MS", "20")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("herald binary starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("herald listening on ").nth(1) {
                    let port = addr.trim().rsplit(':').next().and_then(|p| p.parse().ok());
                    let _ = tx.send(port);
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(30))
            .ok()
            .flatten()
            .expect("herald logs its port");
        Process { child, port }
    }

    fn kill(mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

async fn post(port: u16, path: &str, token: &str, body: Value) -> (u16, Value) {
    let mut resp = awc::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .bearer_auth(token)
        .send_json(&body)
        .await
        .expect("request");
    let bytes = resp.body().await.unwrap_or_default();
    (
        resp.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[actix_web::test]
async fn sigkill_during_webhook_delivery_loses_nothing() {
    // Arrange: the receiver stalls every request, so deliveries are in flight when the kill
    // comes.
    let rx = Receiver::start(Arc::new(|_, _, _| Answer::Stall)).await;
    let db = TestDatabase::new();
    let keys = JwtKeys::hs256(&Secret::new(TEST_SECRET));
    let service = keys
        .mint("backend", None, &["service"], Duration::from_secs(3600))
        .unwrap();
    let owner = keys
        .mint("alice", None, &[], Duration::from_secs(3600))
        .unwrap();
    let server = Process::start(&db.url, &rx.url("hook"));
    let (s, created) = post(server.port, "/v1/rooms", &owner, json!({"name": "k"})).await;
    assert_eq!(s, 201, "{created}");
    let room = created["room"].as_str().unwrap().to_owned();
    let mut messages = HashSet::new();
    for i in 0..20 {
        let (s, ack) = post(
            server.port,
            &format!("/v1/rooms/{room}/messages"),
            &service,
            json!({"body": {"text": format!("m{i}")}}),
        )
        .await;
        assert_eq!(s, 201, "{ack}");
        messages.insert(ack["message_id"].as_str().unwrap().to_owned());
    }
    rx.wait_for(Duration::from_secs(10), "deliveries in flight", |r| {
        !r.received().is_empty()
    })
    .await;

    // Act: kill mid-delivery, restart on the same database with a healthy receiver.
    server.kill();
    let stalled = rx.received().len();
    rx.set_policy(Arc::new(|_, _, _| Answer::Ok));
    let server = Process::start(&db.url, &rx.url("hook"));
    rx.wait_for(Duration::from_secs(20), "every message", |r| {
        r.acked_of("hook", "message.stored").len() == 20
    })
    .await;
    server.kill();

    // Assert: every stored message reported at least once (deduplicated by event id).
    let got: HashSet<String> = rx
        .acked_of("hook", "message.stored")
        .iter()
        .map(|e| e["data"]["message_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, messages);
    assert!(stalled >= 1);
}

/// Every event type is caused once: a stored message, a notification to an offline user, a
/// user coming online and going offline.
async fn cause_every_event(app: &TestApp) {
    let room = room_of(app, "alice").await;
    system_message(app, &room, "hello").await;
    let (s, body) = app
        .send_json(
            "POST",
            "/v1/admin/notifications",
            Some(&app.admin_token("root")),
            Some(json!({"users": ["bob"], "notification_type": "alert", "title": "t", "message": "m"})),
        )
        .await;
    assert!(s == 200 || s == 201, "{s} {body}");
    let alice = app.ws("alice").await;
    alice.close().await;
    // Past the 300 ms grace period: user.offline is decided.
    actix::clock::sleep(Duration::from_millis(600)).await;
}

async fn outbox_types(app: &TestApp) -> Vec<String> {
    let (s, page) = app
        .get(
            "/v1/admin/webhooks/events?state=all",
            Some(&app.admin_token("root")),
        )
        .await;
    assert_eq!(s, 200, "{page}");
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[actix_web::test]
async fn outbox_rows_are_written_only_for_subscribed_event_types() {
    // Arrange: no endpoint at all.
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |_| {}).await;
    // Act
    cause_every_event(&app).await;
    // Assert: nothing written, no sender.
    assert!(outbox_types(&app).await.is_empty());
    let (_, stats) = app
        .get("/v1/admin/stats", Some(&app.admin_token("root")))
        .await;
    assert_eq!(stats["webhooks"], json!({"enabled": false}));

    // Arrange: an endpoint for presence only, which never answers (rows stay pending).
    let rx = Receiver::start(Arc::new(|_, _, _| Answer::Stall)).await;
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| {
        fast(
            s,
            vec![endpoint(
                "p",
                &rx,
                &[EventType::UserOnline, EventType::UserOffline],
            )],
        );
        s.webhooks.timeout = Duration::from_secs(30);
    })
    .await;
    // Act
    cause_every_event(&app).await;
    // Assert: only presence rows.
    let mut types = outbox_types(&app).await;
    types.sort();
    assert_eq!(types, ["user.offline", "user.online"]);
}
