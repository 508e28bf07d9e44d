//! Socket.IO compatibility with the official clients: the npm `socket.io-client` (Node) and
//! the PyPI `python-socketio`, each driven through a small script in tests/socketio/ that
//! prints events as JSON lines and takes commands on stdin. Both transports' paths are
//! covered: the default (polling, then upgrade to WebSocket) and WebSocket only.
//!
//! Every test that starts an official client is `#[ignore]`d, so a plain `cargo test` runs
//! without Node or Python; `.ci/run` installs the clients (`npm ci`, a venv with
//! requirements.txt) and runs the ignored tests too (`cargo test -- --include-ignored`). An
//! ignored test run without the clients fails: it never passes without having run.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::helpers::{spawn_app, TestApp};

pub(crate) struct OfficialClient {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<Value>,
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/socketio")
}

/// Starts an official client; panics when it is not installed here (see the module docs).
fn start(lang: &str, app: &TestApp, token: &str, mode: &str) -> OfficialClient {
    start_with_auth(lang, app, token, mode, None)
}

/// Like `start`, with more fields in the CONNECT `auth` object (Node client only).
pub(crate) fn start_with_auth(
    lang: &str,
    app: &TestApp,
    token: &str,
    mode: &str,
    auth: Option<&Value>,
) -> OfficialClient {
    start_at(
        lang,
        &format!("http://127.0.0.1:{}", app.port),
        token,
        mode,
        auth,
    )
}

/// Like `start_with_auth`, against any URL (a load balancer in front of a cluster).
pub(crate) fn start_at(
    lang: &str,
    url: &str,
    token: &str,
    mode: &str,
    auth: Option<&Value>,
) -> OfficialClient {
    let (program, script) = match lang {
        "node" => {
            if !dir().join("node_modules/socket.io-client").exists() {
                missing(lang);
            }
            ("node".to_owned(), "client.mjs")
        }
        _ => {
            let py = dir().join(".venv/bin/python");
            if !py.exists() {
                missing(lang);
            }
            (py.display().to_string(), "client.py")
        }
    };
    let mut child = Command::new(&program)
        .arg(dir().join(script))
        .args([url, token, mode])
        .args(auth.map(|a| a.to_string()))
        .current_dir(dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} cannot start: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let stdin = child.stdin.take().expect("stdin");
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    OfficialClient {
        child,
        stdin,
        lines: rx,
    }
}

/// An ignored test was asked to run without its client: fail, saying how to install it.
fn missing(lang: &str) -> ! {
    let install = match lang {
        "node" => "cd tests/socketio && npm ci",
        _ => {
            "python3 -m venv tests/socketio/.venv && \
             tests/socketio/.venv/bin/pip install -r tests/socketio/requirements.txt"
        }
    };
    panic!("the official {lang} Socket.IO client is not installed: run `{install}` (or .ci/run)")
}

impl OfficialClient {
    pub(crate) fn command(&mut self, cmd: Value) {
        writeln!(self.stdin, "{cmd}").expect("client stdin");
        self.stdin.flush().expect("flush");
    }

    /// The next printed event matching `pred` (others are skipped).
    pub(crate) async fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(v)) if pred(&v) => return v,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("client exited while waiting for {what}"),
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    }

    pub(crate) async fn call(&mut self, name: &str, data: Value) -> Value {
        self.command(json!({"emit": name, "data": data}));
        let v = self
            .expect(&format!("ack of {name}"), |v| {
                v["event"] == "ack" && v["name"] == name
            })
            .await;
        v["reply"].clone()
    }

    /// The next printed event within `window`, if any.
    pub(crate) async fn next_within(&mut self, window: Duration) -> Option<Value> {
        tokio::time::timeout(window, self.lines.recv())
            .await
            .ok()
            .flatten()
    }

    pub(crate) async fn server_event(
        &mut self,
        name: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let v = self
            .expect(&format!("server event {name}"), |v| {
                v["event"] == "server" && v["name"] == name && pred(&v["data"])
            })
            .await;
        v["data"].clone()
    }
}

impl Drop for OfficialClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The whole scenario for one client and transport mode.
async fn chat_with_a_native_client(lang: &str, mode: &str) {
    let (app, _db) = spawn_app().await;
    let mut alice = app.ws("alice").await;
    alice.ok("join", json!({"room": "public:sio"})).await;

    let mut bob = start(lang, &app, &app.token("bob"), mode);
    if lang == "node" {
        // The default path: the session opens on polling and upgrades to a WebSocket.
        let open = bob.expect("engine.io open", |v| v["event"] == "open").await;
        if mode == "websocket" {
            assert_eq!(open["transport"], "websocket");
        } else {
            assert_eq!(open["transport"], "polling");
            // The upgrade and the Socket.IO connect race each other (the CONNECT answer can
            // come over polling before or after the upgrade): wait for both, in any order.
            let (mut upgraded, mut connected) = (false, false);
            while !(upgraded && connected) {
                let v = bob
                    .expect("upgrade to websocket and connect", |v| {
                        (v["event"] == "upgrade" && v["transport"] == "websocket")
                            || v["event"] == "connect"
                    })
                    .await;
                if v["event"] == "upgrade" {
                    // The `ws` package offers permessage-deflate, and Herald takes it.
                    assert_eq!(v["extensions"], "permessage-deflate", "{v}");
                }
                upgraded |= v["event"] == "upgrade";
                connected |= v["event"] == "connect";
            }
        }
    }
    if !(lang == "node" && mode != "websocket") {
        let c = bob.expect("connect", |v| v["event"] == "connect").await;
        if lang == "node" {
            assert_eq!(c["extensions"], "permessage-deflate", "{c}");
        }
    }

    // join with an acknowledgement, presence both ways
    let joined = bob.call("join", json!({"room": "public:sio"})).await;
    assert_eq!(joined["ok"], true, "{joined}");
    assert!(
        joined["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["user"] == "alice"),
        "{joined}"
    );
    assert_eq!(joined["members_next"], Value::Null, "{joined}");
    let page = bob
        .call("members", json!({"room": "public:sio", "after": "alice"}))
        .await;
    assert_eq!(
        (page["ok"].as_bool(), page["next"].clone()),
        (Some(true), Value::Null),
        "{page}"
    );
    assert!(
        page["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["user"] != "alice"),
        "{page}"
    );
    loop {
        let d = alice.recv_type("room_presence").await;
        if d["data"]["joins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["user"] == "bob")
        {
            break;
        }
    }

    // Socket.IO → native
    let ack = bob.call("send", json!({"room": "public:sio", "kind": "text", "body": {"text": format!("hi from {lang}")}, "client_msg_id": "b1"})).await;
    assert_eq!(
        (
            ack["ok"].as_bool(),
            ack["status"].as_str(),
            ack["seq"].as_i64()
        ),
        (Some(true), Some("sent"), Some(1))
    );
    let m = alice.recv_type("message").await;
    assert_eq!(
        (
            m["data"]["from"].as_str(),
            m["data"]["body"]["text"].as_str()
        ),
        (Some("bob"), Some(format!("hi from {lang}").as_str()))
    );

    // native → Socket.IO
    alice
        .ok(
            "send",
            json!({"room": "public:sio", "kind": "text", "body": {"text": "hi bob"}}),
        )
        .await;
    let got = bob
        .server_event("message", |d| d["body"]["text"] == "hi bob")
        .await;
    assert_eq!(got["seq"], 2);

    // Long messages both ways: compressed on the wire when the client negotiated it (the
    // node client compresses its own above 1 KiB).
    let long = format!("{lang} says: {}", "all work and no play; ".repeat(150));
    let ack = bob
        .call(
            "send",
            json!({"room": "public:sio", "kind": "text", "body": {"text": long}}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let m = alice.recv_type("message").await;
    assert_eq!(m["data"]["body"]["text"], long.as_str());
    let back = long.replace("says", "hears");
    alice
        .ok(
            "send",
            json!({"room": "public:sio", "kind": "text", "body": {"text": back}}),
        )
        .await;
    bob.server_event("message", |d| d["body"]["text"] == back.as_str())
        .await;

    // errors come back through the acknowledgement
    let err = bob
        .call(
            "send",
            json!({"room": "public:elsewhere", "kind": "text", "body": {"text": "x"}}),
        )
        .await;
    assert_eq!(
        (err["ok"].as_bool(), err["code"].as_str()),
        (Some(false), Some("forbidden"))
    );
    // Not Herald's, not an alias, no room: a custom event without a room, refused.
    let err = bob.call("teleport", json!({})).await;
    assert_eq!(err["code"], "invalid_data");
    assert!(
        err["error"].as_str().unwrap().contains("not Herald's"),
        "{err}"
    );

    // shared history
    let h = bob.call("history", json!({"room": "public:sio"})).await;
    let texts: Vec<&str> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [format!("hi from {lang}").as_str(), "hi bob", &long, &back]
    );

    // reconnect: subscribed again without joining, with a sync event
    bob.command(json!({"do": "disconnect"}));
    bob.expect("disconnect", |v| v["event"] == "disconnect")
        .await;
    bob.command(json!({"do": "connect"}));
    bob.expect("reconnect", |v| v["event"] == "connect").await;
    let sync = bob.server_event("sync", |_| true).await;
    assert_eq!(sync["rooms"][0]["room"], "public:sio");
    alice
        .ok(
            "send",
            json!({"room": "public:sio", "kind": "text", "body": {"text": "welcome back"}}),
        )
        .await;
    bob.server_event("message", |d| d["body"]["text"] == "welcome back")
        .await;
    bob.command(json!({"do": "exit"}));
}

async fn bad_token_gets_connect_error(lang: &str) {
    let (app, _db) = spawn_app().await;
    let mut c = start(lang, &app, "not-a-token", "default");
    let e = c
        .expect("connect_error", |v| v["event"] == "connect_error")
        .await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("Authentication failed"),
        "{e}"
    );
}

#[actix_web::test]
#[ignore = "needs the official Socket.IO clients (tests/socketio): run by .ci/run"]
async fn node_client_default_transports_chats_with_a_native_client() {
    chat_with_a_native_client("node", "default").await;
}

#[actix_web::test]
#[ignore = "needs the official Socket.IO clients (tests/socketio): run by .ci/run"]
async fn node_client_websocket_only_chats_with_a_native_client() {
    chat_with_a_native_client("node", "websocket").await;
}

#[actix_web::test]
#[ignore = "needs the official Socket.IO clients (tests/socketio): run by .ci/run"]
async fn python_client_default_transports_chats_with_a_native_client() {
    chat_with_a_native_client("python", "default").await;
}

#[actix_web::test]
#[ignore = "needs the official Socket.IO clients (tests/socketio): run by .ci/run"]
async fn python_client_websocket_only_chats_with_a_native_client() {
    chat_with_a_native_client("python", "websocket").await;
}

#[actix_web::test]
#[ignore = "needs the official Socket.IO clients (tests/socketio): run by .ci/run"]
async fn a_bad_token_gets_connect_error_on_both_clients() {
    bad_token_gets_connect_error("node").await;
    bad_token_gets_connect_error("python").await;
}

#[actix_web::test]
async fn other_namespaces_and_unknown_sessions_are_refused() {
    let (app, _db) = spawn_app().await;
    let client = awc::Client::default();
    let base = format!("http://127.0.0.1:{}/socket.io/", app.port);
    let mut r = client
        .get(format!("{base}?EIO=3&transport=polling"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 5);
    let mut r = client
        .get(format!("{base}?EIO=4&transport=polling&sid=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["message"],
        "Session ID unknown"
    );
    // Handshake, then a CONNECT to another namespace.
    let mut r = client
        .get(format!("{base}?EIO=4&transport=polling"))
        .send()
        .await
        .unwrap();
    let body = String::from_utf8(r.body().await.unwrap().to_vec()).unwrap();
    assert!(body.starts_with('0'), "{body}");
    let open: Value = serde_json::from_str(&body[1..]).unwrap();
    assert_eq!(open["upgrades"], json!(["websocket"]));
    let sid = open["sid"].as_str().unwrap();
    let poll = format!("{base}?EIO=4&transport=polling&sid={sid}");
    let r = client.post(&poll).send_body("40/admin,").await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut r = client.get(&poll).send().await.unwrap();
    let body = String::from_utf8(r.body().await.unwrap().to_vec()).unwrap();
    assert_eq!(body, r#"44/admin,{"message":"Invalid namespace"}"#);
}

#[actix_web::test]
async fn an_expired_token_ends_a_socketio_session_after_the_grace_period() {
    let db = herald::testkit::TestDatabase::new();
    let app = crate::helpers::spawn_app_on(&db.url, |s| {
        s.auth.leeway = Duration::ZERO;
        s.auth.refresh_grace = Duration::from_millis(300);
    })
    .await;
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let base = format!(
        "http://127.0.0.1:{}/socket.io/?EIO=4&transport=polling",
        app.port
    );
    let mut r = client.get(&base).send().await.unwrap();
    let body = String::from_utf8(r.body().await.unwrap().to_vec()).unwrap();
    let sid = serde_json::from_str::<Value>(&body[1..]).unwrap()["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let poll = format!("{base}&sid={sid}");
    let token = app
        .engine
        .keys
        .mint("bob", None, &[], Duration::from_secs(1))
        .unwrap();
    client
        .post(&poll)
        .send_body(format!("40{}", json!({ "token": token })))
        .await
        .unwrap();
    let mut seen = String::new();
    for _ in 0..20 {
        let mut r = client.get(&poll).send().await.unwrap();
        let body = r.body().await.unwrap();
        seen.push_str(std::str::from_utf8(&body).unwrap());
        seen.push('\u{1e}');
        if seen.contains("\u{1e}41") || seen.ends_with("1\u{1e}") {
            break;
        }
    }
    assert!(seen.contains(r#""code":"token_expired""#), "{seen}");
    assert!(
        seen.split('\u{1e}').any(|p| p == "41"),
        "the session is disconnected: {seen}"
    );
}

#[actix_web::test]
async fn an_abandoned_upgrade_probe_leaves_polling_working() {
    // A client starts an upgrade (the WebSocket probe), the probe connection dies before the
    // upgrade completes, and the client goes on polling: its packets must still arrive.
    let (app, _db) = spawn_app().await;
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let base = format!("http://127.0.0.1:{}/socket.io/?EIO=4", app.port);
    let mut r = client
        .get(format!("{base}&transport=polling"))
        .send()
        .await
        .unwrap();
    let body = String::from_utf8(r.body().await.unwrap().to_vec()).unwrap();
    let sid = serde_json::from_str::<Value>(&body[1..]).unwrap()["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let poll = format!("{base}&transport=polling&sid={sid}");

    let (status, probe) = crate::raw_ws::RawWs::connect(
        app.port,
        &format!("/socket.io/?EIO=4&transport=websocket&sid={sid}"),
        "",
    )
    .await;
    assert_eq!(status, 101);
    let mut probe = probe.expect("probe upgraded");
    probe.send_raw(0x81, b"2probe", true).await;
    let pong = probe.recv().await.expect("3probe");
    assert_eq!(pong.payload, b"3probe");
    drop(probe);

    client
        .post(&poll)
        .send_body(format!("40{}", json!({ "token": app.token("bob") })))
        .await
        .unwrap();
    let mut seen = String::new();
    for _ in 0..10 {
        let mut r = client.get(&poll).send().await.unwrap();
        seen.push_str(std::str::from_utf8(&r.body().await.unwrap()).unwrap());
        seen.push('\u{1e}');
        if seen.contains("\u{1e}40{") || seen.starts_with("40{") {
            break;
        }
    }
    assert!(
        seen.split('\u{1e}').any(|p| p.starts_with("40{")),
        "the CONNECT answer arrives by polling: {seen}"
    );
}

/// Connection-state recovery with the official Node client: the client keeps the `pid` the
/// server gave and the offset of the last `message` event, presents both when it reconnects,
/// and gets exactly what it missed (`socket.recovered` true); a `pid` the server does not
/// know is not recovered.
#[actix_web::test]
#[ignore = "needs the official Socket.IO clients (tests/socketio): run by .ci/run"]
async fn the_official_client_recovers_its_connection_state_after_a_disconnection() {
    let (app, _db) = spawn_app().await;
    let mut bob = app.ws("bob").await;
    bob.ok("join", json!({"room": "public:rec"})).await;
    let mut alice = start("node", &app, &app.token("alice"), "websocket");
    let c = alice.expect("connect", |v| v["event"] == "connect").await;
    assert_eq!(c["recovered"], false, "a first connection recovers nothing");
    assert_eq!(
        alice.call("join", json!({"room": "public:rec"})).await["ok"],
        true
    );
    // A reconnect presents the pid: nothing was missed, so it is recovered, and from now on
    // the client gets offsets.
    alice.command(json!({"do": "disconnect"}));
    alice
        .expect("disconnect", |v| v["event"] == "disconnect")
        .await;
    alice.command(json!({"do": "connect"}));
    let c = alice.expect("connect", |v| v["event"] == "connect").await;
    assert_eq!(c["recovered"], true, "{c}");
    let send =
        |i: i64| json!({"room": "public:rec", "kind": "text", "body": {"text": format!("m{i}")}});
    for i in 1..=3 {
        bob.ok("send", send(i)).await;
    }
    for seq in 1..=3 {
        let m = alice.server_event("message", |_| true).await;
        assert_eq!(m["seq"], seq);
    }
    // Messages sent while it is away are replayed exactly once, in order, after the last
    // offset it received.
    alice.command(json!({"do": "disconnect"}));
    alice
        .expect("disconnect", |v| v["event"] == "disconnect")
        .await;
    for i in 4..=6 {
        bob.ok("send", send(i)).await;
    }
    alice.command(json!({"do": "connect"}));
    let c = alice.expect("connect", |v| v["event"] == "connect").await;
    assert_eq!(c["recovered"], true, "{c}");
    for seq in 4..=6 {
        let m = alice.server_event("message", |_| true).await;
        assert_eq!(m["seq"], seq, "exactly the missed messages, in order");
    }
    bob.ok("send", send(7)).await;
    assert_eq!(alice.server_event("message", |_| true).await["seq"], 7);
    alice.command(json!({"do": "exit"}));

    // A client presenting a pid the server never gave is not recovered.
    let mut carol = start("node", &app, &app.token("carol"), "websocket");
    let c = carol.expect("connect", |v| v["event"] == "connect").await;
    assert_eq!(c["recovered"], false);
}
