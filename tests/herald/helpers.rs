//! `spawn_app`: boots the real server on port 0 against a fresh database, plus typed
//! WebSocket and HTTP helpers for end-to-end tests.

use std::time::Duration;

use actix_web::dev::ServerHandle;
use awc::ws;
use futures_util::{SinkExt, StreamExt};
use herald::config::Settings;
use herald::engine::Engine;
use herald::startup::Application;
use herald::testkit::{test_settings, TestDatabase};
use serde_json::{json, Value};

pub const WAIT: Duration = Duration::from_secs(5);

pub fn init_logs() {
    let _ = env_logger::Builder::from_env(env_logger::Env::new().filter_or("HERALD_LOG", "warn"))
        .is_test(true)
        .try_init();
}

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub engine: Engine,
    server: ServerHandle,
    client: awc::Client,
}

/// Boots a server on a fresh database.
pub async fn spawn_app() -> (TestApp, TestDatabase) {
    let db = TestDatabase::new();
    let app = spawn_app_on(&db.url, |_| {}).await;
    (app, db)
}

/// Boots a server on an existing database URL, with settings adjusted by `tweak`.
pub async fn spawn_app_on(url: &str, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    init_logs();
    let mut settings = test_settings(url);
    tweak(&mut settings);
    let app = Application::build(settings).await.expect("server starts");
    let (port, server, engine) = app.into_parts();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        engine,
        server: handle,
        client: awc::Client::builder().timeout(WAIT).finish(),
    }
}

impl TestApp {
    pub fn token(&self, user: &str) -> String {
        self.engine
            .keys
            .mint(user, None, &[], Duration::from_secs(3600))
            .expect("mint")
    }

    pub fn service_token(&self) -> String {
        self.engine
            .keys
            .mint("backend", None, &["service"], Duration::from_secs(3600))
            .expect("mint")
    }

    pub fn admin_token(&self, user: &str) -> String {
        self.engine
            .keys
            .mint(user, None, &["admin"], Duration::from_secs(3600))
            .expect("mint")
    }

    /// Connects with `?token=` and checks `connection_ack` comes first.
    pub async fn ws(&self, user: &str) -> WsClient {
        let mut c = self
            .ws_with_token(&self.token(user))
            .await
            .expect("ws connects");
        let ack = c.recv().await;
        assert_eq!(
            ack["type"], "connection_ack",
            "first frame must be connection_ack: {ack}"
        );
        assert_eq!(ack["data"]["user_id"], user);
        // `sync` follows once the session is registered everywhere.
        let sync = c.recv().await;
        assert_eq!(sync["type"], "sync", "second frame must be sync: {sync}");
        c.sync = sync;
        c
    }

    /// Like [`ws`](Self::ws), with more handshake query parameters (`device_id=..&since=..`).
    pub async fn ws_query(&self, user: &str, query: &str) -> WsClient {
        let path = format!("/v1/ws?token={}&{query}", self.token(user));
        let mut c = connect_path(self.port, &path).await.expect("ws connects");
        assert_eq!(c.recv().await["type"], "connection_ack");
        let sync = c.recv().await;
        assert_eq!(sync["type"], "sync", "second frame must be sync: {sync}");
        c.sync = sync;
        c
    }

    pub async fn ws_with_token(&self, token: &str) -> Result<WsClient, String> {
        connect_ws(self.port, token).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.client.get(format!("{}{}", self.address, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let mut resp = req.send().await.expect("http request");
        let body = resp.body().limit(8 * 1024 * 1024).await.expect("body");
        (
            resp.status().as_u16(),
            serde_json::from_slice(&body).unwrap_or(Value::Null),
        )
    }

    pub async fn send_json(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{}", self.address, path);
        // Bulk requests (10,000 notifications on a busy PostgreSQL) may take a few seconds;
        // this is a correctness suite, not a latency bound.
        let mut req = match method {
            "POST" => self.client.post(url).timeout(Duration::from_secs(60)),
            "PUT" => self.client.put(url),
            "DELETE" => self.client.delete(url),
            "PATCH" => self.client.patch(url),
            _ => self.client.get(url),
        };
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let mut resp = match body {
            Some(b) => req.send_json(&b).await,
            None => req.send().await,
        }
        .expect("http request");
        let body = resp.body().await.expect("body");
        (
            resp.status().as_u16(),
            serde_json::from_slice(&body).unwrap_or(Value::Null),
        )
    }

    /// `GET /metrics` as an admin: the Prometheus text.
    pub async fn metrics(&self) -> String {
        let mut resp = awc::Client::new()
            .get(format!("{}/metrics", self.address))
            .bearer_auth(self.admin_token("root"))
            .send()
            .await
            .expect("metrics");
        String::from_utf8(resp.body().await.expect("body").to_vec()).expect("utf-8")
    }

    /// Graceful stop, as on SIGTERM.
    pub async fn stop(self) {
        self.engine.shutdown().await;
        self.server.stop(true).await;
    }
}

/// Opens a native WebSocket to a server on `port` (no frame read yet).
pub async fn connect_ws(port: u16, token: &str) -> Result<WsClient, String> {
    connect_path(port, &format!("/v1/ws?token={token}")).await
}

/// Opens a WebSocket to `path` (with its query) on a server on `port`.
pub async fn connect_path(port: u16, path: &str) -> Result<WsClient, String> {
    let url = format!("ws://127.0.0.1:{port}{path}");
    let (_, framed) = awc::Client::builder()
        .timeout(WAIT)
        .finish()
        .ws(url)
        .max_frame_size(4 * 1024 * 1024)
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(WsClient::from_framed(framed))
}

pub struct WsClient {
    framed: actix_codec::Framed<awc::BoxedSocket, ws::Codec>,
    next_ref: u64,
    /// The `sync` frame received right after `connection_ack`.
    pub sync: Value,
    /// Frames that arrived while `request` waited for its reply, in order.
    backlog: std::collections::VecDeque<Value>,
}

/// What the server sent that is not a JSON text frame.
#[derive(Debug)]
pub enum Other {
    Close(Option<ws::CloseReason>),
    Ended,
    Timeout,
}

impl WsClient {
    /// Wraps a connection opened by hand (custom headers such as `Origin`).
    pub fn from_framed(framed: actix_codec::Framed<awc::BoxedSocket, ws::Codec>) -> Self {
        WsClient {
            framed,
            next_ref: 0,
            sync: Value::Null,
            backlog: Default::default(),
        }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.framed
            .send(ws::Message::Text(text.to_owned().into()))
            .await
            .expect("ws send");
    }

    pub async fn send_raw(&mut self, msg: ws::Message) {
        self.framed.send(msg).await.expect("ws send");
    }

    /// The next JSON text frame, answering pings; panics on anything else.
    pub async fn recv(&mut self) -> Value {
        match self.recv_or_other(WAIT).await {
            Ok(v) => v,
            Err(o) => panic!("expected a frame, got {o:?}"),
        }
    }

    pub async fn recv_or_other(&mut self, timeout: Duration) -> Result<Value, Other> {
        if let Some(v) = self.backlog.pop_front() {
            return Ok(v);
        }
        self.recv_wire(timeout).await
    }

    async fn recv_wire(&mut self, timeout: Duration) -> Result<Value, Other> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.framed.next()).await {
                Err(_) => return Err(Other::Timeout),
                Ok(None) => return Err(Other::Ended),
                Ok(Some(Err(_))) => return Err(Other::Ended),
                Ok(Some(Ok(f))) => match f {
                    ws::Frame::Text(b) => {
                        return Ok(serde_json::from_slice(&b).expect("server frames are JSON"))
                    }
                    ws::Frame::Ping(p) => {
                        let _ = self.framed.send(ws::Message::Pong(p)).await;
                    }
                    ws::Frame::Close(r) => return Err(Other::Close(r)),
                    _ => {}
                },
            }
        }
    }

    /// The next frame of `kind`, skipping others.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] == kind {
                return v;
            }
        }
    }

    /// Sends `{"type", "ref", "data"}` and returns the reply carrying that ref, skipping other frames.
    pub async fn request(&mut self, kind: &str, data: Value) -> Value {
        match self.try_request(kind, data).await {
            Ok(v) => v,
            Err(o) => panic!("no reply to {kind}: {o:?}"),
        }
    }

    /// Like `request`, but a broken connection is an `Err`, not a panic.
    pub async fn try_request(&mut self, kind: &str, data: Value) -> Result<Value, Other> {
        self.next_ref += 1;
        let r = format!("r{}", self.next_ref);
        let frame = json!({"type": kind, "ref": r, "data": data}).to_string();
        if self
            .framed
            .send(ws::Message::Text(frame.into()))
            .await
            .is_err()
        {
            return Err(Other::Ended);
        }
        loop {
            match self.recv_wire(WAIT).await {
                Ok(v) if v["ref"] == r.as_str() => return Ok(v),
                Ok(v) => self.backlog.push_back(v),
                Err(o) => return Err(o),
            }
        }
    }

    /// Like `request`, but asserts an `ack` and returns its data.
    pub async fn ok(&mut self, kind: &str, data: Value) -> Value {
        let v = self.request(kind, data).await;
        assert_eq!(v["type"], "ack", "expected an ack for {kind}, got {v}");
        v["data"].clone()
    }

    /// Waits for the server to close the connection; returns the close code.
    pub async fn expect_close(&mut self) -> Option<u16> {
        loop {
            match self.recv_or_other(WAIT).await {
                Ok(_) => continue,
                Err(Other::Close(r)) => return r.map(|r| u16::from(r.code)),
                Err(Other::Ended) => return None,
                Err(Other::Timeout) => panic!("server did not close the connection"),
            }
        }
    }

    /// Asserts that nothing of `kind` arrives within `window`.
    pub async fn assert_no(&mut self, kind: &str, window: Duration) {
        let deadline = tokio::time::Instant::now() + window;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_or_other(left).await {
                Ok(v) if v["type"] == kind => panic!("unexpected {kind} frame: {v}"),
                Ok(_) => continue,
                Err(Other::Timeout) => return,
                Err(o) => panic!("connection ended: {o:?}"),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.framed.send(ws::Message::Close(None)).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.framed.next()).await;
    }
}

/// The reply to a request, as a code: `ok` for an ack, else the error's code.
pub async fn code(c: &mut WsClient, kind: &str, data: Value) -> String {
    let r = c.request(kind, data).await;
    if r["type"] == "ack" {
        "ok".into()
    } else {
        r["code"].as_str().unwrap_or("?").into()
    }
}

/// The `send` data of a text message to `room`.
/// The `user` of each presence object in a list (a join ack's `members`, a `members` page).
pub fn user_names(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["user"].as_str())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

pub fn text(room: &str, t: &str) -> Value {
    serde_json::json!({"room": room, "kind": "text", "body": {"text": t}})
}

/// A new private room "Team" of `owner` (over REST); its id.
pub async fn private_room(app: &TestApp, owner: &str) -> String {
    let (status, created) = app
        .send_json(
            "POST",
            "/v1/rooms",
            Some(&app.token(owner)),
            Some(serde_json::json!({"name": "Team"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    created["room"].as_str().expect("room id").to_owned()
}
