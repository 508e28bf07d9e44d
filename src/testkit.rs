//! Drive the engine from tests without sockets: a fresh database per test (SQLite in a temp
//! directory, or a throwaway PostgreSQL database when `HERALD_TEST_DATABASE_URL` is set),
//! settings with short timers, the engine's actors started in the test's actix system, and
//! [`Probe`] sessions that record every frame they are sent.
//!
//! A probe registers exactly as a `WsSession` does ([`Engine::open_session`]); requests are
//! injected through the same `Engine` operations the session calls.

use std::path::PathBuf;
use std::time::Duration;

use actix::prelude::*;
use serde_json::Value;
use tokio::sync::mpsc;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::actors::session::{Deliver, LastHeard, SessionControl, SessionHandle, SessionInfo};
use crate::auth::JwtKeys;
use crate::config::{Secret, Settings};
use crate::db;
use crate::domain::{now_millis, SessionId, UserId};
use crate::engine::Engine;

/// The JWT secret of test settings.
pub const TEST_SECRET: &str = "herald-test-secret-herald-test-secret-0123456789";

/// A database that exists for one test and is removed afterwards.
pub struct TestDatabase {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Dir(PathBuf),
    Postgres { admin_url: String, name: String },
}

impl TestDatabase {
    /// A fresh, empty database: PostgreSQL if `HERALD_TEST_DATABASE_URL` names one, else SQLite.
    pub fn new() -> Self {
        match std::env::var("HERALD_TEST_DATABASE_URL") {
            Ok(admin_url) if admin_url.starts_with("postgres") => {
                let name = format!("herald_t_{}", uuid::Uuid::new_v4().simple());
                if let Err(e) = db::create_pg_database(&admin_url, &name) {
                    panic!("HERALD_TEST_DATABASE_URL is set but the test database cannot be created: {e}");
                }
                let base = admin_url.split('?').next().unwrap_or(&admin_url);
                let url = match base.rfind('/') {
                    Some(i) if i > "postgres://".len() => format!("{}/{name}", &base[..i]),
                    _ => format!("{base}/{name}"),
                };
                TestDatabase {
                    url,
                    cleanup: Cleanup::Postgres { admin_url, name },
                }
            }
            _ => {
                let dir = std::env::temp_dir()
                    .join(format!("herald-test-{}", uuid::Uuid::new_v4().simple()));
                if let Err(e) = std::fs::create_dir_all(&dir) {
                    panic!("cannot create test directory {}: {e}", dir.display());
                }
                let url = format!("sqlite://{}", dir.join("herald.db").display());
                TestDatabase {
                    url,
                    cleanup: Cleanup::Dir(dir),
                }
            }
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.cleanup, Cleanup::Postgres { .. })
    }
}

impl Default for TestDatabase {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Dir(d) => {
                let _ = std::fs::remove_dir_all(d);
            }
            Cleanup::Postgres { admin_url, name } => {
                if let Err(e) = db::drop_pg_database(admin_url, name) {
                    log::warn!("could not drop test database {name}: {e}");
                }
            }
        }
    }
}

/// Settings for tests: the given database, port 0, a fixed secret, short timers.
pub fn test_settings(database_url: &str) -> Settings {
    Settings {
        bind: "127.0.0.1:0".into(),
        database_url: Secret::new(database_url),
        jwt_secret: Some(Secret::new(TEST_SECRET)),
        heartbeat_interval: Duration::from_secs(5),
        presence_grace: Duration::from_millis(300),
        presence_sweep: Duration::from_millis(50),
        presence_coalesce: Duration::from_millis(50),
        typing_timeout: Duration::from_millis(400),
        room_idle: Duration::from_secs(30),
        workers: 2,
        limits: crate::config::Limits {
            // Tests connect many clients from one address at once; the limit tests set these.
            connect_rate_per_ip: 0,
            connect_rate_per_user: 0,
            ..crate::config::Limits::default()
        },
        ..Settings::default()
    }
}

/// Runs migrations and starts the engine's actors in the current actix system.
pub async fn start_engine(settings: Settings) -> Engine {
    let url = settings.database_url.expose().to_owned();
    match actix_web::web::block(move || db::run_migrations(&url)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("migrations failed: {e}"),
        Err(e) => panic!("migration thread failed: {e}"),
    }
    let pool = match db::build_pool(
        settings.database_url.expose(),
        settings.db_pool_size + 1,
        settings.db_timeout,
    ) {
        Ok(p) => p,
        Err(e) => panic!("pool: {e}"),
    };
    let keys = JwtKeys::hs256(&Secret::new(TEST_SECRET));
    Engine::start(settings, pool, keys)
}

/// What a probe records.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeEvent {
    /// A server frame, parsed.
    Frame(Value),
    /// The engine asked the session to close.
    Closed { code: u16, reason: String },
}

/// A fake session actor: records what it is sent.
pub struct ProbeSession {
    events: mpsc::UnboundedSender<ProbeEvent>,
    capacity: usize,
    /// Shared with the probe's handle: refreshed as a client answering pings would.
    heard: Arc<LastHeard>,
    /// Cleared by [`Probe::stop_answering`].
    answering: Arc<AtomicBool>,
    /// To unregister when stopped, as a `WsSession` does (shutdown waits for it).
    engine: Engine,
    id: SessionId,
    user: UserId,
}

/// How often a probe "answers" (refreshes its last-heard time) while it is answering.
const PROBE_ANSWER_EVERY: Duration = Duration::from_millis(50);

impl Actor for ProbeSession {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.capacity);
        ctx.run_interval(PROBE_ANSWER_EVERY, |act, _| {
            if act.answering.load(Ordering::Relaxed) {
                act.heard.heard();
            }
        });
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        self.engine.close_session(self.id, &self.user);
        Running::Stop
    }
}

impl Handler<Deliver> for ProbeSession {
    type Result = ();
    fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) {
        if msg.frame.is_empty() {
            return;
        }
        let text = msg.frame.native();
        let v: Value = serde_json::from_str(text).unwrap_or(Value::String(text.to_string()));
        let _ = self.events.send(ProbeEvent::Frame(v));
    }
}

impl Handler<SessionControl> for ProbeSession {
    type Result = ();
    fn handle(&mut self, msg: SessionControl, ctx: &mut Context<Self>) {
        match msg {
            // A probe keeps no per-room state; presence hears from the supervisor.
            SessionControl::Unsubscribed { .. }
            | SessionControl::RoomUnavailable { .. }
            | SessionControl::Hide { .. } => {}
            SessionControl::Close { code, reason } => {
                let _ = self.events.send(ProbeEvent::Closed { code, reason });
                ctx.stop();
            }
        }
    }
}

/// A connected probe session and what it received.
pub struct Probe {
    pub handle: SessionHandle,
    pub addr: Addr<ProbeSession>,
    pub events: mpsc::UnboundedReceiver<ProbeEvent>,
    engine: Engine,
    answering: Arc<AtomicBool>,
}

impl Probe {
    /// From now on the probe behaves like a zombie socket: still registered, but its client
    /// is never heard from again (no pongs, no frames).
    pub fn stop_answering(&self) {
        self.answering.store(false, Ordering::Relaxed);
    }

    pub fn id(&self) -> SessionId {
        self.handle.id
    }

    /// The next event, or `None` after `timeout`.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<ProbeEvent> {
        tokio::time::timeout(timeout, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next frame of `kind`, skipping others; `None` if none comes within `timeout`.
    pub async fn next_of(&mut self, kind: &str, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await? {
                ProbeEvent::Frame(v) if v["type"] == kind => return Some(v),
                _ => continue,
            }
        }
    }

    /// Everything received within `window`.
    pub async fn drain(&mut self, window: Duration) -> Vec<ProbeEvent> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + window;
        while let Some(e) = self
            .next_event(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await
        {
            out.push(e);
        }
        out
    }

    /// Closes the probe as a disconnecting client would.
    pub fn disconnect(&self) {
        self.engine.close_session(self.handle.id, &self.handle.user);
    }
}

/// Connects a probe for `user` with an outbox of `capacity` frames. Its first event is the
/// `sync` frame.
pub async fn connect_probe_with_capacity(engine: &Engine, user: &str, capacity: usize) -> Probe {
    let user = match UserId::parse(user) {
        Ok(u) => u,
        Err(e) => panic!("bad test user id {user:?}: {e}"),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let heard = LastHeard::now();
    let answering = Arc::new(AtomicBool::new(true));
    let id = SessionId::next();
    let actor = ProbeSession {
        events: tx.clone(),
        capacity,
        heard: heard.clone(),
        answering: answering.clone(),
        engine: engine.clone(),
        id,
        user: user.clone(),
    };
    let addr = actor.start();
    let handle = SessionHandle::new(SessionInfo {
        id,
        user,
        deliver: addr.clone().recipient(),
        inbox: None,
        control: addr.clone().recipient(),
        slow: Default::default(),
        connected_at: now_millis(),
        remote_addr: None,
        user_agent: Some("testkit".into()),
        last_heard: heard,
        device: None,
    });
    match engine
        .open_session(handle.clone(), Default::default())
        .await
    {
        Ok(start) => {
            // A probe records raw frames and does not page: it shows the first replay page
            // of each room (and its truncation marker) after the sync frame.
            let replay = start.replay.iter().flat_map(|r| {
                let marker = r.truncated.map(|(from, to)| {
                    crate::stream::Emit::Truncated {
                        room: r.room.clone(),
                        from,
                        to,
                    }
                    .frame()
                    .native()
                    .to_string()
                });
                let page = r.first_page.iter().map(|m| {
                    let frame = crate::protocol::MessageObject::new(m);
                    crate::protocol::ServerFrame::Message(frame)
                        .encode()
                        .native()
                        .to_string()
                });
                marker.into_iter().chain(page)
            });
            let first = start.frames.iter().map(|f| f.native().to_string());
            for f in first.chain(replay) {
                let v: Value = serde_json::from_str(&f).unwrap_or(Value::Null);
                let _ = tx.send(ProbeEvent::Frame(v));
            }
        }
        Err(e) => panic!("probe registration failed: {e}"),
    }
    Probe {
        handle,
        addr,
        events: rx,
        engine: engine.clone(),
        answering,
    }
}

/// Connects a probe with a roomy outbox.
pub async fn connect_probe(engine: &Engine, user: &str) -> Probe {
    connect_probe_with_capacity(engine, user, 10_000).await
}
