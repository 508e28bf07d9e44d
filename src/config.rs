//! Settings: every tunable of the server, read from `HERALD_*` environment variables and CLI
//! flags (docs/configuration.md lists them all), with defaults that run out of the box.
//!
//! Tests build a [`Settings`] value directly (`Settings::default()` plus field changes)
//! instead of touching the environment.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::clock::{Clock, SystemClock};

/// Shortest JWT secret accepted, in bytes (HS256 wants at least 256 bits of key).
pub const MIN_SECRET_LEN: usize = 32;

/// A secret whose `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// All settings of one server process.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to listen on; port 0 picks a free port (tests).
    pub bind: String,
    /// `sqlite://path`, a plain path, or `postgres://...`.
    pub database_url: Secret,
    /// Connections in the read pool (the writer holds one more).
    pub db_pool_size: u32,
    /// How long to wait for a pooled connection before answering `unavailable`.
    pub db_timeout: Duration,
    /// How long a request waits for its write to commit before it gets `unavailable`.
    pub db_write_timeout: Duration,
    /// HS256 secret; `None` means "use or create the secret file".
    pub jwt_secret: Option<Secret>,
    /// Where the generated secret is kept when `jwt_secret` is not set.
    pub jwt_secret_file: Option<PathBuf>,
    /// Interval of WebSocket pings; a client silent for two intervals is dropped.
    pub heartbeat_interval: Duration,
    /// How long a user stays online after their last session closed (no flapping on reconnect).
    pub presence_grace: Duration,
    /// How often presence deadlines (grace, idle, status expiry) are checked.
    pub presence_sweep: Duration,
    /// Users with no client activity on any device for this long turn `away` (None: never).
    pub auto_away: Option<Duration>,
    /// Let anyone `watch` anyone (otherwise only users who share a room).
    pub open_watch: bool,
    /// `room_presence` changes are collected per room for this long and sent as one diff.
    pub presence_coalesce: Duration,
    /// Most `typing` start broadcasts per user and room per second; extra ones are dropped.
    pub typing_rate: u32,
    /// Notify `@mentioned` room members (type `mention`).
    pub notify_mentions: bool,
    /// Notify the recipient of a direct message who has no online session (type `message`).
    pub notify_offline_direct: bool,
    /// How often expired notifications are deleted and held ones released.
    pub notification_sweep: Duration,
    /// Engine.IO `pingInterval` of Socket.IO connections.
    pub sio_ping_interval: Duration,
    /// Engine.IO `pingTimeout`: a client that does not answer a ping within it is dropped.
    pub sio_ping_timeout: Duration,
    /// Engine.IO `maxPayload`: largest polling request body / WebSocket message, in bytes.
    pub sio_max_payload: usize,
    /// Time source for presence decisions (tests substitute a manual clock).
    pub clock: Arc<dyn Clock>,
    /// A `typing` `start` without `stop` ends by itself after this long.
    pub typing_timeout: Duration,
    /// Frames a session may have queued before it counts as a slow consumer and is closed.
    pub outbox_frames: usize,
    /// Largest WebSocket message accepted (after reassembling fragments).
    pub max_frame_bytes: usize,
    /// Largest `text` of a text message, and the bound (plus 1 KiB) of any message body.
    pub max_text_bytes: usize,
    /// Most messages a `join` with `since_seq` returns in `missed`.
    pub join_missed_limit: i64,
    /// Most write groups one commit batch takes.
    pub commit_max_batch: usize,
    /// A room actor with no subscribers and no traffic for this long is stopped.
    pub room_idle: Duration,
    /// HTTP worker threads (0 = one per core).
    pub workers: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            bind: "127.0.0.1:8080".into(),
            database_url: Secret::new("sqlite://herald.db"),
            db_pool_size: 4,
            db_timeout: Duration::from_secs(5),
            db_write_timeout: Duration::from_secs(10),
            jwt_secret: None,
            jwt_secret_file: None,
            heartbeat_interval: Duration::from_secs(25),
            presence_grace: Duration::from_secs(3),
            presence_sweep: Duration::from_millis(250),
            auto_away: None,
            open_watch: false,
            presence_coalesce: Duration::from_millis(200),
            typing_rate: 5,
            notify_mentions: true,
            notify_offline_direct: true,
            notification_sweep: Duration::from_secs(30),
            sio_ping_interval: Duration::from_secs(25),
            sio_ping_timeout: Duration::from_secs(20),
            sio_max_payload: 1_000_000,
            clock: Arc::new(SystemClock),
            typing_timeout: Duration::from_secs(5),
            outbox_frames: 1024,
            max_frame_bytes: 1024 * 1024,
            max_text_bytes: 64 * 1024,
            join_missed_limit: 100,
            commit_max_batch: 512,
            room_idle: Duration::from_secs(60),
            workers: 0,
        }
    }
}

/// Database and secret flags, shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Database URL: sqlite://FILE (default) or postgres://USER@HOST/DB.
    #[arg(
        long,
        env = "HERALD_DATABASE_URL",
        default_value = "sqlite://herald.db",
        global = true
    )]
    pub database_url: String,
    /// HS256 secret for JWTs (at least 32 bytes). Unset: generated once and kept in a file beside the database.
    #[arg(long, env = "HERALD_JWT_SECRET", hide_env_values = true, global = true)]
    pub jwt_secret: Option<String>,
    /// Where the generated secret is kept (default: herald.secret beside the SQLite file, or in the working directory).
    #[arg(long, env = "HERALD_JWT_SECRET_FILE", global = true)]
    pub jwt_secret_file: Option<PathBuf>,
}

/// Flags of `herald serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "HERALD_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// Read pool size.
    #[arg(long, env = "HERALD_DB_POOL_SIZE", default_value_t = 4)]
    pub db_pool_size: u32,
    /// Milliseconds to wait for a database connection.
    #[arg(long, env = "HERALD_DB_TIMEOUT_MS", default_value_t = 5000)]
    pub db_timeout_ms: u64,
    /// Milliseconds a request waits for its write to commit before `unavailable`.
    #[arg(long, env = "HERALD_DB_WRITE_TIMEOUT_MS", default_value_t = 10_000)]
    pub db_write_timeout_ms: u64,
    /// WebSocket ping interval in milliseconds.
    #[arg(long, env = "HERALD_HEARTBEAT_MS", default_value_t = 25_000)]
    pub heartbeat_ms: u64,
    /// Presence grace period after a user's last session closes, in milliseconds.
    #[arg(long, env = "HERALD_PRESENCE_GRACE_MS", default_value_t = 3000)]
    pub presence_grace_ms: u64,
    /// Milliseconds without client activity after which a user turns away (0: off).
    #[arg(long, env = "HERALD_AUTO_AWAY_MS", default_value_t = 0)]
    pub auto_away_ms: u64,
    /// Allow watching any user, not only users who share a room.
    #[arg(long, env = "HERALD_OPEN_WATCH", default_value_t = false)]
    pub open_watch: bool,
    /// Window in which room presence changes are coalesced into one diff, in milliseconds.
    #[arg(long, env = "HERALD_PRESENCE_COALESCE_MS", default_value_t = 200)]
    pub presence_coalesce_ms: u64,
    /// Typing start broadcasts allowed per user and room per second.
    #[arg(long, env = "HERALD_TYPING_RATE", default_value_t = 5)]
    pub typing_rate: u32,
    /// Notify @mentioned room members.
    #[arg(long, env = "HERALD_NOTIFY_MENTIONS", default_value_t = true, action = clap::ArgAction::Set)]
    pub notify_mentions: bool,
    /// Notify recipients of direct messages who are offline.
    #[arg(long, env = "HERALD_NOTIFY_OFFLINE_DIRECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub notify_offline_direct: bool,
    /// Interval of the notification expiry/release sweep, in milliseconds.
    #[arg(long, env = "HERALD_NOTIFICATION_SWEEP_MS", default_value_t = 30_000)]
    pub notification_sweep_ms: u64,
    /// Socket.IO (Engine.IO) ping interval in milliseconds.
    #[arg(long, env = "HERALD_SIO_PING_INTERVAL_MS", default_value_t = 25_000)]
    pub sio_ping_interval_ms: u64,
    /// Socket.IO (Engine.IO) ping timeout in milliseconds.
    #[arg(long, env = "HERALD_SIO_PING_TIMEOUT_MS", default_value_t = 20_000)]
    pub sio_ping_timeout_ms: u64,
    /// Socket.IO (Engine.IO) maxPayload in bytes.
    #[arg(long, env = "HERALD_SIO_MAX_PAYLOAD", default_value_t = 1_000_000)]
    pub sio_max_payload: usize,
    /// Typing indicator expiry in milliseconds.
    #[arg(long, env = "HERALD_TYPING_TIMEOUT_MS", default_value_t = 5000)]
    pub typing_timeout_ms: u64,
    /// Frames queued per session before it is closed as a slow consumer.
    #[arg(long, env = "HERALD_OUTBOX_FRAMES", default_value_t = 1024)]
    pub outbox_frames: usize,
    /// Largest WebSocket message in bytes.
    #[arg(long, env = "HERALD_MAX_FRAME_BYTES", default_value_t = 1024 * 1024)]
    pub max_frame_bytes: usize,
    /// Largest text message body in bytes.
    #[arg(long, env = "HERALD_MAX_TEXT_BYTES", default_value_t = 64 * 1024)]
    pub max_text_bytes: usize,
    /// Most messages returned as `missed` by a join with since_seq.
    #[arg(long, env = "HERALD_JOIN_MISSED_LIMIT", default_value_t = 100)]
    pub join_missed_limit: i64,
    /// Most write groups per commit batch.
    #[arg(long, env = "HERALD_COMMIT_MAX_BATCH", default_value_t = 512)]
    pub commit_max_batch: usize,
    /// Idle room actors stop after this many milliseconds.
    #[arg(long, env = "HERALD_ROOM_IDLE_MS", default_value_t = 60_000)]
    pub room_idle_ms: u64,
    /// HTTP worker threads (0: one per core).
    #[arg(long, env = "HERALD_WORKERS", default_value_t = 0)]
    pub workers: usize,
}

impl Settings {
    pub fn from_args(common: &CommonArgs, serve: Option<&ServeArgs>) -> Self {
        let mut s = Settings {
            database_url: Secret::new(common.database_url.clone()),
            jwt_secret: common.jwt_secret.clone().map(Secret::new),
            jwt_secret_file: common.jwt_secret_file.clone(),
            ..Settings::default()
        };
        if let Some(a) = serve {
            s.bind = a.bind.clone();
            s.db_pool_size = a.db_pool_size.max(1);
            s.db_timeout = Duration::from_millis(a.db_timeout_ms.max(100));
            s.db_write_timeout = Duration::from_millis(a.db_write_timeout_ms.max(100));
            s.heartbeat_interval = Duration::from_millis(a.heartbeat_ms.max(100));
            s.presence_grace = Duration::from_millis(a.presence_grace_ms);
            s.presence_sweep =
                (s.presence_grace / 4).clamp(Duration::from_millis(50), Duration::from_millis(250));
            s.auto_away = (a.auto_away_ms > 0).then(|| Duration::from_millis(a.auto_away_ms));
            s.open_watch = a.open_watch;
            s.presence_coalesce = Duration::from_millis(a.presence_coalesce_ms);
            s.typing_rate = a.typing_rate.max(1);
            s.sio_ping_interval = Duration::from_millis(a.sio_ping_interval_ms.max(100));
            s.sio_ping_timeout = Duration::from_millis(a.sio_ping_timeout_ms.max(100));
            s.sio_max_payload = a.sio_max_payload.max(1024);
            s.notify_mentions = a.notify_mentions;
            s.notify_offline_direct = a.notify_offline_direct;
            s.notification_sweep = Duration::from_millis(a.notification_sweep_ms.max(100));
            s.typing_timeout = Duration::from_millis(a.typing_timeout_ms.max(100));
            s.outbox_frames = a.outbox_frames.max(1);
            s.max_frame_bytes = a.max_frame_bytes.max(1024);
            s.max_text_bytes = a.max_text_bytes.max(1);
            s.join_missed_limit = a.join_missed_limit.clamp(0, 1000);
            s.commit_max_batch = a.commit_max_batch.max(1);
            s.room_idle = Duration::from_millis(a.room_idle_ms);
            s.workers = a.workers;
        }
        s
    }

    /// Where the generated JWT secret lives: the configured file, else `herald.secret` beside
    /// the SQLite database, else in the working directory.
    pub fn secret_file_path(&self) -> PathBuf {
        if let Some(p) = &self.jwt_secret_file {
            return p.clone();
        }
        match crate::db::DatabaseUrl::parse(self.database_url.expose()) {
            Ok(crate::db::DatabaseUrl::Sqlite(path)) => {
                let parent = std::path::Path::new(&path)
                    .parent()
                    .map(|p| p.to_path_buf())
                    .unwrap_or_default();
                parent.join("herald.secret")
            }
            _ => PathBuf::from("herald.secret"),
        }
    }
}
